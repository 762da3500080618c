// The planner and its tracker, as tables and as a seeded simulated world: what the model predicts
// is not what each variant really does (runtime/plan/planner.ts, runtime/plan/tracker.ts).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { initEstimates, type Estimates } from "../runtime/plan/estimators.js";
import { initPlanner, plan, type PlannedChoice, type PlannerOptions, type PlannerState } from "../runtime/plan/planner.js";
import { predictAll, type Policy } from "../runtime/plan/scheduler.js";
import { CLIP, correct, endToEnd, initTracker, linkChanged, posterior, recordInterval, recordRun, TAU_MIN } from "../runtime/plan/tracker.js";
import { rng } from "../runtime/common/random.js";
import { makeManifest } from "./scheduler-manifest.js";

const SEED = 1313;

// Three segments; the input as float32, 8-bit and 4-bit; an inner cut at 4 bits; device-only.
const M = makeManifest({
  deviceMs: [2, 4, 20],
  cloudMs: [0.5, 0.5, 2],
  cutBytes: [16000, 8000, 2000, 40],
  variants: [
    { k: 0, bits: "f32", bytes: 16000 },
    { k: 0, bits: 8, lossless: "zstd", bytes: 4000, encodeMs: 0.1, decodeMs: 0.1 },
    { k: 0, bits: 4, lossless: "zstd", bytes: 2000, encodeMs: 0.1, decodeMs: 0.1 },
    { k: 1, bits: 4, lossless: "zstd", bytes: 1000, encodeMs: 0.1, decodeMs: 0.1 },
    { k: 3, bits: "f32", bytes: 40 },
  ],
});

const THROUGHPUT: Policy = { name: "dyno", objective: "throughput", pipelineDepth: 15 };
const OPTIONS: Partial<PlannerOptions> = { minSamples: 1.5, trialLength: 6 };

function estimates(mbps = 100, rttMs = 10): Estimates {
  const e = initEstimates(M, { link: { bandwidthMbps: mbps, rttMs } });
  return { ...e, link: { ...e.link, bandwidthStale: undefined } };
}

/**
 * Runs the planner `n` times in a world where variant v really dispatches every `truth[v]` ms
 * (seeded noise of `noise`, ln units); each plan records one interval sample of what it chose.
 */
function simulate(truth: Record<string, number>, n: number, options: { noise?: number; seed?: number; state?: PlannerState; e?: Estimates } = {}) {
  const random = rng(options.seed ?? SEED);
  const e = options.e ?? estimates();
  let s = options.state ?? initPlanner(e.link.epoch);
  const choices: PlannedChoice[] = [];
  for (let i = 0; i < n; i++) {
    const r = plan(M, e, THROUGHPUT, s, OPTIONS);
    s = r.state;
    const c = r.choice;
    choices.push(c);
    const ms = truth[c.id]! * Math.exp((options.noise ?? 0.05) * (2 * random() - 1) * Math.sqrt(3));
    s = { ...s, tracker: recordInterval(s.tracker, c.id, c.predicted.kind !== "device-only", ms, c.predicted.stageIntervalMs) };
  }
  const switches = choices.slice(1).filter((c, i) => c.id !== choices[i]!.id).length;
  return { state: s, choices, switches, last: choices[choices.length - 1]! };
}

test("tracker: an unmeasured variant gets the other variants' pooled error, a measured one its own; a variant is no prior of itself", () => {
  let t = initTracker();
  const predicted = { deviceMs: 10, linkMs: 0, cloudMs: 0 };
  for (let i = 0; i < 20; i++) t = recordRun(t, { id: "a", sends: false, predicted, deviceMs: 20 });
  const a = posterior(t, "a", false, "device");
  const b = posterior(t, "b", false, "device");
  // (20 + 1) / (10 + 1): a stage's error floor is EPS_STAGE = 1 ms.
  assert.ok(Math.abs(a.mean - Math.log(21 / 11)) < 0.02, `a's own error: ${a.mean}`);
  assert.ok(a.n > 19 && a.sd < 0.1, `a is well measured: ${JSON.stringify(a)}`);
  assert.ok(Math.abs(b.mean - Math.log(21 / 11)) < 1e-9 && b.sd === TAU_MIN && b.n === 0, `b gets a's error as its prior, with sd TAU_MIN: ${JSON.stringify(b)}`);
  // With a alone measured, a's own prior is the empty pool (0 error), not itself.
  const only = posterior(initTracker(), "a", false, "device");
  assert.equal(only, { mean: 0, sd: TAU_MIN, n: 0 });
});

