// The scheduler as tables: link conditions and policies in, the chosen variant (and why) out.
// Manifests are built inline (test/scheduler-manifest.ts); latencies are hand-worked there.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { initEstimates, observe, type Estimates } from "../runtime/plan/estimators.js";
import { chooseVariant, gapToOracle, objectiveCost, oracle, paretoFront, predictAll, type Choice, type Objective, type Policy, type Prediction } from "../runtime/plan/scheduler.js";
import { rng } from "../runtime/common/random.js";
import { DEFAULT_POWER } from "../runtime/plan/energy.js";
import { makeManifest, testManifest } from "./scheduler-manifest.js";

const SEED = 6006;
const M = testManifest();

function at(bandwidthMbps: number, rttMs: number, manifest = M): Estimates {
  return initEstimates(manifest, { link: { bandwidthMbps, rttMs } });
}

const near = (a: number, b: number, tol = 1e-6) => Math.abs(a - b) <= tol * Math.max(1, Math.abs(b));

test("predictions follow the stated model: device + encode, bytes*8/bw + RTT, decode + cloud", () => {
  const p = predictAll(M, at(1, 100)).find((x) => x.id === "c2-b2-zstd")!;
  assert.ok(near(p.deviceMs, 40.5), `device ${p.deviceMs}`);
  assert.ok(near(p.linkMs, 120), `link ${p.linkMs}`);
  assert.ok(near(p.airMs, 20), `air ${p.airMs}`);
  assert.ok(near(p.cloudMs, 18.2), `cloud ${p.cloudMs}`);
  assert.ok(near(p.latencyMs, 178.7), `latency ${p.latencyMs}`);
  assert.ok(near(p.throughputPerS, 1000 / 40.5), `throughput ${p.throughputPerS}`);
  assert.ok(near(p.cloudSecondsPerInference, 0.0182));
  assert.is(p.bytes, 2500);
  const joules = 0.0405 * DEFAULT_POWER.deviceWatts + 2500 * DEFAULT_POWER.radioJoulesPerByte + 0.02 * DEFAULT_POWER.radioWatts;
  assert.ok(near(p.deviceJoules, joules), `joules ${p.deviceJoules} vs ${joules}`);
  const d = predictAll(M, at(1, 100)).find((x) => x.kind === "device-only")!;
  assert.equal([d.bytes, d.linkMs, d.cloudMs, d.deviceMs], [0, 0, 0, 220]);
});

test("measured bytes and slower device move the prediction", () => {
  let e = at(1, 100);
  e = observe(e, { kind: "bytes", variant: "c2-b2-zstd", bytes: 5000 }, { kind: "device", from: 0, to: 2, ms: 80 });
  const p = predictAll(M, e).find((x) => x.id === "c2-b2-zstd")!;
  assert.is(p.bytes, 5000);
  // Measured 2x the profile: the ratio 2 scales compute and the profiled encode alike.
  assert.ok(near(p.deviceMs, 80 + 1), `device ${p.deviceMs}`);
  const later = predictAll(M, e).find((x) => x.kind === "device-only")!;
  assert.ok(near(later.deviceMs, 440), `unmeasured segments scale too: ${later.deviceMs}`);
});

