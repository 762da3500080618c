// The tile set of an edge (runtime/common/tiles.ts TileSet), made from a bundle with the tiling
// pass: the span between two of the manifest's cuts is joined from the bundle's segments, its
// longest run of spatially local ops is found and split into the grid. `dyno serve --role edge`
// and each `--role edge-worker` make it from the same bundle and flags and compare ids (here in
// the CLI, since runtime/ does not import the compiler).
import { createHash } from "node:crypto";
import { loadModel } from "../compiler/onnx/import.js";
import { serializeModel } from "../compiler/onnx/export.js";
import { joinSegments } from "../compiler/passes/join-segments.js";
import { analyzeModel } from "../compiler/pipeline.js";
import { findTileableRun, gridName, tileRun, type Grid } from "../compiler/passes/tile-spatial.js";
import { UsageError } from "../runtime/common/errors.js";
import type { Cut } from "../runtime/common/manifest.js";
import type { TileSet } from "../runtime/common/tiles.js";
import type { NodeBundle } from "../runtime/node/bundle.js";
import type { Model } from "../compiler/ir/graph.js";

export interface EdgeTileOptions {
  /** Manifest cut ids: the span the edge tiles. */
  from: number;
  to: number;
  grid: Grid;
}

/** A manifest cut by id, for a flag's error message. */
export function manifestCut(bundle: NodeBundle, id: number, flag: string): Cut {
  const c = bundle.manifest.cuts.find((x) => x.id === id);
  if (!c) throw new UsageError(`${flag} ${id}: the bundle has no cut ${id} (its cuts: ${bundle.manifest.cuts.map((x) => x.id).join(", ")})`);
  return c;
}

export async function buildEdgeTiles(bundle: NodeBundle, o: EdgeTileOptions): Promise<TileSet> {
  const m = bundle.manifest;
  const from = manifestCut(bundle, o.from, "--tile-from");
  const to = manifestCut(bundle, o.to, "--forward's cut");
  if (from.kind === "output") throw new UsageError(`--tile-from ${o.from} is the output cut: nothing is left to tile`);
  if (from.deviceSegments >= to.deviceSegments) throw new UsageError(`--tile-from ${o.from} is not before the forward cut ${o.to}: the edge runs nothing between them`);
  const segments = m.segments.slice(from.deviceSegments, to.deviceSegments).map((s) => loadModel(bundle.path(s.graph)));
  const part = (await analyzeModel(joinSegments(segments))).model;
  const found = findTileableRun(part);
  if (!("run" in found)) {
    const why = found.stops.map((s) => `${s.node} (${s.op}): ${s.reason}`).join("; ");
    throw new UsageError(`the edge's span (cut ${o.from} to ${o.to}) has no op that tiles${why ? `: ${why}` : ""}`);
  }
  let tiled;
  try {
    tiled = tileRun(found.run, o.grid);
  } catch (e) {
    throw new UsageError(`--grid ${gridName(o.grid)} does not fit the edge's span (cut ${o.from} to ${o.to}): ${(e as Error).message.replace(/^tile-spatial: /, "")}`);
  }
  const chw = (model: Model, names: readonly string[]) =>
    names.map((name) => {
      const s = model.graph.value(name).shape!;
      return { name, dims: [s[1], s[2], s[3]] as [number, number, number] };
    });
  const channels = (name: string) => found.run.graph.value(name).shape![1] as number;
  const hash = createHash("sha256");
  const bytes = (model: Model | null): Uint8Array | null => {
    const b = model ? serializeModel(model) : null;
    hash.update(b ?? new Uint8Array(0));
    return b;
  };
  const before = bytes(found.before);
  const run = bytes(found.run)!;
  const after = bytes(found.after);
  const tiles = tiled.tiles.map((t) => {
    const model = bytes(t.model)!;
    const io = (x: { name: string; region: { h0: number; h1: number; w0: number; w1: number } }) => ({ name: x.name, region: x.region, channels: channels(x.name) });
    return { row: t.row, col: t.col, inputs: t.inputs.map(io), outputs: t.outputs.map(io), macs: t.macs, model };
  });
  hash.update(JSON.stringify({ from: o.from, to: o.to, grid: o.grid, regions: tiles.map((t) => [t.inputs, t.outputs]) }));
  return {
    id: hash.digest("hex"),
    grid: o.grid,
    from: o.from,
    to: o.to,
    before,
    run,
    after,
    runInputs: chw(found.run, found.start),
    runOutputs: chw(found.run, found.end),
    tiles,
    macs: tiled.macs,
    tiledMacs: tiled.tiledMacs,
  };
}

/** One line on a tile set, for start-up logs. */
export function tileSetText(t: TileSet): string {
  const kib = (t.tiles.reduce((s, x) => s + x.model.length, 0) / 1024).toFixed(0);
  return `tiles ${t.grid.rows}x${t.grid.cols} of cut ${t.from} -> ${t.to} (run ${t.runInputs.map((x) => x.name).join(",")} -> ${t.runOutputs.map((x) => x.name).join(",")}, halo +${((t.tiledMacs / t.macs - 1) * 100).toFixed(1)}% MACs, ${kib} KiB of tile graphs, set ${t.id.slice(0, 12)})`;
}
