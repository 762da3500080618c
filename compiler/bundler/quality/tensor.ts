// Reading one sample's output tensor for a metric: find it by name, check its size, argmax; and
// what compile and verify share around a metric: outputs as float32, stats summed over samples.
// `argmax` (runtime/common/stats.ts) is the one argmax of the code base; it takes a stride so the
// same loop serves a class vector and a class axis of a map.
import { DynoError } from "../../../runtime/common/errors.js";
import { argmax } from "../../../runtime/common/stats.js";
import type { Label, SampleOutputs, SampleTensor } from "./types.js";

export { argmax };


/** An output's data as float32 (a model may output int64 classes or float64 scores). */
export function asFloat32(data: unknown): Float32Array {
  return data instanceof Float32Array ? data : Float32Array.from(data as ArrayLike<number | bigint>, Number);
}

/** Adds one sample's metric stats into the running sums. */
export function addStats(sum: number[], x: readonly number[]): void {
  for (let k = 0; k < x.length; k++) sum[k] = (sum[k] ?? 0) + x[k]!;
}

export function numel(dims: readonly number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}

export function formatDims(dims: readonly number[]): string {
  return `[${dims.join(", ")}]`;
}

/** The named output of one sample, its data length checked against its dims. */
export function outputOf(outputs: SampleOutputs, name: string, metric: string): SampleTensor {
  const t = outputs[name];
  if (!t) throw new DynoError(`metric ${metric}: output "${name}" is missing from the sample's outputs (have: ${Object.keys(outputs).join(", ") || "none"})`);
  if (t.data.length !== numel(t.dims)) throw new DynoError(`metric ${metric}: output "${name}" has ${t.data.length} values but dims ${formatDims(t.dims)}`);
  return t;
}

/**
 * The class of a class-score output: argmax over axis 1 ([1, C], [1, C, 1, 1]), or over the whole
 * vector when it has no batch dim ([C]). Anything with more than one score vector is refused
 * rather than reduced to a meaningless flat argmax.
 */
export function classOf(t: SampleTensor, output: string, metric: string): number {
  const { dims } = t;
  if (dims.length === 0) throw new DynoError(`metric ${metric}: output "${output}" is a scalar, not class scores`);
  if (dims.length === 1) return argmax(t.data);
  const classes = dims[1]!;
  if (classes !== t.data.length) {
    throw new DynoError(`metric ${metric} reads one class-score vector per sample (dims [1, C]), but output "${output}" has dims ${formatDims(dims)}; use map-iou, ctc or cosine for such outputs`);
  }
  return argmax(t.data);
}

/** What a label is, for error messages. */
export function labelKind(label: Label): string {
  if (typeof label === "number") return "a class number";
  if (typeof label === "string") return "a text";
  return "text boxes";
}
