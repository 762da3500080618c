// End to end, every strategy on every link, against a measured oracle (brief §4-5; DynO's claims).
//
//   npm run bench -- e2e [--model NAME] [--slowdown 20] [--seconds 3] [--links 3g,4g,wifi]
//
// One process: `dyno serve` (onnxruntime-node), the link proxy (runtime/emu/link.ts) set to each
// preset in turn, and an emulated device `slowdown` times slower than this machine (its compute
// is its own first-start profile x slowdown; stated in the output). For each link:
// - every policy (device-only, cloud-only, cloud-only-u8, neurosurgeon, jalad, dyno) streams
//   pipelined inputs for `seconds`: throughput (objective throughput for dyno), bytes sent and
//   cloud compute per inference; then one at a time for latency p50 (objective latency);
// - the oracle: every admissible variant pinned (device.infer(x, { variant })), streamed for
//   seconds/4 (throughput) and run 5 times (latency); the best of each.
// Ratios are within one run; the machine is shared, so compare them, not the absolute numbers.
import { perSampleDims } from "../runtime/common/manifest.js";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { cachedBundle, fixture } from "../cli/bundle-cache.js";
import { humanBytes, table } from "../cli/format.js";
import { loadCalibration } from "../compiler/bundler/calibration.js";
import { createDevice, type Device } from "../runtime/node/device.js";
import { PRESETS, startLink } from "../runtime/emu/link.js";
import { runStream, type RunSummary } from "../runtime/device/run.js";
import type { Objective, PolicyName } from "../runtime/plan/scheduler.js";
import { startServer } from "../runtime/cloud/server.js";
import { quantile } from "../runtime/common/stats.js";

const { values } = parseArgs({
  options: {
    model: { type: "string" },
    slowdown: { type: "string", default: "20" },
    seconds: { type: "string", default: "3" },
    links: { type: "string", default: "3g,4g,wifi" },
    "max-accuracy-drop": { type: "string", default: "1" },
  },
});
const slowdown = Number(values.slowdown);
const seconds = Number(values.seconds);
const maxDrop = Number(values["max-accuracy-drop"]);
const links = values.links!.split(",");
for (const l of links) if (!PRESETS[l]) throw new Error(`unknown link preset "${l}" (presets: ${Object.keys(PRESETS).join(", ")})`);

const fx = fixture(values.model);
const { bundle, dir } = await cachedBundle(fx);
const m = bundle.manifest;
const perSample = perSampleDims(m.model.inputs[0]!.shape);
const data = await loadCalibration(fx.path, { inputDims: perSample });
const input = (i: number) => data.batch(i % data.count, 1);
const label = (i: number) => data.labels![i % data.count] as number;
const admissible = m.variants.filter((v) => v.admissible && v.accuracy.drop <= maxDrop).map((v) => v.id);

const server = await startServer({ bundle, port: 0 });
const link = await startLink({ target: { port: server.port }, shape: links[0]! });
const url = `http://127.0.0.1:${link.port}`;
const profile = { cacheDir: join(dir, "..", "profiles") };
const open = (o: { policy?: PolicyName; objective?: Objective; variant?: string }): Promise<Device> =>
  createDevice({ bundle, cloud: url, slowdown, timeoutMs: 10_000, slo: { maxAccuracyDrop: maxDrop }, profile, ...o });

console.log(`model ${fx.name}: ${m.variants.length} variants, ${admissible.length} within ${maxDrop} pp; device emulated ${slowdown}x slower than this machine (onnxruntime-node cpu, 1 thread); cloud: this machine`);
console.log(`${seconds} s per strategy and link, pipelined (depth 8) for throughput; latency from one inference at a time`);

interface Row { tput: RunSummary; latencyP50: number; top1: number | null }
const POLICIES: PolicyName[] = ["device-only", "cloud-only", "cloud-only-u8", "neurosurgeon", "jalad", "dyno"];
const results: Record<string, Record<string, Row>> = {};

async function latency(d: Device, n: number, variant?: string): Promise<number> {
  const t: number[] = [];
  for (let i = 0; i < n; i++) t.push((await d.infer(input(i), variant ? { variant } : undefined)).timings.totalMs);
  return quantile(t.sort((a, b) => a - b), 0.5);
}

