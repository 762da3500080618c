// The lossless stage (DynO §2 step 3): off-the-shelf byte compressors that run the same in
// browsers and Node, chosen per bit width by measurement (bench/codec.ts, docs/codec.md).
//   lz4     lz4js, LZ4 block format (no frame: the payload header carries both lengths)
//   deflate fflate, raw DEFLATE (RFC 1951), level 1
//   zstd    @bokuweb/zstd-wasm (zstd compiled to WASM), one frame, level 1
// Every decompressor is bounded: the caller passes the exact raw length (checked against the
// tensor's shape) and gets an error unless exactly that many bytes come out.
import * as lz4 from "lz4js";
import { deflateSync, inflateSync } from "fflate";
import * as zstd from "@bokuweb/zstd-wasm";

export const CODECS = ["none", "lz4", "deflate", "zstd"] as const;
export type Codec = (typeof CODECS)[number];

/** Highest raw/stored ratio each format can reach: bounds what a forged length may claim. */
export const MAX_RATIO: Record<Codec, number> = { none: 1, lz4: 255, deflate: 1032, zstd: 65536 };

const ZSTD_LEVEL = 1;
const DEFLATE_LEVEL = 1;

let zstdReady: Promise<void> | undefined;
let zstdError: unknown;
let zstdOk = false;

/** Starts zstd's own WASM; failures are kept and reported when zstd is used. */
export function initZstd(): Promise<void> {
  zstdReady ??= zstd.init().then(
    () => void (zstdOk = true),
    (e: unknown) => void (zstdError = e),
  );
  return zstdReady;
}

function needZstd(): void {
  if (!zstdOk) {
    const why = zstdError instanceof Error ? zstdError.message : zstdReady ? "not initialised" : "initZstd() not called";
    throw new Error(`codec "zstd" unavailable: ${why}`);
  }
}

// One LZ4 hash table, cleared per call: stale entries would make the output depend on history.
let lz4Table: Uint32Array | undefined;

export function compress(codec: Codec, raw: Uint8Array): Uint8Array {
  switch (codec) {
    case "none":
      return raw;
    case "lz4": {
      lz4Table ??= new Uint32Array(1 << 16);
      lz4Table.fill(0);
      const dst = new Uint8Array(lz4.compressBound(raw.length));
      const n = lz4.compressBlock(raw, dst, 0, raw.length, lz4Table);
      return dst.subarray(0, n);
    }
    case "deflate":
      return deflateSync(raw, { level: DEFLATE_LEVEL });
    case "zstd":
      needZstd();
      return zstd.compress(raw, ZSTD_LEVEL);
  }
}

/** Decompresses `stored` into `out` (exactly out.length bytes) or throws. */
export function decompressInto(codec: Codec, stored: Uint8Array, out: Uint8Array): void {
  const want = out.length;
  switch (codec) {
    case "none":
      if (stored.length !== want) throw new Error(`payload: body is ${stored.length} bytes, expected ${want}`);
      out.set(stored);
      return;
    case "lz4": {
      // lz4js never writes past a typed array (out-of-range stores are dropped) and its loops
      // advance through `stored`, so corrupt input ends, with a wrong length that we reject.
      const got = lz4.decompressBlock(stored, out, 0, stored.length, 0);
      if (got !== want) throw new Error(`payload: lz4 body decodes to ${got} bytes, expected ${want}`);
      return;
    }
    case "deflate": {
      let got: Uint8Array;
      try {
        got = inflateSync(stored, { out });
      } catch (e) {
        throw new Error(`payload: corrupt deflate body (${(e as Error).message})`);
      }
      if (got.length !== want) throw new Error(`payload: deflate body decodes to ${got.length} bytes, expected ${want}`);
      if (got.buffer !== out.buffer || got.byteOffset !== out.byteOffset) out.set(got);
      return;
    }
    case "zstd": {
      needZstd();
      // The library sizes its output from the frame header: check that size first.
      const declared = zstdFrameContentSize(stored);
      if (declared !== want) throw new Error(`payload: zstd frame declares ${declared} bytes, expected ${want}`);
      let got: Uint8Array;
      try {
        got = zstd.decompress(stored);
      } catch (e) {
        throw new Error(`payload: corrupt zstd body (${(e as Error).message})`);
      }
      if (got.length !== want) throw new Error(`payload: zstd body decodes to ${got.length} bytes, expected ${want}`);
      out.set(got);
      return;
    }
  }
}

/** Frame_Content_Size of a zstd frame (RFC 8878 §3.1.1.1), or -1 if absent or malformed. */
function zstdFrameContentSize(b: Uint8Array): number {
  if (b.length < 6 || b[0] !== 0x28 || b[1] !== 0xb5 || b[2] !== 0x2f || b[3] !== 0xfd) return -1;
  const fhd = b[4];
  const fcsFlag = fhd >> 6;
  const single = (fhd >> 5) & 1;
  const dictBytes = [0, 1, 2, 4][fhd & 3];
  const fcsBytes = fcsFlag === 0 ? single : [1, 2, 4, 8][fcsFlag];
  let p = 5 + (single ? 0 : 1) + dictBytes;
  if (fcsBytes === 0 || p + fcsBytes > b.length) return -1;
  let v = 0;
  for (let i = 0; i < Math.min(fcsBytes, 6); i++) v += b[p + i] * 2 ** (8 * i);
  if (fcsBytes === 8 && (b[p + 6] | b[p + 7]) !== 0) return -1;
  return fcsBytes === 2 ? v + 256 : v;
}
