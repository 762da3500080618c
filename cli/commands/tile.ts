// dyno tile MODEL [--from CUT] [--to CUT] [--grid 1x2,2x2,3x3] [-o DIR] [--check] [--reference] [--json]
//
// D3's vertical separation, offline: in the part of the model between two cuts (an edge part;
// the whole model by default), find the longest run of spatially local ops, split its output into
// each grid, and report what the halo costs. -o writes one ONNX graph per tile with tiles.json
// (the regions each tile reads and writes: what an edge scatters and stitches).
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { analyzeModel } from "../../compiler/pipeline.js";
import { resolveCut } from "../../compiler/split.js";
import { partitionChain } from "../../compiler/passes/partition.js";
import { findTileableRun, gridName, haloOverhead, parseGrid, tileRun, type TileableRun } from "../../compiler/passes/tile-spatial.js";
import { computeCosts } from "../../compiler/passes/costs.js";
import { saveModel } from "../../compiler/onnx/export.js";
import { checkTiles, checkTilesReference, runUntiled } from "../../compiler/bundler/tiles.js";
import { UnsupportedError, UsageError } from "../../runtime/common/errors.js";
import { regionText } from "../../runtime/common/tiles.js";
import type { Model } from "../../compiler/ir/graph.js";
import { parseInputShapes, type Command } from "../args.js";
import { humanBytes, humanCount, table } from "../format.js";

export const TILES_FORMAT = "dyno-tiles";

