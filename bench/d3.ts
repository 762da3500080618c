// D3 end to end: three tiers against the best two-tier dyno and two-tier float32 (Neurosurgeon-
// style), measured with real processes on emulated links, and the planner's partial
// re-adjustment against full re-plans over a link trace.
//
//   npm run bench -- d3 [--model resnet | --bundle DIR] [--n 30] [--slowdown 500] [--edge-slowdown 100] [--de 20,5] [--ec 5,30] [--workers 1,2,4]
//
// Set-up (one machine, stated in the output): the device is this machine emulated --slowdown
// times slower (onnxruntime-node, 1 thread); the edge (`dyno serve --role edge`, in this process,
// one worker thread) and its K edge workers (`dyno serve --role edge-worker` child processes) are
// emulated --edge-slowdown times slower (each compute step stretched: the fixtures are small, and
// the stretch is what lets K workers overlap on a 2-core machine as K edge nodes would); the
// cloud (`dyno serve`, in this process) runs at this machine's speed. Device -> edge and edge ->
// cloud cross emulated links (runtime/emu: bandwidth,RTT); a two-tier device reaches the cloud
// over both in series, as its bytes would. Each configuration's cut(s) and bits are the
// planner's (runtime/plan/tiers.ts) from the bundle's profiles, so every column is chosen by the
// same model of the same machine. Writes bench/results/NAME.md and NAME.json (--name, default d3).
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { analyzeModel } from "../compiler/pipeline.js";
import { compile } from "../compiler/bundler/compile.js";
import { loadCalibration, type Calibration } from "../compiler/bundler/calibration.js";
import { perSampleDims } from "../runtime/common/manifest.js";
import { openBundle, type NodeBundle } from "../runtime/node/bundle.js";
import { startServer, type DynoServer } from "../runtime/cloud/server.js";
import { createDevice } from "../runtime/node/device.js";
import { startLink, type Link } from "../runtime/emu/link.js";
import { planTiers, readjust, tierSpace, type TierChange, type TierPlan, type TierSetting } from "../runtime/plan/tiers.js";
import { buildEdgeTiles } from "../cli/edge-tiles.js";
import { fixture } from "../cli/bundle-cache.js";
import { dynoVersion } from "../cli/version.js";
import { inputsFor } from "../cli/commands/run.js";
import { table } from "../cli/format.js";
import { quantile } from "../runtime/common/stats.js";
import { rng } from "../runtime/common/random.js";
import { spawn, type ChildProcess } from "node:child_process";
import ort from "onnxruntime-node";
import { openSession } from "../runtime/node/session.js";
import { tileIoDims } from "../runtime/common/tiles.js";

const { values } = parseArgs({
  options: {
    model: { type: "string", default: "resnet" },
    bundle: { type: "string" },
    n: { type: "string", default: "30" },
    slowdown: { type: "string", default: "500" },
    "edge-slowdown": { type: "string", default: "100" },
    de: { type: "string", default: "20,5" },
    ec: { type: "string", default: "5,30" },
    workers: { type: "string", default: "1,2,4" },
    out: { type: "string", default: "/tmp/dyno-bench-d3" },
    name: { type: "string", default: "d3" },
  },
});
const N = Number(values.n);
const slowdown = Number(values.slowdown);
const edgeSlowdown = Number(values["edge-slowdown"]);
const link = (s: string) => {
  const [bw, rtt] = s.split(",").map(Number);
  return { bandwidthMbps: bw!, rttMs: rtt! };
};
const de = link(values.de!);
const ec = link(values.ec!);
const ks = values.workers!.split(",").map(Number);