const cases: { name: string; bw: number; rtt: number; policy: Policy; expect: (c: Choice) => void }[] = [
  { name: "low bandwidth -> deep cut, low bits", bw: 1, rtt: 100, policy: {}, expect: (c) => {
    assert.is(c.id, "c2-b2-zstd");
    assert.ok(c.predicted.deviceSegments >= 2 && c.predicted.codec.startsWith("b2"));
  } },
  { name: "high bandwidth -> cloud-only for latency", bw: 1000, rtt: 1, policy: {}, expect: (c) => {
    assert.is(c.predicted.kind, "cloud-only");
    assert.is(c.id, "c0-f32");
  } },
  { name: "accuracy bound 1 pp excludes 2-bit", bw: 1, rtt: 100, policy: { maxAccuracyDrop: 1 }, expect: (c) => {
    assert.is(c.id, "c3-b4-zstd");
    assert.ok(c.predicted.accuracyDrop <= 1);
    assert.ok(c.front.every((p) => p.accuracyDrop <= 1));
  } },
  { name: "inadmissible variants (compile bound) are never offered", bw: 0.05, rtt: 100, policy: { objective: "bytes" }, expect: (c) => {
    assert.is(c.id, "c4-f32", "device-only sends nothing");
    assert.not.ok(c.front.some((p) => p.id === "c1-b2-zstd"));
  } },
  { name: "bytes objective, device-only too slow for the SLO: the smallest admissible payload", bw: 10, rtt: 20, policy: { objective: "bytes", latencySloMs: 200 }, expect: (c) => {
    assert.is(c.id, "c3-b2-zstd");
  } },
  { name: "throughput: 1 / slowest stage", bw: 100, rtt: 10, policy: { objective: "throughput" }, expect: (c) => {
    // c1: device 10.5, air 4.8, cloud 21.2 ms; cloud-only's slowest stage is its 22 ms cloud.
    // c1-b4 has the same slowest stage and loses the tie on accuracy drop.
    assert.is(c.id, "c1-b8-zstd");
    assert.ok(near(c.predicted.throughputPerS, 1000 / 21.2));
  } },
  { name: "energy, default power model: 2.5 KB after 40 ms of compute (90 mJ) beats sending the input (0.5 J of radio) and device-only (0.44 J)", bw: 100, rtt: 10, policy: { objective: "energy" }, expect: (c) => {
    assert.is(c.id, "c2-b2-zstd");
  } },
  { name: "energy, frugal CPU, slow link: computing everything costs less than the time on air", bw: 0.1, rtt: 100, policy: { objective: "energy", power: { deviceWatts: 0.1 } }, expect: (c) => {
    assert.is(c.predicted.kind, "device-only");
  } },
  { name: "energy, frugal CPU, free bytes, fast link: least time on air after a cheap first segment", bw: 100, rtt: 10, policy: { objective: "energy", power: { deviceWatts: 0.1, radioJoulesPerByte: 0 } }, expect: (c) => {
    // c1-b4: 10.5 ms x 0.1 W + 2 ms x 1.29 W = 3.6 mJ; the 8-bit input: 0.2 + 6.2 mJ.
    assert.is(c.id, "c1-b4-zstd");
  } },
];

for (const c of cases) {
  test(`table: ${c.name}`, () => {
    const choice = chooseVariant(M, at(c.bw, c.rtt), c.policy);
    try { c.expect(choice); } catch (e) { console.log(choice.reason); throw e; }
    assert.ok(choice.reason.length > 0);
  });
}

test("cloud-cost objective onloads: the deepest cut that meets the latency SLO", () => {
  const table: [slo: number, k: number][] = [[150, 3], [100, 2], [10000, 4]];
  for (const [slo, k] of table) {
    const c = chooseVariant(M, at(10, 20), { objective: "cloud-cost", latencySloMs: slo });
    const meeting = predictAll(M, at(10, 20), { latencySloMs: slo }).filter((p) => p.meetsSlo);
    const deepest = Math.max(...meeting.map((p) => p.deviceSegments));
    assert.is(c.predicted.deviceSegments, k, `SLO ${slo}: ${c.reason}`);
    assert.is(deepest, k);
    assert.ok(c.feasible && c.predicted.latencyMs <= slo);
  }
});

test("SLO infeasible -> best effort by the objective, said in the reason", () => {
  const c = chooseVariant(M, at(1, 100), { latencySloMs: 5 });
  assert.not.ok(c.feasible);
  assert.is(c.id, "c2-b2-zstd");
  assert.match(c.reason, /no variant meets the SLOs; best effort by latency/);
  assert.match(c.reason, /latency 179 ms > SLO 5 ms/);
  // Cloud cost with an impossible SLO: the objective alone says device-only; "closest" says the fastest.
  const byObjective = chooseVariant(M, at(1, 100), { objective: "cloud-cost", latencySloMs: 5 });
  assert.is(byObjective.predicted.kind, "device-only");
  const closest = chooseVariant(M, at(1, 100), { objective: "cloud-cost", latencySloMs: 5, bestEffort: "closest" });
  assert.is(closest.id, "c2-b2-zstd");
  assert.match(closest.reason, /best effort by distance to the SLOs/);
  const tput = chooseVariant(M, at(1, 100), { throughputSloPerS: 1000 });
  assert.not.ok(tput.feasible);
  assert.match(tput.reason, /throughput .* < SLO 1000\/s/);
});