export const tile: Command = {
  name: "tile",
  summary: "split the longest run of spatially local ops into tiles with exact halos (D3's vertical separation)",
  usage: "tile MODEL [--from CUT] [--to CUT] [--grid 1x2,2x2,3x3] [-o DIR] [--check] [--reference] [--json] [--input-shape NAME=D1,...]",
  help: [
    "  --from CUT, --to CUT    the part to tile from (candidate index from `dyno inspect`, or tensor names);",
    "                          default: the model's inputs and outputs",
    "  --grid G,G,...          grids ROWSxCOLS of the run's output (default 1x2,2x2,3x3)",
    "  -o, --out DIR           write DIR/tile-GRID-R-C.onnx per tile, DIR/before.onnx and DIR/after.onnx (the",
    "                          part around the run, when any) and DIR/tiles.json (regions read and written)",
    "  --check                 run the tiles in onnxruntime (graph optimisations off), stitch, and compare with",
    "                          the untiled run: equal bits, or the largest difference",
    "  --reference             also compare under dyno's fixed-order reference evaluator (slow: plain loops),",
    "                          where equal bits is what lossless means",
    "  --json                  print the report as JSON",
    "  --input-shape NAME=D,.. fix an input's dims (repeatable)",
  ].join("\n"),
  options: {
    from: { type: "string" },
    to: { type: "string" },
    grid: { type: "string" },
    out: { type: "string", short: "o" },
    check: { type: "boolean" },
    reference: { type: "boolean" },
    json: { type: "boolean" },
    "input-shape": { type: "string", multiple: true },
  },
  async run({ values, positionals }) {
    if (positionals.length !== 1) throw new UsageError(`tile: expected one MODEL\nusage: dyno ${tile.usage}`);
    const grids = ((values.grid as string | undefined) ?? "1x2,2x2,3x3").split(",").map((g) => {
      try {
        return parseGrid(g);
      } catch {
        throw new UsageError(`--grid: "${g}" is not ROWSxCOLS (e.g. 2x2)`);
      }
    });
    const a = await analyzeModel(positionals[0]!, { inputShapes: parseInputShapes(values["input-shape"] as string[] | undefined) });
    const part = partOf(a, values.from as string | undefined, values.to as string | undefined);
    const partMacs = computeCosts(part).totalMacs;
    const found = findTileableRun(part);
    if (!("run" in found)) {
      const why = found.stops.map((s) => `${s.node} (${s.op}): ${s.reason}`).join("; ");
      throw new UsageError(`tile: no op of the part tiles${why ? `: ${why}` : ""}`);
    }
    const run = found as TileableRun;
    const report = {
      model: positionals[0]!,
      part: { inputs: part.graph.inputs.filter((v) => !part.graph.isInitializer(v.name)).map((v) => v.name), outputs: part.graph.outputs.map((v) => v.name), macs: partMacs },
      run: { start: run.start, end: run.end, macs: run.macs, share: run.share, stops: run.stops },
      grids: [] as Record<string, unknown>[],
      /** Grids the run cannot be split into (a map smaller than the grid, say), with why. */
      notTiled: [] as { grid: string; reason: string }[],
    };
    const out = values.out as string | undefined;
    if (out) {
      mkdirSync(out, { recursive: true });
      if (run.before) saveModel(run.before, join(out, "before.onnx"));
      if (run.after) saveModel(run.after, join(out, "after.onnx"));
    }
    const reference = values.check || values.reference ? await runUntiled(run.run, undefined, 1) : null;
    for (const grid of grids) {
      let tiled;
      try {
        tiled = tileRun(run.run, grid);
      } catch (e) {
        if (!(e instanceof UnsupportedError)) throw e;
        report.notTiled.push({ grid: gridName(grid), reason: e.message.replace(/^tile-spatial: /, "") });
        continue;
      }
      const o = haloOverhead(tiled);
      const largest = Math.max(...tiled.tiles.map((t) => t.macs));
      const entry: Record<string, unknown> = {
        grid: gridName(grid),
        tiles: tiled.tiles.map((t, i) => {
          const file = `tile-${gridName(grid)}-${t.row}-${t.col}.onnx`;
          if (out) saveModel(t.model, join(out, file));
          return { index: i, row: t.row, col: t.col, file: out ? file : undefined, macs: t.macs, inputs: t.inputs, outputs: t.outputs };
        }),
        untiledMacs: tiled.macs,
        tiledMacs: tiled.tiledMacs,
        haloMacs: o.macs,
        inputBytes: tiled.inputBytes,
        tiledInputBytes: tiled.tiledInputBytes,
        haloInputBytes: o.inputBytes,
        // With one worker per tile, the slowest tile bounds the run: the best speed-up over untiled.
        largestTileShare: tiled.macs ? largest / tiled.macs : 0,
      };
      if (reference) entry.onnxruntime = await checkTiles(tiled, reference.feeds, reference.outputs);
      if (reference && values.reference) entry.reference = checkTilesReference(run.run, tiled, reference.feeds);
      report.grids.push(entry);
    }
    if (!report.grids.length) throw new UsageError(`tile: no grid fits the run: ${report.notTiled.map((n) => `${n.grid}: ${n.reason}`).join("; ")}`);
    if (out) writeFileSync(join(out, "tiles.json"), `${JSON.stringify({ format: TILES_FORMAT, version: 1, ...report }, null, 2)}\n`);
    if (values.json) {
      console.log(JSON.stringify(report, null, 2));
      return 0;
    }
    console.log(`part: ${report.part.inputs.join(", ")} -> ${report.part.outputs.join(", ")} (${humanCount(partMacs)} MACs)`);
    console.log(`run:  ${run.start.join(", ")} -> ${run.end.join(", ")}: ${humanCount(run.macs)} MACs, ${(run.share * 100).toFixed(1)}% of the part`);
    for (const s of run.stops) console.log(`      stops at ${s.node} (${s.op}): ${s.reason}`);
    if (run.before) console.log(`      before the run (untiled): ${humanCount(computeCosts(run.before).totalMacs)} MACs`);
    if (run.after) console.log(`      after the run (untiled): ${humanCount(computeCosts(run.after).totalMacs)} MACs`);
    const header = ["grid", "tiles", "halo MACs", "halo input", "largest tile", ...(reference ? ["onnxruntime"] : []), ...(values.reference ? ["reference"] : [])];
    const rows = report.grids.map((e) => {
      const check = (c: unknown) => {
        const x = c as { equal: boolean; maxDiff: number; differing: number; values: number };
        return x.equal ? "equal bits" : `max diff ${x.maxDiff.toExponential(2)} (${((x.differing / x.values) * 100).toFixed(1)}% of values)`;
      };
      return [
        e.grid as string,
        (e.tiles as unknown[]).length,
        `+${((e.haloMacs as number) * 100).toFixed(1)}%`,
        `+${((e.haloInputBytes as number) * 100).toFixed(1)}% (${humanBytes(e.tiledInputBytes as number)})`,
        `${((e.largestTileShare as number) * 100).toFixed(1)}% of the run`,
        ...(reference ? [check(e.onnxruntime)] : []),
        ...(values.reference ? [check(e.reference)] : []),
      ];
    });
    console.log(table(header, rows));
    for (const n of report.notTiled) console.log(`${n.grid}: not tiled: ${n.reason}`);
    if (out) {
      const first = report.grids[0]!.tiles as { inputs: { name: string; region: { h0: number; h1: number; w0: number; w1: number } }[] }[];
      console.log(`wrote ${report.grids.reduce((s, e) => s + (e.tiles as unknown[]).length, 0)} tile graphs and ${out}/tiles.json (tile 0 of ${report.grids[0]!.grid} reads ${first[0]!.inputs.map((i) => `${i.name} ${regionText(i.region)}`).join("; ")})`);
    }
    return 0;
  },
};

/** The part of the model between two cuts (resolved as `dyno split` does). */
function partOf(a: Awaited<ReturnType<typeof analyzeModel>>, from: string | undefined, to: string | undefined): Model {
  const all = a.cuts.cuts;
  const resolve = (spec: string | undefined, fallback: "input" | "output") => {
    if (spec === undefined) return null;
    const c = resolveCut(a, spec);
    const kind = c.index !== null ? all[c.index]?.kind : "inner";
    if (kind === fallback) return null;
    if (kind !== "inner") throw new UsageError(`--${fallback === "input" ? "from" : "to"} ${spec}: the ${kind} cut cannot start${fallback === "input" ? "" : " end"} a part here`);
    return c.tensors;
  };
  const start = resolve(from, "input");
  const end = resolve(to, "output");
  const cuts = [start, end].filter((c): c is string[] => !!c);
  if (!cuts.length) return a.model;
  const parts = partitionChain(a.model, cuts);
  return start ? parts[1]! : parts[0]!;
}