test("tracker: end to end, a measured variant keeps its own rate when the model's prediction moves under it", () => {
  let t = initTracker();
  for (let i = 0; i < 16; i++) t = recordInterval(t, "v", true, 1.5, 1.0);
  const at = (predictedMs: number) => Math.exp(endToEnd(t, "v", true, "interval", predictedMs).mean) - 0.05;
  // Measured 1.5 ms whatever the model now says (a bandwidth estimate moved from 1 to 3 ms).
  assert.ok(Math.abs(at(1.0) - 1.5) < 0.1 && Math.abs(at(3.0) - 1.5) < 0.25, `${at(1.0)} ${at(3.0)}`);
  // An unmeasured variant follows the model, corrected by v's pooled error (1.5x).
  const u = Math.exp(endToEnd(t, "u", true, "interval", 2.0).mean) - 0.05;
  assert.ok(Math.abs(u - 3.0) < 0.1, `u: ${u}`);
});

test("tracker: one outlier cannot set a record (clipped); a link change forgets what the senders measured of the link", () => {
  let t = initTracker();
  for (let i = 0; i < 10; i++) t = recordInterval(t, "v", true, 1, 1);
  const before = t.records.v!.measured.interval!.mean;
  t = recordInterval(t, "v", true, 1000, 1);
  assert.ok(t.records.v!.measured.interval!.mean - before <= CLIP / 11 + 1e-9, "a 1000x sample moves the mean at most CLIP/n");
  t = recordRun(t, { id: "v", sends: true, predicted: { deviceMs: 5, linkMs: 20, cloudMs: 3 }, deviceMs: 5, linkMs: 40, cloudMs: 6, latencyMs: 50, predictedLatencyMs: 28 });
  t = recordRun(t, { id: "d", sends: false, predicted: { deviceMs: 20, linkMs: 0, cloudMs: 0 }, deviceMs: 30, latencyMs: 30, predictedLatencyMs: 20 });
  const after = linkChanged(t, 1);
  assert.is(after.epoch, 1);
  assert.equal(Object.keys(after.records.v!.stats).sort(), ["cloud", "device"], "the sender keeps its device and cloud errors");
  assert.equal(after.records.v!.measured, {}, "... and forgets its end-to-end measurements");
  assert.equal(after.records.d, t.records.d, "device-only measured nothing of the link");
});

test("planner: the model's favourite measures worse than the model says of another; that one is tried, measured better, and kept", () => {
  const model = predictAll(M, estimates(), THROUGHPUT);
  const fav = model.reduce((a, b) => (a.throughputPerS >= b.throughputPerS ? a : b));
  assert.is(fav.id, "c1-b4-zstd", "the model's favourite: the inner cut (385/s)");
  // Truth: the favourite really takes twice what the model says (195/s), the float32 input (the
  // model: 333/s) 1.2 ms a dispatch (833/s); the rest as the model says.
  const truth: Record<string, number> = Object.fromEntries(model.map((p) => [p.id, 1000 / p.throughputPerS]));
  truth[fav.id] = 2000 / fav.throughputPerS;
  truth["c0-f32"] = 1.2;
  const r = simulate(truth, 300);
  assert.is(r.last.id, "c0-f32", `settled on ${r.last.id} (${r.last.reason})`);
  assert.ok(r.state.trials <= (OPTIONS.trialsPerEpoch ?? 4), `trials ${r.state.trials}`);
  assert.ok(r.switches <= 2 * r.state.trials + 1, `switches ${r.switches}, trials ${r.state.trials}`);
  // Settled: the last 150 plans never left it.
  assert.ok(r.choices.slice(-150).every((c) => c.id === "c0-f32"), "no switch after settling");
});