test("throughput with a pipeline depth: at most depth / latency (Little's law), device-only unaffected", () => {
  const free = predictAll(M, at(1, 400));
  const capped = predictAll(M, at(1, 400), { pipelineDepth: 2 });
  for (const [i, p] of capped.entries()) {
    const f = free[i]!;
    assert.is(p.id, f.id);
    assert.ok(Math.abs(p.throughputPerS - Math.min(f.throughputPerS, 2000 / f.latencyMs)) < 1e-9, `${p.id}: ${p.throughputPerS} vs ${f.throughputPerS}, ${2000 / f.latencyMs}`);
    if (p.kind === "device-only") assert.is(p.throughputPerS, f.throughputPerS);
  }
  assert.ok(capped.some((p, i) => p.throughputPerS < free[i]!.throughputPerS), "a 400 ms RTT makes the window the limit somewhere");
  // The choice ranks by the capped throughput.
  const c = chooseVariant(M, at(1, 400), { objective: "throughput", pipelineDepth: 2 });
  const device = capped.find((p) => p.kind === "device-only")!;
  assert.is(c.predicted.throughputPerS, Math.max(...capped.map((p) => p.throughputPerS)));
  assert.ok(c.predicted.throughputPerS >= device.throughputPerS);
});

/** Bandwidth where c2-b2 and c3-b2 predict the same latency (hand-worked: 20/B + 158.7 = 4/B + 185.7). */
const CROSSOVER = 16 / 27;

test("hysteresis: no flapping on +-3% bandwidth noise at a crossover; a 2x step switches", () => {
  const r = rng(SEED);
  const noisy = () => CROSSOVER * (1 + (r() * 2 - 1) * 0.03);
  const run = (hysteresis: number, bws: number[]) => {
    let prev: Choice | undefined;
    let switches = 0;
    const ids: string[] = [];
    for (const bw of bws) {
      const c = chooseVariant(M, at(bw, 100), { hysteresis }, prev);
      if (prev && c.id !== prev.id) switches++;
      ids.push(c.id);
      prev = c;
    }
    return { switches, ids, last: prev! };
  };
  const bws = Array.from({ length: 60 }, noisy);
  const without = run(0, bws);
  assert.ok(without.switches >= 5, `without hysteresis the choice flaps (${without.switches} switches, seed ${SEED})`);
  const withH = run(0.1, bws);
  assert.is(withH.switches, 0, `with hysteresis: ${withH.ids.join(" ")} (seed ${SEED})`);
  assert.ok(["c2-b2-zstd", "c3-b2-zstd"].includes(withH.last.id));
  // A 2x step down from the crossover: c3-b2 is 12% better than c2-b2 there.
  let c = chooseVariant(M, at(CROSSOVER, 100), {}, "c2-b2-zstd");
  assert.is(c.id, "c2-b2-zstd");
  c = chooseVariant(M, at(CROSSOVER / 2, 100), {}, c);
  assert.is(c.id, "c3-b2-zstd", c.reason);
  assert.match(c.reason, /switched from c2-b2-zstd/);
  assert.not.ok(c.kept);
  // ...and a kept choice says so.
  const k = chooseVariant(M, at(CROSSOVER * 1.05, 100), {}, "c3-b2-zstd");
  assert.is(k.id, "c3-b2-zstd");
  assert.ok(k.kept);
  assert.match(k.reason, /kept c3-b2-zstd .* only .*% better \(hysteresis 10%\)/);
});

test("hysteresis never keeps a variant that breaks a constraint", () => {
  const c = chooseVariant(M, at(1, 100), { latencySloMs: 200, maxAccuracyDrop: 1 }, "c2-b2-zstd");
  assert.is(c.id, "c3-b4-zstd");
  assert.match(c.reason, /switched from c2-b2-zstd \(not offered by this policy or not admissible\)/);
  const d = chooseVariant(M, at(1, 100), { latencySloMs: 200 }, "c4-f32");
  assert.is(d.id, "c2-b2-zstd");
  assert.match(d.reason, /switched from c4-f32 \(violates the SLOs: latency 220 ms > SLO 200 ms\)/);
});

