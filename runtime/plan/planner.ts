// The device's re-planning, as a pure function: (manifest, estimates, what each variant measured,
// the planner's state) -> the variant to run next, why, and the next state. The device calls it
// before every inference and feeds back what the inference measured (./tracker.ts).
//
// For dyno (the fixed policies are ./scheduler.ts chooseVariant, unchanged) every admissible
// variant's prediction is corrected by its measured errors (tracker.correct: the running variant
// and the others are judged alike), and:
//
//   1. the link's bandwidth is stale (no sample yet, the RTT just stepped, or nothing timed it for a
//      while): device-only, the one variant whose prediction does not rest on the bandwidth, until
//      a probe has measured it (device-only also leaves the link quiet for the probe);
//   2. a trial is running: it runs to its end (trialLength inferences); then the variant before it
//      is the incumbent, and the trial's variant stays only when it measured better beyond
//      zTrialEnd sd (two close variants are not swapped on a trial's noise; one that measured
//      better but within the noise is measured as long again, once); a trial whose own
//      first measurement is worse than the incumbent beyond zEarlyEnd sd ends there;
//   3. else the best corrected variant b against the current one c:
//        gain  = ln(cost_c / cost_b)                       (cost: the objective, lower is better)
//        noise = z * sqrt(sd_c² + sd_b²) + minGain
//      - b measured (at least minSamples effective samples of the objective): switch when
//        gain > noise, else keep c ("within the noise"); when b's own last sample is more than
//        four trials' length old, a trial that measures it again from scratch instead, or keep
//        c while the budget is spent (c's numbers are from now, b's from when the machine may
//        have been faster);
//      - else a *trial*, a deliberate and counted act: of a variant not measured on this link,
//        when either its corrected prediction or the model's own beats c by trialGain (the two
//        disagree when other variants' errors were pooled into it: the model may be right about
//        this one; not for one tried on this link already, whose aged record is in the corrected
//        prediction). The most promising first, by its larger gain; the fixed policies the device
//        could have run instead (device-only, and the float32 input: cloud-only) get trialGain
//        more, so that dyno does not stay below one of them for want of a measurement when its
//        own choice measures below what the model says of them. At most trialsPerEpoch trials per
//        link epoch (each one twice a switch), and one more per trialRefill plans after them.
//
// So a variant does not look better for one inference because noise moved one estimate, a
// mispredicted variant is not retried at once (its own errors now correct it), and exploring
// costs at most the budget.
import type { Manifest } from "../common/manifest.js";
import type { Estimates } from "./estimators.js";
import { better, chooseVariant, fmt, objectiveCost, paretoFront, pct, predictAll, predictOne, type Choice, type Objective, type Policy, type Prediction } from "./scheduler.js";
import { powerModel } from "./energy.js";
import { correct, forgetMeasured, initTracker, lastSampleAt, linkChanged, type Corrected, type Tracker } from "./tracker.js";

export interface PlannerOptions {
  /** Standard deviations the gain must exceed (one-sided; 2: about 98%). */
  z: number;
  /** Gain (ln units) below which no switch is worth it, however sure. */
  minGain: number;
  /** An unmeasured variant predicted this much better (ln units) is worth a trial. */
  trialGain: number;
  /** Inferences a trial runs (the device sets it: a stream needs its window refilled and measured). */
  trialLength: number;
  /** Trials per link epoch (and at the start), at most: the budget at an epoch's start, and its cap. */
  trialsPerEpoch: number;
  /**
   * Plans after which the budget regains a trial (a token bucket, capped at trialsPerEpoch): a
   * variant measured during a warm-up or a transient, early in a long epoch, can be tried again.
   */
  trialRefill: number;
  /**
   * Plans after which a variant tried on this link may be tried again, once its own record has
   * aged below minSamples (an early trial's measurement, taken while the process and the server
   * warm up, should not rule a variant out for the whole epoch).
   */
  retryAfter: number;
  /** Effective samples of the objective below which a variant counts as unmeasured. */
  minSamples: number;
  /** Standard deviations a trial's gain must exceed at its end for the device to stay on it (the variant before it is the incumbent). */
  zTrialEnd: number;
  /** Standard deviations by which a trial, once it has a measurement of its own, must be worse than the variant before it to end early. */
  zEarlyEnd: number;
  /**
   * While the running variant is kept, every admissible variant is judged again about this often
   * (in the running variant's own time per inference): at a thousand inferences a second a full
   * plan for each one would cost the device a twentieth of its throughput. Between them only the
   * running variant is predicted (to see that it is still offered and meets the SLOs).
   */
  replanMs: number;
}

