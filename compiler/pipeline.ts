// The order of passes, decided in one place. Every pass is a named pure function; the graph is
// verified after each one, and a failure names the pass and the passes that ran before it.
import { DynoError, GraphError } from "../runtime/common/errors.js";
import type { Dim, Model } from "./ir/graph.js";
import { verify } from "./ir/order.js";
import { loadModel } from "./onnx/import.js";
import { observeShapes } from "./onnx/ort-shapes.js";
import { computeCosts, type CostFacts } from "./passes/costs.js";
import { findCuts, type CutFacts } from "./passes/find-cuts.js";
import { inferShapes, isKnown } from "./passes/infer-shapes.js";
import { liftConstants } from "./passes/lift-constants.js";

export interface Analysis {
  model: Model;
  costs: CostFacts;
  cuts: CutFacts;
  /** Values whose shapes came from onnxruntime rather than static inference. */
  observed: string[];
  unsupportedOps: string[];
}

/** Runs `pass` and checks the IR invariants on its result. */
export function runPass<T extends { model: Model } | Model>(name: string, before: string[], input: Model, pass: (m: Model) => T): T {
  let out: T;
  try {
    out = pass(input);
  } catch (e) {
    if (e instanceof DynoError) throw e;
    throw new GraphError(`pass ${name} failed${before.length ? ` (after ${before.join(", ")})` : ""}: ${(e as Error).message}`, { cause: e });
  }
  const model: Model = out instanceof Object && "graph" in out ? (out as Model) : (out as { model: Model }).model;
  const problems = verify(model.graph);
  if (problems.length) throw new GraphError(`pass ${name}${before.length ? ` (after ${before.join(", ")})` : ""} broke the graph: ${problems[0]}`);
  before.push(name);
  return out;
}

/** load -> lift-constants -> infer-shapes (-> onnxruntime for what no rule covers) -> costs -> find-cuts. */
export async function analyzeModel(pathOrModel: string | Model, options: { inputShapes?: Record<string, Dim[]>; observe?: boolean } = {}): Promise<Analysis> {
  const loaded = typeof pathOrModel === "string" ? loadModel(pathOrModel) : pathOrModel;
  const done: string[] = ["load"];
  const normalised = runPass("lift-constants", done, loaded, liftConstants);
  const facts = runPass("infer-shapes", done, normalised, (m) => inferShapes(m, { inputShapes: options.inputShapes }));
  let observed: string[] = [];
  if (facts.unknown.length && options.observe !== false) {
    const seen = await observeShapes(facts.model, facts.unknown);
    for (const [name, t] of seen) {
      const v = facts.model.graph.value(name);
      v.dtype = t.dtype;
      v.shape = t.shape;
    }
    observed = facts.unknown.filter((n) => isKnown(facts.model.graph.value(n)));
    done.push("observe-shapes");
  }
  const model = facts.model;
  return {
    model,
    costs: computeCosts(model),
    cuts: findCuts(model),
    observed,
    unsupportedOps: facts.unsupportedOps,
  };
}
