// Measuring strategies against each other on one emulated link, for `dyno demo` and the e2e
// bench: a strategy is a device opened with a policy (or pinned to one variant), streamed for a
// while after a short warm-up; the oracle is the best of the pinned variants measured the same way.
import type { Manifest } from "../runtime/common/manifest.js";
import type { Device } from "../runtime/device/device.js";
import { runStream, type RunSummary } from "../runtime/device/run.js";
import type { LinkStep } from "../runtime/emu/link.js";
import { initEstimates } from "../runtime/plan/estimators.js";
import { objectiveCost, predictAll, type Objective } from "../runtime/plan/scheduler.js";

/** Streams `input` through a fresh device for `seconds` (after `warm` unmeasured inferences), then closes it. */
export async function measure(open: () => Promise<Device>, input: (i: number) => Float32Array, seconds: number, options: { warm?: number; minCount?: number; label?: (i: number) => number | null } = {}): Promise<RunSummary> {
  const d = await open();
  try {
    if ((options.warm ?? 0) > 0) await runStream(d, input, { count: options.warm });
    return (await runStream(d, input, { durationMs: seconds * 1000, minCount: options.minCount, label: options.label })).summary;
  } finally {
    await d.close();
  }
}

/** The variant a run spent most inferences on. */
export function mostRun(s: RunSummary): string {
  return Object.entries(s.variants).sort((a, b) => b[1] - a[1])[0]?.[0] ?? "";
}

/** The ids of device-only and of the float32 input (cloud-only): the fixed policies' variants. */
export function baselines(m: Manifest): { deviceOnly: string; cloudOnly: string } {
  const kind = (id: number) => m.cuts.find((c) => c.id === id)?.kind;
  const deviceOnly = m.variants.find((v) => kind(v.cut) === "output")!.id;
  const inputs = m.variants.filter((v) => kind(v.cut) === "input");
  const cloudOnly = (inputs.find((v) => v.codec.bits === "f32" && v.codec.lossless === "none") ?? inputs[0]!).id;
  return { deviceOnly, cloudOnly };
}

/**
 * The oracle's shortlist on a link: the fixed policies' variants, the model's `top` best by the
 * objective at the link's nominal bandwidth and RTT with the device `slowdown` times slower, and
 * `extra` (what dyno ran). Every admissible variant would be the whole oracle; the model's best few
 * and dyno's own choices are where it can be beaten.
 */
export function shortlist(m: Manifest, link: Pick<LinkStep, "bandwidthMbps" | "rttMs">, options: { slowdown: number; objective: Objective; maxAccuracyDrop?: number; depth?: number; top?: number; extra?: string[] }): string[] {
  let e = initEstimates(m, { link: { bandwidthMbps: link.bandwidthMbps, rttMs: link.rttMs } });
  e = { ...e, device: { ...e.device, ratio: options.slowdown } };
  const preds = predictAll(m, e, { objective: options.objective, maxAccuracyDrop: options.maxAccuracyDrop, pipelineDepth: options.depth });
  const ranked = preds.filter((p) => p.variant).sort((a, b) => objectiveCost(options.objective, a) - objectiveCost(options.objective, b)).map((p) => p.id);
  const { deviceOnly, cloudOnly } = baselines(m);
  return [...new Set([deviceOnly, cloudOnly, ...ranked.slice(0, options.top ?? 3), ...(options.extra ?? [])])].filter((id) => m.variants.some((v) => v.id === id));
}

/**
 * Warms this process's and the server's code paths up: each admissible variant at the input cut
 * (every codec the planner may pick runs once through the device's and the server's kernels)
 * streamed for `seconds`. Without it the first trials of a fresh process measured codecs 20-40%
 * below their steady rate (JIT), and the planner kept the one it had warmed first.
 */
export async function warmUp(m: Manifest, open: (variant: string) => Promise<Device>, input: (i: number) => Float32Array, seconds = 0.2): Promise<void> {
  const inputCut = m.cuts.find((c) => c.kind === "input")?.id;
  for (const v of m.variants) {
    if (v.cut !== inputCut || !v.admissible) continue;
    await measure(() => open(v.id), input, seconds);
  }
}
