// What an accuracy metric is, for compile (which profiles every variant with it), verify (which
// reproduces it) and user metrics (`--metric ./my-metric.js` exports one of these).
//
// A metric never holds all outputs of a calibration run: per sample it keeps a small reference
// of the float32 model's outputs (a class, a decoded string, boxes, an embedding), scores a
// variant's outputs into a few numbers that are summed over the samples (correct, edits and
// characters, TP/FP/FN, cosine), and turns the sums into one value in its unit. Against labels
// when the calibration data has them, against the float32 reference otherwise.

/** A label of one calibration sample: a class index, a text, or text boxes in input pixels. */
export type Label = number | string | TextBox[];

/** A text region: a polygon (usually 4 points, clockwise) in the model input's pixel coordinates. */
export interface TextBox {
  points: [number, number][];
  text?: string;
}

/** One sample's output tensor (batch dim 1, or none when the model has no batch dim). */
export interface SampleTensor {
  data: Float32Array;
  dims: readonly number[];
}

/** One sample's outputs, by output name, in the model's output order. */
export type SampleOutputs = Record<string, SampleTensor>;

export interface MetricContext {
  /** The model input's dims for one sample (batch 1), e.g. [1, 3, 640, 640]. */
  inputDims: readonly number[];
  /**
   * Where H, W sit in `inputDims`, for scaling label boxes to an output map. When absent:
   * NHWC if the input is 4-d with dims[3] but not dims[1] in {1, 3, 4} (as calibration infers), else NCHW.
   */
  inputLayout?: "nchw" | "nhwc";
  /** The model's output names, in order. */
  outputs: readonly string[];
  /** Whether the calibration data is labelled. */
  labelled: boolean;
  /** Directory relative paths in the spec (a dictionary, a user module) are resolved against. */
  baseDir: string;
}

export interface Metric<R = unknown> {
  /** Short name: "top1", "ctc", ... */
  name: string;
  /** The `--metric` text that makes this metric again (options included), stored in the manifest. */
  spec: string;
  /** The unit of `value` and so of `--max-accuracy-drop`, e.g. "% top-1", "% CER", "% box F1". */
  unit: string;
  /** True when larger values are better (top-1, F1, cosine); false for error rates (CER). */
  higherIsBetter: boolean;
  /** What is kept of the float32 model's outputs for one sample. */
  reference(outputs: SampleOutputs, label: Label | null): R;
  /** Per-sample numbers, summed over the samples: against the label when given, else the reference. */
  stats(outputs: SampleOutputs, reference: R, label: Label | null): number[];
  /** The metric's value from the summed stats of `count` samples. */
  value(sum: readonly number[], count: number): number;
}

/**
 * What a user metric module's default export may be instead of a Metric: a function of the
 * spec's `key=value` options and the context. A user metric may leave `spec` out; dyno sets it
 * to the module path as given plus the options.
 */
export type MetricFactory = (options: Record<string, string>, ctx: MetricContext) => UserMetric | Promise<UserMetric>;

/** A Metric as a user module writes it: `spec` is optional (dyno fills it in). */
export type UserMetric<R = unknown> = Omit<Metric<R>, "spec"> & { spec?: string };