test("planner: two variants within the noise of each other do not flap (a confidence bound, not a percentage)", () => {
  const model = predictAll(M, estimates(), THROUGHPUT);
  const truth: Record<string, number> = Object.fromEntries(model.map((p) => [p.id, 5]));
  truth["c0-b8-zstd"] = 1.0;
  truth["c0-b4-zstd"] = 1.02;
  // Both measured already (a history of 16 samples each, 15% noise), b4 running.
  const random = rng(SEED + 1);
  let s = initPlanner(estimates().link.epoch);
  const noisy = (ms: number) => ms * Math.exp(0.15 * (2 * random() - 1) * Math.sqrt(3));
  for (let i = 0; i < 16; i++) for (const id of ["c0-b8-zstd", "c0-b4-zstd"]) s = { ...s, tracker: recordInterval(s.tracker, id, true, noisy(truth[id]!), 3) };
  s = { ...s, current: "c0-b4-zstd", tried: { "c0-f32": 0, "c1-b4-zstd": 0, "c3-f32": 0 } };
  const r = simulate(truth, 1500, { noise: 0.15, seed: SEED + 2, state: s });
  assert.ok(r.switches <= 2, `switches: ${r.switches} (${[...new Set(r.choices.map((c) => c.id))].join(", ")}; seed ${SEED + 2})`);
  assert.ok(["c0-b8-zstd", "c0-b4-zstd"].includes(r.last.id), r.last.id);
  // A real change beyond the noise: the incumbent slows to 2x the other, which it leaves.
  const incumbent = r.last.id;
  const other = incumbent === "c0-b8-zstd" ? "c0-b4-zstd" : "c0-b8-zstd";
  const s2 = simulate({ ...truth, [incumbent]: 2.0, [other]: 1.0 }, 400, { noise: 0.15, state: r.state, seed: SEED + 3 });
  assert.is(s2.last.id, other, `left ${incumbent} when it slowed to 2x the other: ${s2.last.reason}`);
  assert.ok(s2.switches <= 2, `switches ${s2.switches}`);
});

test("planner: a variant that measured worse in its trial is not tried again at once", () => {
  const model = predictAll(M, estimates(), THROUGHPUT);
  const truth: Record<string, number> = Object.fromEntries(model.map((p) => [p.id, 1000 / p.throughputPerS]));
  // Everything but device-only and the inner cut is slow; the inner cut is what the model likes least.
  for (const id of Object.keys(truth)) if (id !== "c3-f32") truth[id] = 50;
  truth["c1-b4-zstd"] = 0.8;
  const r = simulate(truth, 200);
  const trialsOf = (id: string) => r.choices.filter((c, i) => c.decision === "trial" && c.id === id && r.choices[i - 1]?.id !== id).length;
  for (const id of Object.keys(truth)) assert.ok(trialsOf(id) <= 1, `${id} tried ${trialsOf(id)} times`);
  assert.is(r.last.id, "c1-b4-zstd", r.last.reason);
});

test("planner: a trial against an incumbent with no measurement of its own measures the incumbent too, then keeps the better", () => {
  // Device-only runs (the incumbent) but was never measured on this link: a stream ran it only
  // while the link was probed. The model says 26 ms a dispatch for it; it really takes 30 ms, and
  // the float32 input 20 ms: the trial finds the input 25% better than the incumbent's prior,
  // within its spread, so the comparison is in doubt. Before, the device went back to device-only
  // unmeasured, and the next trial the same, four times.
  const model = predictAll(M, estimates(), THROUGHPUT);
  const truth: Record<string, number> = Object.fromEntries(model.map((p) => [p.id, 50]));
  truth["c3-f32"] = 30;
  truth["c0-f32"] = 20;
  const s = { ...initPlanner(estimates().link.epoch), current: "c3-f32", tried: { "c0-b8-zstd": 0, "c0-b4-zstd": 0, "c1-b4-zstd": 0 } };
  const r = simulate(truth, 120, { state: s, noise: 0.1 });
  const decisions = r.choices.map((c) => `${c.decision} ${c.id}`);
  const trialOf = decisions.indexOf("trial c0-f32");
  assert.ok(trialOf >= 0, `the float32 input is tried: ${decisions.slice(0, 3).join("; ")}`);
  const remeasure = r.choices.find((c) => c.decision === "trial" && c.id === "c3-f32");
  assert.ok(remeasure, `device-only is measured after the trial: ${[...new Set(decisions)].join("; ")}`);
  assert.match(remeasure!.reason, /c3-f32 is not measured on this link: measuring it/);
  assert.is(r.last.id, "c0-f32", r.last.reason);
  assert.ok(r.state.trials === 1, `one trial, not one after another: ${r.state.trials}`);
});

