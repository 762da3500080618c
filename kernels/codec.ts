// encode/decode: a float32 tensor <-> a self-describing payload (header: kernels/format.ts,
// docs/kernels.md). Quantised path, DynO §2: range from the tensor (per tensor or per channel
// along axis 1) -> b-bit codes -> dense packing or bit-shuffle -> lossless stage.
import { Arena, kernelsOrThrow, type KernelExports } from "./wasm.js";
import { compress, decompressInto, type Codec, CODECS } from "./lossless.js";
import { elementCount, headerLength, Kind, MAX_ELEMENTS, MAX_RANK, rawBodyLength, readHeader, writeHeader, type Header } from "./format.js";
import { quantParams } from "./reference.js";

export type Bits = 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 16 | 32 | "f16" | "f32";

export interface EncodeOptions {
  /** 1..8 or 16: quantised codes; 32 or "f32": float32 passthrough; "f16": float16. */
  bits: Bits;
  /** Ranges per channel along axis 1 (rank >= 2). Default false. */
  perChannel?: boolean;
  /** Bit-plane transpose before the lossless stage. Default: DEFAULTS[bits].shuffle. */
  shuffle?: boolean;
  /** Lossless stage; "auto" (default) takes DEFAULTS[bits].codec. */
  codec?: Codec | "auto";
}

/**
 * Per-bit-width defaults, chosen by total time at the 4G preset (bytes / 15 Mbit/s + encode +
 * decode) over real activations at every cut of the fixture models: bench/codec.ts measures,
 * docs/codec.md has the table. zstd without bit-shuffle won at every measured width (2, 4, 6, 8,
 * float16, float32); the unmeasured widths (1, 3, 5, 7, 16) follow their neighbours.
 */
export const DEFAULTS: Record<string, { codec: Codec; shuffle: boolean }> = Object.fromEntries(
  ["1", "2", "3", "4", "5", "6", "7", "8", "16", "f16", "f32"].map((b) => [b, { codec: "zstd", shuffle: false }]),
);

let arena: Arena | undefined;
let arenaOf: KernelExports | undefined;

function getArena(k: KernelExports): Arena {
  if (!arena || arenaOf !== k) (arena = new Arena(k)), (arenaOf = k);
  arena.reset();
  return arena;
}

function checkShape(x: Float32Array, shape: readonly number[]): void {
  if (shape.length > MAX_RANK) throw new Error(`encode: rank ${shape.length} exceeds ${MAX_RANK}`);
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0 || d > 0xffffffff) throw new Error(`encode: bad dimension ${d} in shape [${shape}]`);
  }
  const n = elementCount(shape);
  if (n !== x.length) throw new Error(`encode: shape [${shape}] has ${n} elements, the tensor ${x.length}`);
  if (n > MAX_ELEMENTS) throw new Error(`encode: ${n} elements exceed the cap of ${MAX_ELEMENTS}`);
}

function channelView(shape: readonly number[]): [outer: number, channels: number, inner: number] {
  return [shape[0], shape[1], elementCount(shape.slice(2))];
}

/** The min/max kernels leave the sign of a zero bound to input order: the payload stores +0. */
function normalizeZeros(r: Float32Array): Float32Array {
  for (let i = 0; i < r.length; i++) r[i] += 0;
  return r;
}

function nonFinite(where: string): never {
  throw new Error(`encode: tensor contains NaN or Inf${where}; quantisation needs finite values`);
}

export function encode(x: Float32Array, shape: readonly number[], opts: EncodeOptions): Uint8Array {
  const k = kernelsOrThrow();
  checkShape(x, shape);
  const key = opts.bits === 32 ? "f32" : String(opts.bits);
  const defaults = DEFAULTS[key];
  if (!defaults) throw new Error(`encode: unsupported bits ${String(opts.bits)} (1..8, 16, 32, "f16", "f32")`);
  const codec = opts.codec === undefined || opts.codec === "auto" ? defaults.codec : opts.codec;
  if (!CODECS.includes(codec)) throw new Error(`encode: unknown codec "${codec}" (${CODECS.join(", ")}, auto)`);
  const kind = key === "f32" ? Kind.Float32 : key === "f16" ? Kind.Float16 : Kind.Quantized;
  const bits = kind === Kind.Float32 ? 32 : kind === Kind.Float16 ? 16 : Number(key);
  const quantised = kind === Kind.Quantized;
  const shuffle = quantised && (opts.shuffle ?? defaults.shuffle);
  const perChannel = quantised && !!opts.perChannel;
  if (perChannel && shape.length < 2) throw new Error(`encode: per-channel ranges need rank >= 2, shape is [${shape}]`);
  const n = x.length;
  const rawLength = rawBodyLength(kind, bits, shuffle, n);

  const a = getArena(k);
  const body = a.take(rawLength);
  let ranges: Float32Array = new Float32Array(0);
  if (kind === Kind.Float32) {
    a.bytes.set(new Uint8Array(x.buffer, x.byteOffset, 4 * n), body);
  } else {
    const X = a.take(4 * n);
    new Float32Array(a.bytes.buffer, X, n).set(x);
    if (kind === Kind.Float16) k.f32_to_f16__simd128(X, n, body);
    else ranges = quantizeInto(k, a, X, n, shape, bits, shuffle, perChannel, body);
  }
  const raw = new Uint8Array(a.bytes.buffer, body, rawLength); // a fresh view: the arena may have grown
  let stored = compress(codec, raw);
  let usedCodec = codec;
  // A body the compressor cannot shrink (lz4js even gives up and returns nothing) travels raw.
  if (codec !== "none" && (stored.length === 0 || stored.length >= rawLength)) (stored = raw), (usedCodec = "none");
  const h = { kind, bits, shuffle, perChannel, codec: usedCodec, shape: [...shape], ranges, rawLength, storedLength: stored.length };
  const out = new Uint8Array(headerLength(shape.length, ranges.length / 2) + stored.length);
  const at = writeHeader(out, h);
  out.set(stored, at);
  return out;
}

