// The payload header, version 1 (docs/kernels.md has the table). All integers little-endian.
//
//   0  u8[2]  magic "DY" (0x44 0x59)
//   2  u8     version = 1
//   3  u8     kind: 0 quantised codes, 1 float32, 2 float16
//   4  u8     bits: 1..8 or 16 (quantised), 32 (float32), 16 (float16)
//   5  u8     flags: bit 0 bit-shuffled, bit 1 per-channel ranges (axis 1); others 0
//   6  u8     codec: 0 none, 1 lz4 block, 2 raw deflate, 3 zstd frame
//   7  u8     rank r, 0..8
//   8  u32[r] dims
//      f32[2k] ranges (min, max) x k; k = 0 for float kinds, 1 per tensor, dims[1] per channel
//      u32    rawLength: body bytes before the lossless stage (fixed by kind, bits, flags, shape)
//      u32    storedLength: body bytes that follow; the payload ends exactly there
import { CODECS, MAX_RATIO, type Codec } from "./lossless.js";

export const MAGIC0 = 0x44;
export const MAGIC1 = 0x59;
export const VERSION = 1;
export const MAX_RANK = 8;
/** Default cap on decoded elements (1 GiB of float32); decode() takes another. */
export const MAX_ELEMENTS = 1 << 28;

export const Kind = { Quantized: 0, Float32: 1, Float16: 2 } as const;
export type Kind = (typeof Kind)[keyof typeof Kind];

export const FLAG_SHUFFLE = 1;
export const FLAG_PER_CHANNEL = 2;

export interface Header {
  kind: Kind;
  bits: number;
  shuffle: boolean;
  perChannel: boolean;
  codec: Codec;
  shape: number[];
  /** [min0, max0, min1, max1, ...] */
  ranges: Float32Array;
  rawLength: number;
  storedLength: number;
  /** Offset of the body in the payload. */
  bodyOffset: number;
}

export function elementCount(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Body bytes before the lossless stage. */
export function rawBodyLength(kind: Kind, bits: number, shuffle: boolean, n: number): number {
  if (kind === Kind.Float32) return 4 * n;
  if (kind === Kind.Float16) return 2 * n;
  return shuffle ? bits * Math.ceil(n / 8) : Math.ceil((n * bits) / 8);
}

export function headerLength(rank: number, rangeCount: number): number {
  return 8 + 4 * rank + 8 * rangeCount + 8;
}

export function writeHeader(out: Uint8Array, h: Omit<Header, "bodyOffset">): number {
  const v = new DataView(out.buffer, out.byteOffset, out.byteLength);
  out[0] = MAGIC0;
  out[1] = MAGIC1;
  out[2] = VERSION;
  out[3] = h.kind;
  out[4] = h.bits;
  out[5] = (h.shuffle ? FLAG_SHUFFLE : 0) | (h.perChannel ? FLAG_PER_CHANNEL : 0);
  out[6] = CODECS.indexOf(h.codec);
  out[7] = h.shape.length;
  let p = 8;
  for (const d of h.shape) (v.setUint32(p, d, true), (p += 4));
  for (let i = 0; i < h.ranges.length; i++) (v.setFloat32(p, h.ranges[i], true), (p += 4));
  v.setUint32(p, h.rawLength, true);
  v.setUint32(p + 4, h.storedLength, true);
  return p + 8;
}

function fail(why: string): never {
  throw new Error(`payload: ${why}`);
}

/** Parses and checks everything that can be checked before touching the body. */
export function readHeader(b: Uint8Array, maxElements = MAX_ELEMENTS): Header {
  if (b.length < 8) fail(`truncated: ${b.length} bytes, a header needs at least 8`);
  if (b[0] !== MAGIC0 || b[1] !== MAGIC1) fail("bad magic (not a dyno tensor payload)");
  if (b[2] !== VERSION) fail(`unsupported version ${b[2]} (this build reads ${VERSION})`);
  const kind = b[3] as Kind;
  const bits = b[4];
  if (kind === Kind.Quantized) {
    if (!((bits >= 1 && bits <= 8) || bits === 16)) fail(`bad bit width ${bits} for quantised codes`);
  } else if (kind === Kind.Float32) {
    if (bits !== 32) fail(`bad bit width ${bits} for float32`);
  } else if (kind === Kind.Float16) {
    if (bits !== 16) fail(`bad bit width ${bits} for float16`);
  } else fail(`unknown kind ${kind}`);
  const flags = b[5];
  if (flags & ~(FLAG_SHUFFLE | FLAG_PER_CHANNEL)) fail(`unknown flags 0x${flags.toString(16)}`);
  const shuffle = (flags & FLAG_SHUFFLE) !== 0;
  const perChannel = (flags & FLAG_PER_CHANNEL) !== 0;
  if (kind !== Kind.Quantized && flags !== 0) fail("flags are only defined for quantised codes");
  const codec = CODECS[b[6]];
  if (codec === undefined) fail(`unknown codec id ${b[6]}`);
  const rank = b[7];
  if (rank > MAX_RANK) fail(`rank ${rank} exceeds ${MAX_RANK}`);
  if (perChannel && rank < 2) fail("per-channel ranges need rank >= 2");
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (b.length < 8 + 4 * rank) fail(`truncated in the shape (${b.length} bytes)`);
  const shape: number[] = [];
  let n = 1;
  for (let i = 0; i < rank; i++) {
    const d = v.getUint32(8 + 4 * i, true);
    shape.push(d);
    n *= d;
  }
  if (n > maxElements) fail(`shape [${shape}] has ${n} elements, more than the cap of ${maxElements}`);
  const rangeCount = kind !== Kind.Quantized ? 0 : perChannel ? shape[1] : 1;
  const bodyOffset = headerLength(rank, rangeCount);
  if (b.length < bodyOffset) fail(`truncated: ${b.length} bytes, the header alone needs ${bodyOffset}`);
  let p = 8 + 4 * rank;
  const ranges = new Float32Array(2 * rangeCount);
  for (let i = 0; i < ranges.length; i++, p += 4) ranges[i] = v.getFloat32(p, true);
  for (let i = 0; i < rangeCount; i++) {
    const lo = ranges[2 * i], hi = ranges[2 * i + 1];
    if (!(Number.isFinite(lo) && Number.isFinite(hi) && lo <= hi)) fail(`bad range #${i}: [${lo}, ${hi}]`);
  }
  const rawLength = v.getUint32(p, true);
  const storedLength = v.getUint32(p + 4, true);
  const expected = rawBodyLength(kind, bits, shuffle, n);
  if (rawLength !== expected) fail(`raw length ${rawLength} does not match shape [${shape}] (${expected} bytes)`);
  if (b.length !== bodyOffset + storedLength) {
    fail(`${b.length < bodyOffset + storedLength ? "truncated" : "trailing bytes"}: ${b.length} bytes, header says ${bodyOffset + storedLength}`);
  }
  if (codec === "none" ? storedLength !== rawLength : rawLength > storedLength * MAX_RATIO[codec] + 64) {
    fail(`stored length ${storedLength} cannot hold ${rawLength} raw bytes with codec ${codec}`);
  }
  return { kind, bits, shuffle, perChannel, codec, shape, ranges, rawLength, storedLength, bodyOffset };
}
