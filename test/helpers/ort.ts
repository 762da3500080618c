// Running a model in onnxruntime-node on seeded float32 inputs, for differential checks.
import { perSampleDims } from "../../runtime/common/manifest.js";
import * as ort from "onnxruntime-node";
import type { Model } from "../../compiler/ir/graph.js";
import { randomFloats } from "./onnx.js";

/** Seeded float32 feeds for the model's graph inputs (symbolic or unknown dims become 1). */
export function seededFeeds(model: Model, seed = 11): Record<string, ort.Tensor> {
  const feeds: Record<string, ort.Tensor> = {};
  model.graph.inputs.forEach((v, i) => {
    if (model.graph.isInitializer(v.name)) return;
    if (v.dtype !== 1) throw new Error(`input "${v.name}" of "${model.source}" is not float32; seededFeeds only makes float32`);
    const dims = perSampleDims(v.shape ?? []);
    feeds[v.name] = new ort.Tensor("float32", randomFloats(dims.reduce((a, b) => a * b, 1), seed + i, 1), dims);
  });
  return feeds;
}

/** The model's outputs, by name, for a model file path or serialized bytes. */
export async function runOrt(model: string | Uint8Array, feeds: Record<string, ort.Tensor>): Promise<Record<string, Float32Array>> {
  const session = typeof model === "string" ? await ort.InferenceSession.create(model) : await ort.InferenceSession.create(model);
  try {
    const out = await session.run(feeds);
    return Object.fromEntries(Object.entries(out).map(([k, t]) => [k, t.data as Float32Array]));
  } finally {
    await session.release();
  }
}
