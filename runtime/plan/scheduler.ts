// The scheduler: a pure function from (manifest, live estimates, policy, previous choice) to the
// variant to run next, why, and the Pareto front it chose from. No clocks, no I/O: the device
// client calls it after each inference with estimates from ./estimators.ts.
//
// Prediction for a variant at cut c (segments [0, k) on the device, [k, n) in the cloud):
//
//   device = sum(device segment estimates [0, k)) + encode
//   link   = bytes * 8 / bandwidth + RTT                  (serialisation + propagation)
//   cloud  = decode + sum(cloud segment estimates [k, n))
//   latency = device + link + cloud
//   throughput = 1 / max(device, bytes * 8 / bandwidth, cloud)   (a pipeline: RTT overlaps)
//   cloud cost = cloud seconds per inference;  energy = ./energy.ts
//
// Device-only (the output cut) sends nothing and has no cloud part; cloud-only is the input cut.
// Both are always offered: taken from the manifest's variants when it lists them, otherwise
// synthesised from the profiles (ids "device-only" and "cloud-only", float32 input).
//
// A request limit (policy.maxRequestBytes: the server's --max-body less the frame's header) takes
// out every variant whose payload may be larger: the largest the calibration saw (wire.maxBytes)
// or the measured mean, whichever is larger. Device-only sends nothing and is never taken out.
import { codecId, type Cut, type Manifest, type Variant } from "../common/manifest.js";
import type { Estimates } from "./estimators.js";
import { deviceJoules, powerModel, type PowerModel } from "./energy.js";

export type Objective = "latency" | "throughput" | "cloud-cost" | "bytes" | "energy";
export const OBJECTIVES: readonly Objective[] = ["latency", "throughput", "cloud-cost", "bytes", "energy"];

/**
 * dyno: joint cut x bits x codec. device-only / cloud-only: the whole model on one side
 * (cloud-only-u8 sends the input as an 8-bit variant of the input cut; cloud-only-jpeg and
 * cloud-only-webp as an image file, at the lowest quality within the accuracy bound: what a
 * practitioner sends). neurosurgeon: best cut by latency, float32 only. jalad: best cut by
 * latency, 8-bit + entropy coding (lossless != none).
 */
export type PolicyName = "dyno" | "device-only" | "cloud-only" | "cloud-only-u8" | "cloud-only-jpeg" | "cloud-only-webp" | "neurosurgeon" | "jalad";
export const POLICIES: readonly PolicyName[] = ["dyno", "device-only", "cloud-only", "cloud-only-u8", "cloud-only-jpeg", "cloud-only-webp", "neurosurgeon", "jalad"];

export interface Policy {
  name?: PolicyName;
  /** What to minimise (throughput: maximise). Neurosurgeon and JALAD always use latency. */
  objective?: Objective;
  /** Percentage points; on top of the manifest's `admissible` flag. */
  maxAccuracyDrop?: number;
  latencySloMs?: number;
  throughputSloPerS?: number;
  /** Keep the previous variant unless the best is better by this fraction (default 0.1). */
  hysteresis?: number;
  /**
   * Inferences the device keeps in flight when pipelined (its stream depth). Throughput is then
   * also at most depth / latency (Little's law: on a long RTT the window, not a stage, is the
   * limit). Absent: no such cap.
   */
  pipelineDepth?: number;
  /**
   * When no variant meets the SLOs: "objective" (default) takes the best by the objective among
   * the admissible ones; "closest" the one nearest to meeting them.
   */
  bestEffort?: "objective" | "closest";
  power?: Partial<PowerModel>;
  /**
   * Payload bytes one request may carry (the server's --max-body less the frame's header): a
   * variant whose payload may be larger (payloadBound) is not offered. Absent: no limit.
   */
  maxRequestBytes?: number;
}

export type Kind = "device-only" | "cloud-only" | "split";

