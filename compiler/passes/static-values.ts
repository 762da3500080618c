// Values that never cross a cut: weights, constants, and the shape arithmetic computed from them
// (Shape -> Gather -> Concat -> Reshape targets). Each side of a partition owns or recomputes
// what it needs of these, so they are not part of any cut.
import type { Graph, Node } from "../ir/graph.js";
import { topoSort } from "../ir/order.js";

/** Ops whose output depends only on their input's shape, not its data. */
const SHAPE_ONLY = new Set(["Shape", "Size"]);

export interface StaticFacts {
  /** Names of static values: initializers (not overridable), Constant outputs, shape arithmetic. */
  values: Set<string>;
  /** Nodes producing only static values (copied into whichever part needs them). */
  nodes: Set<Node>;
}

export function staticValues(graph: Graph): StaticFacts {
  const overridable = new Set(graph.inputs.map((v) => v.name));
  const values = new Set<string>();
  for (const name of graph.initializers.keys()) if (!overridable.has(name)) values.add(name);
  const nodes = new Set<Node>();
  for (const n of topoSort(graph)) {
    const isStatic =
      !n.hasSubgraphs &&
      (n.opType === "Constant" || SHAPE_ONLY.has(n.opType) || n.reads.every((v) => values.has(v.name))) &&
      n.outputs.some(Boolean);
    if (!isStatic) continue;
    nodes.add(n);
    for (const v of n.outputs) if (v) values.add(v.name);
  }
  return { values, nodes };
}
