// End to end, on any bundle: every strategy on every link and device speed, against a measured
// oracle, and dyno over a stepped link trace (brief §4-5; DynO's claims).
//
//   npm run bench -- e2e [--model NAME | --bundle DIR [--inputs DATA] [--labels FILE] [--name N]]
//                        [--slowdown 10,30] [--links 3g,4g,wifi] [--seconds 3] [--trace-seconds 10]
//                        [--quick] [--out bench/results]
//
// One process: `dyno serve` (onnxruntime-node, its workers), the shaping link proxy
// (runtime/emu/link.ts) and the devices. The device is emulated: each of its steps takes
// `slowdown` x its time in its own first-start profile (10x: a mid-range phone against a server
// core, 30x: a low-end one); stated in every table. For each device speed and link:
//   - each strategy streams pipelined inputs from a fresh device for `seconds` (at least
//     --min-count inferences: a slow device-only), then runs one inference at a time --latency-count
//     times: throughput, latency p50/p95, bytes and cloud compute per inference, and the metric's
//     drop (the compile-time profile of the variants it ran, weighted by how often);
//   - strategies: device-only; cloud-only sending float32, uint8, and JPEG and WebP at the lowest
//     quality within the accuracy bound; Neurosurgeon-style; JALAD-style; dyno for throughput
//     (latency when one at a time); dyno for cloud cost under a throughput SLO of cloud-only's
//     measured rate ("at equal throughput");
//   - the oracle: the fixed variants of a shortlist (device-only, the float32 input, the model's
//     best 3, dyno's own choices) measured the same way, the winner measured again.
// Then per device speed the trace (Wi-Fi -> 3G -> 4G, --trace-seconds each): dyno, and the oracle
// over the same trace (each step's best fixed variant pinned from its start); the chosen cut
// over time is plotted. Writes bench/results/e2e-NAME.{md,json} and three SVGs per device speed.
// The machine is shared: every ratio is from one run, strategies one after another.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { cachedBundle, fixture, ROOT } from "../cli/bundle-cache.js";
import { baselines, measure, mostRun, shortlist, warmUp } from "../cli/compare.js";
import { humanBytes, table } from "../cli/format.js";
import { bundleCalibration, loadCalibration, type Calibration } from "../compiler/bundler/calibration.js";
import { isImageCodec, perSampleDims, type Manifest } from "../runtime/common/manifest.js";
import { quantile } from "../runtime/common/stats.js";
import { startServer } from "../runtime/cloud/server.js";
import type { Device, Inference } from "../runtime/device/device.js";
import { inPlanOrder, runStream, type RunSummary } from "../runtime/device/run.js";
import { PRESETS, startLink, type LinkTrace } from "../runtime/emu/link.js";
import { openBundle, type NodeBundle } from "../runtime/node/bundle.js";
import { createDevice } from "../runtime/node/device.js";
import type { Objective, PolicyName } from "../runtime/plan/scheduler.js";
import { barChart, lineChart, stepChart } from "./svg.js";

const { values } = parseArgs({
  options: {
    model: { type: "string" },
    bundle: { type: "string" },
    inputs: { type: "string" },
    labels: { type: "string" },
    name: { type: "string" },
    slowdown: { type: "string" },
    links: { type: "string" },
    seconds: { type: "string" },
    "min-count": { type: "string" },
    "latency-count": { type: "string" },
    "trace-seconds": { type: "string" },
    quick: { type: "boolean" },
    out: { type: "string" },
  },
});
const quick = !!values.quick;
const slowdowns = (values.slowdown ?? (quick ? "20" : "10,30")).split(",").map(Number);
const links = (values.links ?? "3g,4g,wifi").split(",");
const seconds = Number(values.seconds ?? (quick ? 0.5 : 3));
const minCount = Number(values["min-count"] ?? (quick ? 3 : 8));
const latencyCount = Number(values["latency-count"] ?? (quick ? 3 : 12));
const traceSeconds = Number(values["trace-seconds"] ?? (quick ? 2 : 10));
const outDir = values.out ?? join(ROOT, "bench", "results");
for (const l of links) if (!PRESETS[l]) throw new Error(`unknown link preset "${l}" (presets: ${Object.keys(PRESETS).join(", ")})`);
for (const s of slowdowns) if (!(s >= 1)) throw new Error(`--slowdown: ${s} is not >= 1`);
const command = `npm run bench -- e2e ${process.argv.slice(2).join(" ")}`.trim();