// 1. The bundle, compiled with --tiers (kept between runs), or one given (compiled with --tiers).
let dir: string;
let name: string;
let cal: Calibration;
if (values.bundle) {
  dir = values.bundle;
  const b = openBundle(dir);
  if (!b.manifest.tiers) throw new Error(`${dir} was compiled without --tiers device,edge,cloud`);
  name = `${b.manifest.model.name} bundle`;
  cal = await inputsFor(b.manifest, undefined, "random:32");
} else {
  const fx = fixture(values.model);
  name = `${fx.name} fixture`;
  mkdirSync(values.out!, { recursive: true });
  dir = join(values.out!, `${fx.name}.bundle`);
  const a = await analyzeModel(fx.path);
  const input = a.model.graph.inputs.find((v) => !a.model.graph.isInitializer(v.name))!;
  cal = await loadCalibration(fx.path, { inputName: input.name, inputDims: perSampleDims(input.shape ?? []) });
  if (!existsSync(join(dir, "manifest.json")) || !openBundle(dir).manifest.tiers) {
    console.error(`compiling ${fx.name} with --tiers device,edge,cloud into ${dir} ...`);
    await compile(a, fx.path, { out: dir, calibration: cal, tiers: ["device", "edge", "cloud"], dynoVersion: dynoVersion(), profileRuns: 10 });
  }
}
const bundle: NodeBundle = openBundle(dir);
const m = bundle.manifest;
const profile = (role: "device" | "cloud") => m.profiles.find((p) => p.role === role)!;
const segMs = profile("cloud").segments.map((t) => t.meanMs);
// The device's encode is stretched like its segments; the edge's encode and every decode are not.
const codecOf = (deviceFactor: number) => Object.fromEntries(m.variants.map((v) => [v.id, (profile("device").codec[v.id]?.meanMs ?? 0) * deviceFactor + (profile("cloud").codec[v.id]?.meanMs ?? 0)]));
const codecMs = { deviceEdge: codecOf(slowdown), edgeCloud: codecOf(1) };
const setting: TierSetting = { segmentMs: { device: profile("device").segments.map((t) => t.meanMs * slowdown), edge: segMs.map((x) => x * edgeSlowdown), cloud: segMs }, codecMs, links: { deviceEdge: de, edgeCloud: ec } };
const space = tierSpace(m);

// 2. The plans: each configuration's best by the same model.
const best = (plans: TierPlan[]) => plans.reduce((x, y) => (y.latencyMs < x.latencyMs ? y : x));
const relays = (f: (id: string) => boolean) =>
  best(space.variants.filter((x) => f(x.v.id)).map((x) => {
    const r = planTiers(space, setting, { device: x.v.id, edge: x.output ? null : x.v.id }).plan;
    return r;
  }));
const neurosurgeon = relays((id) => id.endsWith("-f32-none"));
const twoTier = relays(() => true);
console.error(`plans: neurosurgeon ${neurosurgeon.device}; 2-tier dyno ${twoTier.device}`);

// Tilings the edge could hold with K workers: from the input or the first inner cut to each later
// cut. The tiled span's time is profiled like a segment: the parts before and after the run and
// the slowest tile, each run here (median of 5, after one warm-up) and stretched as the edge is,
// plus 1 ms for the tiles' round trips on loopback.
async function spanTime(set: Awaited<ReturnType<typeof buildEdgeTiles>>): Promise<number> {
  const n = 1;
  /** Median of 5 runs (after a warm-up) of a graph on zeros, each input's dims from `dimsOf`. */
  const time = async (bytes: Uint8Array, dimsOf: (name: string) => number[]) => {
    const session = await openSession(bytes);
    const feeds = Object.fromEntries(session.inputNames.map((name) => {
      const dims = dimsOf(name);
      return [name, new ort.Tensor("float32", new Float32Array(dims.reduce((p, d) => p * d, 1)), dims)];
    }));
    const ms: number[] = [];
    for (let i = 0; i < 6; i++) {
      const t0 = performance.now();
      await session.run(feeds);
      if (i > 0) ms.push(performance.now() - t0);
    }
    await session.release();
    return ms.sort((x, y) => x - y)[2]!;
  };
  const from = m.cuts.find((c) => c.id === set.from)!;
  let ms = 0;
  if (set.before) ms += await time(set.before, (name) => from.tensors.find((t) => t.name === name)!.shape.map((d) => (typeof d === "number" ? d : n)));
  let slowest = 0;
  for (const tile of set.tiles) slowest = Math.max(slowest, await time(tile.model, (name) => tileIoDims(tile.inputs.find((io) => io.name === name)!, n)));
  ms += slowest;
  if (set.after) ms += await time(set.after, (name) => [n, ...set.runOutputs.find((o) => o.name === name)!.dims]);
  return ms * edgeSlowdown + 1;
}
const grids: Record<number, { rows: number; cols: number }> = { 2: { rows: 1, cols: 2 }, 4: { rows: 2, cols: 2 }, 3: { rows: 1, cols: 3 }, 6: { rows: 2, cols: 3 }, 8: { rows: 2, cols: 4 }, 9: { rows: 3, cols: 3 } };
const tilingCache = new Map<string, Awaited<ReturnType<typeof buildEdgeTiles>>>();
const plannedSpan = new Map<string, number>();
async function tilingsFor(k: number): Promise<NonNullable<TierSetting["tilings"]>> {
  if (k < 2) return [];
  const out: NonNullable<TierSetting["tilings"]> = [];
  const froms = m.cuts.filter((c) => c.kind !== "output").slice(0, 2);
  for (const from of froms) {
    for (const to of m.cuts.filter((c) => c.deviceSegments > from.deviceSegments)) {
      const key = `${from.id} ${to.id} ${k}`;
      let set = tilingCache.get(key);
      if (!set) {
        try {
          set = await buildEdgeTiles(bundle, { from: from.id, to: to.id, grid: grids[k]! });
        } catch {
          continue;
        }
        tilingCache.set(key, set);
      }
      const spanMs = plannedSpan.get(key) ?? (await spanTime(set));
      plannedSpan.set(key, spanMs);
      out.push({ from: from.id, to: to.id, grid: `${grids[k]!.rows}x${grids[k]!.cols}`, workers: k, spanMs });
    }
  }
  return out;
}

