// Candidate cuts of a DAG (an analysis). Compute nodes are put in one topological order, chosen
// greedily to keep the bytes of live tensors small (finish a branch before opening the next);
// the candidate cut at each position of that order is the set of tensors produced before it and
// read after it. In a chain that is one tensor; across a skip connection, parallel branches or
// dense concatenation it is several. Position 0 is the input cut (cloud-only), the last position
// the output cut (device-only).
import { GraphError } from "../../runtime/common/errors.js";
import { byteSize } from "../ir/dtype.js";
import type { Model, Node, Value } from "../ir/graph.js";
import { topoSort } from "../ir/order.js";
import { nodeMacs, numel } from "./costs.js";
import { staticValues } from "./static-values.js";

export interface CandidateCut {
  index: number;
  /** Position in `order`: nodes [0, position) run before the cut (on the device). */
  position: number;
  tensors: string[];
  /** Bytes crossing at the tensors' own dtypes (float32 for activations), per input. */
  bytes: number;
  deviceMacs: number;
  cloudMacs: number;
  kind: "input" | "inner" | "output";
  /** Another cut has no more bytes and no more device MACs, and fewer of one. */
  dominated: boolean;
}

export interface CutFacts {
  /** Compute nodes (static shape/constant nodes excluded) in the order the cuts refer to. */
  order: Node[];
  cuts: CandidateCut[];
  totalMacs: number;
}

export function valueBytes(v: Value): number {
  if (v.dtype === undefined || !v.shape) throw new GraphError(`tensor "${v.name}" has no known shape: run shape inference first`);
  return byteSize(v.dtype, numel(v.shape));
}

export function findCuts(model: Model): CutFacts {
  const g = model.graph;
  const statics = staticValues(g);
  const compute = topoSort(g).filter((n) => !statics.nodes.has(n));
  const order = lowLiveBytesOrder(compute, statics.values, new Set(g.outputs.map((v) => v.name)));
  const n = order.length;
  const pos = new Map(order.map((node, i) => [node, i]));
  const outputs = new Set(g.outputs.map((v) => v.name));

  // Each non-static value is live on positions [born, dies]: born after its producer runs
  // (0 for graph inputs), dead after its last compute consumer (n if it is a graph output).
  const spans: { value: Value; born: number; dies: number }[] = [];
  const consider = (v: Value, born: number) => {
    let dies = outputs.has(v.name) ? n : -1;
    for (const u of v.uses) {
      const p = pos.get(u.node);
      if (p !== undefined) dies = Math.max(dies, p);
    }
    if (dies >= born) spans.push({ value: v, born, dies });
  };
  for (const v of g.inputs) if (!statics.values.has(v.name)) consider(v, 0);
  order.forEach((node, i) => node.outputs.forEach((v) => v && consider(v, i + 1)));

  const macs = order.map(nodeMacs);
  const totalMacs = macs.reduce((a, b) => a + b, 0);
  const cuts: CandidateCut[] = [];
  const seen = new Set<string>();
  let deviceMacs = 0;
  for (let p = 0; p <= n; p++) {
    if (p > 0) deviceMacs += macs[p - 1]!;
    const live = spans.filter((s) => s.born <= p && p <= s.dies).map((s) => s.value);
    const key = live.map((v) => v.name).join("\u0000");
    if (seen.has(key)) continue;
    seen.add(key);
    cuts.push({
      index: cuts.length,
      position: p,
      tensors: live.map((v) => v.name),
      bytes: live.reduce((a, v) => a + valueBytes(v), 0),
      deviceMacs,
      cloudMacs: totalMacs - deviceMacs,
      kind: p === 0 ? "input" : p === n ? "output" : "inner",
      dominated: false,
    });
  }
  for (const c of cuts) {
    c.dominated = cuts.some((o) => o !== c && o.bytes <= c.bytes && o.deviceMacs <= c.deviceMacs && (o.bytes < c.bytes || o.deviceMacs < c.deviceMacs));
  }
  return { order, cuts, totalMacs };
}

/**
 * A topological order of `nodes` that keeps live bytes low: among ready nodes, run the one that
 * adds the fewest bytes net of what it frees (its inputs it is the last reader of); file order
 * breaks ties. Greedy, O(n * ready).
 */
function lowLiveBytesOrder(nodes: Node[], statics: Set<string>, outputs: Set<string>): Node[] {
  const inSet = new Set(nodes);
  const fileIndex = new Map(nodes.map((n, i) => [n, i]));
  const pendingDeps = new Map<Node, number>();
  const readersLeft = new Map<Value, number>();
  for (const n of nodes) {
    const deps = new Set<Node>();
    for (const v of n.reads) {
      if (statics.has(v.name)) continue;
      if (v.producer && inSet.has(v.producer)) deps.add(v.producer);
    }
    pendingDeps.set(n, deps.size);
    for (const v of new Set(n.reads)) if (!statics.has(v.name)) readersLeft.set(v, (readersLeft.get(v) ?? 0) + 1);
  }
  const size = (v: Value) => (v.dtype !== undefined && v.shape ? byteSize(v.dtype, numel(v.shape)) : 0);
  const score = (n: Node) => {
    let s = 0;
    for (const v of n.outputs) if (v && (v.uses.length > 0 || outputs.has(v.name))) s += size(v);
    for (const v of new Set(n.reads)) if (readersLeft.get(v) === 1 && !outputs.has(v.name)) s -= size(v);
    return s;
  };
  const ready = nodes.filter((n) => pendingDeps.get(n) === 0);
  const order: Node[] = [];
  while (ready.length) {
    let best = 0;
    let bestScore = score(ready[0]!);
    for (let i = 1; i < ready.length; i++) {
      const s = score(ready[i]!);
      if (s < bestScore || (s === bestScore && fileIndex.get(ready[i]!)! < fileIndex.get(ready[best]!)!)) {
        best = i;
        bestScore = s;
      }
    }
    const n = ready.splice(best, 1)[0]!;
    order.push(n);
    for (const v of new Set(n.reads)) if (readersLeft.has(v)) readersLeft.set(v, readersLeft.get(v)! - 1);
    const woken = new Set<Node>();
    for (const v of n.outputs) {
      if (!v) continue;
      for (const u of v.uses) {
        if (!inSet.has(u.node) || woken.has(u.node)) continue;
        woken.add(u.node);
        const left = pendingDeps.get(u.node)! - 1;
        pendingDeps.set(u.node, left);
        if (left === 0) ready.push(u.node);
      }
    }
  }
  if (order.length !== nodes.length) throw new GraphError("graph has a cycle among compute nodes");
  return order;
}