// The bundle and its inputs: a fixture (compiled once, as npm start does), or any bundle.
let bundle: NodeBundle;
let data: Calibration;
let name: string;
if (values.bundle) {
  bundle = openBundle(values.bundle);
  const cal = await bundleCalibration(bundle.manifest, { calib: values.inputs, labels: values.labels });
  if (!cal) throw new Error(`--bundle ${values.bundle}: give --inputs DATA (its calibration source "${bundle.manifest.calibration.source}" is not found)`);
  data = cal;
  name = values.name ?? bundle.manifest.model.name;
} else {
  const fx = fixture(values.model);
  bundle = (await cachedBundle(fx)).bundle;
  data = await loadCalibration(fx.path, { inputDims: perSampleDims(bundle.manifest.model.inputs[0]!.shape) });
  name = values.name ?? fx.name;
}
const m = bundle.manifest;
const input = (i: number) => data.batch(i % data.count, 1);
const maxDrop = m.calibration.maxAccuracyDrop;
const unit = m.calibration.metric.unit;

interface Strategy {
  key: string;
  policy: PolicyName;
  /** The objective of its throughput run (latency runs use "latency" unless it is an SLO strategy). */
  objective: Objective;
  /** Throughput SLO: cloud-only's measured rate in the cell. */
  atCloudRate?: boolean;
}
const STRATEGIES: Strategy[] = [
  { key: "device-only", policy: "device-only", objective: "throughput" },
  { key: "cloud-only f32", policy: "cloud-only", objective: "throughput" },
  { key: "cloud-only u8", policy: "cloud-only-u8", objective: "throughput" },
  { key: "cloud-only JPEG", policy: "cloud-only-jpeg", objective: "throughput" },
  { key: "cloud-only WebP", policy: "cloud-only-webp", objective: "throughput" },
  { key: "Neurosurgeon", policy: "neurosurgeon", objective: "latency" },
  { key: "JALAD", policy: "jalad", objective: "latency" },
  { key: "dyno", policy: "dyno", objective: "throughput" },
  { key: "dyno cloud-cost", policy: "dyno", objective: "cloud-cost", atCloudRate: true },
];
const OTHER_OFFLOADING = ["cloud-only f32", "cloud-only u8", "cloud-only JPEG", "cloud-only WebP", "Neurosurgeon", "JALAD"];

interface Metrics {
  throughput: number;
  p50: number;
  p95: number;
  bytes: number;
  cloudMs: number;
  drop: number;
  variants: Record<string, number>;
}
interface Cell {
  slowdown: number;
  link: string;
  strategies: Record<string, Metrics>;
  oracle: { throughput: Metrics & { id: string }; latency: { id: string; p50: number; p95: number } };
}

/** The metric's drop of a run: the compile-time drop of each variant it ran, weighted by use. */
function dropOf(variants: Record<string, number>): number {
  let n = 0;
  let d = 0;
  for (const [id, k] of Object.entries(variants)) {
    const v = m.variants.find((x) => x.id === id);
    n += k;
    d += k * (v?.accuracy.drop ?? 0);
  }
  return n ? d / n : 0;
}

async function latencyOf(open: () => Promise<Device>, count: number, variant?: string): Promise<{ p50: number; p95: number }> {
  const d = await open();
  try {
    for (let i = 0; i < 2; i++) await d.infer(input(i), variant ? { variant } : undefined);
    const t: number[] = [];
    for (let i = 0; i < count; i++) t.push((await d.infer(input(i), variant ? { variant } : undefined)).timings.totalMs);
    t.sort((a, b) => a - b);
    return { p50: quantile(t, 0.5), p95: quantile(t, 0.95) };
  } finally {
    await d.close();
  }
}

const metricsOf = (s: RunSummary, lat: { p50: number; p95: number }): Metrics => ({
  throughput: s.throughputPerS, p50: lat.p50, p95: lat.p95, bytes: s.bytesPerInference, cloudMs: s.cloudSecondsPerInference * 1000, drop: dropOf(s.variants), variants: s.variants,
});

