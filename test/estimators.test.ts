// Estimators: pure updaters from observed transfers, pings and compute times to the estimates
// the scheduler plans with.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { codecMs, initEstimates, initLink, observationsOf, observe, rangeMs, updateLink, type LinkEstimate } from "../runtime/plan/estimators.js";
import { chooseVariant } from "../runtime/plan/scheduler.js";
import { rng } from "../runtime/common/random.js";
import { testManifest } from "./scheduler-manifest.js";

const SEED = 4242;
const M = testManifest();

/** The transfer a link of `mbps` and `rttMs` gives for `bytes`. */
const transfer = (bytes: number, mbps: number, rttMs: number) => ({ bytes, seconds: (bytes * 8) / (mbps * 1e6) + rttMs / 1000 });
const within = (x: number, want: number, rel: number) => Math.abs(x / want - 1) <= rel;

function feed(s: LinkEstimate, mbps: number, rttMs: number, count: number, bytes = 100_000): LinkEstimate {
  for (let i = 0; i < count; i++) s = updateLink(s, transfer(bytes, mbps, rttMs));
  return s;
}

test("link: prior until the first sample, then the measured rate with the RTT taken out", () => {
  let s = initLink({ bandwidthMbps: 15, rttMs: 50 });
  assert.is(s.bandwidthBps, 15e6);
  s = feed(s, 8, 50, 1);
  assert.ok(within(s.bandwidthBps, 8e6, 1e-9), `${s.bandwidthBps}`);
  s = feed(s, 8, 50, 5);
  assert.ok(within(s.bandwidthBps, 8e6, 1e-9));
  assert.is(s.recent.length, 4);
  assert.is(s.transfers, 6);
});

test("link: small messages are RTT samples (EWMA); a ping is one too", () => {
  let s = initLink({ bandwidthMbps: 15, rttMs: 50 });
  s = updateLink(s, { bytes: 200, seconds: 0.1 });
  assert.is(s.rttMs, 100, "the first RTT sample replaces the prior");
  s = updateLink(s, { rttMs: 60 });
  assert.is(s.rttMs, 80);
  assert.is(s.bandwidthBps, 15e6, "no throughput sample yet");
  assert.is(s.rtts, 2);
});

test("link: one lucky fast sample barely moves the harmonic mean; a slow one pulls it down at once", () => {
  let s = feed(initLink(), 8, 50, 4);
  const fast = updateLink(s, transfer(100_000, 80, 50));
  assert.ok(fast.bandwidthBps < 8e6 * 1.35, `${fast.bandwidthBps}`);
  const slow = updateLink(s, transfer(100_000, 2, 50));
  assert.ok(slow.bandwidthBps < 8e6 * 0.6, `${slow.bandwidthBps}`);
  s = feed(s, 8, 50, 1);
  assert.ok(within(s.bandwidthBps, 8e6, 1e-9));
});

test("link: a step is tracked within two transfers, down and up (the step detector)", () => {
  for (const [from, to] of [[100, 2], [2, 15], [15, 100], [100, 15]] as const) {
    let s = feed(initLink({ bandwidthMbps: 15, rttMs: 20 }), from, 20, 6);
    s = feed(s, to, 20, 2);
    assert.ok(within(s.bandwidthBps, to * 1e6, 0.01), `${from} -> ${to} Mbit/s: ${s.bandwidthBps / 1e6}`);
  }
});

test("link: +-10% noise stays within the band; no step detected", () => {
  const r = rng(SEED);
  let s = initLink();
  for (let i = 0; i < 200; i++) {
    s = updateLink(s, transfer(100_000, 8 * (1 + (r() * 2 - 1) * 0.1), 50));
    if (i > 0) assert.ok(within(s.bandwidthBps, 8e6, 0.12), `sample ${i}: ${s.bandwidthBps} (seed ${SEED})`);
  }
});

