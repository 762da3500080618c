// What each variant really did, against what the model predicted for it. Pure: state in, state
// out, no clocks (time is the count of inferences the tracker has seen).
//
// The scheduler's model (./scheduler.ts) predicts every variant from shared estimates, but only
// the running variant is measured. Compared raw, the running variant carries the measured noise
// and the others the profile's smoothness: a noisy stage makes the running one look worse than
// its neighbours (the slowest of noisy stages is biased up), the scheduler switches, the new one
// gets noisy in turn, and the device flips between the two for ever. So every variant is judged
// the same way: the model's prediction, corrected by the errors measured for that variant, with
// an uncertainty that says how much the correction can be trusted.
//
//   error of a sample   e = ln((measured + ε) / (predicted + ε))
//                       (ε: 1 ms for a stage, whose sub-millisecond share is noise: a stage
//                       predicted at 0 ms that took 0.2 ms is no 5x error to pool into others;
//                       0.05 ms end to end)
//   per variant, per metric: an exponentially weighted mean and variance of e (the last CAP
//   samples count), its effective count n (halved every HALF_LIFE inferences it does not run)
//
//   metric     measured                              predicted
//   device     device compute + encode               model device ms
//   link       transfer (send to reply - server)     model bytes * 8 / bandwidth + RTT
//   cloud      server's decode + segments            model cloud ms
//   latency    the inference, end to end             device' + link' + cloud' (corrected stages)
//   interval   time between dispatches in a stream   max(device', air, cloud', latency'/depth)
//
// The stages are corrected by their errors: a posterior (normal-normal shrinkage) in which the
// variant's own n samples of noise s² pull the mean away from the prior, the prior being the
// pooled error of the other variants measured so far, with spread TAU (at least TAU_MIN):
//
//   mean = (n/s² · ē + 1/τ² · pool) / (n/s² + 1/τ²)        sd = 1 / sqrt(n/s² + 1/τ²)
//
// An unmeasured variant gets the pool and sd τ; a much-measured one its own mean, sd ~ s/√n.
// The end-to-end metrics (latency, interval) are judged on the variant's own measurements, ln ms,
// with the corrected stage prediction (and the pooled error) as the prior: a variant measured at
// 700/s stays at 700/s when an estimate (the bandwidth, say) moves under it; only unmeasured
// variants move with the model.
// The decision rule (./planner.ts) switches only when the corrected gain exceeds z sd of the
// difference. A link change (the estimators' link.changes) forgets the link, latency and interval
// errors of every variant that sends: they were measured on another link, where another stage
// may have bound it.
import { deviceJoules, powerModel, type PowerModel } from "./energy.js";
import type { Objective, Policy, Prediction } from "./scheduler.js";

export type Metric = "device" | "link" | "cloud" | "latency" | "interval";
export const METRICS: readonly Metric[] = ["device", "link", "cloud", "latency", "interval"];
/** The metrics a variant is judged by end to end: its own measurements, not its errors, decide. */
export type EndToEnd = "latency" | "interval";

/** Additive floor of the log ratio (ms) of the end-to-end metrics. */
export const EPS = 0.05;
/** ... and of a stage's: below a millisecond a stage's error is noise, and would pollute the pool. */
export const EPS_STAGE = 1;
/** Samples a record averages over (its memory); an interval sample is a block of a window's dispatches, so fewer. */
export const CAP = 64;
export const CAP_INTERVAL = 16;
/** Inferences after which a record not refreshed counts half as many samples. */
export const HALF_LIFE = 4000;
/**
 * Smallest prior spread between variants' errors (ln units: about 35%): how far the model, even
 * corrected by what other variants measured, may be off for a variant not measured yet. Measured
 * here, the model's throughput for the input variants of the default fixture on Wi-Fi was off by
 * -10% to +60% from one variant to the next; a tighter prior would let two samples of a trial
 * barely move a variant off its prediction.
 */
