// Shared helpers for the kernel tests: a seeded PRNG, the input families every kernel is run on,
// and a tiny way to call a WASM kernel on JS arrays.
import { Arena, initKernels, type KernelExports } from "../../kernels/wasm.js";

/** The seed of this run: DYNO_SEED=<n> replays a failure. */
export const SEED = Number(process.env.DYNO_SEED ?? 0x5eed);

export { rng, gaussian, FAMILIES, makeInput, ALL_BITS, LENGTHS, type Family } from "./inputs.js";

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