export interface Prediction {
  /** Variant id, or "device-only" / "cloud-only" when synthesised. */
  id: string;
  kind: Kind;
  /** The manifest's variant; null when synthesised. */
  variant: Variant | null;
  deviceSegments: number;
  /** The variant id's codec part (manifest.ts codecId): "f32-none", "b4-zstd", "b8-shuf-lz4", ... */
  codec: string;
  accuracyDrop: number;
  deviceMs: number;
  /** Serialisation + RTT (0 for device-only). */
  linkMs: number;
  /** Serialisation alone: the link's pipeline stage. */
  airMs: number;
  cloudMs: number;
  latencyMs: number;
  throughputPerS: number;
  cloudSecondsPerInference: number;
  bytes: number;
  deviceJoules: number;
  /** Meets the latency and throughput SLOs. */
  meetsSlo: boolean;
}

export interface Choice {
  variant: Variant | "device-only" | "cloud-only";
  id: string;
  reason: string;
  predicted: Prediction;
  /** Non-dominated predictions over latency, throughput, cloud cost, bytes, energy and accuracy drop. */
  front: Prediction[];
  policy: PolicyName;
  objective: Objective;
  /** False when no variant met the SLOs (best effort). */
  feasible: boolean;
  /** True when hysteresis kept the previous variant. */
  kept: boolean;
}

interface Entry {
  id: string;
  kind: Kind;
  variant: Variant | null;
  deviceSegments: number;
  codec: string;
  accuracyDrop: number;
  admissible: boolean;
  wireBytes: number;
  /** The largest payload the calibration saw. */
  wireMaxBytes: number;
  bits: Variant["codec"]["bits"];
  lossless: Variant["codec"]["lossless"];
}

interface Context {
  segments: number;
  entries: Entry[];
  /** Entry indices each policy may choose from. */
  byPolicy: Map<PolicyName, number[]>;
  /** Profiled codec ms per entry, by the estimates' codecBaseMs table (shared by all its updates). */
  codecBase: WeakMap<object, Float64Array>;
}

const contexts = new WeakMap<Manifest, Context>();


/** Per-manifest facts, computed once (the manifest is immutable once loaded). */
function contextOf(m: Manifest): Context {
  const hit = contexts.get(m);
  if (hit) return hit;
  const n = m.segments.length;
  const cuts = new Map<number, Cut>(m.cuts.map((c) => [c.id, c]));
  const entries: Entry[] = m.variants.map((v) => {
    const cut = cuts.get(v.cut);
    if (!cut) throw new RangeError(`variant ${v.id} refers to cut ${v.cut}, which the manifest does not list`);
    const k = cut.deviceSegments;
    const kind: Kind = cut.kind === "output" || k === n ? "device-only" : cut.kind === "input" || k === 0 ? "cloud-only" : "split";
    return { id: v.id, kind, variant: v, deviceSegments: kind === "device-only" ? n : kind === "cloud-only" ? 0 : k, codec: codecId(v.codec), accuracyDrop: v.accuracy.drop, admissible: v.admissible, wireBytes: v.wire.meanBytes, wireMaxBytes: v.wire.maxBytes, bits: v.codec.bits, lossless: v.codec.lossless };
  });
  const synth = (id: "device-only" | "cloud-only", k: number, bytes: number): Entry => ({ id, kind: id, variant: null, deviceSegments: k, codec: "f32-none", accuracyDrop: 0, admissible: true, wireBytes: bytes, wireMaxBytes: bytes, bits: "f32", lossless: "none" });
  if (!entries.some((e) => e.kind === "device-only")) entries.push(synth("device-only", n, 0));
  if (!entries.some((e) => e.kind === "cloud-only" && e.bits === "f32")) entries.push(synth("cloud-only", 0, m.model.inputs.reduce((s, t) => s + t.bytes, 0)));
  const byPolicy = new Map(POLICIES.map((name) => [name, candidates(name, entries).map((e) => entries.indexOf(e))]));
  const ctx = { segments: n, entries, byPolicy, codecBase: new WeakMap() };
  contexts.set(m, ctx);
  return ctx;
}

function codecBase(ctx: Context, table: Readonly<Record<string, number>>): Float64Array {
  let a = ctx.codecBase.get(table);
  if (!a) {
    a = Float64Array.from(ctx.entries, (e) => table[e.id] ?? 0);
    ctx.codecBase.set(table, a);
  }
  return a;
}

