// The analysis pipeline for `dyno inspect` and later passes: load, infer shapes (asking
// onnxruntime for what static inference cannot do), compute costs.
import { loadModel } from "../onnx/import.js";
import { observeShapes } from "../onnx/ort-shapes.js";
import type { Dim, Model } from "../ir/graph.js";
import { computeCosts, type CostFacts } from "./costs.js";
import { inferShapes, isKnown } from "./infer-shapes.js";

export interface Analysis {
  model: Model;
  costs: CostFacts;
  /** Values whose shapes came from onnxruntime rather than static inference. */
  observed: string[];
  unsupportedOps: string[];
}

export async function analyzeModel(pathOrModel: string | Model, options: { inputShapes?: Record<string, Dim[]>; observe?: boolean } = {}): Promise<Analysis> {
  const loaded = typeof pathOrModel === "string" ? loadModel(pathOrModel) : pathOrModel;
  const facts = inferShapes(loaded, { inputShapes: options.inputShapes });
  let observed: string[] = [];
  if (facts.unknown.length && options.observe !== false) {
    const seen = await observeShapes(facts.model, facts.unknown);
    for (const [name, t] of seen) {
      const v = facts.model.graph.value(name);
      v.dtype = t.dtype;
      v.shape = t.shape;
    }
    observed = facts.unknown.filter((n) => isKnown(facts.model.graph.value(n)));
  }
  return { model: facts.model, costs: computeCosts(facts.model), observed, unsupportedOps: facts.unsupportedOps };
}