test("planner: a trial that measures itself far worse than the incumbent ends early, not after its full length", () => {
  // The incumbent (the 8-bit input) is measured; the 4-bit input, which the model likes, really
  // takes 20x longer than the incumbent (an image codec whose encode the profile got wrong, say). With a trial of 30
  // inferences it ends after its first measurement (one sample per plan here), back to the incumbent.
  const model = predictAll(M, estimates(), THROUGHPUT);
  const truth: Record<string, number> = Object.fromEntries(model.map((p) => [p.id, 5]));
  truth["c0-b8-zstd"] = 4.0;
  truth["c0-b4-zstd"] = 80;
  let s = { ...initPlanner(estimates().link.epoch), current: "c0-b8-zstd", tried: { "c0-f32": 0, "c1-b4-zstd": 0, "c3-f32": 0 } };
  for (let i = 0; i < 16; i++) s = { ...s, tracker: recordInterval(s.tracker, "c0-b8-zstd", true, 4.0, 4.0) };
  const run = (zEarlyEnd: number) => {
    const random = rng(SEED + 5);
    let st: PlannerState = s;
    const ids: string[] = [];
    let reason = "";
    for (let i = 0; i < 60; i++) {
      const r = plan(M, estimates(), THROUGHPUT, st, { ...OPTIONS, trialLength: 30, zEarlyEnd });
      st = r.state;
      ids.push(r.choice.id);
      if (r.choice.decision === "trial-end") reason ||= r.choice.reason;
      const ms = truth[r.choice.id]! * Math.exp(0.05 * (2 * random() - 1));
      st = { ...st, tracker: recordInterval(st.tracker, r.choice.id, true, ms, r.choice.predicted.stageIntervalMs) };
    }
    return { ran: ids.filter((id) => id === "c0-b4-zstd").length, last: ids[ids.length - 1], reason };
  };
  const early = run(2);
  assert.ok(early.ran >= 1 && early.ran <= 3, `the trial ran ${early.ran} inferences`);
  assert.match(early.reason, /ended early/);
  assert.is(early.last, "c0-b8-zstd");
  // Without the early end (an impossible bound), the same trial runs its full length.
  assert.is(run(1e9).ran, 30);
  // A record from before the trial (an earlier trial's, aged) is not the trial's measurement: with
  // no sample of its own yet, the trial goes on.
  let old = s.tracker;
  for (let i = 0; i < 2; i++) old = recordInterval(old, "c0-b4-zstd", true, 80, 1.0);
  const st: PlannerState = { ...s, tracker: { ...old, inferences: 50 } };
  const first = plan(M, estimates(), THROUGHPUT, st, { ...OPTIONS, trialLength: 30, minSamples: 3 });
  assert.is(first.choice.decision, "trial", first.choice.reason);
  const second = plan(M, estimates(), THROUGHPUT, first.state, { ...OPTIONS, trialLength: 30, minSamples: 3 });
  assert.is(second.choice.decision, "trial", `no sample of its own yet: ${second.choice.reason}`);
});

test("planner: a load that slows everything down does not send the device chasing old numbers from variant to variant", () => {
  // Two input variants measured alike at the start (1 ms a dispatch); then the machine gets
  // busier and everything slows by 0.5% a plan. The running one's numbers are from now, the
  // other's from before: compared raw, the other looks better every few hundred plans.
  const model = predictAll(M, estimates(), THROUGHPUT);
  const base: Record<string, number> = Object.fromEntries(model.map((p) => [p.id, 5]));
  base["c0-b8-zstd"] = 1.0;
  base["c0-b4-zstd"] = 1.0;
  const random = rng(SEED + 7);
  let s: PlannerState = { ...initPlanner(estimates().link.epoch), current: "c0-b4-zstd", tried: { "c0-f32": 0, "c1-b4-zstd": 0, "c3-f32": 0 } };
  for (let i = 0; i < 16; i++) for (const id of ["c0-b8-zstd", "c0-b4-zstd"]) s = { ...s, tracker: recordRun(recordInterval(s.tracker, id, true, base[id]!, 1.0), { id, sends: true, predicted: { deviceMs: 0, linkMs: 0, cloudMs: 0 } }) };
  const ids: string[] = [];
  for (let i = 0; i < 600; i++) {
    const r = plan(M, estimates(), THROUGHPUT, s, OPTIONS);
    s = r.state;
    ids.push(r.choice.id);
    const ms = base[r.choice.id]! * Math.exp(0.005 * Math.min(i, 300)) * Math.exp(0.05 * (2 * random() - 1));
    s = { ...s, tracker: recordRun(recordInterval(s.tracker, r.choice.id, true, ms, r.choice.predicted.stageIntervalMs), { id: r.choice.id, sends: true, predicted: { deviceMs: 0, linkMs: 0, cloudMs: 0 } }) };
  }
  const switches = ids.slice(1).filter((id, i) => id !== ids[i]).length;
  assert.ok(switches <= 2 * 4, `${switches} switches while everything slowed down alike (trials ${s.trials})`);
});