export const TAU_MIN = 0.3;
/** Per-sample noise assumed before a record has shown its own (ln units), and its weight in samples. */
export const NOISE_PRIOR = 0.25;
const NOISE_PRIOR_WEIGHT = 2;

export interface ErrorStats {
  /** Effective sample count (at most CAP). */
  n: number;
  mean: number;
  variance: number;
  /** The tracker's inference count at the last sample. */
  at: number;
}

export interface VariantRecord {
  /** Sends anything (not device-only): its link, cloud, latency and interval depend on the link. */
  sends: boolean;
  /** Errors against the prediction at the time (pooled into the prior of other variants). */
  stats: Partial<Record<Metric, ErrorStats>>;
  /** The end-to-end measurements themselves, ln(ms + EPS): a variant's own record of them. */
  measured: Partial<Record<EndToEnd, ErrorStats>>;
  /** Inferences of this variant recorded. */
  runs: number;
}

export interface Tracker {
  records: Readonly<Record<string, VariantRecord>>;
  /** Inferences recorded (the tracker's clock). */
  inferences: number;
  /** The link epoch the link errors belong to (estimates.link.epoch). */
  epoch: number;
}

export function initTracker(epoch = 0): Tracker {
  return { records: {}, inferences: 0, epoch };
}

/** A sample further than this (ln units: 2.7x) from a record's mean counts as this far: one outlier (a GC pause, a descheduled run) cannot set a record, a real shift is tracked in a few samples. */
export const CLIP = 1;

function update(s: ErrorStats | undefined, x: number, at: number, cap = CAP): ErrorStats {
  const n = Math.min((s?.n ?? 0) + 1, cap);
  if (!s || s.n === 0) return { n: 1, mean: x, variance: 0, at };
  const w = 1 / n;
  const d = Math.max(-CLIP, Math.min(CLIP, x - s.mean));
  return { n, mean: s.mean + w * d, variance: (1 - w) * (s.variance + w * d * d), at };
}

/** ln((measured + eps) / (predicted + eps)); NaN when either is missing or not finite. */
export function logError(measured: number | undefined, predicted: number | undefined, eps = EPS): number {
  if (measured === undefined || predicted === undefined || !(measured >= 0) || !(predicted >= 0) || !Number.isFinite(measured) || !Number.isFinite(predicted)) return NaN;
  return Math.log((measured + eps) / (predicted + eps));
}

/** What one inference measured, next to what was predicted for it (the model's raw prediction). */
export interface RunSample {
  id: string;
  sends: boolean;
  predicted: Pick<Prediction, "deviceMs" | "linkMs" | "cloudMs">;
  /** The stage-corrected latency predicted for it (correct(...).latencyMs). */
  predictedLatencyMs?: number;
  deviceMs?: number;
  linkMs?: number;
  cloudMs?: number;
  latencyMs?: number;
}

function withRecord(t: Tracker, id: string, sends: boolean, f: (r: VariantRecord) => VariantRecord): Tracker {
  const r = t.records[id] ?? { sends, stats: {}, measured: {}, runs: 0 };
  return { ...t, records: { ...t.records, [id]: f(r) } };
}

/** Folds in one inference's stage times and latency (whatever of them it measured). */
export function recordRun(t: Tracker, s: RunSample): Tracker {
  const now = t.inferences + 1;
  const next = withRecord(t, s.id, s.sends, (r) => {
    const stats = { ...r.stats };
    const add = (m: Metric, e: number) => {
      if (!Number.isNaN(e)) stats[m] = update(stats[m], e, now);
    };
    add("device", logError(s.deviceMs, s.predicted.deviceMs, EPS_STAGE));
    if (s.sends) {
      add("link", logError(s.linkMs, s.predicted.linkMs, EPS_STAGE));
      add("cloud", logError(s.cloudMs, s.predicted.cloudMs, EPS_STAGE));
    }
    add("latency", logError(s.latencyMs, s.predictedLatencyMs));
    const measured = s.latencyMs !== undefined && s.latencyMs >= 0 && Number.isFinite(s.latencyMs) ? { ...r.measured, latency: update(r.measured.latency, Math.log(s.latencyMs + EPS), now) } : r.measured;
    return { ...r, stats, measured, runs: r.runs + 1 };
  });
  return { ...next, inferences: now };
}

