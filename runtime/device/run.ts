// Running a device over a stream of inputs and summarising it: shared by `dyno run`, the demo
// and the benchmarks. Pure bookkeeping around Device.stream.
import type { Device, Inference, ProbeStats } from "./device.js";
import { quantile } from "../common/stats.js";

export interface RunSummary {
  count: number;
  seconds: number;
  throughputPerS: number;
  latencyP50Ms: number;
  latencyP95Ms: number;
  bytesPerInference: number;
  cloudSecondsPerInference: number;
  /** Top-1 on labelled inputs, or null. */
  top1: number | null;
  fellBack: number;
  /** Inferences per variant id. */
  variants: Record<string, number>;
  /** The device's bandwidth probes during the run, when known. */
  probes?: ProbeStats;
  /** What the planner did during the run: switches of variant, trials (deliberate exploration) and their inferences. */
  planner?: { switches: number; trials: number; trialInferences: number };
}

export interface RunOptions {
  /** Stop after this many inputs (default: all of `inputs`). */
  count?: number;
  /** Stop starting new inputs after this many ms... */
  durationMs?: number;
  /** ...but not before this many have started (a slow strategy is measured on a few inferences at least). */
  minCount?: number;
  /** Label of input i (for top-1), or null. */
  label?: (i: number) => number | null;
  onResult?: (r: Inference, index: number, elapsedMs: number) => void;
  /** Pins input i to a variant (Device.stream's variantOf), given the ms since the run started. */
  variantOf?: (index: number, elapsedMs: number) => string | undefined;
}

/**
 * Re-orders what arrives by index into the order the inferences were planned in (a stream's
 * results come back out of order: a device-only one overtakes those still on the link).
 * `flush` delivers, in order, what still waits behind a gap (an inference that never answered).
 */
export function inPlanOrder<T>(deliver: (item: T, index: number) => void): { add(index: number, item: T): void; flush(): void } {
  const pending = new Map<number, T>();
  let next = 0;
  return {
    add(index, item) {
      pending.set(index, item);
      for (let p = pending.get(next); p !== undefined; p = pending.get(next)) {
        pending.delete(next);
        deliver(p, next++);
      }
    },
    flush() {
      for (const i of [...pending.keys()].sort((a, b) => a - b)) deliver(pending.get(i)!, i);
      pending.clear();
    },
  };
}

export async function runStream(device: Device, input: (i: number) => Float32Array, options: RunOptions): Promise<{ results: Inference[]; summary: RunSummary }> {
  const t0 = performance.now();
  const count = options.count ?? Infinity;
  async function* inputs() {
    for (let i = 0; i < count; i++) {
      if (options.durationMs !== undefined && performance.now() - t0 >= options.durationMs && i >= (options.minCount ?? 0)) return;
      yield input(i);
    }
  }
  const before = device.probes;
  const planned = device.planner;
  const pick = options.variantOf;
  const results = await device.stream(inputs(), (r, i) => options.onResult?.(r, i, performance.now() - t0), undefined, pick ? (i) => pick(i, performance.now() - t0) : undefined);
  const after = device.probes;
  const now = device.planner;
  const probes = { probes: after.probes - before.probes, bytes: after.bytes - before.bytes, ms: after.ms - before.ms };
  const planner = { switches: now.switches - planned.switches, trials: now.trials - planned.trials, trialInferences: now.trialInferences - planned.trialInferences };
  return { results, summary: { ...summarise(results, (performance.now() - t0) / 1000, options.label), probes, planner } };
}

export function summarise(results: Inference[], seconds: number, label?: (i: number) => number | null): RunSummary {
  const lat = results.map((r) => r.timings.totalMs).sort((a, b) => a - b);
  let correct = 0;
  let labelled = 0;
  results.forEach((r, i) => {
    const y = label?.(i);
    if (y === null || y === undefined) return;
    labelled++;
    const out = Object.values(r.outputs)[0]!.data;
    let best = 0;
    for (let k = 1; k < out.length; k++) if (out[k]! > out[best]!) best = k;
    if (best === y) correct++;
  });
  const variants: Record<string, number> = {};
  for (const r of results) variants[r.variant] = (variants[r.variant] ?? 0) + 1;
  const n = results.length || 1;
  return {
    count: results.length,
    seconds,
    throughputPerS: results.length / seconds,
    latencyP50Ms: quantile(lat, 0.5),
    latencyP95Ms: quantile(lat, 0.95),
    bytesPerInference: results.reduce((s, r) => s + r.timings.bytes, 0) / n,
    cloudSecondsPerInference: results.reduce((s, r) => s + (r.fellBack ? 0 : r.timings.cloudMs), 0) / 1000 / n,
    top1: labelled ? correct / labelled : null,
    fellBack: results.filter((r) => r.fellBack).length,
    variants,
  };
}
