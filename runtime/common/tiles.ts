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

// ---------------------------------------------------------------------------------------------
// An edge's tile set: what `dyno serve --role edge` scatters to its `--role edge-worker`
// processes. Both build it from the same bundle and flags (cli/edge-tiles.ts, with the tiling
// pass); `id` (a SHA-256 of the graphs and regions) is how each checks it holds the other's.

/** A tile's input or output: a tensor of the run, the region of it the tile covers, its channels. */
export interface TileSetIo {
  name: string;
  region: Region;
  channels: number;
}

export interface TileSetTile {
  row: number;
  col: number;
  inputs: TileSetIo[];
  outputs: TileSetIo[];
  macs: number;
  /** The tile's standalone ONNX graph (weights inline). */
  model: Uint8Array;
}

export interface TileSet {
  id: string;
  grid: { rows: number; cols: number };
  /** The span the edge tiles: manifest cut ids [from, to]; requests at or before `from` use it. */
  from: number;
  to: number;
  /** The span split at the tiled run: untiled ONNX graphs before and after it (null: none), and the run itself (the fallback when no worker answers). */
  before: Uint8Array | null;
  run: Uint8Array;
  after: Uint8Array | null;
  /** The run's input and output feature maps: names, channels, height, width (batch comes with the request). */
  runInputs: { name: string; dims: [number, number, number] }[];
  runOutputs: { name: string; dims: [number, number, number] }[];
  tiles: TileSetTile[];
  /** MACs of the run untiled and of all tiles together (halos recomputed). */
  macs: number;
  tiledMacs: number;
}

/** NCHW dims of a tile's input or output for a batch of `n`. */
export const tileIoDims = (io: TileSetIo, n: number): [number, number, number, number] => [n, io.channels, io.region.h1 - io.region.h0, io.region.w1 - io.region.w0];

/** float32 values of a tile's inputs (or outputs) for a batch of `n`. */
export const tileValues = (ios: readonly TileSetIo[], n: number): number => ios.reduce((s, io) => s + tileIoDims(io, n).reduce((a, b) => a * b, 1), 0);

/** The tensors of `ios` in one float32 message (the wire order): views into `data`, one per io. */
export function splitTileValues(data: Float32Array, ios: readonly TileSetIo[], n: number): Float32Array[] {
  let at = 0;
  return ios.map((io) => {
    const count = tileValues([io], n);
    const part = data.subarray(at, at + count);
    at += count;
    return part;
  });
}

/** Request path of tile `index` on an edge worker. */
export const TILE_PATH = "/v1/tiles/";
/** Header naming the tile set a request is for, and the batch size of its tensors. */
export const TILE_SET_HEADER = "x-dyno-tiles";
export const TILE_BATCH_HEADER = "x-dyno-batch";
/** A worker's reply header: the tile's run and its wait in the worker's queue, ms ("run=3.20;queue=0.00"). */
export const TILE_TIMING_HEADER = "x-dyno-tile-timing";
