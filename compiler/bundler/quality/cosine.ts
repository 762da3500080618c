// Embeddings and any output without a task-specific metric: cosine similarity of the flattened
// output to the float32 one. Mean cosine x100 (a drop of 1 is 0.01 cosine), or with
// `threshold=T` the % of samples whose cosine reaches T. Labels are ignored: there is nothing to
// compare an embedding with but the float32 model.
import { DynoError } from "../../../runtime/common/errors.js";
import type { Options } from "./spec.js";
import { outputOf } from "./tensor.js";
import type { Metric, MetricContext } from "./types.js";

/** Cosine of two equal-length vectors; 1 when both are zero, 0 when only one is. */
export function cosineSimilarity(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let dot = 0;
  let aa = 0;
  let bb = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    dot += x * y;
    aa += x * x;
    bb += y * y;
  }
  if (aa === 0 && bb === 0) return 1;
  if (aa === 0 || bb === 0) return 0;
  return dot / Math.sqrt(aa * bb);
}

export function cosine(opts: Options, ctx: MetricContext): Metric<Float32Array> {
  const output = opts.output(ctx);
  const threshold = opts.optionalNumber("threshold", { min: -1, max: 1 });
  opts.finish();
  return {
    name: "cosine",
    spec: opts.canonical(),
    unit: threshold === undefined ? "cosine x100" : `% samples with cosine >= ${threshold}`,
    higherIsBetter: true,
    // A copy: the runtime may reuse the output buffer for the next sample.
    reference: (outputs) => Float32Array.from(outputOf(outputs, output, "cosine").data),
    stats(outputs, reference) {
      const got = outputOf(outputs, output, "cosine").data;
      if (got.length !== reference.length) throw new DynoError(`metric cosine: output "${output}" has ${got.length} values, its float32 reference ${reference.length}`);
      const c = cosineSimilarity(got, reference);
      return [threshold === undefined ? c : c >= threshold ? 1 : 0];
    },
    value: (sum, count) => (count === 0 ? 0 : (100 * sum[0]!) / count),
  };
}