/**
 * A stream's steady-state time per dispatch (ms): the mean of a block of consecutive dispatch
 * intervals spanning the window (a window-limited stream dispatches in bursts, one window per
 * round trip, so single intervals, or their geometric mean, say nothing of its rate), against
 * the corrected prediction's.
 */
export function recordInterval(t: Tracker, id: string, sends: boolean, measuredMs: number, predictedMs: number): Tracker {
  const e = logError(measuredMs, predictedMs);
  if (Number.isNaN(e)) return t;
  return withRecord(t, id, sends, (r) => ({
    ...r,
    stats: { ...r.stats, interval: update(r.stats.interval, e, t.inferences, CAP_INTERVAL) },
    measured: { ...r.measured, interval: update(r.measured.interval, Math.log(measuredMs + EPS), t.inferences, CAP_INTERVAL) },
  }));
}

/**
 * The tracker's clock at variant `id`'s last sample of its own measure of `objective` (-1: none):
 * the interval for throughput, the latency, the cloud stage for cloud cost, else the device stage.
 */
export function lastSampleAt(t: Tracker, id: string, objective: Objective): number {
  const r = t.records[id];
  const m = objective === "throughput" ? r?.measured.interval : objective === "latency" ? r?.measured.latency : r?.stats[objective === "cloud-cost" ? "cloud" : "device"];
  return m?.at ?? -1;
}

/** Forgets what variant `id` measured end to end (a record too old to stand for it now); its errors stay. */
export function forgetMeasured(t: Tracker, id: string): Tracker {
  const r = t.records[id];
  return r ? { ...t, records: { ...t.records, [id]: { ...r, measured: {} } } } : t;
}

/** The link changed (epoch = estimates.link.epoch): what the variants that send measured was on another link. */
export function linkChanged(t: Tracker, epoch: number): Tracker {
  if (epoch === t.epoch) return t;
  const records: Record<string, VariantRecord> = {};
  for (const [id, r] of Object.entries(t.records)) {
    if (!r.sends) {
      records[id] = r;
      continue;
    }
    // What binds a sending variant (its link, its cloud, the window) may be another stage now, so
    // its latency and interval errors say nothing of the new link; its device and cloud errors stay.
    const { link: _l, latency: _t, interval: _i, ...stats } = r.stats;
    records[id] = { ...r, stats, measured: {} };
  }
  return { ...t, records, epoch };
}

/** A record's effective count now: halved for every HALF_LIFE inferences since its last sample. */
function effective(s: ErrorStats, now: number): number {
  return s.n * Math.pow(0.5, Math.max(0, now - s.at) / HALF_LIFE);
}

export interface Posterior {
  /** Corrected ln error: add to ln(prediction + EPS). */
  mean: number;
  /** Its standard deviation (ln units). */
  sd: number;
  /** Effective samples of this variant behind it (0: the pool alone). */
  n: number;
}

/** Sums over the measured variants of one metric and kind: n, n·mean, n·mean², n·variance. */
interface PoolSums {
  w: number;
  x: number;
  xx: number;
  v: number;
}

/**
 * Per tracker (immutable, so cached by identity), per metric and kind: the pool sums, and the
 * pool of them all once asked for.
 */
const pooled = new WeakMap<Tracker, Map<string, { sums: PoolSums; all?: Pool }>>();

function poolEntry(t: Tracker, m: Metric, sends: boolean): { sums: PoolSums; all?: Pool } {
  let byKey = pooled.get(t);
  if (!byKey) pooled.set(t, (byKey = new Map()));
  const key = `${m}/${m === "device" ? "all" : sends}`;
  let e = byKey.get(key);
  if (!e) {
    const p = { w: 0, x: 0, xx: 0, v: 0 };
    for (const r of Object.values(t.records)) {
      if (m !== "device" && r.sends !== sends) continue;
      const s = r.stats[m];
      if (!s || s.n === 0) continue;
      const n = effective(s, t.inferences);
      p.w += n;
      p.x += n * s.mean;
      p.xx += n * s.mean * s.mean;
      p.v += n * s.variance;
    }
    byKey.set(key, (e = { sums: p }));
  }
  return e;
}