function predict(e: Entry, encodeBase: number, decodeBase: number, n: number, est: Estimates, power: PowerModel, policy: Policy): Prediction {
  const k = e.deviceSegments;
  const dev = est.device;
  const cld = est.cloud;
  const deviceOnly = e.kind === "device-only";
  let encode = 0;
  let decode = 0;
  if (!deviceOnly) {
    encode = dev.codecMs[e.id] ?? encodeBase * dev.ratio;
    decode = cld.codecMs[e.id] ?? decodeBase * cld.ratio;
  }
  const deviceMs = dev.prefixMs[k]! * dev.ratio + encode;
  const cloudMs = (cld.prefixMs[n]! - cld.prefixMs[k]!) * cld.ratio + decode;
  const bytes = deviceOnly ? 0 : est.bytes[e.id] ?? e.wireBytes;
  const airMs = deviceOnly ? 0 : (bytes * 8 * 1000) / est.link.bandwidthBps;
  const linkMs = deviceOnly ? 0 : airMs + est.link.rttMs;
  const latencyMs = deviceMs + linkMs + cloudMs;
  const stage = Math.max(deviceMs, airMs, cloudMs);
  const windowPerS = policy.pipelineDepth !== undefined && latencyMs > 0 ? (policy.pipelineDepth * 1000) / latencyMs : Infinity;
  const throughputPerS = Math.min(stage > 0 ? 1000 / stage : Infinity, windowPerS);
  const meetsSlo = (policy.latencySloMs === undefined || latencyMs <= policy.latencySloMs) && (policy.throughputSloPerS === undefined || throughputPerS >= policy.throughputSloPerS);
  return {
    id: e.id, kind: e.kind, variant: e.variant, deviceSegments: k, codec: e.codec, accuracyDrop: e.accuracyDrop,
    deviceMs, linkMs, airMs, cloudMs, latencyMs, throughputPerS, cloudSecondsPerInference: cloudMs / 1000, bytes,
    deviceJoules: deviceJoules(power, deviceMs, bytes, airMs), meetsSlo,
  };
}

/** Metrics an objective can be read from: a prediction, or what a run measured. */
export interface Metrics {
  latencyMs: number;
  throughputPerS: number;
  cloudSecondsPerInference: number;
  bytes: number;
  deviceJoules: number;
}

/** The objective as a cost, lower is better (throughput: ms per inference of the slowest stage). */
export function objectiveCost(objective: Objective, m: Partial<Metrics>): number {
  const v = objectiveValue(objective, m);
  return objective === "throughput" ? (v > 0 ? 1000 / v : Infinity) : v;
}

/** The objective's own value (throughput in inferences/s; the others as named). NaN when absent. */
export function objectiveValue(objective: Objective, m: Partial<Metrics>): number {
  switch (objective) {
    case "latency": return m.latencyMs ?? NaN;
    case "throughput": return m.throughputPerS ?? NaN;
    case "cloud-cost": return m.cloudSecondsPerInference ?? NaN;
    case "bytes": return m.bytes ?? NaN;
    case "energy": return m.deviceJoules ?? NaN;
  }
}

/** The objective's value of a prediction, in words (with its stages). */
export const UNIT: Record<Objective, (p: Prediction) => string> = {
  "latency": (p) => `${fmt(p.latencyMs)} ms (device ${fmt(p.deviceMs)} + link ${fmt(p.linkMs)} + cloud ${fmt(p.cloudMs)})`,
  "throughput": (p) => `${fmt(p.throughputPerS)}/s (stages: device ${fmt(p.deviceMs)}, link ${fmt(p.airMs)}, cloud ${fmt(p.cloudMs)} ms)`,
  "cloud-cost": (p) => `${fmt(p.cloudMs)} ms of cloud compute per inference`,
  "bytes": (p) => `${fmt(p.bytes)} B per inference`,
  "energy": (p) => `${fmt(p.deviceJoules * 1000)} mJ per inference`,
};

