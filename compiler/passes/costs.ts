// Per-node cost model (an analysis): multiply-accumulates, parameter bytes, output bytes.
// Symbolic dims (the batch) count as 1: costs are per inference of one input.
//
// MACs: Conv/ConvTranspose/Gemm/MatMul count their multiply-accumulates; pooling counts one per
// window element; normalisation, elementwise arithmetic and activations one per output element;
// data movement (Reshape, Concat, Transpose, Slice, ...) none.
import { byteSize } from "../ir/dtype.js";
import type { Dim, Model, Node, Shape } from "../ir/graph.js";
import { topoSort } from "../ir/order.js";

export interface NodeCost {
  node: Node;
  macs: number;
  /** Bytes of initializers this node is the first to read (each weight counted once). */
  paramBytes: number;
  params: number;
  /** Bytes of the node's outputs (unknown shapes count 0 and set `complete` false). */
  outputBytes: number;
}

export interface CostFacts {
  nodes: NodeCost[]; // topological order
  totalMacs: number;
  totalParams: number;
  totalParamBytes: number;
  complete: boolean;
}

const ZERO_COST = new Set(["Reshape", "Flatten", "Squeeze", "Unsqueeze", "Concat", "Split", "Slice", "Gather", "Transpose", "Shape", "Size", "Constant", "Identity", "Dropout", "Cast", "Pad", "Expand", "Tile", "ConstantOfShape", "DepthToSpace", "SpaceToDepth"]);
const PER_ELEMENT: Record<string, number> = { BatchNormalization: 1, LayerNormalization: 2, InstanceNormalization: 2, GroupNormalization: 2, Softmax: 2, LogSoftmax: 2, LRN: 2 };

export function dimValue(d: Dim): number {
  return typeof d === "number" ? d : 1;
}

export function numel(shape: Shape | undefined): number {
  return shape ? shape.reduce<number>((a, d) => a * dimValue(d), 1) : 0;
}

export function computeCosts(model: Model): CostFacts {
  const g = model.graph;
  const seen = new Set<string>();
  const nodes: NodeCost[] = [];
  let complete = true;
  for (const n of topoSort(g)) {
    let params = 0;
    let paramBytes = 0;
    for (const v of n.inputs) {
      if (!v || !g.isInitializer(v.name) || seen.has(v.name)) continue;
      seen.add(v.name);
      const t = g.initializers.get(v.name)!;
      params += t.size;
      paramBytes += t.byteLength;
    }
    let outputBytes = 0;
    for (const v of n.outputs) {
      if (!v) continue;
      if (!v.shape || v.dtype === undefined || v.shape.some((d) => d === null)) complete = false;
      else outputBytes += byteSize(v.dtype, numel(v.shape));
    }
    nodes.push({ node: n, macs: nodeMacs(n), params, paramBytes, outputBytes });
  }
  return {
    nodes,
    totalMacs: nodes.reduce((a, c) => a + c.macs, 0),
    totalParams: nodes.reduce((a, c) => a + c.params, 0),
    totalParamBytes: nodes.reduce((a, c) => a + c.paramBytes, 0),
    complete,
  };
}

export function nodeMacs(n: Node): number {
  const out = n.outputs[0]?.shape;
  const x = n.inputs[0]?.shape;
  const op = n.opType;
  if (!out || n.domain !== "") return 0;
  switch (op) {
    case "Conv": {
      const w = n.inputs[1]?.shape;
      if (!w) return 0;
      // Each output element: Cin/group * prod(kernel) MACs; w is [Cout, Cin/group, k...].
      return numel(out) * numel(w.slice(1));
    }
    case "ConvTranspose": {
      const w = n.inputs[1]?.shape;
      if (!w || !x) return 0;
      // Each input element scatters into Cout/group * prod(kernel) outputs; w is [Cin, Cout/group, k...].
      return numel(x) * numel(w.slice(1));
    }
    case "Gemm": {
      const a = x;
      if (!a) return 0;
      const k = n.attrInt("transA", 0) ? a[0]! : a[1]!;
      return numel(out) * dimValue(k);
    }
    case "MatMul": {
      if (!x) return 0;
      return numel(out) * dimValue(x[x.length - 1]!);
    }
    case "MaxPool":
    case "AveragePool":
    case "LpPool": {
      const k = n.attrInts("kernel_shape") ?? [];
      return numel(out) * k.reduce((a, b) => a * b, 1);
    }
    case "GlobalAveragePool":
    case "GlobalMaxPool":
    case "ReduceMean":
    case "ReduceSum":
    case "ReduceMax":
      return numel(x);
    default:
      if (ZERO_COST.has(op)) return 0;
      return numel(out) * (PER_ELEMENT[op] ?? 1);
  }
}