/**
 * The pooled prior of a metric: the n-weighted mean of the other measured variants (of the same
 * kind: those that send, or device-only), their spread (at least TAU_MIN), and their noise.
 * The sums are computed once per tracker and metric; the variant itself is taken out of them.
 */
function pool(t: Tracker, m: Metric, sends: boolean, except: string): Pool {
  const own = t.records[except];
  const s = own && (m === "device" || own.sends === sends) ? own.stats[m] : undefined;
  if (!s || s.n === 0) return poolOf(t, m, sends);
  const all = poolEntry(t, m, sends).sums;
  const n = effective(s, t.inferences);
  return poolFrom(all.w - n, all.x - n * s.mean, all.xx - n * s.mean * s.mean, all.v - n * s.variance);
}

interface Pool {
  mean: number;
  tau: number;
  noise: number;
}

const NO_POOL: Pool = Object.freeze({ mean: 0, tau: TAU_MIN, noise: NOISE_PRIOR * NOISE_PRIOR });

function poolFrom(w: number, x: number, xx: number, v: number): Pool {
  if (!(w > 1e-9)) return NO_POOL;
  const mean = x / w;
  const tau = Math.max(TAU_MIN, Math.sqrt(Math.max(0, xx / w - mean * mean)));
  return { mean, tau, noise: (Math.max(0, v) + NOISE_PRIOR_WEIGHT * NOISE_PRIOR * NOISE_PRIOR) / (w + NOISE_PRIOR_WEIGHT) };
}

/** The pool of every measured variant of a kind (for a variant with no record of the metric), cached per tracker. */
function poolOf(t: Tracker, m: Metric, sends: boolean): Pool {
  const e = poolEntry(t, m, sends);
  return (e.all ??= poolFrom(e.sums.w, e.sums.x, e.sums.xx, e.sums.v));
}

/** Normal-normal: a prior (mean, sd) and a record of n samples (its noise steadied by `noise`, the pool's). */
function combine(prior: { mean: number; sd: number }, s: ErrorStats | undefined, n: number, noise: number): Posterior {
  if (!s || n === 0) return { mean: prior.mean, sd: prior.sd, n: 0 };
  // Its own noise, steadied by the pool's until it has shown some.
  const own = n / Math.max((s.n * s.variance + NOISE_PRIOR_WEIGHT * noise) / (s.n + NOISE_PRIOR_WEIGHT), 1e-6);
  const pri = 1 / (prior.sd * prior.sd);
  return { mean: (own * s.mean + pri * prior.mean) / (own + pri), sd: 1 / Math.sqrt(own + pri), n };
}

/** The posterior ln error of variant `id` for metric `m` (sends: whether the variant sends anything). */
export function posterior(t: Tracker, id: string, sends: boolean, m: Metric): Posterior {
  const prior = pool(t, m, sends, id);
  const s = t.records[id]?.stats[m];
  if (!s) return { mean: prior.mean, sd: prior.tau, n: 0 };
  return combine({ mean: prior.mean, sd: prior.tau }, s, effective(s, t.inferences), prior.noise);
}

/**
 * The posterior ln(ms + EPS) of an end-to-end metric of variant `id`: the model's `predictedMs`
 * corrected by the other variants' pooled error is the prior; the variant's own measurements are
 * the evidence. Its own numbers, not its errors against predictions that have moved since, so a
 * variant measured at 700/s stays at 700/s when the bandwidth estimate moves under it.
 */
