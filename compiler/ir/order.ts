// Topological order and the structural invariants every pass must keep.
import { GraphError } from "../../runtime/common/errors.js";
import type { Graph, Node } from "./graph.js";

/**
 * Nodes in a topological order that is deterministic: among ready nodes, file order wins
 * (Kahn's algorithm with the lowest original index first). Throws on a cycle, naming a node on it.
 */
export function topoSort(graph: Graph): Node[] {
  const index = new Map<Node, number>();
  graph.nodes.forEach((n, i) => index.set(n, i));
  const pending = new Map<Node, number>();
  for (const n of graph.nodes) {
    const deps = new Set<Node>();
    for (const v of n.reads) if (v.producer && index.has(v.producer)) deps.add(v.producer);
    pending.set(n, deps.size);
  }
  const ready = new MinHeap<Node>((a, b) => index.get(a)! - index.get(b)!);
  for (const n of graph.nodes) if (pending.get(n) === 0) ready.push(n);
  const order: Node[] = [];
  while (ready.size) {
    const n = ready.pop()!;
    order.push(n);
    const seen = new Set<Node>();
    for (const out of n.outputs) {
      if (!out) continue;
      for (const u of out.uses) {
        if (seen.has(u.node) || !pending.has(u.node)) continue;
        seen.add(u.node);
        const left = pending.get(u.node)! - 1;
        pending.set(u.node, left);
        if (left === 0) ready.push(u.node);
      }
    }
  }
  if (order.length !== graph.nodes.length) {
    // Every unsorted node waits on an unsorted producer, so walking producers from one must come
    // back to a node already seen: that node is on a cycle (the first unsorted may only be downstream).
    const sorted = new Set(order);
    let n = graph.nodes.find((x) => !sorted.has(x))!;
    const seen = new Set<Node>();
    while (!seen.has(n)) {
      seen.add(n);
      n = n.reads.map((v) => v.producer).find((p): p is Node => !!p && index.has(p) && !sorted.has(p))!;
    }
    throw new GraphError(`graph "${graph.name}" has a cycle through node ${n.label}`);
  }
  return order;
}

/** True when the nodes are already in topological order. */
export function isTopologicallySorted(graph: Graph): boolean {
  const done = new Set<Node>();
  for (const n of graph.nodes) {
    for (const v of n.reads) if (v.producer && v.producer !== n && !done.has(v.producer)) return false;
    done.add(n);
  }
  return true;
}

/**
 * The IR invariants: acyclic; every value read is produced by a node, an initializer or a graph
 * input; each value produced once; node names unique where given; graph outputs defined.
 * Returns the problems found (empty when the graph is valid); `verifyOrThrow` throws the first.
 */
export function verify(graph: Graph): string[] {
  const problems: string[] = [];
  const declared = new Set<string>([...graph.inputs.map((v) => v.name), ...graph.initializers.keys()]);
  const producedBy = new Map<string, Node>();
  const nodeNames = new Set<string>();
  for (const n of graph.nodes) {
    if (n.name) {
      if (nodeNames.has(n.name)) problems.push(`node name "${n.name}" is used twice`);
      nodeNames.add(n.name);
    }
    for (const v of n.outputs) {
      if (!v) continue;
      const prior = producedBy.get(v.name);
      if (prior) problems.push(`value "${v.name}" is produced by both ${prior.label} and ${n.label}`);
      else if (declared.has(v.name)) problems.push(`value "${v.name}" is both a graph input/initializer and the output of ${n.label}`);
      producedBy.set(v.name, n);
      if (v.producer !== n) problems.push(`value "${v.name}" does not record ${n.label} as its producer`);
    }
  }
  for (const n of graph.nodes) {
    n.inputs.forEach((v, i) => {
      if (!v) return;
      if (!producedBy.has(v.name) && !declared.has(v.name)) problems.push(`input ${i} "${v.name}" of ${n.label} is not produced by any node nor declared`);
      if (!v.uses.some((u) => u.node === n && u.index === i)) problems.push(`value "${v.name}" does not record its use by ${n.label}`);
    });
    for (const v of n.implicitInputs) {
      if (!producedBy.has(v.name) && !declared.has(v.name)) problems.push(`subgraph of ${n.label} reads "${v.name}", which is not defined in the outer graph`);
    }
  }
  for (const v of graph.outputs) {
    if (!producedBy.has(v.name) && !declared.has(v.name)) problems.push(`graph output "${v.name}" is not produced by any node`);
  }
  const names = new Set<string>();
  for (const v of graph.inputs) {
    if (names.has(v.name)) problems.push(`graph input "${v.name}" is declared twice`);
    names.add(v.name);
  }
  try {
    topoSort(graph);
  } catch (e) {
    problems.push((e as Error).message);
  }
  return problems;
}

export function verifyOrThrow(graph: Graph, context = ""): void {
  const problems = verify(graph);
  if (problems.length) {
    const more = problems.length > 1 ? ` (and ${problems.length - 1} more)` : "";
    throw new GraphError(`${context ? context + ": " : ""}${problems[0]}${more}`);
  }
}

/** A small binary heap; ready-node selection stays O(log n) on 100k-node graphs. */
class MinHeap<T> {
  private items: T[] = [];
  constructor(private readonly less: (a: T, b: T) => number) {}
  get size(): number {
    return this.items.length;
  }
  push(x: T): void {
    const a = this.items;
    a.push(x);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (this.less(a[i]!, a[p]!) >= 0) break;
      [a[i], a[p]] = [a[p]!, a[i]!];
      i = p;
    }
  }
  pop(): T | undefined {
    const a = this.items;
    if (!a.length) return undefined;
    const top = a[0];
    const last = a.pop()!;
    if (a.length) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && this.less(a[l]!, a[m]!) < 0) m = l;
        if (r < a.length && this.less(a[r]!, a[m]!) < 0) m = r;
        if (m === i) break;
        [a[i], a[m]] = [a[m]!, a[i]!];
        i = m;
      }
    }
    return top;
  }
}
