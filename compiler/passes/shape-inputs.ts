// Initializers read as shapes, indices or sizes rather than as data (an analysis). onnxruntime
// reads these while it loads a graph (shape inference, constant folding) and refuses them as
// external data ("Cannot parse data from external tensors"), so a bundle keeps them inline in
// every graph that reads them, whatever their size; only data weights go to weights.bin.
import type { Graph } from "../ir/graph.js";

/** Per op, the input slots that hold shapes, axes, indices, sizes or scales. */
const SHAPE_SLOTS: Record<string, readonly number[]> = {
  Reshape: [1],
  Expand: [1],
  Tile: [1],
  Slice: [1, 2, 3, 4],
  Pad: [1, 2, 3],
  Resize: [1, 2, 3],
  Upsample: [1],
  ConstantOfShape: [0],
  Squeeze: [1],
  Unsqueeze: [1],
  ReduceSum: [1],
  ReduceMean: [1],
  ReduceMax: [1],
  ReduceMin: [1],
  ReduceProd: [1],
  ReduceL1: [1],
  ReduceL2: [1],
  ReduceLogSumExp: [1],
  ReduceSumSquare: [1],
  Split: [1],
  TopK: [1],
  OneHot: [1],
  Range: [0, 1, 2],
  CenterCropPad: [1],
  Col2Im: [1, 2],
};

export function shapeLikeInitializers(graph: Graph): Set<string> {
  const out = new Set<string>();
  for (const n of graph.nodes) {
    const slots = n.domain === "" || n.domain === "ai.onnx" ? SHAPE_SLOTS[n.opType] : undefined;
    if (!slots) continue;
    for (const i of slots) {
      const v = n.inputs[i];
      if (v && graph.isInitializer(v.name)) out.add(v.name);
    }
  }
  return out;
}