test("link: a transfer faster than the RTT estimate lowers the RTT; malformed samples are ignored", () => {
  let s = feed(initLink({ bandwidthMbps: 10, rttMs: 100 }), 10, 100, 3);
  s = updateLink(s, transfer(20_000, 10, 10));
  assert.ok(s.rttMs < 100, `${s.rttMs}`);
  const before = s;
  for (const bad of [{ bytes: -1, seconds: 1 }, { bytes: 1e5, seconds: 0 }, { bytes: 1e5, seconds: NaN }, { rttMs: NaN }, { rttMs: -5 }]) {
    assert.is(updateLink(before, bad), before);
  }
  assert.throws(() => initLink({ bandwidthMbps: 0, rttMs: 10 }), /bandwidthMbps > 0/);
});

test("link: stale until a sample long enough to time; a probe answers it and replaces the window", () => {
  let s = initLink({ bandwidthMbps: 15, rttMs: 50 });
  assert.is(s.bandwidthStale, "prior");
  // 2 KB at 100 Mbit/s: 0.16 ms of serialisation, too short to time (reliableMs 2).
  s = updateLink(s, { rttMs: 10 });
  s = updateLink(s, transfer(2_000, 100, 10));
  assert.is(s.bandwidthStale, "prior", "a transfer under reliableMs leaves it stale");
  s = updateLink(s, { probe: true, rttMs: 10, bytes: 125_000, serialMs: 10 });
  assert.is(s.bandwidthStale, undefined);
  assert.ok(within(s.bandwidthBps, 100e6, 1e-9), `${s.bandwidthBps}`);
  assert.equal(s.recent.length, 1, "a probe on a stale estimate replaces the window");
  // A routine probe that agrees joins the window; one off by changeFactor replaces it.
  s = updateLink(s, { probe: true, rttMs: 10, bytes: 125_000, serialMs: 11 });
  assert.is(s.recent.length, 2);
  const changes = s.changes;
  s = updateLink(s, { probe: true, rttMs: 10, bytes: 125_000, serialMs: 50 });
  assert.equal(s.recent.length, 1);
  assert.ok(within(s.bandwidthBps, 20e6, 1e-9));
  assert.is(s.changes, changes + 1);
  // A serialisation time of 0 (noise) is not an infinite rate.
  assert.ok(Number.isFinite(updateLink(s, { probe: true, rttMs: 10, bytes: 1000, serialMs: -0.1 }).bandwidthBps));
});

test("link: an off RTT sample is suspect and does not move the estimate; a second confirms a link change (stale) and counts it", () => {
  let s = initLink({ bandwidthMbps: 15, rttMs: 50 });
  s = feed(updateLink(s, { rttMs: 100 }), 2, 100, 3, 20_000);
  assert.is(s.bandwidthStale, undefined);
  assert.ok(within(s.bandwidthBps, 2e6, 1e-9));
  const changes = s.changes;
  s = updateLink(s, { rttMs: 400 });
  assert.ok(s.suspect, "one sample 4x above the estimate");
  assert.is(s.bandwidthStale, undefined);
  // A transfer while the RTT is in doubt is no bandwidth sample.
  const before = s.bandwidthBps;
  s = updateLink(s, transfer(20_000, 8, 400));
  assert.is(s.bandwidthBps, before);
  assert.is(s.rttMs, 100, "a sample far above the estimate does not move it before it is confirmed");
  s = updateLink(s, { rttMs: 410 });
  assert.not.ok(s.suspect);
  assert.is(s.rttMs, 405, "the step replaces the estimate");
  assert.is(s.bandwidthStale, "link-change");
  assert.is(s.changes, changes + 1);
  // After a link change the first timed transfer replaces the old window (no 2 Mbit/s left in it).
  s = updateLink(s, transfer(100_000, 8, 405));
  assert.equal(s.recent.length, 1);
  assert.ok(within(s.bandwidthBps, 8e6, 1e-6), `${s.bandwidthBps}`);
  assert.is(s.bandwidthStale, undefined);
  // One noisy sample that the next does not confirm: suspect, then cleared, no change.
  const c2 = s.changes;
  s = updateLink(updateLink(s, { rttMs: 800 }), { rttMs: 405 });
  assert.not.ok(s.suspect);
  assert.is(s.changes, c2);
  assert.is(s.bandwidthStale, undefined);
});