const server = await startServer({ bundle, port: 0 });
const link = await startLink({ target: { port: server.port }, shape: links[0]! });
const cloud = `http://127.0.0.1:${link.port}`;
const t0 = performance.now();
const inputCut = m.cuts.find((c) => c.kind === "input")!;
const images = m.variants.filter((v) => isImageCodec(v.codec));
console.log(`e2e ${name}: ${m.variants.length} variants over ${m.cuts.length} cuts, ${m.variants.filter((v) => v.admissible).length} within ${maxDrop} (${unit}); ${images.length ? `${images.length} image variants of the input` : "no image variants (the input is not an image with a known preprocess)"}`);
console.log(`device emulated ${slowdowns.join("x and ")}x slower than this machine (onnxruntime-node cpu, 1 thread; each step slowdown x its own profiled time); cloud: this machine; ${seconds} s per strategy (at least ${minCount} inferences), ${latencyCount} one at a time`);

const cells: Cell[] = [];
const traces: { slowdown: number; steps: { link: string; dyno: number; oracle: number; oracleId: string; switches: number; trials: number }[]; path: { t: number; cut: number; id: string }[]; total: { dyno: number; oracle: number } }[] = [];
try {
  for (const slowdown of slowdowns) {
    const open = (o: { policy?: PolicyName; objective?: Objective; variant?: string; slo?: { throughputPerS?: number; bestEffort?: "objective" | "closest" } }) => () =>
      createDevice({ bundle, cloud, slowdown, timeoutMs: 60_000, ...o, slo: { maxAccuracyDrop: maxDrop, ...o.slo } });
    link.setShape("wifi");
    await warmUp(m, (variant) => open({ variant })(), input, quick ? 0.1 : 0.4);
    for (const preset of links) {
      link.setShape(preset);
      console.log(`\n${slowdown}x device, ${link.describe()}`);
      const strategies: Record<string, Metrics> = {};
      let cloudRate = 0;
      for (const s of STRATEGIES) {
        const slo = s.atCloudRate ? { throughputPerS: cloudRate, bestEffort: "closest" as const } : undefined;
        const tput = await measure(open({ policy: s.policy, objective: s.objective, slo }), input, seconds, { warm: 4, minCount });
        const lat = await latencyOf(open({ policy: s.policy, objective: s.atCloudRate ? s.objective : "latency", slo }), latencyCount);
        strategies[s.key] = metricsOf(tput, lat);
        if (s.key === "cloud-only f32") cloudRate = tput.throughputPerS;
        console.log(`  ${s.key.padEnd(16)} ${tput.throughputPerS.toFixed(1).padStart(8)}/s  p50 ${lat.p50.toFixed(1).padStart(8)} ms  p95 ${lat.p95.toFixed(1).padStart(8)} ms  ${humanBytes(Math.round(tput.bytesPerInference)).padStart(9)}  cloud ${(tput.cloudSecondsPerInference * 1000).toFixed(2)} ms  (${mostRun(tput)})`);
      }
      // The oracle: the shortlist's fixed variants, the winner measured again.
      const { deviceOnly } = baselines(m);
      const ran = ["dyno", "dyno cloud-cost"].map((k) => Object.entries(strategies[k]!.variants).sort((a, b) => b[1] - a[1])[0]?.[0] ?? "");
      const list = shortlist(m, PRESETS[preset]!.steps[0]!, { slowdown, objective: "throughput", maxAccuracyDrop: maxDrop, depth: 15, top: quick ? 2 : 3, extra: ran });
      const pinned: Record<string, RunSummary> = {};
      const pinnedLat: Record<string, { p50: number; p95: number }> = {};
      for (const id of list) {
        pinned[id] = await measure(open(id === deviceOnly ? { policy: "device-only" } : { variant: id }), input, seconds, { warm: 4, minCount });
        pinnedLat[id] = await latencyOf(open({}), latencyCount, id);
      }
      const bestT = Object.entries(pinned).sort((a, b) => b[1].throughputPerS - a[1].throughputPerS)[0]![0];
      const again = await measure(open(bestT === deviceOnly ? { policy: "device-only" } : { variant: bestT }), input, seconds, { warm: 4, minCount });
      const bestL = Object.entries(pinnedLat).sort((a, b) => a[1].p50 - b[1].p50)[0]!;
      cells.push({ slowdown, link: preset, strategies, oracle: { throughput: { ...metricsOf(again, pinnedLat[bestT]!), id: bestT }, latency: { id: bestL[0], ...bestL[1] } } });
      console.log(`  oracle           ${again.throughputPerS.toFixed(1).padStart(8)}/s (${bestT})  p50 ${bestL[1].p50.toFixed(1)} ms (${bestL[0]})`);
    }
    // The trace, dyno and the oracle's schedule over it.
    const order = ["wifi", "3g", "4g"].filter((l) => links.includes(l));
    if (order.length >= 2) {
      const trace: LinkTrace = { name: order.join("-"), steps: order.map((p, k) => ({ ...PRESETS[p]!.steps[0]!, at: k * traceSeconds, name: p })) };
      const stepOf = () => Math.max(0, order.indexOf(link.current().name ?? ""));
      const done = order.map(() => 0);
      const sw = order.map(() => 0);
      const tr = order.map(() => 0);
      const path: { t: number; cut: number; id: string }[] = [];
      link.setShape(trace);
      const d = await open({ policy: "dyno", objective: "throughput" })();
      let last = "";
      // Switches are counted in the order the inferences were planned in, as the demo does.
      const count = (r: Inference, ms: number, k: number) => {
        done[k]!++;
        if (r.choice.id !== last) {
          if (last !== "") sw[k]!++;
          if (r.choice.decision === "trial") tr[k]!++;
          path.push({ t: ms / 1000, cut: m.cuts.find((c) => c.id === m.variants.find((v) => v.id === r.variant)?.cut)?.deviceSegments ?? 0, id: r.variant });
          last = r.choice.id;
        }
      };
      const ordered = inPlanOrder<{ r: Inference; ms: number; k: number }>((p) => count(p.r, p.ms, p.k));
      await runStream(d, input, {
        durationMs: traceSeconds * order.length * 1000,
        onResult: (r: Inference, i, ms) => ordered.add(i, { r, ms, k: stepOf() }),
      });
      ordered.flush();
      await d.close();
      const schedule = order.map((l) => cells.find((c) => c.slowdown === slowdown && c.link === l)!.oracle.throughput.id);
      link.setShape(trace);
      const od = await open({ policy: "dyno" })();
      const odone = order.map(() => 0);
      await runStream(od, input, {
        durationMs: traceSeconds * order.length * 1000,
        variantOf: (_i, ms) => schedule[Math.min(order.length - 1, Math.floor(ms / (traceSeconds * 1000)))],
        onResult: () => void odone[stepOf()]!++,
      });
      await od.close();
      traces.push({
        slowdown,
        steps: order.map((l, k) => ({ link: l, dyno: done[k]! / traceSeconds, oracle: odone[k]! / traceSeconds, oracleId: schedule[k]!, switches: sw[k]!, trials: tr[k]! })),
        path,
        total: { dyno: done.reduce((a, b) => a + b, 0), oracle: odone.reduce((a, b) => a + b, 0) },
      });
      console.log(`  trace ${trace.name}, ${traceSeconds} s a step: dyno ${done.reduce((a, b) => a + b, 0)} inferences, the oracle ${odone.reduce((a, b) => a + b, 0)}`);
    }
  }
} finally {
  await link.close();
  await server.close();
}

