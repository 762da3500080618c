// From `--metric` text to a Metric: the built-ins by name, a user module by path. Also the
// default metric for a calibration set and the accuracy drop in a metric's unit, so compile,
// verify and the scheduler's `--max-accuracy-drop` agree on what "worse" means.
import { UsageError } from "../../../runtime/common/errors.js";
import { agreement, top1 } from "./classes.js";
import { cosine } from "./cosine.js";
import { ctc } from "./ctc.js";
import { boxF1, mapIou } from "./map.js";
import { Options, parseSpec } from "./spec.js";
import type { Label, Metric, MetricContext } from "./types.js";
import { loadUserMetric } from "./user.js";

type Builtin = (opts: Options, ctx: MetricContext) => Metric | Promise<Metric>;

const BUILTINS: Readonly<Record<string, Builtin>> = {
  top1,
  agreement,
  ctc,
  "map-iou": mapIou,
  "box-f1": boxF1,
  cosine,
};

/** The metric a `--metric` spec names, its options checked; its `spec` is the canonical text. */
export async function loadMetric(spec: string, ctx: MetricContext): Promise<Metric> {
  const isBuiltin = (name: string) => Object.hasOwn(BUILTINS, name);
  const parsed = parseSpec(spec, isBuiltin);
  if (parsed.module) return loadUserMetric(parsed.name, parsed.options, ctx);
  const make = isBuiltin(parsed.name) ? BUILTINS[parsed.name] : undefined;
  if (!make) {
    throw new UsageError(`unknown metric "${parsed.name}" in --metric "${spec}" (built-in: ${Object.keys(BUILTINS).join(", ")}; or a path to a .js or .mjs module)`);
  }
  return make(new Options(spec, parsed.name, parsed.options), ctx);
}

/**
 * top1 when every sample is labelled with a class number; otherwise by the first output's shape
 * (`outputShape`, batch first): class scores [N, C] -> agreement, a dense map [N, K, H, W] ->
 * map-iou, anything else (sequences, embeddings) -> cosine. Text models want --metric ctc or
 * box-f1 given explicitly (docs/metrics.md).
 */
export function defaultMetricSpec(ctx: MetricContext, labels: ArrayLike<Label | null> | null, outputShape?: readonly unknown[]): string {
  if (ctx.labelled && labels && labels.length > 0 && Array.from(labels).every((l) => typeof l === "number")) return "top1";
  if (!outputShape || outputShape.length <= 2) return "agreement";
  if (outputShape.length === 4) return "map-iou";
  return "cosine";
}

/** How much worse `value` is than float32's, in the metric's unit: positive is worse. */
export function metricDrop(metric: Pick<Metric, "higherIsBetter">, float32Value: number, value: number): number {
  return metric.higherIsBetter ? float32Value - value : value - float32Value;
}