export function pct(fraction: number): string {
  return `${Math.round(fraction * 1000) / 10}%`;
}

export function fmt(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  const a = Math.abs(x);
  return a >= 100 ? x.toFixed(0) : a >= 10 ? x.toFixed(1) : x.toFixed(2);
}

/** Total order: objective cost, then accuracy drop, latency, bytes, id (deterministic ties). */
export function better(objective: Objective, a: Prediction, b: Prediction): boolean {
  const ca = objectiveCost(objective, a);
  const cb = objectiveCost(objective, b);
  if (ca !== cb) return ca < cb;
  if (a.accuracyDrop !== b.accuracyDrop) return a.accuracyDrop < b.accuracyDrop;
  if (a.latencyMs !== b.latencyMs) return a.latencyMs < b.latencyMs;
  if (a.bytes !== b.bytes) return a.bytes < b.bytes;
  return a.id < b.id;
}

/** How far a prediction is from the SLOs: the sum of the relative shortfalls (0 when met). */
function violation(p: Prediction, policy: Policy): number {
  let v = 0;
  if (policy.latencySloMs !== undefined && p.latencyMs > policy.latencySloMs) v += p.latencyMs / policy.latencySloMs - 1;
  if (policy.throughputSloPerS !== undefined && p.throughputPerS < policy.throughputSloPerS) v += policy.throughputSloPerS / Math.max(p.throughputPerS, 1e-12) - 1;
  return v;
}

function sloText(p: Prediction, policy: Policy): string {
  const out: string[] = [];
  if (policy.latencySloMs !== undefined && p.latencyMs > policy.latencySloMs) out.push(`latency ${fmt(p.latencyMs)} ms > SLO ${policy.latencySloMs} ms`);
  if (policy.throughputSloPerS !== undefined && p.throughputPerS < policy.throughputSloPerS) out.push(`throughput ${fmt(p.throughputPerS)}/s < SLO ${policy.throughputSloPerS}/s`);
  return out.join(", ");
}

/** The policy's candidate entries, before the accuracy constraint. */
function candidates(name: PolicyName, entries: readonly Entry[]): Entry[] {
  switch (name) {
    case "dyno": return entries.slice();
    case "device-only": return entries.filter((e) => e.kind === "device-only");
    case "cloud-only": return entries.filter((e) => e.kind === "cloud-only" && e.bits === "f32" && e.lossless === "none");
    case "cloud-only-u8": return entries.filter((e) => e.kind === "cloud-only" && e.bits === 8);
    case "cloud-only-jpeg": return entries.filter((e) => e.kind === "cloud-only" && e.bits === "jpeg");
    case "cloud-only-webp": return entries.filter((e) => e.kind === "cloud-only" && e.bits === "webp");
    case "neurosurgeon": return entries.filter((e) => e.kind === "device-only" || (e.bits === "f32" && e.lossless === "none"));
    case "jalad": return entries.filter((e) => e.kind === "device-only" || (e.bits === 8 && e.lossless !== "none"));
  }
}

/** The payload bytes a request for this entry may carry: the calibration's largest or the measured mean. */
function entryBound(e: Entry, est: Estimates): number {
  return e.kind === "device-only" ? 0 : Math.max(e.wireMaxBytes, est.bytes[e.id] ?? 0);
}

function overLimit(e: Entry, est: Estimates, policy: Policy): boolean {
  return policy.maxRequestBytes !== undefined && entryBound(e, est) > policy.maxRequestBytes;
}

/** The payload bytes a request for variant `id` may carry, as a request limit is checked against. */
export function payloadBound(manifest: Manifest, estimates: Estimates, id: string): number {
  const e = contextOf(manifest).entries.find((x) => x.id === id);
  if (!e) throw new SchedulerError(`unknown variant "${id}"`);
  return entryBound(e, estimates);
}