// --- results ---------------------------------------------------------------------------------
const x = (a: number, b: number) => (b > 0 ? `${(a / b).toFixed(2)}x` : "-");
const md: string[] = [];
md.push(`# e2e: ${name}`, "");
md.push(`\`${command}\` (${((performance.now() - t0) / 60000).toFixed(1)} min, ${new Date().toISOString().slice(0, 10)})`, "");
md.push(`- Model: ${m.model.name}, ${m.variants.length} variants over ${m.cuts.length} cuts, ${m.variants.filter((v) => v.admissible).length} admissible within ${maxDrop} ${unit} (metric ${m.calibration.metric.spec}, float32 ${m.calibration.float32Value.toFixed(2)} ${unit} on ${m.calibration.samples} samples of ${m.calibration.source}); input ${humanBytes(inputCut.bytes)} of float32.`);
md.push(`- Device: emulated, ${slowdowns.join("x and ")}x slower than this machine (each step takes that many times its own first-start profile; onnxruntime-node, 1 thread). Cloud: \`dyno serve\` on this machine, in the same process (2 cores shared with the device and the link proxy).`);
md.push(`- Links: the shaping proxy (runtime/emu/link.ts) at the brief's presets (3G 2 Mbit/s 100 ms, 4G 15 Mbit/s 50 ms, Wi-Fi 100 Mbit/s 10 ms); the trace steps Wi-Fi -> 3G -> 4G every ${traceSeconds} s.`);
md.push(`- Per strategy: throughput pipelined (a window of 15) for ${seconds} s (at least ${minCount} inferences); latency p50/p95 over ${latencyCount} inferences one at a time (dyno: latency objective); bytes and cloud compute per inference from the throughput run; the metric's drop is the compile-time drop of the variants the run used. The oracle: the fixed variants of a shortlist measured the same way, the winner measured again.`, "");
for (const slowdown of slowdowns) {
  md.push(`## ${slowdown}x device`, "");
  for (const c of cells.filter((c) => c.slowdown === slowdown)) {
    md.push(`### ${c.link}`, "");
    md.push("| strategy | inferences/s | p50 ms | p95 ms | bytes/inference | cloud ms/inference | drop (" + unit + ") | vs oracle | ran most |");
    md.push("|---|---|---|---|---|---|---|---|---|");
    const o = c.oracle.throughput;
    for (const [k, s] of Object.entries(c.strategies)) {
      md.push(`| ${k} | ${s.throughput.toFixed(1)} | ${s.p50.toFixed(1)} | ${s.p95.toFixed(1)} | ${humanBytes(Math.round(s.bytes))} | ${s.cloudMs.toFixed(2)} | ${s.drop.toFixed(2)} | ${x(s.throughput, o.throughput)} | ${Object.entries(s.variants).sort((a, b) => b[1] - a[1])[0]?.[0] ?? "-"} |`);
    }
    md.push(`| oracle | ${o.throughput.toFixed(1)} (${o.id}) | ${c.oracle.latency.p50.toFixed(1)} (${c.oracle.latency.id}) | ${c.oracle.latency.p95.toFixed(1)} | ${humanBytes(Math.round(o.bytes))} | ${o.cloudMs.toFixed(2)} | ${o.drop.toFixed(2)} | 1.00x | ${o.id} |`, "");
  }
  const tr = traces.find((t) => t.slowdown === slowdown);
  if (tr) {
    md.push(`### The trace (${traceSeconds} s a step)`, "");
    md.push("| step | dyno /s | oracle /s (its variant) | dyno / oracle | switches | trials |", "|---|---|---|---|---|---|");
    for (const s of tr.steps) md.push(`| ${s.link} | ${s.dyno.toFixed(1)} | ${s.oracle.toFixed(1)} (${s.oracleId}) | ${x(s.dyno, s.oracle)} | ${s.switches} | ${s.trials} |`);
    md.push(`| the whole trace | ${tr.total.dyno} inferences | ${tr.total.oracle} | ${x(tr.total.dyno, tr.total.oracle)} | | |`, "");
  }
}

