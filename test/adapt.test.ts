// The issue's acceptance test: "After each bandwidth step of a trace, the scheduler settles within
// 3 inferences on a variant whose measured objective is within 5% of the best that an exhaustive
// measured run (the oracle) finds; outputs stay within the accuracy bound."
//
// Emulation (stated): device and cloud are this machine; the device is slowed down 40x (a step
// takes 40x its time in the device's own first-start profile, as createDevice's `slowdown` does);
// the link is a shaping TCP proxy on loopback (runtime/emu/link.ts) stepped deterministically with
// link.setShape through 3g (2 Mbit/s, 100 ms) -> wifi (100 Mbit/s, 10 ms) -> 4g (15 Mbit/s,
// 50 ms). Measured here, the oracle's best is device-only on 3g and on 4g (the emulated device
// needs 35-45 ms, a split at least the 50 ms RTT) and a float16/float32 input on wifi (this
// fixture's input is 16 KiB of float32 pixels, so inner cuts never beat the input cut). On wifi
// those input variants lie within 1-2 ms of each other, which is why the device probes the
// link's bandwidth after a change instead of planning with a stale estimate, and why the
// emulation sleeps to a fraction of a millisecond (runtime/common/clock.ts).
//
// Oracle: for the link in force, every admissible variant is measured end to end by a second
// device pinned to it (device.infer(x, { variant })): the same emulated device (same profile,
// same slow-down), pack, send through the link, cloud, reply. Then the contenders (the best few
// and every variant the device settled on) are measured again, 9 rounds round-robin, and the gap
// is the median over the rounds of chosen / best (each round runs both back to back, so a burst
// of load on this shared machine slows both). A gap over 5% is measured again over 15 more rounds
// before it counts.
import { perSampleDims } from "../runtime/common/manifest.js";
import { openExecutor } from "../runtime/node/executor.js";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import ort from "onnxruntime-node";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { openBundle, type NodeBundle } from "../runtime/node/bundle.js";
import type { Calibration } from "../compiler/bundler/calibration.js";
import { createDevice, type Device, type Inference } from "../runtime/node/device.js";
import { Executor } from "../runtime/exec/executor.js";
import { startLink, type LinkShape } from "../runtime/emu/link.js";
import { gapToOracle, oracle } from "../runtime/plan/scheduler.js";
import { startServer } from "../runtime/cloud/server.js";
import { compileTestBundle, fixtures } from "./fixtures.js";

const SLOWDOWN = 40;
const MAX_DROP = 1;
/** Inferences after each step; the choice at inference SETTLE (1-based) and after is judged. */
const AFTER_STEP = 6;
const SETTLE = 3;
const BOUND = 0.05;
const STEPS: (LinkShape & { name: string })[] = [
  { name: "3g", bandwidthMbps: 2, rttMs: 100, jitterMs: 0 },
  { name: "wifi", bandwidthMbps: 100, rttMs: 10, jitterMs: 0 },
  { name: "4g", bandwidthMbps: 15, rttMs: 50, jitterMs: 0 },
];

const dir = mkdtempSync(join(tmpdir(), "dyno-adapt-"));
let bundle: NodeBundle;
let cal: Calibration;
let local: Executor;
const dims = () => perSampleDims(bundle.manifest.model.inputs[0]!.shape);
const median = (xs: readonly number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const h = s.length >> 1;
  return s.length % 2 ? s[h]! : (s[h - 1]! + s[h]!) / 2;
};

/** One end-to-end inference of `id` by the pinned device, as the adapting device would run it. */
async function measureOnce(pinned: Device, id: string, x: Float32Array): Promise<number> {
  const r = await pinned.infer(x, { variant: id });
  assert.is(r.variant, id);
  assert.not.ok(r.fellBack, `oracle: ${id} fell back to the device`);
  return r.timings.totalMs;
}

async function localRun(variant: string, x: Float32Array): Promise<Float32Array> {
  const d = await local.device(variant, new ort.Tensor("float32", x, dims()));
  const out = d.kind === "local" ? d.outputs : (await local.cloud(variant, d.payloads)).outputs;
  return out[bundle.manifest.model.outputs[0]!.name]!.data as Float32Array;
}

const adapt = suite("adaptation to link steps (acceptance)");

adapt.before(async () => {
  ({ calibration: cal } = await compileTestBundle(fixtures()[0]!.path, join(dir, "bundle"), { maxAccuracyDrop: MAX_DROP }));
  bundle = openBundle(join(dir, "bundle"));
  local = await openExecutor(bundle);
});

adapt.after(async () => {
  await local.release();
  rmSync(dir, { recursive: true, force: true });
});