/** Predictions for every variant the policy may choose (accuracy-admissible, under the request limit), in manifest order. */
export function predictAll(manifest: Manifest, estimates: Estimates, policy: Policy = {}): Prediction[] {
  const ctx = contextOf(manifest);
  const power = powerModel(policy.power);
  const maxDrop = policy.maxAccuracyDrop ?? Infinity;
  const name = policy.name ?? "dyno";
  const indices = ctx.byPolicy.get(name);
  if (!indices) throw new SchedulerError(`unknown scheduler policy "${name}" (known: ${POLICIES.join(", ")})`);
  const enc = codecBase(ctx, estimates.device.codecBaseMs);
  const dec = codecBase(ctx, estimates.cloud.codecBaseMs);
  const out: Prediction[] = [];
  for (const i of indices) {
    const e = ctx.entries[i]!;
    if (!e.admissible || e.accuracyDrop > maxDrop || overLimit(e, estimates, policy)) continue;
    out.push(predict(e, enc[i]!, dec[i]!, ctx.segments, estimates, power, policy));
  }
  return out;
}

/**
 * The prediction of one variant, when the policy may choose it (admissible, within the accuracy
 * bound and the request limit); null otherwise. What predictAll gives for it, at the cost of one.
 */
export function predictOne(manifest: Manifest, estimates: Estimates, id: string, policy: Policy = {}): Prediction | null {
  const ctx = contextOf(manifest);
  const name = policy.name ?? "dyno";
  const i = ctx.entries.findIndex((e) => e.id === id);
  if (i < 0 || !ctx.byPolicy.get(name)?.includes(i)) return null;
  const e = ctx.entries[i]!;
  if (!e.admissible || e.accuracyDrop > (policy.maxAccuracyDrop ?? Infinity) || overLimit(e, estimates, policy)) return null;
  return predict(e, codecBase(ctx, estimates.device.codecBaseMs)[i]!, codecBase(ctx, estimates.cloud.codecBaseMs)[i]!, ctx.segments, estimates, powerModel(policy.power), policy);
}

/** The front's coordinates of a prediction, all lower-is-better (throughput as its slowest stage). */
function coords(p: Prediction): number[] {
  return [p.latencyMs, Math.max(p.deviceMs, p.airMs, p.cloudMs), p.cloudMs, p.bytes, p.deviceJoules, p.accuracyDrop];
}

/** a dominates b: no worse in every coordinate and better in one. */
function dominates(a: readonly number[], b: readonly number[]): boolean {
  let strict = false;
  for (let i = 0; i < a.length; i++) {
    if (a[i]! > b[i]!) return false;
    if (a[i]! < b[i]!) strict = true;
  }
  return strict;
}

/**
 * The non-dominated predictions, sorted by the objective (same total order as the choice).
 * Points are visited in lexicographic order of their coordinates, so a point can only be
 * dominated by one visited before it, and (dominance being transitive) by one already on the
 * front: O(n x front) instead of O(n^2).
 */
export function paretoFront(preds: readonly Prediction[], objective: Objective = "latency"): Prediction[] {
  const pts = preds.map((p) => ({ p, c: coords(p) }));
  pts.sort((x, y) => {
    for (let i = 0; i < x.c.length; i++) if (x.c[i] !== y.c[i]) return x.c[i]! - y.c[i]!;
    return 0;
  });
  const front: typeof pts = [];
  for (const q of pts) if (!front.some((f) => dominates(f.c, q.c))) front.push(q);
  return front.map((f) => f.p).sort((a, b) => (better(objective, a, b) ? -1 : better(objective, b, a) ? 1 : 0));
}

function previousId(previous: string | Choice | Variant | null | undefined): string | undefined {
  if (previous === undefined || previous === null) return undefined;
  return typeof previous === "string" ? previous : previous.id;
}

export class SchedulerError extends RangeError {
  override name = "SchedulerError";
}

/**
 * Chooses the variant to run next. `previous` (its id, the previous Choice or Variant) enables
 * hysteresis: it is kept unless the best is better by `policy.hysteresis` (default 10%) in the
 * objective, or it no longer meets a constraint the best meets.
 */