test("compute: the measured/profiled ratio (EWMA) scales every segment, measured or not", () => {
  let e = initEstimates(M);
  assert.is(e.device.source.kind, "profile");
  assert.is(rangeMs(e.device, 0, 4), 220);
  e = observe(e, { kind: "device", from: 0, to: 2, ms: 120 });
  assert.is(e.device.ratio, 3, "the first sample replaces the prior ratio of 1");
  assert.is(rangeMs(e.device, 3, 4), 450, "segment 3 was never measured");
  e = observe(e, { kind: "device", from: 0, to: 1, ms: 10 });
  assert.is(e.device.ratio, 2, "EWMA 0.5 of 3 and 1");
  e = observe(e, { kind: "cloud", from: 2, to: 4, ms: 9 });
  assert.is(e.cloud.ratio, 0.5);
  assert.is(e.device.ratio, 2);
  for (const bad of [{ from: 2, to: 2, ms: 5 }, { from: 0, to: 9, ms: 5 }, { from: 0, to: 1, ms: NaN }]) {
    assert.is(observe(e, { kind: "device", ...bad }).device, e.device);
  }
});

test("codec times and bytes: profiled until measured, then EWMA per variant", () => {
  let e = initEstimates(M);
  assert.is(codecMs(e.device, "c2-b4-zstd"), 0.5);
  e = observe(e, { kind: "device", from: 0, to: 1, ms: 20 });
  assert.is(codecMs(e.device, "c2-b4-zstd"), 1, "an unmeasured codec scales with the role");
  e = observe(e, { kind: "encode", variant: "c2-b4-zstd", ms: 3 }, { kind: "encode", variant: "c2-b4-zstd", ms: 5 });
  assert.is(codecMs(e.device, "c2-b4-zstd"), 4);
  assert.is(codecMs(e.device, "c3-b4-zstd"), 1);
  assert.is(codecMs(e.cloud, "nope"), 0);
  e = observe(e, { kind: "bytes", variant: "c2-b4-zstd", bytes: 7000 }, { kind: "bytes", variant: "c2-b4-zstd", bytes: 9000 });
  assert.is(e.bytes["c2-b4-zstd"], 8000);
});

test("observationsOf: one inference record -> the observations, in order", () => {
  const obs = observationsOf({ variant: "c2-b4-zstd", deviceSegments: 2, segments: 4, deviceMs: 80, encodeMs: 1, bytes: 6000, transferSeconds: 0.06, decodeMs: 0.2, cloudMs: 9, rttMs: 50 });
  assert.equal(obs.map((o) => o.kind), ["device", "encode", "bytes", "rtt", "transfer", "decode", "cloud"]);
  const e = observe(initEstimates(M), ...obs);
  assert.is(e.device.ratio, 2);
  assert.is(e.cloud.ratio, 0.5);
  assert.ok(within(e.link.bandwidthBps, (6000 * 8) / 0.01, 1e-9));
  assert.equal(observationsOf({ variant: "x", deviceSegments: 4, segments: 4 }), []);
});

test("pure: updates return new state and leave the old one as it was", () => {
  const e = initEstimates(M);
  const snapshot = JSON.stringify(e);
  observe(e, { kind: "device", from: 0, to: 2, ms: 120 }, { kind: "transfer", bytes: 1e5, seconds: 0.2 }, { kind: "bytes", variant: "a", bytes: 1 }, { kind: "decode", variant: "a", ms: 1 });
  assert.is(JSON.stringify(e), snapshot);
  assert.throws(() => initEstimates(M, { alpha: 0 }), /alpha must be in \(0, 1\]/);
});

test("estimators + scheduler: a bandwidth step re-plans within 3 inferences", () => {
  let e = initEstimates(M, { link: { bandwidthMbps: 100, rttMs: 20 } });
  let choice = chooseVariant(M, e);
  const ids: string[] = [];
  // Run at 100 Mbit/s, then 1 Mbit/s (the choice's own payload is what gets measured).
  for (const mbps of [100, 100, 100, 100, 1, 1, 1, 1]) {
    const bytes = choice.predicted.bytes;
    if (bytes > 0) e = observe(e, { kind: "transfer", ...transfer(bytes, mbps, 20) }, { kind: "rtt", ms: 20 });
    choice = chooseVariant(M, e, {}, choice);
    ids.push(choice.id);
  }
  const best1 = chooseVariant(M, initEstimates(M, { link: { bandwidthMbps: 1, rttMs: 20 } })).id;
  assert.is(ids[3], chooseVariant(M, initEstimates(M, { link: { bandwidthMbps: 100, rttMs: 20 } })).id);
  assert.ok(ids.slice(4 + 2).every((id) => id === best1), `${ids.join(" ")} (best at 1 Mbit/s: ${best1})`);
});


