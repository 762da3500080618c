// The cases the browser determinism test runs in Node and in Chromium: each side encodes the same
// seeded tensors and reports digests of the payload bytes and of the decoded floats, which must agree.
import { decode, encode, type Bits, type Codec } from "../../kernels/index.js";
import { FAMILIES, makeInput, rng } from "./inputs.js";

export interface CaseResult {
  name: string;
  payload: string;
  decoded: string;
}

/** Length and two independent 32-bit FNV-1a-style hashes: equal bytes <=> equal digests, in practice. */
function digest(b: Uint8Array): string {
  let h1 = 0x811c9dc5, h2 = 0x9747b28c;
  for (let i = 0; i < b.length; i++) {
    h1 = Math.imul(h1 ^ b[i], 0x01000193);
    h2 = Math.imul(h2 ^ b[i], 0x5bd1e995) ^ (h2 >>> 15);
  }
  return `${b.length}:${(h1 >>> 0).toString(16)}:${(h2 >>> 0).toString(16)}`;
}

export function runDeterminismCases(seed: number): CaseResult[] {
  const out: CaseResult[] = [];
  const r = rng(seed);
  const bitsList: Bits[] = [1, 2, 3, 4, 6, 8, 16, "f16", "f32"];
  const codecs: Codec[] = ["none", "lz4", "deflate", "zstd"];
  const shapes = [[2, 8, 5, 7], [1, 16, 20, 20]];
  let i = 0;
  for (const shape of shapes) {
    for (const family of FAMILIES) {
      const x = makeInput(family, shape.reduce((a, b) => a * b, 1), r);
      for (const bits of bitsList) {
        for (const shuffle of [false, true]) {
          const codec = codecs[i++ % codecs.length];
          const perChannel = i % 3 === 0;
          const bytes = encode(x, shape, { bits, shuffle, perChannel, codec });
          const y = decode(bytes);
          out.push({
            name: `shape=[${shape}] ${family} bits=${bits} shuffle=${shuffle} perChannel=${perChannel} codec=${codec}`,
            payload: digest(bytes),
            decoded: digest(new Uint8Array(y.buffer, y.byteOffset, y.byteLength)),
          });
        }
      }
    }
  }
  return out;
}
