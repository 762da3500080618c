// encode() rebuilt from the scalar references alone: the WASM pipeline must give the same bytes.
import { compress, type Codec } from "../../kernels/lossless.js";
import { elementCount, headerLength, Kind, rawBodyLength, writeHeader } from "../../kernels/format.js";
import { bitshuffleRef, f32ToF16Ref, minmaxRef, packRef, quantizeRef, quantParams } from "../../kernels/reference.js";

export function encodeRef(x: Float32Array, shape: number[], bits: number | "f16" | "f32", shuffleOpt: boolean, perChannel: boolean, codec: Codec): Uint8Array {
  const kind = bits === "f32" || bits === 32 ? Kind.Float32 : bits === "f16" ? Kind.Float16 : Kind.Quantized;
  const b = kind === Kind.Float32 ? 32 : kind === Kind.Float16 ? 16 : (bits as number);
  const quantised = kind === Kind.Quantized;
  const shuffle = quantised && shuffleOpt;
  const pc = quantised && perChannel;
  const n = x.length;
  let raw: Uint8Array;
  let ranges = new Float32Array(0);
  if (kind === Kind.Float32) raw = new Uint8Array(x.slice().buffer);
  else if (kind === Kind.Float16) raw = new Uint8Array(f32ToF16Ref(x).buffer);
  else {
    const codes = b > 8 ? new Uint16Array(n) : new Uint8Array(n);
    if (!pc) {
      ranges = new Float32Array(n === 0 ? [0, 0] : minmaxRef(x).map((v) => v + 0));
      codes.set(quantizeRef(x, quantParams(ranges[0], ranges[1], b)));
    } else {
      const [outer, C] = shape;
      const inner = elementCount(shape.slice(2));
      ranges = new Float32Array(2 * C);
      for (let c = 0; c < C; c++) {
        const slab = new Float32Array(outer * inner);
        for (let o = 0; o < outer; o++) slab.set(x.subarray((o * C + c) * inner, (o * C + c + 1) * inner), o * inner);
        if (slab.length) ranges.set(minmaxRef(slab).map((v) => v + 0), 2 * c);
        const p = quantParams(ranges[2 * c], ranges[2 * c + 1], b);
        for (let o = 0; o < outer; o++) {
          const at = (o * C + c) * inner;
          codes.set(quantizeRef(x.subarray(at, at + inner), p), at);
        }
      }
    }
    raw = shuffle ? bitshuffleRef(codes, b) : b === 16 ? new Uint8Array(codes.buffer) : packRef(codes, b);
  }
  const rawLength = rawBodyLength(kind, b, shuffle, n);
  if (raw.length !== rawLength) throw new Error(`encodeRef: raw ${raw.length} != ${rawLength}`);
  let stored = compress(codec, raw);
  let used = codec;
  if (codec !== "none" && (stored.length === 0 || stored.length >= rawLength)) (stored = raw), (used = "none");
  const out = new Uint8Array(headerLength(shape.length, ranges.length / 2) + stored.length);
  const at = writeHeader(out, { kind, bits: b, shuffle, perChannel: pc, codec: used, shape, ranges, rawLength, storedLength: stored.length });
  out.set(stored, at);
  return out;
}
