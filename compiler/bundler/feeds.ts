// Seeded feeds for a model's inputs, a chain of sessions run in order, and the largest
// difference of two tensors: what compile, verify and the model checks run models with (Node).
import ort from "onnxruntime-node";
import { ModelError } from "../../runtime/common/errors.js";
import { randomFloats } from "../../runtime/common/random.js";
import { DataType, dtypeName } from "../ir/dtype.js";
import type { Model } from "../ir/graph.js";
import type { InferenceSession, Tensor } from "../../runtime/exec/backend.js";
import { runChain as runSegments } from "../../runtime/exec/executor.js";

export type Feeds = Record<string, ort.Tensor>;

/** Seeded float32 inputs for the model's graph inputs; symbolic dims take `symbolValue`. */
export function randomFeeds(model: Model, seed: number, symbolValue = 1): Feeds {
  const g = model.graph;
  const feeds: Feeds = {};
  g.inputs.forEach((v, i) => {
    if (g.isInitializer(v.name)) return;
    if (v.dtype !== DataType.FLOAT) throw new ModelError(`input "${v.name}" is ${dtypeName(v.dtype ?? 0)}; random inputs are float32 only (give --input)`);
    if (!v.shape) throw new ModelError(`input "${v.name}" has no shape: give it with --input-shape`);
    const dims = v.shape.map((d) => (typeof d === "number" ? d : symbolValue));
    feeds[v.name] = new ort.Tensor("float32", randomFloats(dims.reduce((a, b) => a * b, 1), seed + i), dims);
  });
  return feeds;
}

/**
 * Runs sessions in order, each reading its inputs from the model inputs and earlier outputs;
 * returns every tensor produced, by name.
 */
export async function runChain(sessions: readonly ort.InferenceSession[], feeds: Feeds): Promise<Feeds> {
  const pool: Feeds = { ...feeds };
  try {
    await runSegments(sessions as unknown as InferenceSession[], pool as unknown as Record<string, Tensor>);
  } catch (e) {
    throw new ModelError((e as Error).message);
  }
  return pool;
}

/** Largest |a - b| over two tensors of equal size (Infinity when sizes differ or NaN appears). */
export function maxAbsDiff(a: ort.Tensor, b: ort.Tensor): number {
  const x = a.data as ArrayLike<number>;
  const y = b.data as ArrayLike<number>;
  if (x.length !== y.length) return Infinity;
  let m = 0;
  for (let i = 0; i < x.length; i++) {
    const d = Math.abs(Number(x[i]) - Number(y[i]));
    if (!(d <= m)) m = Number.isNaN(d) ? (Number.isNaN(Number(x[i])) && Number.isNaN(Number(y[i])) ? m : Infinity) : d;
  }
  return m;
}