export function chooseVariant(manifest: Manifest, estimates: Estimates, policy: Policy = {}, previous?: string | Choice | Variant | null): Choice {
  const name = policy.name ?? "dyno";
  if (!POLICIES.includes(name)) throw new SchedulerError(`unknown scheduler policy "${name}" (known: ${POLICIES.join(", ")})`);
  const fixedLatency = name === "neurosurgeon" || name === "jalad";
  // An image baseline sends the smallest file within the accuracy bound, whatever the objective.
  const image = name === "cloud-only-jpeg" || name === "cloud-only-webp";
  const objective: Objective = fixedLatency ? "latency" : image ? "bytes" : policy.objective ?? "latency";
  if (!OBJECTIVES.includes(objective)) throw new SchedulerError(`unknown objective "${objective}" (known: ${OBJECTIVES.join(", ")})`);
  const margin = policy.hysteresis ?? 0.1;
  if (!(margin >= 0 && margin < 1)) throw new SchedulerError(`hysteresis must be in [0, 1), got ${margin}`);

  let preds = predictAll(manifest, estimates, policy);
  let fallback = "";
  if (preds.length === 0) {
    // Nothing the policy may run is admissible (e.g. no 8-bit entropy-coded variant for JALAD):
    // fall back to the always-exact device-only, and say so.
    const limited = policy.maxRequestBytes !== undefined && predictAll(manifest, estimates, { ...policy, maxRequestBytes: undefined }).length > 0;
    preds = predictAll(manifest, estimates, { ...policy, name: "device-only", maxAccuracyDrop: undefined });
    fallback = limited
      ? `every admissible variant of policy ${name} is over the server's request limit of ${policy.maxRequestBytes} bytes; fell back to device-only. `
      : `no admissible variant for policy ${name}${policy.maxAccuracyDrop !== undefined ? ` within ${policy.maxAccuracyDrop} pp` : ""}; fell back to device-only. `;
  }
  const feasible = preds.filter((p) => p.meetsSlo);
  const pool = feasible.length > 0 ? feasible : preds;
  const closest = feasible.length === 0 && policy.bestEffort === "closest";
  const rank = (a: Prediction, b: Prediction): boolean => {
    if (closest) {
      const va = violation(a, policy);
      const vb = violation(b, policy);
      if (va !== vb) return va < vb;
    }
    return better(objective, a, b);
  };
  let best = pool[0]!;
  for (const p of pool) if (rank(p, best)) best = p;

  const label = `${name}/${objective}`;
  const what = (p: Prediction) => `${p.id} predicts ${UNIT[objective](p)}`;
  let chosen = best;
  let kept = false;
  let reason: string;
  const prevId = previousId(previous);
  const prev = prevId === undefined ? undefined : pool.find((p) => p.id === prevId);
  if (prev && prev !== best) {
    const cPrev = objectiveCost(objective, prev);
    const cBest = objectiveCost(objective, best);
    const gain = cPrev > 0 && Number.isFinite(cPrev) ? 1 - cBest / cPrev : cBest < cPrev ? 1 : 0;
    if (!closest && gain < margin) {
      chosen = prev;
      kept = true;
      reason = `${label}: kept ${what(prev)}; best ${best.id} is only ${pct(gain)} better (hysteresis ${pct(margin)})`;
    } else {
      reason = `${label}: switched from ${prev.id} to ${what(best)}, ${pct(gain)} better (hysteresis ${pct(margin)})`;
    }
  } else if (prevId !== undefined && !prev && prevId !== best.id) {
    const old = preds.find((p) => p.id === prevId);
    const entry = contextOf(manifest).entries.find((e) => e.id === prevId);
    const why = old ? `violates the SLOs: ${sloText(old, policy)}`
      : entry && overLimit(entry, estimates, policy) ? `over the server's request limit of ${policy.maxRequestBytes} bytes`
      : "not offered by this policy or not admissible";
    reason = `${label}: switched from ${prevId} (${why}) to ${what(best)}`;
  } else {
    const slos = policy.latencySloMs !== undefined || policy.throughputSloPerS !== undefined;
    reason = `${label}: ${what(best)}, the best of ${pool.length} admissible variants${slos && feasible.length > 0 ? " meeting the SLOs" : ""}`;
  }
  if (feasible.length === 0 && (policy.latencySloMs !== undefined || policy.throughputSloPerS !== undefined)) {
    reason = `no variant meets the SLOs; best effort by ${closest ? "distance to the SLOs" : objective} (${sloText(chosen, policy)}). ${reason}`;
  }
  return {
    variant: chosen.variant ?? (chosen.kind === "device-only" ? "device-only" : "cloud-only"),
    id: chosen.id,
    reason: fallback + reason,
    predicted: chosen,
    front: paretoFront(preds, objective),
    policy: name,
    objective,
    feasible: feasible.length > 0,
    kept,
  };
}