test("ties break deterministically (objective, accuracy drop, latency, bytes, id)", () => {
  const m = makeManifest({
    deviceMs: [10, 10], cloudMs: [1, 1], cutBytes: [1000, 1000, 40],
    variants: [{ k: 1, bits: 8, lossless: "lz4", bytes: 500, id: "b" }, { k: 1, bits: 8, lossless: "zstd", bytes: 500, id: "a" }, { k: 1, bits: 8, lossless: "deflate", bytes: 500, drop: 0.1, id: "0" }],
  });
  for (let i = 0; i < 3; i++) assert.is(chooseVariant(m, at(1000, 0, m), { objective: "cloud-cost", latencySloMs: 15 }).id, "a");
});

function dominated(p: Prediction, q: Prediction): boolean {
  const period = (x: Prediction) => 1000 / x.throughputPerS;
  const keys = [(x: Prediction) => x.latencyMs, period, (x: Prediction) => x.cloudMs, (x: Prediction) => x.bytes, (x: Prediction) => x.deviceJoules, (x: Prediction) => x.accuracyDrop];
  return keys.every((f) => f(q) <= f(p)) && keys.some((f) => f(q) < f(p));
}

test("Pareto front: no point dominated, every other point dominated by one on it", () => {
  for (const [bw, rtt] of [[1, 100], [15, 50], [100, 10], [1000, 1]] as const) {
    const preds = predictAll(M, at(bw, rtt));
    const front = chooseVariant(M, at(bw, rtt)).front;
    assert.ok(front.length >= 2);
    for (const p of front) assert.not.ok(preds.some((q) => dominated(p, q)), `${p.id} on the front is dominated at ${bw} Mbit/s`);
    for (const p of preds) if (!front.includes(p) && !front.some((f) => f.id === p.id)) assert.ok(preds.some((q) => dominated(p, q)), `${p.id} left off the front but not dominated`);
  }
  const sorted = paretoFront(predictAll(M, at(1, 100)), "bytes");
  for (let i = 1; i < sorted.length; i++) assert.ok(sorted[i - 1]!.bytes <= sorted[i]!.bytes);
});

test("baselines behave as named", () => {
  for (const [bw, rtt] of [[1, 100], [15, 50], [1000, 1]] as const) {
    const e = at(bw, rtt);
    assert.is(chooseVariant(M, e, { name: "device-only" }).id, "c4-f32");
    assert.is(chooseVariant(M, e, { name: "cloud-only" }).id, "c0-f32");
    assert.is(chooseVariant(M, e, { name: "cloud-only-u8" }).id, "c0-b8-zstd");
    const ns = chooseVariant(M, e, { name: "neurosurgeon", objective: "bytes" });
    assert.is(ns.objective, "latency", "Neurosurgeon picks by latency whatever the objective");
    assert.ok(ns.predicted.codec === "f32-none");
    const nsBest = predictAll(M, e, { name: "neurosurgeon" }).reduce((a, b) => (b.latencyMs < a.latencyMs ? b : a));
    assert.is(ns.id, nsBest.id);
    const jalad = chooseVariant(M, e, { name: "jalad" });
    assert.ok(jalad.predicted.kind === "device-only" || (jalad.predicted.variant?.codec.bits === 8 && jalad.predicted.variant.codec.lossless !== "none"), jalad.id);
    assert.ok(predictAll(M, e, { name: "jalad" }).every((p) => p.kind === "device-only" || p.codec.startsWith("b8")));
  }
  assert.is(chooseVariant(M, at(1, 100), { name: "neurosurgeon" }).id, "c4-f32", "at 1 Mbit/s float32 cuts lose to device-only");
  assert.is(chooseVariant(M, at(1000, 1), { name: "neurosurgeon" }).id, "c0-f32");
  assert.is(chooseVariant(M, at(15, 50), { name: "jalad" }).id, "c0-b8-zstd");
  assert.is(chooseVariant(M, at(2, 50), { name: "jalad" }).id, "c3-b8-zstd");
  // dyno, joint over bits, is never worse than the baselines it contains.
  for (const bw of [0.5, 2, 15, 100]) {
    const e = at(bw, 50);
    const dyno = chooseVariant(M, e).predicted.latencyMs;
    for (const name of ["device-only", "cloud-only", "neurosurgeon", "jalad"] as const) assert.ok(dyno <= chooseVariant(M, e, { name }).predicted.latencyMs + 1e-9);
  }
  assert.throws(() => chooseVariant(M, at(1, 1), { name: "dads" as never }), /unknown scheduler policy "dads"/);
  assert.throws(() => chooseVariant(M, at(1, 1), { objective: "speed" as never }), /unknown objective "speed"/);
});