try {
  for (const preset of links) {
    link.setShape(preset);
    console.log(`\n${link.describe()}`);
    const rows: Record<string, Row> = {};
    for (const policy of POLICIES) {
      const d = await open({ policy, objective: "throughput" });
      await runStream(d, input, { count: 4 }); // settle: first probe, first plans
      const { summary, results: rs } = await runStream(d, input, { durationMs: seconds * 1000, label });
      if (process.env.DYNO_BENCH_VERBOSE) console.log(`    last choice: ${rs[rs.length - 1]!.choice.reason}`);
      await d.close();
      const l = await open({ policy, objective: "latency" });
      await latency(l, 4);
      const latencyP50 = await latency(l, 15);
      await l.close();
      rows[policy] = { tput: summary, latencyP50, top1: summary.top1 };
      process.stdout.write(`  ${policy.padEnd(14)} ${summary.throughputPerS.toFixed(1).padStart(7)}/s  p50 ${latencyP50.toFixed(1).padStart(7)} ms  ${humanBytes(Math.round(summary.bytesPerInference)).padStart(9)}/inference  (${Object.entries(summary.variants).sort((a, b) => b[1] - a[1]).slice(0, 2).map(([v, n]) => `${v} x${n}`).join(", ")})\n`);
    }
    // The oracle: every admissible variant pinned.
    const o = await open({ objective: "throughput" });
    let bestT: { id: string; s: RunSummary } | null = null;
    let bestL: { id: string; ms: number } | null = null;
    for (const id of admissible) {
      const pinned = await open({ variant: id });
      await runStream(pinned, input, { count: 3 });
      const { summary } = await runStream(pinned, input, { durationMs: (seconds / 4) * 1000 });
      await pinned.close();
      if (!bestT || summary.throughputPerS > bestT.s.throughputPerS) bestT = { id, s: summary };
      const ms = await latency(o, 5, id);
      if (!bestL || ms < bestL.ms) bestL = { id, ms };
    }
    await o.close();
    rows.oracle = { tput: bestT!.s, latencyP50: bestL!.ms, top1: null };
    console.log(`  oracle         ${bestT!.s.throughputPerS.toFixed(1).padStart(7)}/s (${bestT!.id})  p50 ${bestL!.ms.toFixed(1).padStart(7)} ms (${bestL!.id})`);
    results[preset] = rows;
  }
} finally {
  await link.close();
  await server.close();
}

const x = (a: number, b: number) => `${(a / b).toFixed(2)}x`;
console.log("\nthroughput (inferences/s, pipelined) and dyno's ratio to each:");
console.log(table(["link", ...POLICIES, "oracle", "dyno/device-only", "dyno/best other offloading", "dyno/oracle"], links.map((l) => {
  const r = results[l]!;
  const others = Math.max(...(["cloud-only", "cloud-only-u8", "neurosurgeon", "jalad"] as const).map((p) => r[p]!.tput.throughputPerS));
  const dyno = r.dyno!.tput.throughputPerS;
  return [l, ...POLICIES.map((p) => r[p]!.tput.throughputPerS.toFixed(1)), r.oracle!.tput.throughputPerS.toFixed(1), x(dyno, r["device-only"]!.tput.throughputPerS), x(dyno, others), x(dyno, r.oracle!.tput.throughputPerS)];
})));
console.log("\nlatency p50 (ms, one at a time):");
console.log(table(["link", ...POLICIES, "oracle", "dyno vs oracle"], links.map((l) => {
  const r = results[l]!;
  return [l, ...POLICIES.map((p) => r[p]!.latencyP50.toFixed(1)), r.oracle!.latencyP50.toFixed(1), `${(100 * (r.dyno!.latencyP50 / r.oracle!.latencyP50 - 1)).toFixed(1)}%`];
})));
console.log("\nbytes sent per inference (throughput runs) and top-1 of dyno's outputs:");
console.log(table(["link", ...POLICIES, "cloud-only / dyno", "dyno top-1"], links.map((l) => {
  const r = results[l]!;
  const dynoBytes = r.dyno!.tput.bytesPerInference;
  return [l, ...POLICIES.map((p) => humanBytes(Math.round(r[p]!.tput.bytesPerInference))), dynoBytes > 0 ? x(r["cloud-only"]!.tput.bytesPerInference, dynoBytes) : "no bytes", r.dyno!.top1 === null ? "-" : `${(100 * r.dyno!.top1).toFixed(1)}%`];
})));
console.log("\ncloud compute per inference (ms; DynO's onloading goal):");
console.log(table(["link", ...POLICIES], links.map((l) => [l, ...POLICIES.map((p) => (results[l]![p]!.tput.cloudSecondsPerInference * 1000).toFixed(2))])));