// 3. Processes and links.
const cloud = await startServer({ bundle, port: 0, workers: 1, threads: 1 });
const linkEC = await startLink({ target: { port: cloud.port }, shape: { ...ec, name: "edge-cloud" }, seed: 1 });
const linkDirect = await startLink({ target: { port: linkEC.port }, shape: { ...de, name: "device-edge" }, seed: 2 });
const urlOf = (l: Link) => `http://127.0.0.1:${l.port}`;

interface Row {
  config: string;
  plan: string;
  latency: { p50: number; p25: number; p75: number; mean: number };
  deviceBytes: number;
  backboneBytes: number;
  planned: number;
  /** The tiled span's time per inference by stage, ms (edge metrics), when tiled. */
  span?: Record<string, number>;
  plannedSpan?: number;
}
const rows: Row[] = [];
const spanStages = (text: string): Record<string, number> => {
  const out: Record<string, number> = {};
  for (const mm of text.matchAll(/^dyno_edge_tiled_span_seconds_total\{stage="(\w+)"\} ([\d.e+-]+)/gm)) out[mm[1]!] = Number(mm[2]) * 1000;
  return out;
};

async function measure(config: string, plan: TierPlan, url: string, backbone: () => number, stages?: () => Record<string, number>): Promise<Row> {
  const device = await createDevice({ bundle, cloud: url, variant: plan.device, slowdown, bandwidthProbe: false, profile: false, timeoutMs: 30_000 });
  const lat: number[] = [];
  let bytes = 0;
  try {
    for (let i = 0; i < 3; i++) await device.infer(cal.batch(i, 1)); // warm-up: sessions, sockets
    const b0 = backbone();
    const s0 = stages?.() ?? {};
    for (let i = 0; i < N; i++) {
      const r = await device.infer(cal.batch(i % cal.count, 1));
      if (r.fellBack) throw new Error(`${config}: inference ${i} fell back on the device (${r.fallback})`);
      lat.push(r.timings.totalMs);
      bytes += r.timings.bytes;
    }
    const sorted = [...lat].sort((x, y) => x - y);
    const row: Row = {
      config,
      plan: `${plan.device}${plan.edge && plan.edge !== plan.device ? ` > ${plan.edge}` : ""}${plan.grid ? ` (${plan.grid})` : ""}`,
      latency: { p50: quantile(sorted, 0.5), p25: quantile(sorted, 0.25), p75: quantile(sorted, 0.75), mean: lat.reduce((s, x) => s + x, 0) / lat.length },
      deviceBytes: bytes / N,
      backboneBytes: (backbone() - b0) / N,
      planned: plan.latencyMs,
    };
    if (stages) {
      const s1 = stages();
      if (Object.keys(s1).length) row.span = Object.fromEntries(Object.entries(s1).map(([k, v]) => [k, (v - (s0[k] ?? 0)) / N]));
    }
    console.error(`${config}: p50 ${row.latency.p50.toFixed(1)} ms, backbone ${row.backboneBytes.toFixed(0)} B/inference`);
    return row;
  } finally {
    await device.close();
  }
}

// Two tiers: the device's bytes all cross the backbone.
const twoTierBackbone = () => linkEC.stats().upBytes;
rows.push(await measure("2-tier float32 (Neurosurgeon-style)", neurosurgeon, urlOf(linkDirect), twoTierBackbone));
rows.push(await measure("2-tier dyno", twoTier, urlOf(linkDirect), twoTierBackbone));