// Quantises X into `body` (packed or shuffled) and returns the ranges written to the header.
function quantizeInto(
  k: KernelExports, a: Arena, X: number, n: number, shape: readonly number[],
  bits: number, shuffle: boolean, perChannel: boolean, body: number,
): Float32Array {
  const wide = bits === 16;
  let ranges: Float32Array;
  // Packed 8- and 16-bit bodies are the codes themselves.
  const codes = (bits === 8 || wide) && !shuffle ? body : a.take(wide ? 2 * n : n);
  if (!perChannel) {
    const R = a.take(8);
    if (n === 0) ranges = new Float32Array([0, 0]);
    else {
      k.f32_minmax__simd128(X, n, R);
      ranges = normalizeZeros(new Float32Array(a.bytes.buffer, R, 2).slice());
      if (!Number.isFinite(ranges[0]) || !Number.isFinite(ranges[1])) nonFinite("");
    }
    const p = quantParams(ranges[0], ranges[1], bits);
    if (bits === 4 && !shuffle) {
      k.f32_quantize_pack_u4__simd128(X, n, p.pre, p.qlo, p.inv, body);
      return ranges;
    }
    if (wide) k.f32_quantize_u16__simd128(X, n, p.pre, p.qlo, p.inv, codes);
    else k.f32_quantize_u8__simd128(X, n, p.pre, p.qlo, p.inv, codes);
  } else {
    const [outer, C, inner] = channelView(shape);
    const R = a.take(8 * C);
    const P = a.take(16 * C);
    if (outer * inner === 0) new Float32Array(a.bytes.buffer, R, 2 * C).fill(0);
    else k.f32_minmax_channels__simd128(X, outer, C, inner, R);
    const mem = a.bytes.buffer;
    ranges = normalizeZeros(new Float32Array(mem, R, 2 * C).slice());
    const params = new Float32Array(mem, P, 4 * C);
    for (let c = 0; c < C; c++) {
      if (!Number.isFinite(ranges[2 * c]) || !Number.isFinite(ranges[2 * c + 1])) nonFinite(` (channel ${c})`);
      const q = quantParams(ranges[2 * c], ranges[2 * c + 1], bits);
      params[4 * c] = q.pre;
      params[4 * c + 1] = q.qlo;
      params[4 * c + 2] = q.inv;
    }
    if (wide) k.f32_quantize_u16_channels__simd128(X, outer, C, inner, P, codes);
    else k.f32_quantize_u8_channels__simd128(X, outer, C, inner, P, codes);
  }
  if (shuffle) {
    if (wide) k.u16_bitshuffle__simd128(codes, n, bits, body);
    else k.u8_bitshuffle__simd128(codes, n, bits, body);
  } else if (codes !== body) pack(k, codes, n, bits, body);
  return ranges;
}

function pack(k: KernelExports, codes: number, n: number, bits: number, out: number): void {
  if (bits === 4) k.u8_pack_u4__simd128(codes, n, out);
  else if (bits === 2) k.u8_pack_u2__simd128(codes, n, out);
  else if (bits === 1) k.u8_pack_u1__simd128(codes, n, out);
  else k.u8_pack_ub__scalar(codes, n, bits, out);
}

function unpack(k: KernelExports, packed: number, n: number, bits: number, codes: number): void {
  if (bits === 4) k.u8_unpack_u4__simd128(packed, n, codes);
  else if (bits === 2) k.u8_unpack_u2__simd128(packed, n, codes);
  else if (bits === 1) k.u8_unpack_u1__simd128(packed, n, codes);
  else k.u8_unpack_ub__scalar(packed, n, bits, codes);
}

