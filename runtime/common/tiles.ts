// Tiles of a feature map: the regions a tiled edge part reads and writes, and the copies that cut
// a tile's input out of a tensor and stitch its output back (compiler/passes/tile-spatial.ts makes
// the tiles; the edge runs them). NCHW float32, row-major.
import { DynoError } from "./errors.js";

/** Rows [h0, h1) x columns [w0, w1) of an NCHW tensor. */
export interface Region {
  h0: number;
  h1: number;
  w0: number;
  w1: number;
}

export const regionText = (r: Region): string => `rows ${r.h0}..${r.h1 - 1}, cols ${r.w0}..${r.w1 - 1}`;

/** Copies `region` of an NCHW float32 tensor of dims [n, c, h, w] into a new tensor. */
export function sliceRegion(data: Float32Array, dims: readonly number[], r: Region): Float32Array {
  const [n, c, h, w] = dims as [number, number, number, number];
  const th = r.h1 - r.h0;
  const tw = r.w1 - r.w0;
  const out = new Float32Array(n * c * th * tw);
  let o = 0;
  for (let p = 0; p < n * c; p++) {
    for (let y = r.h0; y < r.h1; y++) {
      const at = (p * h + y) * w + r.w0;
      out.set(data.subarray(at, at + tw), o);
      o += tw;
    }
  }
  return out;
}

/** Writes a tile's part (dims [n, c, th, tw]) into `region` of the full tensor of dims [n, c, h, w]. */
export function stitchRegion(full: Float32Array, dims: readonly number[], part: Float32Array, r: Region): void {
  const [n, c, h, w] = dims as [number, number, number, number];
  const th = r.h1 - r.h0;
  const tw = r.w1 - r.w0;
  if (part.length !== n * c * th * tw) throw new DynoError(`stitch: a tile of ${part.length} values does not fill ${regionText(r)} of [${dims.join(",")}]`);
  let i = 0;
  for (let p = 0; p < n * c; p++) {
    for (let y = r.h0; y < r.h1; y++) {
      full.set(part.subarray(i, i + tw), (p * h + y) * w + r.w0);
      i += tw;
    }
  }
}