function spawnWorker(args: string[]): Promise<{ child: ChildProcess; url: string }> {
  const code = `import("./cli/main.ts").then(async (m) => { process.exitCode = await m.runCli(${JSON.stringify(args)}); })`;
  const child = spawn(process.execPath, ["--import", "tsx", "-e", code], { stdio: ["ignore", "pipe", "inherit"] });
  return new Promise((resolve, reject) => {
    let out = "";
    child.stdout!.on("data", (d) => {
      out += d;
      const u = / on (http:\/\/127\.0\.0\.1:\d+)/.exec(out)?.[1];
      if (u) resolve({ child, url: u });
    });
    child.on("exit", (c) => reject(new Error(`edge worker exited ${c}: ${out}`)));
  });
}

const edgeNotes: string[] = [];
const outputVariant = m.variants.find((v) => m.cuts.find((c) => c.id === v.cut)!.kind === "output")!.id;
for (const k of ks) {
  let edge: DynoServer | null = null;
  let linkDE: Link | null = null;
  const procs: ChildProcess[] = [];
  try {
    const threeTier = planTiers(space, { ...setting, tilings: await tilingsFor(k) }).plan;
    const forward = threeTier.edge ?? outputVariant;
    console.error(`3-tier plan with K = ${k}: ${threeTier.device} > ${threeTier.edge ?? "edge finishes"}${threeTier.grid ? ` (${threeTier.grid})` : ""}`);
    let tiles;
    if (k > 1 && threeTier.tiling) {
      const t = threeTier.tiling;
      const gridFlag = t.grid;
      const started = await Promise.all(Array.from({ length: k }, () => spawnWorker(["serve", dir, "--role", "edge-worker", "--port", "0", "--threads", "1", "--forward", forward, "--tile-from", String(t.from), "--grid", gridFlag, "--emulate-slowdown", String(edgeSlowdown)])));
      procs.push(...started.map((s) => s.child));
      const set = tilingCache.get(`${t.from} ${t.to} ${k}`)!;
      edgeNotes.push(`K = ${k}: ${t.grid} tiles of cut ${t.from} to ${t.to}, run ${set.runInputs.map((x) => x.name).join(",")} -> ${set.runOutputs.map((x) => x.name).join(",")} (${(set.macs / 1e6).toFixed(1)} M MACs, halo +${((set.tiledMacs / set.macs - 1) * 100).toFixed(0)}%)`);
      tiles = { set, workers: started.map((s) => s.url) };
    }
    edge = await startServer({ bundle, port: 0, workers: 1, threads: 1, edge: { cloud: urlOf(linkEC), forward, slowdown: edgeSlowdown, ...(tiles ? { tiles } : {}) } });
    linkDE = await startLink({ target: { port: edge.port }, shape: { ...de, name: "device-edge" }, seed: 3 });
    const e = edge;
    const backbone = () => Number(/^dyno_edge_backbone_bytes_total (\d+)/m.exec(e.metrics())?.[1] ?? 0);
    rows.push(await measure(`3-tier dyno, K = ${k} edge worker${k > 1 ? `s${threeTier.tiling ? "" : " (planned untiled)"}` : " (untiled)"}`, threeTier, urlOf(linkDE), backbone, () => spanStages(e.metrics())));
    if (threeTier.tiling) rows[rows.length - 1]!.plannedSpan = threeTier.tiling.spanMs;
    if (tiles && /dyno_edge_untiled_total (\d+)/.exec(e.metrics())?.[1] !== undefined && Number(/dyno_edge_untiled_total (\d+)/.exec(e.metrics())![1]) > 0) throw new Error("the edge ran untiled: a worker failed");
  } finally {
    await linkDE?.close();
    await edge?.close();
    for (const p of procs) p.kill("SIGTERM");
  }
}

// 4. Partial re-adjustment against full re-plans over a seeded trace of both links.
const rand = rng(12);
let s: TierSetting = setting;
let plan = planTiers(space, s).plan;
const tiledSetting = await tilingsFor(Math.max(...ks));
s = { ...s, tilings: tiledSetting };
plan = planTiers(space, s).plan;
const trace = { steps: 200, partialUs: 0, fullUs: 0, partialEvaluated: 0, fullEvaluated: 0, same: 0, gapMean: 0, gapMax: 0 };
for (let i = 0; i < trace.steps; i++) {
  const which: TierChange = rand() < 0.5 ? "device-edge" : "edge-cloud";
  const factor = Math.exp((rand() - 0.5) * 2 * Math.log(4)); // x1/4 .. x4
  const l = which === "device-edge" ? s.links.deviceEdge : s.links.edgeCloud;
  const moved = { ...l, bandwidthMbps: Math.min(1000, Math.max(0.5, l.bandwidthMbps * factor)) };
  s = { ...s, links: which === "device-edge" ? { ...s.links, deviceEdge: moved } : { ...s.links, edgeCloud: moved } };
  let t0 = performance.now();
  const full = planTiers(space, s);
  trace.fullUs += (performance.now() - t0) * 1000;
  t0 = performance.now();
  const part = readjust(space, s, plan, which);
  trace.partialUs += (performance.now() - t0) * 1000;
  trace.fullEvaluated += full.evaluated;
  trace.partialEvaluated += part.evaluated;
  const gap = part.plan.latencyMs / full.plan.latencyMs - 1;
  if (gap < 1e-9) trace.same++;
  trace.gapMean += gap / trace.steps;
  trace.gapMax = Math.max(trace.gapMax, gap);
  plan = part.plan;
}