/**
 * A choice made by the caller, not the scheduler: variant `id` (any variant of the manifest, or
 * "device-only" / "cloud-only"), with its prediction from the same estimates. For measuring one
 * variant end to end (the oracle's runs, `dyno run --variant`).
 */
export function pinVariant(manifest: Manifest, estimates: Estimates, id: string, policy: Policy = {}): Choice {
  const ctx = contextOf(manifest);
  const i = ctx.entries.findIndex((e) => e.id === id);
  if (i < 0) throw new SchedulerError(`unknown variant "${id}" (the bundle has ${manifest.variants.length} variants: ${manifest.variants.slice(0, 6).map((v) => v.id).join(", ")}${manifest.variants.length > 6 ? ", ..." : ""})`);
  const e = ctx.entries[i]!;
  const p = predict(e, codecBase(ctx, estimates.device.codecBaseMs)[i]!, codecBase(ctx, estimates.cloud.codecBaseMs)[i]!, ctx.segments, estimates, powerModel(policy.power), policy);
  const objective = policy.objective ?? "latency";
  return {
    variant: e.variant ?? (e.kind === "device-only" ? "device-only" : "cloud-only"),
    id: e.id,
    reason: `pinned: ${e.id} predicts ${UNIT[objective](p)}${e.admissible ? "" : " (not admissible: outside the accuracy profile)"}`,
    predicted: p,
    front: [],
    policy: policy.name ?? "dyno",
    objective,
    feasible: p.meetsSlo,
    kept: false,
  };
}

export interface OracleResult {
  id: string;
  /** The objective's value (inferences/s for throughput). */
  value: number;
  cost: number;
}

/**
 * The best variant by *measured* metrics (an exhaustive measured run), under the policy's SLOs
 * and accuracy bound when the metrics carry them; the scheduler is judged against it.
 */
export function oracle(measured: Readonly<Record<string, Partial<Metrics> & { accuracyDrop?: number }>>, policy: Policy = {}): OracleResult | null {
  const objective = policy.objective ?? "latency";
  const rows = Object.entries(measured)
    .filter(([, m]) => policy.maxAccuracyDrop === undefined || m.accuracyDrop === undefined || m.accuracyDrop <= policy.maxAccuracyDrop)
    .map(([id, m]) => ({ id, m, cost: objectiveCost(objective, m) }))
    .filter((r) => !Number.isNaN(r.cost));
  const meets = (m: Partial<Metrics>) =>
    (policy.latencySloMs === undefined || m.latencyMs === undefined || m.latencyMs <= policy.latencySloMs) &&
    (policy.throughputSloPerS === undefined || m.throughputPerS === undefined || m.throughputPerS >= policy.throughputSloPerS);
  const ok = rows.filter((r) => meets(r.m));
  const pool = ok.length > 0 ? ok : rows;
  let best: (typeof pool)[number] | undefined;
  for (const r of pool) if (!best || r.cost < best.cost || (r.cost === best.cost && r.id < best.id)) best = r;
  return best ? { id: best.id, value: objectiveValue(objective, best.m), cost: best.cost } : null;
}

/** How much worse `cost` is than the oracle's, as a fraction (0.05 = 5% worse; 0 when as good or better). */
export function gapToOracle(cost: number, oracleCost: number): number {
  if (cost <= oracleCost) return 0;
  return oracleCost > 0 ? cost / oracleCost - 1 : Infinity;
}