// The targets of issue 13, as ratios in this run.
md.push("## Against the targets", "");
md.push("| target | device | here | met |", "|---|---|---|---|");
const cell = (sd: number, l: string) => cells.find((c) => c.slowdown === sd && c.link === l);
for (const sd of slowdowns) {
  const g4 = cell(sd, "4g");
  if (g4) {
    const r = g4.strategies.dyno!.throughput / g4.strategies["device-only"]!.throughput;
    md.push(`| dyno >= 10x device-only throughput at 4G | ${sd}x | ${r.toFixed(2)}x | ${r >= 10 ? "yes" : "no"} |`);
  }
  const g3 = cell(sd, "3g");
  if (g3) {
    const best = Math.max(...OTHER_OFFLOADING.map((k) => g3.strategies[k]!.throughput));
    const r = g3.strategies.dyno!.throughput / best;
    md.push(`| dyno >= 2x the best other offloading (JPEG, WebP included) at 3G | ${sd}x | ${r.toFixed(2)}x | ${r >= 2 ? "yes" : "no"} |`);
  }
  for (const c of cells.filter((c) => c.slowdown === sd)) {
    const cc = c.strategies["dyno cloud-cost"]!;
    const co = c.strategies["cloud-only f32"]!;
    const ratio = co.cloudMs > 0 ? cc.cloudMs / co.cloudMs : NaN;
    md.push(`| cloud compute <= 0.5x cloud-only at equal throughput (${c.link}) | ${sd}x | ${Number.isFinite(ratio) ? `${ratio.toFixed(2)}x at ${x(cc.throughput, co.throughput)} its throughput` : "-"} | ${ratio <= 0.5 && cc.throughput >= 0.95 * co.throughput ? "yes" : "no"} |`);
  }
}
// Data: the smallest payload within the accuracy bound, as compile measured it on the calibration
// data (bytes per input, mean), against the float32 input and the smallest JPEG and WebP within it.
{
  const admissible = m.variants.filter((v) => v.admissible && m.cuts.find((c) => c.id === v.cut)!.kind !== "output");
  const least = admissible.reduce((a, b) => (b.wire.meanBytes < a.wire.meanBytes ? b : a));
  const f32 = m.variants.find((v) => v.cut === inputCut.id && v.codec.bits === "f32")!.wire.meanBytes;
  const img = (bits: string) => admissible.filter((v) => v.codec.bits === bits).sort((a, b) => a.wire.meanBytes - b.wire.meanBytes)[0];
  const jpeg = img("jpeg");
  const webp = img("webp");
  const bestImage = Math.min(jpeg?.wire.meanBytes ?? Infinity, webp?.wire.meanBytes ?? Infinity);
  md.push(`| >= 100x less data than cloud-only float32, within the bound | any | ${least.id}: ${humanBytes(Math.round(least.wire.meanBytes))}, ${(f32 / least.wire.meanBytes).toFixed(1)}x less than ${humanBytes(Math.round(f32))} | ${f32 / least.wire.meanBytes >= 100 ? "yes" : "no"} |`);
  md.push(`| fewer bytes than the JPEG/WebP baseline, within the bound | any | ${humanBytes(Math.round(least.wire.meanBytes))} against ${jpeg ? `JPEG ${jpeg.id} ${humanBytes(Math.round(jpeg.wire.meanBytes))}` : "no JPEG"}, ${webp ? `WebP ${webp.id} ${humanBytes(Math.round(webp.wire.meanBytes))}` : "no WebP"} | ${least.wire.meanBytes < bestImage ? "yes" : Number.isFinite(bestImage) ? "no" : "no image baseline"} |`);
}
md.push("");