await linkDirect.close();
await linkEC.close();
await cloud.close();

// 5. Report.
const ms = (x: number) => x.toFixed(1);
const ns = rows[0]!;
const best3 = rows.filter((r) => r.config.startsWith("3-tier")).reduce((x, y) => (y.latency.p50 < x.latency.p50 ? y : x));
const latencyRatio = ns.latency.p50 / best3.latency.p50;
const backboneRatio = best3.backboneBytes > 0 ? ns.backboneBytes / best3.backboneBytes : Infinity;
const setup = `${name} (${(m.model.totalMacs / 1e6).toFixed(0)} M MACs); device: this machine emulated ${slowdown}x slower; edge and its workers: emulated ${edgeSlowdown}x slower; cloud: this machine (${cpus().length} cores shared by every process); device-edge ${de.bandwidthMbps} Mbit/s ${de.rttMs} ms RTT, edge-cloud ${ec.bandwidthMbps} Mbit/s ${ec.rttMs} ms RTT (emulated); ${N} inferences each after 3 warm-up`;
const header = ["configuration", "plan (cut-bits)", "latency p50 ms (p25-p75)", "planned ms", "device -> bytes", "backbone bytes"];
const body = rows.map((r) => [r.config, r.plan, `${ms(r.latency.p50)} (${ms(r.latency.p25)}-${ms(r.latency.p75)})`, ms(r.planned), r.deviceBytes.toFixed(0), r.backboneBytes.toFixed(0)]);
const md = [
  `# D3: three tiers (\`npm run bench -- d3 ${process.argv.slice(2).join(" ")}\`)`,
  "",
  setup + ".",
  edgeNotes.length ? `Edge tilings: ${edgeNotes.join("; ")}.` : "No plan used the edge workers' tiles.",
  "",
  table(header, body),
  "",
  ...rows.filter((r) => r.span).map((r) => `${r.config}: the tiled span per inference, ms: ${Object.entries(r.span!).map(([k, v]) => `${k} ${v.toFixed(1)}`).join(", ")} (planned span ${(r.plannedSpan ?? 0).toFixed(1)}).`),
  "",
  `3-tier (best K: ${best3.config}) vs 2-tier float32: **${latencyRatio.toFixed(2)}x** lower p50 latency (D3 claims up to 3.4x), **${Number.isFinite(backboneRatio) ? `${backboneRatio.toFixed(1)}x` : "all"}** fewer backbone bytes (D3 claims up to 3.68x). 3-tier vs the best 2-tier dyno: ${(rows[1]!.latency.p50 / best3.latency.p50).toFixed(2)}x latency, ${best3.backboneBytes > 0 ? `${(rows[1]!.backboneBytes / best3.backboneBytes).toFixed(1)}x` : "all"} backbone bytes.`,
  "",
  `Partial re-adjustment over ${trace.steps} link changes (a seeded random walk, x1/4..x4 per step, one link at a time): ${(trace.partialUs / trace.steps).toFixed(0)} us and ${(trace.partialEvaluated / trace.steps).toFixed(0)} plans evaluated per re-plan, against ${(trace.fullUs / trace.steps).toFixed(0)} us and ${(trace.fullEvaluated / trace.steps).toFixed(0)} for a full re-plan; the same plan as the full re-plan at ${trace.same} of ${trace.steps} steps, ${(trace.gapMean * 100).toFixed(2)}% slower on average, ${(trace.gapMax * 100).toFixed(1)}% at worst (planned latency).`,
  "",
].join("\n");
mkdirSync("bench/results", { recursive: true });
writeFileSync(`bench/results/${values.name}.md`, md);
writeFileSync(`bench/results/${values.name}.json`, JSON.stringify({ setup, rows, latencyRatio, backboneRatio, trace, measuredAt: new Date().toISOString() }, null, 2) + "\n");
console.log(md);
