// Re-plan cost: chooseVariant (predict every admissible variant, pick with hysteresis, Pareto
// front) on synthetic manifests of 10, 100 and 1000 variants, and one inference's estimator
// updates. The bandwidth changes on every call, so nothing is reused between calls but the
// per-manifest facts the scheduler computes once.
//
//   npm run bench -- scheduler [seconds per case = 0.5]
import os from "node:os";
import { performance } from "node:perf_hooks";
import { initEstimates, observationsOf, observe, type Estimates } from "../runtime/plan/estimators.js";
import { chooseVariant, predictAll, type Choice } from "../runtime/plan/scheduler.js";
import { initPlanner, plan } from "../runtime/plan/planner.js";
import { recordInterval } from "../runtime/plan/tracker.js";
import { rng } from "../runtime/common/random.js";
import { makeManifest, type VariantSpec } from "../test/scheduler-manifest.js";
import type { Bits } from "../runtime/common/manifest.js";

const SECONDS = Number(process.argv[2] ?? 0.5);
const BITS: Bits[] = [1, 2, 3, 4, 5, 6, 8];
const LOSSLESS = ["none", "lz4", "deflate", "zstd"] as const;

/** `count` variants over 50 segments: every (cut, bits, lossless), cuts spread evenly, seeded sizes. */
function manifestOf(count: number) {
  const n = 50;
  const r = rng(count);
  const deviceMs = Array.from({ length: n }, () => 1 + r() * 10);
  const cloudMs = deviceMs.map((t) => t / 10);
  const cutBytes = Array.from({ length: n + 1 }, (_, k) => Math.round(600_000 * Math.exp(-k / 12)));
  const all: VariantSpec[] = [];
  for (let k = 1; k < n; k++) for (const bits of BITS) for (const lossless of LOSSLESS) {
    all.push({ k, bits, lossless, bytes: Math.round((cutBytes[k]! * (bits as number)) / 32 * (lossless === "none" ? 1 : 0.3 + r() * 0.4)), drop: r() * 3, encodeMs: 0.3, decodeMs: 0.1 });
  }
  const step = all.length / (count - 2);
  const picked = Array.from({ length: count - 2 }, (_, i) => all[Math.floor(i * step)]!);
  const ends: VariantSpec[] = [{ k: 0, bits: "f32", bytes: cutBytes[0]! }, { k: n, bits: "f32", bytes: cutBytes[n]! }];
  return makeManifest({ deviceMs, cloudMs, cutBytes, variants: [...ends, ...picked] });
}

function time(label: string, body: (i: number) => void): { label: string; opsPerS: number; usPerCall: number } {
  for (let i = 0; i < 200; i++) body(i);
  let calls = 0;
  const t0 = performance.now();
  let t = t0;
  while (t - t0 < SECONDS * 1000) {
    for (let j = 0; j < 50; j++) body(calls++);
    t = performance.now();
  }
  const s = (t - t0) / 1000;
  return { label, opsPerS: calls / s, usPerCall: (s / calls) * 1e6 };
}

const cpu = os.cpus()[0]?.model ?? "unknown cpu";
console.log(`scheduler re-plan cost, node ${process.version}, ${cpu}, ${SECONDS} s per case`);
const rows: ReturnType<typeof time>[] = [];
for (const count of [10, 100, 1000]) {
  const m = manifestOf(count);
  const base = initEstimates(m);
  const bws = Array.from({ length: 64 }, (_, i) => 1e6 * (0.5 + (i * 37) % 200));
  const at = (i: number): Estimates => ({ ...base, link: { ...base.link, bandwidthBps: bws[i % bws.length]! } });
  const front = chooseVariant(m, base).front.length;
  let prev: Choice | undefined;
  rows.push(time(`chooseVariant, ${count} variants (front ~${front})`, (i) => { prev = chooseVariant(m, at(i), { objective: "latency", maxAccuracyDrop: 2 }, prev); }));
  rows.push(time(`  predictAll only, ${count} variants`, (i) => { predictAll(m, at(i)); }));
}
{
  const m = manifestOf(100);
  let e = initEstimates(m);
  const record = { variant: m.variants[5]!.id, deviceSegments: 10, segments: 50, deviceMs: 40, encodeMs: 1, bytes: 6000, transferSeconds: 0.06, rttMs: 50, decodeMs: 0.2, cloudMs: 9 };
  rows.push(time("observe one inference (7 observations)", (i) => { e = observe(e, ...observationsOf({ ...record, deviceMs: 40 + (i % 7) })); }));
}
{
  // The device's planner (runtime/plan/planner.ts): a full plan corrects every admissible variant
  // with the tracker; between full plans (replanMs) the kept choice predicts only itself.
  for (const count of [10, 100]) {
    const m = manifestOf(count);
    const base = initEstimates(m);
    const e = { ...base, link: { ...base.link, bandwidthStale: undefined } };
    const policy = { name: "dyno", objective: "throughput", pipelineDepth: 15, maxAccuracyDrop: 2 } as const;
    let s = initPlanner(e.link.epoch);
    for (let i = 0; i < 200; i++) {
      const r = plan(m, e, policy, s, { trialsPerEpoch: 0 });
      s = { ...r.state, tracker: recordInterval(r.state.tracker, r.choice.id, r.choice.predicted.kind !== "device-only", 2, r.choice.predicted.stageIntervalMs) };
    }
    const full = { ...s, nextFull: 0, kept: null };
    rows.push(time(`plan, a full plan, ${count} variants`, () => { plan(m, e, policy, full, { trialsPerEpoch: 0 }); }));
    const kept = { ...s, nextFull: Number.MAX_SAFE_INTEGER };
    rows.push(time(`  plan, the kept choice between full plans, ${count} variants`, () => { plan(m, e, policy, kept, { trialsPerEpoch: 0 }); }));
  }
}
const w = Math.max(...rows.map((r) => r.label.length));
console.log(`${"case".padEnd(w)}  ${"calls/s".padStart(10)}  ${"us/call".padStart(8)}`);
for (const r of rows) console.log(`${r.label.padEnd(w)}  ${Math.round(r.opsPerS).toString().padStart(10)}  ${r.usPerCall.toFixed(1).padStart(8)}`);
