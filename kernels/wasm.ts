// Loads kernels/build/kernels.wasm (built by `npm run build` from kernels/assembly/) and keeps one
// growable scratch arena in its memory. The same code runs in Node and in browsers:
//   - initKernels(bytes) takes the module's bytes (or a compiled WebAssembly.Module) from anywhere;
//   - initKernels() alone reads the file next to this module: through node:fs in Node, through
//     fetch(new URL("./build/kernels.wasm", import.meta.url)) in a browser (a bundle must ship
//     build/kernels.wasm beside itself, as test/kernels-browser.test.ts does).
// Kernels are synchronous once initialised; encode/decode throw if called before. initKernels also
// starts zstd's own WASM (@bokuweb/zstd-wasm); if that fails only the zstd codec is unavailable.
import { initZstd } from "./lossless.js";

export interface KernelExports {
  memory: WebAssembly.Memory;
  heap_base(): number;
  f32_minmax__simd128(x: number, n: number, out: number): void;
  f32_minmax_channels__simd128(x: number, outer: number, channels: number, inner: number, out: number): void;
  f32_quantize_u8__simd128(x: number, n: number, pre: number, qlo: number, inv: number, out: number): void;
  f32_quantize_u16__simd128(x: number, n: number, pre: number, qlo: number, inv: number, out: number): void;
  f32_quantize_u8_channels__simd128(x: number, outer: number, channels: number, inner: number, params: number, out: number): void;
  f32_quantize_u16_channels__simd128(x: number, outer: number, channels: number, inner: number, params: number, out: number): void;
  f32_quantize_pack_u4__simd128(x: number, n: number, pre: number, qlo: number, inv: number, out: number): void;
  u8_dequantize_f32__simd128(codes: number, n: number, step: number, offset: number, mult: number, hi: number, top: number, out: number): void;
  u16_dequantize_f32__simd128(codes: number, n: number, step: number, offset: number, mult: number, hi: number, top: number, out: number): void;
  u8_dequantize_f32_channels__simd128(codes: number, outer: number, channels: number, inner: number, params: number, top: number, out: number): void;
  u16_dequantize_f32_channels__simd128(codes: number, outer: number, channels: number, inner: number, params: number, top: number, out: number): void;
  u4_unpack_dequantize_f32__simd128(packed: number, n: number, step: number, offset: number, mult: number, hi: number, out: number): void;
  u8_pack_ub__scalar(codes: number, n: number, bits: number, out: number): void;
  u8_unpack_ub__scalar(packed: number, n: number, bits: number, codes: number): void;
  u8_pack_u4__simd128(codes: number, n: number, out: number): void;
  u8_pack_u2__simd128(codes: number, n: number, out: number): void;
  u8_pack_u1__simd128(codes: number, n: number, out: number): void;
  u8_unpack_u4__simd128(packed: number, n: number, codes: number): void;
  u8_unpack_u2__simd128(packed: number, n: number, codes: number): void;
  u8_unpack_u1__simd128(packed: number, n: number, codes: number): void;
  u8_bitshuffle__simd128(codes: number, n: number, bits: number, out: number): void;
  u8_bitunshuffle__simd128(planes: number, n: number, bits: number, codes: number): void;
  u16_bitshuffle__simd128(codes: number, n: number, bits: number, out: number): void;
  u16_bitunshuffle__simd128(planes: number, n: number, bits: number, codes: number): void;
  f32_to_f16__simd128(x: number, n: number, out: number): void;
  f16_to_f32__simd128(h: number, n: number, out: number): void;
}

let kernels: KernelExports | undefined;
let loading: Promise<KernelExports> | undefined;

export type WasmSource = BufferSource | WebAssembly.Module;

/** Instantiates the kernels once; later (and concurrent) calls share the same instance. */
export function initKernels(source?: WasmSource): Promise<KernelExports> {
  loading ??= instantiate(source).catch((e: unknown) => {
    loading = undefined; // a failed load (e.g. a bad URL) may be retried
    throw e;
  });
  return loading;
}

async function instantiate(source?: WasmSource): Promise<KernelExports> {
  const zstdReady = initZstd();
  const src = source ?? (await defaultWasmBytes());
  const instance =
    src instanceof WebAssembly.Module
      ? await WebAssembly.instantiate(src, {})
      : (await WebAssembly.instantiate(src, {})).instance;
  await zstdReady;
  kernels = instance.exports as unknown as KernelExports;
  return kernels;
}

async function defaultWasmBytes(): Promise<BufferSource> {
  const isNode = typeof process !== "undefined" && !!process.versions?.node;
  if (!isNode) {
    const res = await fetch(new URL("./build/kernels.wasm", import.meta.url));
    if (!res.ok) throw new Error(`kernels: fetching build/kernels.wasm failed (HTTP ${res.status})`);
    return await res.arrayBuffer();
  }
  const fs = await import("node:fs");
  // Sources run from kernels/; the tsc output runs from dist/kernels/, two levels below the root.
  for (const rel of ["./build/kernels.wasm", "../../kernels/build/kernels.wasm"]) {
    const url = new URL(rel, import.meta.url);
    if (fs.existsSync(url)) return fs.readFileSync(url);
  }
  throw new Error("kernels: kernels/build/kernels.wasm not found; run `npm run build`");
}

export function kernelsOrThrow(): KernelExports {
  if (!kernels) throw new Error("kernels: call `await initKernels()` before encode/decode");
  return kernels;
}

/**
 * One scratch arena in WASM memory, laid out per call from heap_base and grown (never shrunk)
 * to the largest call seen: steady state allocates nothing in WASM and nothing in JS but the
 * returned arrays.
 */
export class Arena {
  private top = 0;
  private base: number;
  constructor(private readonly k: KernelExports) {
    this.base = (k.heap_base() + 15) & ~15;
  }
  /** Starts a new layout; offsets from earlier calls are void. */
  reset(): void {
    this.top = this.base;
  }
  /** A 16-byte aligned block of `bytes`, with 16 bytes of slack for SIMD tails. */
  take(bytes: number): number {
    const at = this.top;
    this.top = (at + bytes + 31) & ~15;
    const need = this.top - this.k.memory.buffer.byteLength;
    if (need > 0) this.k.memory.grow(Math.ceil(need / 65536));
    return at;
  }
  get bytes(): Uint8Array {
    return new Uint8Array(this.k.memory.buffer);
  }
}