export function endToEnd(t: Tracker, id: string, sends: boolean, m: EndToEnd, predictedMs: number): Posterior {
  const prior = pool(t, m, sends, id);
  const s = t.records[id]?.measured[m];
  return combine({ mean: Math.log(predictedMs + EPS) + prior.mean, sd: prior.tau }, s, s ? effective(s, t.inferences) : 0, prior.noise);
}

const apply = (ms: number, p: Posterior, eps = EPS_STAGE) => Math.max(0, (ms + eps) * Math.exp(p.mean) - eps);
const msOf = (p: Posterior) => Math.max(0, Math.exp(p.mean) - EPS);

/** A prediction with the tracker's corrections, and how sure they are. */
export interface Corrected extends Prediction {
  /** The model's own prediction, before corrections. */
  model: Prediction;
  /** Latency and slowest stage from the corrected stages, before the latency and interval errors (what those are measured against). */
  stageLatencyMs: number;
  stageIntervalMs: number;
  /** sd (ln units) of the objective's cost. */
  sd: number;
  /** Effective samples of this variant behind the objective's correction (0: unmeasured). */
  samples: number;
}

/**
 * Corrects a prediction with what the tracker knows of its variant: each stage by that stage's
 * error, the latency by the latency error left after them, the slowest stage (throughput) by the
 * interval error; the SLOs are checked again on the corrected numbers. `policy.pipelineDepth`:
 * the stream's in-flight window (Little's law term), if any.
 */
export function correct(t: Tracker, p: Prediction, policy: Policy = {}, power: PowerModel = powerModel(policy.power)): Corrected {
  const sends = p.kind !== "device-only";
  const device = apply(p.deviceMs, posterior(t, p.id, sends, "device"));
  const link = sends ? apply(p.linkMs, posterior(t, p.id, sends, "link")) : 0;
  const cloudPost = sends ? posterior(t, p.id, sends, "cloud") : null;
  const cloud = cloudPost ? apply(p.cloudMs, cloudPost) : 0;
  const stageLatencyMs = device + link + cloud;
  const lat = endToEnd(t, p.id, sends, "latency", stageLatencyMs);
  const latencyMs = msOf(lat);
  const depth = policy.pipelineDepth;
  const window = depth !== undefined && latencyMs > 0 ? latencyMs / depth : 0;
  const stageIntervalMs = Math.max(device, p.airMs, cloud, window);
  const iv = endToEnd(t, p.id, sends, "interval", stageIntervalMs);
  const intervalMs = msOf(iv);
  const throughputPerS = intervalMs > 0 ? 1000 / intervalMs : Infinity;
  const meetsSlo = (policy.latencySloMs === undefined || latencyMs <= policy.latencySloMs) && (policy.throughputSloPerS === undefined || throughputPerS >= policy.throughputSloPerS);
  const objective = policy.objective ?? "latency";
  const own = objective === "latency" ? lat
    : objective === "throughput" ? iv
    : objective === "cloud-cost" ? cloudPost ?? { sd: 0, n: 0 }
    : objective === "energy" ? posterior(t, p.id, sends, "device")
    : { sd: 0.02, n: t.records[p.id] ? 1 : 0 };
  // Every field written out: a spread of `p` and more fields builds a new object shape on V8's
  // slow path, 2 µs a variant, which at a thousand plans a second was a fifth of a core.
  return {
    id: p.id, kind: p.kind, variant: p.variant, deviceSegments: p.deviceSegments, codec: p.codec, accuracyDrop: p.accuracyDrop,
    deviceMs: device, linkMs: link, airMs: p.airMs, cloudMs: cloud, latencyMs, throughputPerS,
    cloudSecondsPerInference: cloud / 1000, bytes: p.bytes,
    deviceJoules: deviceJoules(power, device, p.bytes, p.airMs),
    meetsSlo,
    model: p,
    stageLatencyMs,
    stageIntervalMs,
    sd: own.sd,
    samples: own.n,
  };
}

/** Inferences this tracker recorded per variant, for summaries. */
export function runsOf(t: Tracker): Record<string, number> {
  return Object.fromEntries(Object.entries(t.records).map(([id, r]) => [id, r.runs]));
}