export const PLANNER_DEFAULTS: Readonly<PlannerOptions> = Object.freeze({
  z: 2,
  minGain: 0.01,
  trialGain: 0.05,
  trialLength: 4,
  trialsPerEpoch: 4,
  trialRefill: 4000,
  retryAfter: 1500,
  minSamples: 8,
  zTrialEnd: 1,
  zEarlyEnd: 2,
  replanMs: 5,
});

export type Decision = "plan" | "keep" | "switch" | "trial" | "trial-end" | "stale" | "fixed";

export interface PlannedChoice extends Choice {
  decision: Decision;
  /** The corrected prediction of the chosen variant. */
  predicted: Corrected;
}

export interface PlannerState {
  tracker: Tracker;
  current: string | null;
  /** A trial running; `remeasure`: the incumbent measured again after a trial found it unmeasured. */
  trial: { id: string; from: string | null; left: number; since?: number; remeasure?: boolean; early?: boolean; extended?: boolean } | null;
  /** Trials started, inferences they ran, variant switches. */
  trials: number;
  trialInferences: number;
  /** Trials the budget holds (fractional: it refills by 1 / trialRefill a plan), as of plan `budgetAt`. */
  budget: number;
  budgetAt: number;
  switches: number;
  /** Inferences planned. */
  plans: number;
  /** Variants trialed in this link epoch, with the plan count then (tried again only after retryAfter plans). */
  tried: Readonly<Record<string, number>>;
  /** The plan count at which every variant is judged again (see replanMs), and the choice kept until then. */
  nextFull: number;
  kept: PlannedChoice | null;
  /** What ran before the link went stale, and in which epoch: device-only while stale is an interlude, not a new incumbent. */
  beforeStale: { id: string; epoch: number } | null;
}

export function initPlanner(epoch = 0): PlannerState {
  return { tracker: initTracker(epoch), current: null, trial: null, trials: 0, trialInferences: 0, budget: PLANNER_DEFAULTS.trialsPerEpoch, budgetAt: 0, switches: 0, plans: 0, tried: {}, nextFull: 0, kept: null, beforeStale: null };
}

/** The objective's value of a prediction, in words. */
const value = (objective: Objective, c: Prediction): string =>
  objective === "throughput" ? `${fmt(c.throughputPerS)}/s` : objective === "latency" ? `${fmt(c.latencyMs)} ms` : objective === "cloud-cost" ? `${fmt(c.cloudMs)} ms of cloud` : objective === "bytes" ? `${fmt(c.bytes)} B` : `${fmt(c.deviceJoules * 1000)} mJ`;

/** ... with what is known of it: its own samples, and the spread of the correction. */
const describe = (objective: Objective, c: Corrected): string =>
  `${value(objective, c)} (${c.samples >= 1 ? `${Math.round(c.samples)} samples` : "unmeasured"}, ±${pct(Math.expm1(c.sd))})`;