mkdirSync(outDir, { recursive: true });
const base = join(outDir, `e2e-${name}`);
writeFileSync(`${base}.md`, md.join("\n"));
writeFileSync(`${base}.json`, JSON.stringify({ command, name, model: m.model.name, slowdowns, links, seconds, traceSeconds, cells, traces }, null, 1));
const mbps = (l: string) => PRESETS[l]!.steps[0]!.bandwidthMbps;
const byBw = [...links].sort((a, b) => mbps(a) - mbps(b));
for (const sd of slowdowns) {
  const cs = byBw.map((l) => cell(sd, l)!);
  const keys = [...STRATEGIES.map((s) => s.key), "oracle"];
  const get = (c: Cell, k: string) => (k === "oracle" ? c.oracle.throughput : c.strategies[k]!);
  writeFileSync(`${base}-${sd}x-throughput.svg`, lineChart(`${name}: throughput against bandwidth, device ${sd}x slower`, "link bandwidth (Mbit/s)", "inferences/s", byBw.map(mbps), keys.map((k) => ({ name: k, ys: cs.map((c) => get(c, k).throughput) }))));
  writeFileSync(`${base}-${sd}x-bytes.svg`, barChart(`${name}: bytes sent per inference, device ${sd}x slower`, "bytes per inference", byBw, keys.filter((k) => k !== "device-only").map((k) => ({ name: k, ys: cs.map((c) => get(c, k).bytes) }))));
  const tr = traces.find((t) => t.slowdown === sd);
  if (tr) writeFileSync(`${base}-${sd}x-trace.svg`, stepChart(`${name}: dyno's cut over the trace, device ${sd}x slower`, "segments on the device (0: the input, sent)", tr.path.map((p) => ({ t: p.t, y: p.cut, label: p.id })), tr.steps.map((s, k) => ({ from: k * traceSeconds, to: (k + 1) * traceSeconds, name: s.link })), m.segments.length));
}
console.log(`\n${md.join("\n")}`);
console.log(`wrote ${base}.md, .json and SVGs`);