test("observe: an RTT step from a stream's pings (busy) takes one sample more than one at a time", () => {
  const up = (busy: boolean, n: number) => {
    let e = initEstimates(M, { link: { bandwidthMbps: 100, rttMs: 10 } });
    for (let i = 0; i < 4; i++) e = observe(e, { kind: "rtt", ms: 10, busy });
    const changes = e.link.changes;
    for (let i = 0; i < n; i++) e = observe(e, { kind: "rtt", ms: 40, busy });
    return e.link.changes - changes;
  };
  assert.is(up(false, 2), 1, "two samples up: a step");
  assert.is(up(true, 2), 0, "two late pings of a stream: no step yet");
  assert.is(up(true, 3), 1, "three: a step");
});

test("link: a probe after an RTT step that finds the RTT back and only the bandwidth off needs a second probe to make a new epoch", () => {
  const start = () => {
    let s = initLink({ bandwidthMbps: 100, rttMs: 10 });
    s = updateLink(s, { probe: true, rttMs: 10, bytes: 125_000, serialMs: 10 });
    for (let i = 0; i < 3; i++) s = updateLink(s, { rttMs: 10 });
    s = updateLink(updateLink(s, { rttMs: 40 }), { rttMs: 42 });
    assert.is(s.bandwidthStale, "link-change", "two late pings: an RTT step");
    return s;
  };
  // The probe: RTT 10 ms as before, 40 Mbit/s (a loaded machine's slow serialisation). Not yet.
  let s = start();
  const epoch = s.epoch;
  s = updateLink(s, { probe: true, rttMs: 10, bytes: 125_000, serialMs: 25 });
  assert.is(s.bandwidthStale, "link-change", "still stale: one more probe");
  assert.is(s.epoch, epoch);
  // The second finds 100 Mbit/s again: the same link.
  s = updateLink(s, { probe: true, rttMs: 10, bytes: 125_000, serialMs: 10 });
  assert.is(s.bandwidthStale, undefined);
  assert.is(s.epoch, epoch, "the same link: no new epoch");
  // Both probes at 40 Mbit/s: another link.
  s = start();
  s = updateLink(s, { probe: true, rttMs: 10, bytes: 125_000, serialMs: 25 });
  s = updateLink(s, { probe: true, rttMs: 10, bytes: 125_000, serialMs: 24 });
  assert.is(s.bandwidthStale, undefined);
  assert.is(s.epoch, epoch + 1, "confirmed: a new epoch");
  // An RTT that moved is confirmed by the one probe.
  s = start();
  s = updateLink(s, { probe: true, rttMs: 40, bytes: 125_000, serialMs: 10 });
  assert.is(s.epoch, epoch + 1);
});

test("link: a routine probe that finds another bandwidth takes its RTT too: the pings after it make no second link change", () => {
  let s = initLink({ bandwidthMbps: 100, rttMs: 10 });
  s = updateLink(s, { probe: true, rttMs: 10, bytes: 125_000, serialMs: 10 });
  for (let i = 0; i < 3; i++) s = updateLink(s, { rttMs: 10 });
  const epoch = s.epoch;
  // 3G now: the probe takes 500 ms to serialise 125 kB and its ping 100 ms.
  s = updateLink(s, { probe: true, rttMs: 100, bytes: 125_000, serialMs: 500 });
  assert.is(s.epoch, epoch + 1);
  assert.is(s.rttMs, 100);
  for (let i = 0; i < 4; i++) s = updateLink(s, { rttMs: 101 });
  assert.is(s.epoch, epoch + 1, "the RTT the probe found is no second change");
  assert.is(s.bandwidthStale, undefined);
});

test.run();
