// Differential check of static shape inference against onnxruntime: every value of the model,
// our dtype and shape against what a real run produces. Used by test/shapes.test.ts and
// bench/shapes.ts (torchvision exports).
import type { Dim, Model } from "../compiler/ir/graph.js";
import { observeShapes } from "../compiler/onnx/ort-shapes.js";
import { inferShapes, fmt } from "../compiler/passes/infer-shapes.js";

export interface ShapeMismatch {
  value: string;
  op: string;
  ours: string;
  ort: string;
}

export async function compareWithOrt(model: Model, inputShapes?: Record<string, Dim[]>): Promise<{ checked: number; mismatches: ShapeMismatch[]; unknown: string[] }> {
  const facts = inferShapes(model, { inputShapes });
  const g = facts.model.graph;
  const names = g.nodes.flatMap((n) => n.outputs.filter((v) => v !== null).map((v) => v!.name));
  const seen = await observeShapes(facts.model, names);
  const mismatches: ShapeMismatch[] = [];
  for (const name of names) {
    const v = g.value(name);
    const o = seen.get(name)!;
    const ours = `${v.dtype}:[${fmt(v.shape)}]`;
    const theirs = `${o.dtype}:[${fmt(o.shape)}]`;
    if (ours !== theirs) mismatches.push({ value: name, op: v.producer?.opType ?? "?", ours, ort: theirs });
  }
  return { checked: names.length, mismatches, unknown: facts.unknown };
}
