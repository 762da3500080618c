// Constant nodes become initializers (an import normalisation, a transform).
//
//   before:  Constant(value=W) -> w ;  Conv(x, w, b)        (paddle2onnx, older exporters)
//   after:   initializer w = W    ;  Conv(x, w, b)
//
// Exporters that keep weights in Constant nodes hide them from everything that treats
// initializers as weights: a bundle stores initializers once (weights.bin) but copies constant
// nodes into every graph that needs them, so a 4.7 MB detector compiled to 518 MB. As
// initializers they are stored once, and small ones stay inline (compile.ts). The tensor, its
// name and its dtype are unchanged; only where it is declared moves. Constants inside subgraph
// bodies stay (a body is opaque), and so does a Constant whose output is a graph output.
import { AttrType, Model, type Node } from "../ir/graph.js";
import { DataType } from "../ir/dtype.js";
import { Tensor } from "../ir/tensor.js";

export function liftConstants(model: Model): Model {
  // Before IR 4 every initializer had to be a graph input too: leave such old models as they are.
  if (model.irVersion < 4) return model;
  const lifted = model.graph.nodes.filter((n) => liftable(n, model) !== null);
  if (lifted.length === 0) return model;
  const out = model.clone();
  const g = out.graph;
  for (const n of g.nodes.filter((x) => x.opType === "Constant" && (x.domain === "" || x.domain === "ai.onnx"))) {
    const t = liftable(n, out);
    if (!t) continue;
    const name = n.outputs[0]!.name;
    g.removeNode(n);
    g.addInitializer(t.withName(name));
  }
  return out;
}

/** The tensor a Constant node holds, when it can become an initializer; else null. */
function liftable(n: Node, model: Model): Tensor | null {
  if (n.opType !== "Constant" || (n.domain !== "" && n.domain !== "ai.onnx")) return null;
  const out = n.outputs[0];
  const g = model.graph;
  if (!out || g.outputs.includes(out) || g.inputs.includes(out) || g.isInitializer(out.name)) return null;
  const a = n.attributes[0];
  if (!a || n.attributes.length !== 1) return null;
  switch (a.name) {
    case "value":
      return a.type === AttrType.TENSOR && a.t && a.t.dtype !== DataType.STRING ? a.t : null;
    case "value_float":
      return a.f === undefined ? null : Tensor.fromFloat32(out.name, [], Float32Array.of(a.f));
    case "value_floats":
      return a.floats ? Tensor.fromFloat32(out.name, [a.floats.length], Float32Array.from(a.floats)) : null;
    case "value_int":
      return a.i === undefined ? null : Tensor.fromInt64(out.name, [], [a.i]);
    case "value_ints":
      return a.ints ? Tensor.fromInt64(out.name, [a.ints.length], a.ints) : null;
    default:
      return null; // sparse_value, value_string(s): left as they are
  }
}