/** Plans the next inference; returns the choice and the planner's next state. */
export function plan(manifest: Manifest, estimates: Estimates, policy: Policy, state: PlannerState, options: Partial<PlannerOptions> = {}): { choice: PlannedChoice; state: PlannerState } {
  const o = { ...PLANNER_DEFAULTS, ...options };
  const name = policy.name ?? "dyno";
  const objective: Objective = name === "neurosurgeon" || name === "jalad" ? "latency" : policy.objective ?? "latency";
  let s: PlannerState = { ...state, plans: state.plans + 1 };
  // A new link: what the senders measured is forgotten, and a trial running is void (it was
  // measuring the old link).
  if (estimates.link.epoch !== s.tracker.epoch) s = { ...s, tracker: linkChanged(s.tracker, estimates.link.epoch), budget: o.trialsPerEpoch, budgetAt: s.plans, tried: {}, nextFull: 0, kept: null, trial: null };
  const label = `${name}/${objective}`;
  const fix = (c: Choice, decision: Decision): { choice: PlannedChoice; state: PlannerState } => {
    const predicted = correct(s.tracker, c.predicted, { ...policy, objective });
    const switched = s.current !== null && s.current !== c.id;
    return { choice: { ...c, predicted, decision }, state: { ...s, current: c.id, switches: s.switches + (switched ? 1 : 0) } };
  };

  // Fixed policies: their own rule (./scheduler.ts), with the corrections shown.
  if (name !== "dyno") return fix(chooseVariant(manifest, estimates, policy, s.current), "fixed");

  // 1. A stale bandwidth: only what does not rest on it.
  const stale = estimates.link.bandwidthStale;
  if (stale !== undefined) {
    const c = chooseVariant(manifest, estimates, { ...policy, name: "device-only", maxAccuracyDrop: undefined });
    const why = stale === "prior" ? "the link's bandwidth is not measured yet" : stale === "aging" ? "nothing timed the link for a while" : "the link changed (its RTT stepped)";
    const beforeStale = s.beforeStale ?? (s.current !== null && s.current !== c.id ? { id: s.current, epoch: s.tracker.epoch } : null);
    s = { ...s, trial: null, nextFull: 0, kept: null, beforeStale };
    return fix({ ...c, policy: "dyno", objective, reason: `${label}: ${why}: device-only until a probe has measured it` }, "stale");
  }
  // The probe found the same link (no new epoch): back to what ran before it went stale.
  if (s.beforeStale) {
    const back = s.beforeStale.epoch === s.tracker.epoch ? s.beforeStale.id : null;
    s = { ...s, beforeStale: null, current: back ?? s.current, switches: s.switches + (back !== null && back !== s.current ? 1 : 0) };
  }

  const power = powerModel(policy.power);
  const judged = { ...policy, objective };
  // Fast paths: a trial running on, or the running variant kept between full plans; each needs
  // only its own prediction.
  const one = (id: string) => {
    const p = predictOne(manifest, estimates, id, policy);
    return p ? correct(s.tracker, p, judged, power) : null;
  };
  if (s.trial && s.trial.left > 0) {
    const t = s.trial;
    const trialed = one(t.id);
    // A trial that has measured itself worse than the variant before it, beyond zEarlyEnd sd, ends
    // at once: a mispredicted variant (an image codec whose encode the model took for a tenth of
    // what it is, say) costs a window of inferences, not the trial's length.
    const before = trialed && t.from !== null && !t.remeasure && lastSampleAt(s.tracker, t.id, objective) >= (t.since ?? Infinity) ? one(t.from) : null;
    const early = before !== null && trialed !== null && Math.log(objectiveCost(objective, before) / objectiveCost(objective, trialed)) < -(o.zEarlyEnd * Math.hypot(trialed.sd, before.sd) + o.minGain);
    if (early) s = { ...s, trial: { ...t, left: 0, early: true } };
    else if (trialed) {
      s = { ...s, trial: { ...t, left: t.left - 1 }, trialInferences: s.trialInferences + 1, current: t.id };
      const choice: PlannedChoice = {
        variant: trialed.variant ?? (trialed.kind === "device-only" ? "device-only" : "cloud-only"), id: t.id, predicted: trialed, front: [], policy: name, objective,
        feasible: trialed.meetsSlo, kept: false, decision: "trial", reason: `${label}: trial of ${t.id}: ${t.left - 1} more inferences; predicts ${describe(objective, trialed)}`,
      };
      return { choice, state: s };
    }
  }
  if (!s.trial && s.kept && s.current === s.kept.id && s.plans < s.nextFull) {
    const c = one(s.current);
    if (c && (c.meetsSlo || !s.kept.feasible)) return { choice: { ...s.kept, predicted: c, decision: "keep", kept: true }, state: s };
  }

  const preds = predictAll(manifest, estimates, policy);
  if (preds.length === 0) return fix(chooseVariant(manifest, estimates, policy, s.current), "fixed");
  const corrected = preds.map((p) => correct(s.tracker, p, judged, power));
  const feasible = corrected.filter((p) => p.meetsSlo);
  // No variant meets the SLOs and the policy asks for the closest: plan for the SLO's own measure
  // (the most throughput for a throughput SLO, the least latency for a latency one).
  if (feasible.length === 0 && policy.bestEffort === "closest" && (policy.throughputSloPerS !== undefined || policy.latencySloMs !== undefined)) {
    const toward: Objective = policy.throughputSloPerS !== undefined ? "throughput" : "latency";
    const r = plan(manifest, estimates, { ...policy, objective: toward, latencySloMs: undefined, throughputSloPerS: undefined, bestEffort: undefined }, state, options);
    return { ...r, choice: { ...r.choice, feasible: false, objective, reason: `${label}: no variant meets the SLOs; the closest (by ${toward}): ${r.choice.reason.replace(/^[^:]*: /, "")}` } };
  }
  const pool = feasible.length > 0 ? feasible : corrected;
  let best = pool[0]!;
  for (const p of pool) if (better(objective, p, best)) best = p;
  const cost = (p: Corrected) => objectiveCost(objective, p);
  const front = paretoFront(corrected, objective);
  const choose = (c: Corrected, decision: Decision, reason: string): { choice: PlannedChoice; state: PlannerState } => {
    const switched = s.current !== null && s.current !== c.id;
    const choice: PlannedChoice = {
      variant: c.variant ?? (c.kind === "device-only" ? "device-only" : "cloud-only"),
      id: c.id, reason: `${label}: ${reason}`, predicted: c, front, policy: name, objective,
      feasible: feasible.length > 0, kept: decision === "keep", decision,
    };
    // Until the next full plan this choice stands (a kept or freshly chosen variant; not a trial).
    const interval = objective === "throughput" ? 1000 / Math.max(c.throughputPerS, 1e-9) : c.latencyMs;
    const every = Math.max(1, Math.floor(o.replanMs / Math.max(interval, 1e-3)));
    const settled = decision === "keep" || decision === "switch" || decision === "plan" || decision === "trial-end";
    return { choice, state: { ...s, current: c.id, switches: s.switches + (switched ? 1 : 0), nextFull: s.plans + every, kept: settled ? choice : null } };
  };
  const cur = s.current === null ? undefined : pool.find((p) => p.id === s.current);

  // 2. A trial at its end (or no longer offered): the variant before it is the incumbent, and the
  // trial's variant stays only when it measured better beyond zTrialEnd sd.
  if (s.trial) {
    const t = s.trial;
    s = { ...s, trial: null };
    const trialed = pool.find((p) => p.id === t.id);
    const before = t.from === null ? undefined : pool.find((p) => p.id === t.from);
    // The incumbent has no measurement of its own on this link (a stream that ran it only while
    // the link was probed, say): a measured trial against its prior (±30% and more) would go back
    // to it whatever the trial found, and the next trial the same. It is measured first, as long.
    // Only when the comparison is in doubt: a trial 9x better than the incumbent's prior (the input
    // on Wi-Fi against device-only) needs no measurement of the incumbent to stay.
    const inDoubt = (a: Corrected, b: Corrected) => Math.abs(Math.log(cost(b) / cost(a))) <= o.zTrialEnd * Math.hypot(a.sd, b.sd) * 2;
    if (trialed && before && !t.remeasure && before.samples < o.minSamples && trialed.samples >= o.minSamples && inDoubt(trialed, before)) {
      s = { ...s, trial: { id: before.id, from: trialed.id, left: o.trialLength - 1, remeasure: true }, trialInferences: s.trialInferences + 1 };
      return choose(before, "trial", `after its trial ${t.id} measures ${describe(objective, trialed)}; ${before.id} is not measured on this link: measuring it (${o.trialLength} inferences)`);
    }
    if (trialed && before) {
      const gain = Math.log(cost(before) / cost(trialed));
      const noise = o.zTrialEnd * Math.hypot(trialed.sd, before.sd);
      const keep = gain > noise;
      // Better, but within the noise of a few samples: measured as long again (once) before the
      // incumbent is back; a trial's variant that the samples favour is not dropped on their noise.
      if (!keep && gain > 0 && !t.extended && !t.remeasure) {
        s = { ...s, trial: { ...t, left: o.trialLength - 1, extended: true }, trialInferences: s.trialInferences + 1 };
        return choose(trialed, "trial", `after its trial ${t.id} measures ${describe(objective, trialed)}, ${t.from} ${describe(objective, before)}: ${pct(Math.expm1(gain))} better, within the noise of ${pct(Math.expm1(noise))}: measuring it ${o.trialLength} inferences more`);
      }
      if (t.remeasure) {
        const winner = keep ? trialed : before;
        return choose(winner, "trial-end", `${t.id} measured: ${describe(objective, trialed)}, ${t.from} ${describe(objective, before)}: ${winner.id}${keep ? `, ${pct(Math.expm1(gain))} better` : gain < 0 ? `, ${pct(Math.expm1(-gain))} better` : ` (${t.id} is ${pct(Math.expm1(gain))} better, within the noise of ${pct(Math.expm1(noise))})`}`);
      }
      return choose(keep ? trialed : before, "trial-end", `after its trial${t.early ? ", ended early," : ""} ${t.id} measures ${describe(objective, trialed)}, ${t.from} ${describe(objective, before)}: ${keep ? `kept ${t.id}, ${pct(Math.expm1(gain))} better` : gain < -noise ? `back to ${t.from} (${t.id} is ${pct(-Math.expm1(gain))} worse)` : `back to ${t.from} (${pct(Math.expm1(gain))}, within the noise of ${pct(Math.expm1(noise))})`}`);
    }
  }

  if (!cur) {
    const why = s.current === null ? `the best of ${pool.length} admissible variants` : `${s.current} is no longer offered (admissibility, SLOs or the request limit)`;
    return choose(best, "plan", `${best.id} predicts ${describe(objective, best)}, ${why}`);
  }

  // 3. Leave the current variant only for a gain beyond the noise, or for a counted trial.
  const gainOver = (p: Corrected) => Math.log(cost(cur) / cost(p));
  const budget = Math.min(o.trialsPerEpoch, s.budget + (s.plans - s.budgetAt) / o.trialRefill);
  s = { ...s, budget, budgetAt: s.plans };
  const startTrial = (p: Corrected, why: string, forget = false) => {
    s = {
      ...s, trial: { id: p.id, from: cur.id, left: o.trialLength - 1, since: s.tracker.inferences }, trials: s.trials + 1,
      budget: s.budget - 1, tried: { ...s.tried, [p.id]: s.plans }, trialInferences: s.trialInferences + 1,
      ...(forget ? { tracker: forgetMeasured(s.tracker, p.id) } : {}),
    };
    return choose(p, "trial", `trial of ${p.id} (${o.trialLength} inferences): ${why}`);
  };
  let known = cur;
  for (const p of pool) if (p.samples >= o.minSamples && better(objective, p, known)) known = p;
  if (known !== cur) {
    const gain = gainOver(known);
    const noise = o.z * Math.hypot(cur.sd, known.sd) + o.minGain;
    if (gain > noise) {
      // Measured, but not in the last few windows: the running variant's numbers are from now,
      // its from a while ago, when the machine or the link may have been faster (a load that
      // slows everything down made the device chase old numbers from one variant to the next).
      // Measured again first, from scratch, in a trial (kept while the budget is spent).
      const age = s.tracker.inferences - lastSampleAt(s.tracker, known.id, objective);
      const was = `measured ${describe(objective, known)} ${age} inferences ago, ${pct(Math.expm1(gain))} better than ${cur.id} (${describe(objective, cur)}) now`;
      if (age > 4 * o.trialLength) return budget >= 1 ? startTrial(known, `${was}: measured again before a switch`, true) : choose(cur, "keep", `kept ${cur.id}: ${known.id} ${was}, and the trial budget is spent`);
      return choose(known, "switch", `switched from ${cur.id} (${describe(objective, cur)}) to ${known.id}: ${describe(objective, known)}, ${pct(Math.expm1(gain))} better, beyond the noise (${pct(Math.expm1(noise))})`);
    }
  }
  // Trials: what the link has not measured yet and either prediction says beats c.
  const modelGain = (p: Corrected) => Math.log(cost(cur) / objectiveCost(objective, p.model));
  const untried = (p: Corrected) => s.tried[p.id] === undefined || s.plans - s.tried[p.id]! > o.retryAfter;
  // The model alone speaks for a variant not measured on this link; one tried already has its
  // own (aged) record in the corrected prediction, and only that may call for another trial.
  const score = (p: Corrected) => (s.tried[p.id] === undefined ? Math.max(gainOver(p), modelGain(p)) : gainOver(p));
  const baseline = (p: Corrected) => p.kind === "device-only" || (p.kind === "cloud-only" && p.codec === "f32-none");
  const rank = (p: Corrected) => score(p) + (baseline(p) ? o.trialGain : 0);
  let next: Corrected | null = null;
  for (const p of pool) {
    if (p === cur || p.samples >= o.minSamples || !untried(p) || !(score(p) > o.trialGain)) continue;
    if (!next || rank(p) > rank(next)) next = p;
  }
  if (next) {
    const allowed = budget >= 1;
    const why = `${gainOver(next) >= modelGain(next) ? `predicts ${describe(objective, next)}` : `the model alone predicts ${value(objective, next.model)}`}, ${pct(Math.expm1(score(next)))} better than ${cur.id} (${describe(objective, cur)})${baseline(next) ? "; a fixed policy's variant" : ""}`;
    if (allowed) return startTrial(next, why);
    return choose(cur, "keep", `kept ${cur.id}: no trial of ${next.id} (${why}): the trial budget is spent`);
  }
  if (known !== cur) {
    const noise = o.z * Math.hypot(cur.sd, known.sd) + o.minGain;
    return choose(cur, "keep", `kept ${cur.id}: ${describe(objective, cur)}; ${known.id} is ${pct(Math.expm1(gainOver(known)))} better, within the noise (${pct(Math.expm1(noise))})`);
  }
  if (best.id === cur.id) return choose(cur, "keep", `${cur.id} predicts ${describe(objective, cur)}, the best of ${pool.length}`);
  return choose(cur, "keep", `kept ${cur.id}: ${describe(objective, cur)}, the best of ${pool.length} (${best.id} predicts ${pct(Math.expm1(gainOver(best)))} better, ${untried(best) ? "within what a trial needs" : "tried on this link already"})`);
}
