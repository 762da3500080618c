// Running a tiled run against the untiled one (Node, onnxruntime with graph optimisations off):
// the check behind `dyno verify`'s tile rows, the tests and bench/tiling.ts.
import ort from "onnxruntime-node";
import { serializeModel } from "../onnx/export.js";
import type { Model } from "../ir/graph.js";
import type { Tile, TiledRun } from "../passes/tile-spatial.js";
import { openSession } from "../../runtime/node/session.js";
import { sliceRegion, stitchRegion } from "../../runtime/common/tiles.js";
import { randomFeeds, maxAbsDiff, type Feeds } from "./feeds.js";
import { evaluate, type RefTensor } from "./reference-eval.js";

export interface TileCheck {
  /** Every output value equal, bit for bit. */
  equal: boolean;
  /** Largest |tiled - untiled| over the outputs (0 when equal). */
  maxDiff: number;
  /** Output values that differ in any bit, and the total. */
  differing: number;
  values: number;
}

/** The untiled run's outputs for `feeds` (random, seeded, when not given). */
export async function runUntiled(run: Model, feeds?: Feeds, seed = 1): Promise<{ feeds: Feeds; outputs: Feeds }> {
  const f = feeds ?? randomFeeds(run, seed);
  const session = await openSession(serializeModel(run));
  try {
    return { feeds: f, outputs: (await session.run(f)) as Feeds };
  } finally {
    await session.release();
  }
}

/** A tile's inputs: its regions of the untiled run's `feeds`. */
export function tileFeeds(tile: Tile, feeds: Feeds): Feeds {
  const tf: Feeds = {};
  for (const io of tile.inputs) {
    const full = feeds[io.name]!;
    const dims = full.dims as number[];
    tf[io.name] = new ort.Tensor("float32", sliceRegion(full.data as Float32Array, dims, io.region), [dims[0]!, dims[1]!, io.region.h1 - io.region.h0, io.region.w1 - io.region.w0]);
  }
  return tf;
}

/** Runs every tile on its slices of `feeds`, stitches the outputs, compares with `expected`. */
export async function checkTiles(tiled: TiledRun, feeds: Feeds, expected: Feeds): Promise<TileCheck> {
  const outputs: Record<string, Float32Array> = {};
  for (const [name, t] of Object.entries(expected)) outputs[name] = new Float32Array(t.data.length).fill(Number.NaN);
  for (const tile of tiled.tiles) {
    const session = await openSession(serializeModel(tile.model));
    try {
      const out = await session.run(tileFeeds(tile, feeds));
      for (const io of tile.outputs) stitchRegion(outputs[io.name]!, expected[io.name]!.dims as number[], out[io.name]!.data as Float32Array, io.region);
    } finally {
      await session.release();
    }
  }
  let maxDiff = 0;
  let differing = 0;
  let values = 0;
  for (const [name, t] of Object.entries(expected)) {
    const a = new Uint32Array((t.data as Float32Array).buffer, (t.data as Float32Array).byteOffset, t.data.length);
    const b = new Uint32Array(outputs[name]!.buffer);
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) differing++;
    values += a.length;
    maxDiff = Math.max(maxDiff, maxAbsDiff(t, new ort.Tensor("float32", outputs[name]!, t.dims)));
  }
  return { equal: differing === 0, maxDiff, differing, values };
}

/**
 * The same comparison under the reference evaluator (compiler/bundler/reference-eval.ts), which
 * sums in one fixed order at every extent: there, equal bit for bit is what lossless means.
 */
export function checkTilesReference(run: Model, tiled: TiledRun, feeds: Feeds): TileCheck {
  const asRef = (t: ort.Tensor): RefTensor => ({ dims: [...t.dims] as number[], data: t.data as Float32Array });
  const full: Record<string, RefTensor> = {};
  for (const [name, t] of Object.entries(feeds)) full[name] = asRef(t);
  const untiled = evaluate(run, full);
  const expected: Record<string, RefTensor> = {};
  for (const v of run.graph.outputs) expected[v.name] = untiled[v.name]!;
  const stitched: Record<string, Float32Array> = {};
  for (const [name, t] of Object.entries(expected)) stitched[name] = new Float32Array(t.data.length).fill(Number.NaN);
  for (const tile of tiled.tiles) {
    const tf: Record<string, RefTensor> = {};
    for (const io of tile.inputs) {
      const t = full[io.name]!;
      tf[io.name] = { dims: [t.dims[0]!, t.dims[1]!, io.region.h1 - io.region.h0, io.region.w1 - io.region.w0], data: sliceRegion(t.data as Float32Array, t.dims, io.region) };
    }
    const out = evaluate(tile.model, tf);
    for (const io of tile.outputs) stitchRegion(stitched[io.name]!, expected[io.name]!.dims, Float32Array.from(out[io.name]!.data), io.region);
  }
  let maxDiff = 0;
  let differing = 0;
  let values = 0;
  for (const [name, t] of Object.entries(expected)) {
    const a = Float32Array.from(t.data);
    const b = stitched[name]!;
    const ua = new Uint32Array(a.buffer);
    const ub = new Uint32Array(b.buffer);
    for (let i = 0; i < a.length; i++) {
      if (ua[i] !== ub[i]) {
        differing++;
        maxDiff = Math.max(maxDiff, Number.isNaN(b[i]!) ? Infinity : Math.abs(a[i]! - b[i]!));
      }
    }
    values += a.length;
  }
  return { equal: differing === 0, maxDiff, differing, values };
}