test("planner: no variant meets a throughput SLO: least cloud by default, the most throughput with bestEffort closest", () => {
  const policy: Policy = { name: "dyno", objective: "cloud-cost", pipelineDepth: 15, throughputSloPerS: 1e6 };
  const e = estimates();
  const byObjective = plan(M, e, policy, initPlanner(e.link.epoch), OPTIONS).choice;
  assert.is(byObjective.id, "c3-f32", byObjective.reason);
  const closest = plan(M, e, { ...policy, bestEffort: "closest" }, initPlanner(e.link.epoch), OPTIONS).choice;
  const fastest = predictAll(M, e, THROUGHPUT).reduce((a, b) => (a.throughputPerS >= b.throughputPerS ? a : b));
  assert.is(closest.id, fastest.id, closest.reason);
  assert.is(closest.feasible, false);
  assert.match(closest.reason, /no variant meets the SLOs; the closest \(by throughput\)/);
});

test("planner: a stale link runs device-only until probed; the same link after the probe goes back, a new one is explored again", () => {
  const model = predictAll(M, estimates(), THROUGHPUT);
  const truth: Record<string, number> = Object.fromEntries(model.map((p) => [p.id, 1000 / p.throughputPerS]));
  const r = simulate(truth, 100);
  const running = r.last.id;
  assert.is.not(running, "c3-f32");
  const e = estimates();
  const stale = { ...e, link: { ...e.link, bandwidthStale: "link-change" as const } };
  const s1 = plan(M, stale, THROUGHPUT, r.state, OPTIONS);
  assert.is(s1.choice.decision, "stale");
  assert.is(s1.choice.id, "c3-f32");
  assert.match(s1.choice.reason, /the link changed .*device-only until a probe has measured it/);
  // The probe found the same link (the epoch did not move): straight back.
  const same = plan(M, e, THROUGHPUT, s1.state, OPTIONS);
  assert.is(same.choice.id, running, same.choice.reason);
  // A new link (a new epoch): the senders' records are gone; the planner explores again.
  const moved = { ...e, link: { ...e.link, epoch: e.link.epoch + 1 } };
  const again = plan(M, moved, THROUGHPUT, s1.state, OPTIONS);
  assert.ok(again.choice.predicted.samples === 0 || again.choice.decision === "trial", `${again.choice.decision}: ${again.choice.reason}`);
});

test("planner: fixed policies keep their own rule; the corrected prediction is shown", () => {
  const s = initPlanner();
  for (const name of ["device-only", "cloud-only", "neurosurgeon"] as const) {
    const r = plan(M, estimates(), { ...THROUGHPUT, name }, s, OPTIONS);
    assert.is(r.choice.decision, "fixed", name);
    assert.ok(r.choice.predicted.model, `${name}: corrected prediction carries the model's`);
  }
  assert.is(plan(M, estimates(), { ...THROUGHPUT, name: "device-only" }, s, OPTIONS).choice.id, "c3-f32");
  assert.is(plan(M, estimates(), { ...THROUGHPUT, name: "cloud-only" }, s, OPTIONS).choice.id, "c0-f32");
});

test("planner: between full plans the kept choice is reused (replanMs), a trial counts down on its own prediction", () => {
  const model = predictAll(M, estimates(), THROUGHPUT);
  // Everything at 0.5 ms a dispatch: with replanMs 5, a full plan every 10 inferences.
  const truth: Record<string, number> = Object.fromEntries(model.map((p) => [p.id, 0.5]));
  truth["c3-f32"] = 26;
  const r = simulate(truth, 300, { noise: 0 });
  const settled = r.choices.slice(-100);
  const reused = settled.filter((c, i, a) => i > 0 && c.reason === a[i - 1]!.reason && c.decision === "keep").length;
  assert.ok(reused >= 80, `reused ${reused} of the last 100`);
  // A trial runs trialLength inferences.
  const start = r.choices.findIndex((c) => c.decision === "trial");
  assert.ok(start >= 0);
  const id = r.choices[start]!.id;
  const run = r.choices.slice(start).findIndex((c) => c.decision !== "trial" || c.id !== id);
  assert.is(run, OPTIONS.trialLength, `a trial of ${id} ran ${run} inferences`);
  // The corrected prediction of a variant is judged on its own measurements.
  const c = correct(r.state.tracker, model.find((p) => p.id === r.last.id)!, THROUGHPUT);
  assert.ok(c.samples > 1, `${r.last.id}: ${c.samples} samples`);
});

test.run();
