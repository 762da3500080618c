// Shared helpers for the kernel tests: a seeded PRNG, the input families every kernel is run on,
// and a tiny way to call a WASM kernel on JS arrays.
import { Arena, initKernels, type KernelExports } from "../../kernels/wasm.js";

/** The seed of this run: DYNO_SEED=<n> replays a failure. */
export const SEED = Number(process.env.DYNO_SEED ?? 0x5eed);

/** mulberry32: small, fast, and the same sequence in every JS engine. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function gaussian(r: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
}

export const FAMILIES = ["normal", "relu", "zeros", "constant", "negative", "huge", "tiny"] as const;
export type Family = (typeof FAMILIES)[number];

/** n finite float32 values of one family (the edge cases the issue names, plus two common shapes). */
export function makeInput(family: Family, n: number, r: () => number): Float32Array {
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    switch (family) {
      case "normal": x[i] = gaussian(r) * 3 + 0.5; break;
      case "relu": x[i] = Math.max(0, gaussian(r) * 2 - 0.5); break; // post-ReLU: many exact zeros
      case "zeros": x[i] = 0; break;
      case "constant": x[i] = 1.7; break;
      case "negative": x[i] = -(Math.abs(gaussian(r)) + 0.25); break;
      case "huge": x[i] = (r() * 2 - 1) * 3.4e38; break; // max - min overflows float32
      case "tiny": x[i] = r() * 1e-40; break; // subnormals: a range whose 1/scale overflows
    }
  }
  if (family === "huge" && n >= 2) (x[0] = -3.4028234663852886e38), (x[1] = 3.4028234663852886e38);
  return x;
}

export const ALL_BITS = [1, 2, 3, 4, 5, 6, 7, 8, 16] as const;

/** Every length from 1 to three of the widest SIMD tile (64 codes, u2 pack) plus large odd ones. */
export const LENGTHS = [...Array.from({ length: 192 }, (_, i) => i + 1), 1000, 4099, 65537];

let k: KernelExports | undefined;
let arena: Arena | undefined;

export async function wasm(): Promise<KernelExports> {
  k ??= await initKernels();
  arena ??= new Arena(k);
  return k;
}

/** Scratch for one kernel call: copy inputs in, allocate outputs, read them back. */
export class Call {
  constructor() {
    arena!.reset();
  }
  put(data: ArrayBufferView): number {
    const at = arena!.take(data.byteLength);
    arena!.bytes.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), at);
    return at;
  }
  /** A block filled with 0xA5 so a kernel that skips a byte is caught. */
  out(bytes: number): number {
    const at = arena!.take(bytes);
    arena!.bytes.fill(0xa5, at, at + bytes + 16);
    return at;
  }
  u8(at: number, n: number): Uint8Array {
    return arena!.bytes.slice(at, at + n);
  }
  u16(at: number, n: number): Uint16Array {
    return new Uint16Array(arena!.bytes.slice(at, at + 2 * n).buffer);
  }
  f32(at: number, n: number): Float32Array {
    return new Float32Array(arena!.bytes.slice(at, at + 4 * n).buffer);
  }
}

/** First index where two arrays differ (bitwise for floats), or -1. */
export function firstDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return i;
  return -1;
}

export function expectSame(what: string, got: ArrayLike<number>, want: ArrayLike<number>, ctx: string): void {
  const i = firstDiff(got, want);
  if (i >= 0) {
    throw new Error(`${what}: differs from the reference at [${i}] (got ${got[i]}, want ${want[i]}; lengths ${got.length}/${want.length}) ${ctx} seed=${SEED}`);
  }
}