adapt("after each link step the choice settles within 3 inferences within 5% of the measured oracle; outputs exact and admissible", async () => {
  const m = bundle.manifest;
  const server = await startServer({ bundle, port: 0 });
  const link = await startLink({ target: { port: server.port }, shape: STEPS[0]!, seed: 11 });
  const url = `http://${link.host}:${link.port}`;
  const options = { bundle, cloud: url, transport: "ws", slowdown: SLOWDOWN, timeoutMs: 5000, slo: { maxAccuracyDrop: MAX_DROP }, profile: { cacheDir: join(dir, "profiles") } } as const;
  const device = await createDevice(options);
  // The oracle's device: same profile (the cache), never probing (it does not plan).
  const probe = await createDevice({ ...options, bandwidthProbe: false });
  const admissible = m.variants.filter((v) => v.admissible && v.accuracy.drop <= MAX_DROP).map((v) => v.id);
  const rows: string[] = [];
  const failures: string[] = [];
  let input = 0;
  try {
    for (const [s, step] of STEPS.entries()) {
      link.setShape(step);
      // The device, continuing from the previous step.
      const runs: Inference[] = [];
      for (let i = 0; i < AFTER_STEP; i++) {
        const x = cal.batch(input++ % cal.count, 1);
        const r = await device.infer(x);
        runs.push(r);
        const v = m.variants.find((q) => q.id === r.variant);
        assert.ok(v && v.admissible && v.accuracy.drop <= MAX_DROP, `${step.name} #${i + 1}: ${r.variant} is not within the accuracy bound`);
        assert.equal(Array.from(r.outputs[m.model.outputs[0]!.name]!.data), Array.from(await localRun(r.variant, x)), `${step.name} #${i + 1}: ${r.variant} differs from the local run`);
        assert.not.ok(r.fellBack, `${step.name} #${i + 1}: fell back to the device (${r.choice.reason})`);
      }
      const settled = [...new Set(runs.slice(SETTLE - 1).map((r) => r.variant))];

      // Oracle, pass 1: every admissible variant, 2 runs each (a screen).
      const screen: Record<string, number[]> = {};
      for (let k = 0; k < 2; k++) for (const id of admissible) (screen[id] ??= []).push(await measureOnce(probe, id, cal.batch(k, 1)));
      const ranked = admissible.slice().sort((a, b) => median(screen[a]!) - median(screen[b]!));
      // Pass 2: the 3 best of the screen and every settled choice, 9 runs each, round-robin.
      const contenders = [...new Set([...ranked.slice(0, 3), ...settled])];
      const confirm: Record<string, number[]> = {};
      const pass = async (rounds: number) => {
        for (let k = 0; k < rounds; k++) for (const id of contenders) (confirm[id] ??= []).push(await measureOnce(probe, id, cal.batch(k, 1)));
      };
      const judge = () => {
        const measured = Object.fromEntries(admissible.map((id) => [id, { latencyMs: median(confirm[id] ?? screen[id]!), accuracyDrop: m.variants.find((v) => v.id === id)!.accuracy.drop }]));
        const best = oracle(measured, { objective: "latency", maxAccuracyDrop: MAX_DROP })!;
        // The gap from paired rounds: chosen and best were run back to back in each, so a burst
        // of load on this shared machine slows both; the median ratio over the rounds.
        const gaps = Object.fromEntries(settled.map((id) => [id, Math.max(0, median(confirm[id]!.map((t, k) => t / confirm[best.id]![k]!)) - 1)]));
        return { measured, best, gaps };
      };
      await pass(9);
      let verdict = judge();
      // A gap over the bound is measured again (15 more rounds) before it counts: the device's
      // choices are fixed by now, only the measurement of the contenders gets finer.
      const remeasured = settled.some((id) => verdict.gaps[id]! > BOUND);
      if (remeasured) {
        await pass(15);
        verdict = judge();
      }
      const { measured, best, gaps } = verdict;
      for (const id of settled) {
        const gap = gaps[id]!;
        const at = runs.findIndex((r, i) => i >= SETTLE - 1 && r.variant === id) + 1;
        rows.push(`${s + 1} | ${step.name} ${step.bandwidthMbps} Mbit/s ${step.rttMs} ms | ${best.id} ${best.cost.toFixed(1)} ms | ${id} (from #${at}) ${measured[id]!.latencyMs.toFixed(1)} ms | ${(gap * 100).toFixed(1)}%${remeasured ? " (remeasured: 24 rounds)" : ""}`);
        if (gap > BOUND) failures.push(`${step.name}: ${id} chosen at #${at} measures ${measured[id]!.latencyMs.toFixed(1)} ms, ${(gap * 100).toFixed(1)}% above the oracle's ${best.id} at ${best.cost.toFixed(1)} ms (choices: ${runs.map((r) => r.variant).join(", ")})`);
      }
      rows.push(`  choices after the step: ${runs.map((r, i) => `#${i + 1} ${r.variant} ${r.timings.totalMs.toFixed(0)} ms`).join(", ")}`);
      rows.push(`  #${SETTLE}: ${runs[SETTLE - 1]!.choice.reason}`);
      for (const [i, r] of runs.entries()) if (i >= SETTLE && r.variant !== runs[i - 1]!.variant) rows.push(`  #${i + 1}: ${r.choice.reason}`);
    }
  } finally {
    await probe.close();
    await device.close();
    await link.close();
    await server.close();
  }
  console.log(`\n  adapt: device slow-down ${SLOWDOWN}x (stated emulation), ${link.describe().replace(/^link: /, "link ")}, accuracy bound ${MAX_DROP} pp`);
  console.log("  step | link | oracle (measured best) | chosen from inference 3 on | gap");
  for (const r of rows) console.log(`  ${r}`);
  assert.equal(failures, [], failures.join("\n"));
});

adapt.run();
