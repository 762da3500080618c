// Classifier metrics: top-1 against class-number labels, and agreement with the float32 model's
// top-1 (for unlabelled data). Both keep one class index per sample and sum one 0/1 per sample.
import { DynoError, UsageError } from "../../../runtime/common/errors.js";
import type { Options } from "./spec.js";
import { classOf, labelKind, outputOf } from "./tensor.js";
import type { Metric, MetricContext, SampleOutputs } from "./types.js";

const percentOf = (sum: readonly number[], count: number) => (count === 0 ? 0 : (100 * sum[0]!) / count);

export function top1(opts: Options, ctx: MetricContext): Metric<null> {
  const output = opts.output(ctx);
  opts.finish();
  if (!ctx.labelled) {
    throw new UsageError(`metric spec "${opts.spec}": top1 needs labelled calibration data and this data is unlabelled; use --metric agreement to compare with the float32 model's top-1`);
  }
  return {
    name: "top1",
    spec: opts.canonical(),
    unit: "% top-1",
    higherIsBetter: true,
    reference: () => null,
    stats(outputs, _reference, label) {
      if (typeof label !== "number") throw new DynoError(`metric top1 needs a class-number label per sample, got ${label === null ? "no label" : labelKind(label)}`);
      return [classOf(outputOf(outputs, output, "top1"), output, "top1") === label ? 1 : 0];
    },
    value: percentOf,
  };
}

export function agreement(opts: Options, ctx: MetricContext): Metric<number> {
  const output = opts.output(ctx);
  opts.finish();
  const classOfSample = (outputs: SampleOutputs) => classOf(outputOf(outputs, output, "agreement"), output, "agreement");
  return {
    name: "agreement",
    spec: opts.canonical(),
    unit: "% agreement",
    higherIsBetter: true,
    reference: classOfSample,
    stats: (outputs, reference) => [classOfSample(outputs) === reference ? 1 : 0],
    value: percentOf,
  };
}