export interface DecodeOptions {
  /** Reject payloads whose shape has more elements (default 2^28). */
  maxElements?: number;
}

export interface Decoded {
  data: Float32Array;
  shape: number[];
}

/** The tensor of a payload; throws `payload: ...` on anything malformed. */
export function decode(bytes: Uint8Array, opts: DecodeOptions = {}): Float32Array {
  return decodeWithShape(bytes, opts).data;
}

export function decodeWithShape(bytes: Uint8Array, opts: DecodeOptions = {}): Decoded {
  const h = readHeader(bytes, opts.maxElements ?? MAX_ELEMENTS);
  const data = new Float32Array(elementCount(h.shape));
  decodeBody(bytes, h, data);
  return { data, shape: h.shape };
}

/**
 * Decodes into `out` (exactly as many elements as the payload's shape) and returns the shape:
 * the allocation-free form for a caller that reuses its output tensor.
 */
export function decodeInto(bytes: Uint8Array, out: Float32Array, opts: DecodeOptions = {}): number[] {
  const h = readHeader(bytes, opts.maxElements ?? MAX_ELEMENTS);
  const n = elementCount(h.shape);
  if (out.length !== n) throw new Error(`decodeInto: payload has ${n} elements (shape [${h.shape}]), output ${out.length}`);
  decodeBody(bytes, h, out);
  return h.shape;
}

function decodeBody(bytes: Uint8Array, h: Header, result: Float32Array): void {
  const k = kernelsOrThrow();
  const n = result.length;
  const a = getArena(k);
  const body = a.take(h.rawLength);
  const Y = a.take(4 * n);
  // Packed 8- and 16-bit bodies are the codes themselves; 4-bit per-tensor goes through the fused kernel.
  const fused4 = h.bits === 4 && !h.shuffle && !h.perChannel;
  const codesAt = h.kind === Kind.Quantized && (h.shuffle || (h.bits !== 8 && h.bits !== 16 && !fused4))
    ? a.take(h.bits === 16 ? 2 * n : n) : body;
  const stored = bytes.subarray(h.bodyOffset);
  decompressInto(h.codec, stored, new Uint8Array(a.bytes.buffer, body, h.rawLength));
  if (h.kind === Kind.Float32) {
    new Uint8Array(result.buffer, result.byteOffset, 4 * n).set(new Uint8Array(a.bytes.buffer, body, 4 * n));
    return;
  }
  if (h.kind === Kind.Float16) k.f16_to_f32__simd128(body, n, Y);
  else dequantizeFrom(k, a, h.bits, h.shuffle, h.perChannel, h.shape, h.ranges, n, body, codesAt, Y);
  result.set(new Float32Array(a.bytes.buffer, Y, n));
}

function dequantizeFrom(
  k: KernelExports, a: Arena, bits: number, shuffle: boolean, perChannel: boolean, shape: number[],
  ranges: Float32Array, n: number, body: number, codes: number, Y: number,
): void {
  const wide = bits === 16;
  const maxCode = wide ? 65535 : (1 << bits) - 1;
  if (!perChannel && bits === 4 && !shuffle) {
    const p = quantParams(ranges[0], ranges[1], bits);
    k.u4_unpack_dequantize_f32__simd128(body, n, p.step, p.offset, p.mult, p.hi, Y);
    return;
  }
  if (shuffle) {
    if (wide) k.u16_bitunshuffle__simd128(body, n, bits, codes);
    else k.u8_bitunshuffle__simd128(body, n, bits, codes);
  } else if (codes !== body) unpack(k, body, n, bits, codes);
  if (!perChannel) {
    const p = quantParams(ranges[0], ranges[1], bits);
    if (wide) k.u16_dequantize_f32__simd128(codes, n, p.step, p.offset, p.mult, p.hi, maxCode, Y);
    else k.u8_dequantize_f32__simd128(codes, n, p.step, p.offset, p.mult, p.hi, maxCode, Y);
    return;
  }
  const [outer, C, inner] = channelView(shape);
  const P = a.take(16 * C);
  const params = new Float32Array(a.bytes.buffer, P, 4 * C);
  for (let c = 0; c < C; c++) {
    const q = quantParams(ranges[2 * c], ranges[2 * c + 1], bits);
    params[4 * c] = q.step;
    params[4 * c + 1] = q.offset;
    params[4 * c + 2] = q.mult;
    params[4 * c + 3] = q.hi;
  }
  if (wide) k.u16_dequantize_f32_channels__simd128(codes, outer, C, inner, P, maxCode, Y);
  else k.u8_dequantize_f32_channels__simd128(codes, outer, C, inner, P, maxCode, Y);
}