test("device-only and cloud-only are synthesised from profiles when the manifest lacks them", () => {
  const m = testManifest({ ends: false });
  const e = at(1, 100, m);
  const d = chooseVariant(m, e, { name: "device-only" });
  assert.is(d.variant, "device-only");
  assert.equal([d.predicted.deviceMs, d.predicted.bytes, d.predicted.cloudMs], [220, 0, 0]);
  const c = chooseVariant(m, at(1000, 1, m), { name: "cloud-only" });
  assert.is(c.variant, "cloud-only");
  assert.is(c.predicted.bytes, 150528);
  assert.ok(near(c.predicted.latencyMs, 22 + 1 + 150528 * 8 / 1e9 * 1000));
  assert.is(chooseVariant(m, at(1000, 1, m)).id, "cloud-only");
  const u8 = chooseVariant(m, e, { name: "cloud-only-u8" });
  assert.is(u8.id, "device-only");
  assert.match(u8.reason, /no admissible variant for policy cloud-only-u8; fell back to device-only/);
});

test("no profiles for a role: MAC-based nominal times", () => {
  const m = makeManifest({ deviceMs: [1, 1], cloudMs: null, cutBytes: [400, 400, 40], variants: [{ k: 1, bits: 8, lossless: "zstd", bytes: 100 }], noDeviceProfile: true });
  const e = initEstimates(m);
  assert.is(e.device.source.kind, "macs");
  const p = predictAll(m, e).find((x) => x.kind === "device-only")!;
  assert.ok(near(p.deviceMs, (1e6 + 2e6) / 1e9 * 1000));
});

test("oracle: best by measured objective under the SLOs; gap", () => {
  const measured = {
    a: { latencyMs: 100, throughputPerS: 20, bytes: 10, accuracyDrop: 0 },
    b: { latencyMs: 90, throughputPerS: 12, bytes: 30, accuracyDrop: 2 },
    c: { latencyMs: 95, throughputPerS: 25, bytes: 50, accuracyDrop: 0.5 },
  };
  const table: [Policy, string][] = [
    [{ objective: "latency" }, "b"],
    [{ objective: "latency", maxAccuracyDrop: 1 }, "c"],
    [{ objective: "throughput" }, "c"],
    [{ objective: "bytes" }, "a"],
    [{ objective: "bytes", latencySloMs: 96 }, "b"],
    [{ objective: "bytes", latencySloMs: 1 }, "a"],
  ];
  for (const [policy, id] of table) assert.is(oracle(measured, policy)?.id, id, JSON.stringify(policy));
  assert.is(oracle({}, {}), null);
  assert.is(oracle(measured, { objective: "throughput" })!.value, 25);
  assert.ok(near(gapToOracle(105, 100), 0.05));
  assert.is(gapToOracle(90, 100), 0);
  const objectives: Objective[] = ["latency", "throughput", "cloud-cost", "bytes", "energy"];
  for (const o of objectives) assert.ok(Number.isFinite(objectiveCost(o, { latencyMs: 1, throughputPerS: 1, cloudSecondsPerInference: 1, bytes: 1, deviceJoules: 1 })));
});

test("pure: inputs are not mutated, same inputs give the same choice", () => {
  const e = at(3, 60);
  const before = JSON.stringify(e);
  const a = chooseVariant(M, e, { objective: "energy" }, "c3-b4-zstd");
  const b = chooseVariant(M, e, { objective: "energy" }, "c3-b4-zstd");
  assert.is(JSON.stringify(e), before);
  assert.equal({ ...a, front: a.front.map((p) => p.id) }, { ...b, front: b.front.map((p) => p.id) });
});

test.run();
