// The latency-optimal two-way DAG partition as a minimum s-t cut, built as DADS builds it
// (Hu et al., INFOCOM'19; ../shared/design/brief.md §4):
//
//   source = device, sink = cloud;
//   device -> v  with capacity cloudTime(v)   (cut when v runs on the cloud)
//   v -> cloud   with capacity deviceTime(v)  (cut when v runs on the device)
//   u -> t -> v  with capacity transfer(t) on u -> t, where t is an auxiliary node for tensor t,
//                so a tensor read by several cloud nodes is paid for once;
//   t -> v for each reader v of t, infinite; v -> u, t -> u infinite: a cloud node never
//                feeds a device node (no back-and-forth).
//
// Graph inputs are pinned to the device (they start there). The max-flow value is the minimum
// of sum(device times) + sum(cloud times) + sum(transfers) over all monotone partitions.
import type { Model, Node, Value } from "../ir/graph.js";
import { topoSort } from "../ir/order.js";
import { valueBytes } from "./find-cuts.js";
import { staticValues } from "./static-values.js";

export interface CutCostModel {
  deviceSeconds(node: Node): number;
  cloudSeconds(node: Node): number;
  transferSeconds(bytes: number): number;
}

export interface MinCutResult {
  /** Tensors crossing from device to cloud (a valid cut for `partition`). */
  tensors: string[];
  deviceNodes: Node[];
  cloudNodes: Node[];
  /** Predicted seconds: device compute + transfer + cloud compute. */
  seconds: number;
}

export function minCutPartition(model: Model, cost: CutCostModel): MinCutResult {
  const g = model.graph;
  const statics = staticValues(g);
  const nodes = topoSort(g).filter((n) => !statics.nodes.has(n));
  const flow = new FlowNetwork();
  const S = flow.add();
  const T = flow.add();
  const id = new Map<Node, number>();
  for (const n of nodes) {
    const v = flow.add();
    id.set(n, v);
    flow.edge(S, v, cost.cloudSeconds(n));
    flow.edge(v, T, cost.deviceSeconds(n));
  }
  // One auxiliary node per tensor read by compute nodes: inputs (pinned to the device) and
  // activations.
  const tensorNode = new Map<Value, number>();
  const producerOf = (v: Value): number => (v.producer && id.has(v.producer) ? id.get(v.producer)! : S);
  const tensors: Value[] = [];
  for (const n of nodes) {
    for (const v of n.reads) {
      if (statics.values.has(v.name) || tensorNode.has(v)) continue;
      const t = flow.add();
      tensorNode.set(v, t);
      tensors.push(v);
      const p = producerOf(v);
      flow.edge(p, t, cost.transferSeconds(valueBytes(v)));
      flow.edge(t, p, Infinity);
    }
    for (const v of n.reads) {
      const t = tensorNode.get(v);
      if (t === undefined) continue;
      flow.edge(t, id.get(n)!, Infinity);
      flow.edge(id.get(n)!, producerOf(v), Infinity);
    }
  }
  const seconds = flow.maxFlow(S, T);
  const deviceSide = flow.reachableFrom(S);
  const onDevice = (v: Value) => deviceSide.has(producerOf(v));
  const deviceNodes = nodes.filter((n) => deviceSide.has(id.get(n)!));
  const cloudNodes = nodes.filter((n) => !deviceSide.has(id.get(n)!));
  const cut = tensors.filter((v) => onDevice(v) && v.consumers.some((c) => id.has(c) && !deviceSide.has(id.get(c)!)));
  // Outputs computed on the device cross too (they are the result).
  for (const v of g.outputs) if (!cut.includes(v) && onDevice(v)) cut.push(v);
  return { tensors: cut.map((v) => v.name), deviceNodes, cloudNodes, seconds };
}

/** Dinic's max-flow on float capacities; small graphs (thousands of nodes). */
class FlowNetwork {
  private head: number[] = [];
  private to: number[] = [];
  private cap: number[] = [];
  private next: number[] = [];
  private level: number[] = [];
  private iter: number[] = [];

  add(): number {
    this.head.push(-1);
    return this.head.length - 1;
  }

  edge(u: number, v: number, c: number): void {
    for (const [a, b, w] of [[u, v, c], [v, u, 0]] as const) {
      this.to.push(b);
      this.cap.push(w);
      this.next.push(this.head[a]!);
      this.head[a] = this.to.length - 1;
    }
  }

  maxFlow(s: number, t: number): number {
    let total = 0;
    while (this.bfs(s, t)) {
      this.iter = [...this.head];
      for (let f = this.dfs(s, t, Infinity); f > 1e-15; f = this.dfs(s, t, Infinity)) {
        if (!Number.isFinite(f)) return Infinity;
        total += f;
      }
    }
    return total;
  }

  reachableFrom(s: number): Set<number> {
    const seen = new Set([s]);
    const stack = [s];
    while (stack.length) {
      const u = stack.pop()!;
      for (let e = this.head[u]!; e !== -1; e = this.next[e]!) {
        if (this.cap[e]! > 1e-15 && !seen.has(this.to[e]!)) {
          seen.add(this.to[e]!);
          stack.push(this.to[e]!);
        }
      }
    }
    return seen;
  }

  private bfs(s: number, t: number): boolean {
    this.level = new Array(this.head.length).fill(-1);
    this.level[s] = 0;
    const queue = [s];
    for (let i = 0; i < queue.length; i++) {
      const u = queue[i]!;
      for (let e = this.head[u]!; e !== -1; e = this.next[e]!) {
        const v = this.to[e]!;
        if (this.cap[e]! > 1e-15 && this.level[v] === -1) {
          this.level[v] = this.level[u]! + 1;
          queue.push(v);
        }
      }
    }
    return this.level[t] !== -1;
  }

  private dfs(u: number, t: number, f: number): number {
    if (u === t) return f;
    for (; this.iter[u] !== -1; this.iter[u] = this.next[this.iter[u]!]!) {
      const e = this.iter[u]!;
      const v = this.to[e]!;
      if (this.cap[e]! > 1e-15 && this.level[v] === this.level[u]! + 1) {
        const d = this.dfs(v, t, Math.min(f, this.cap[e]!));
        if (d > 1e-15) {
          this.cap[e] = this.cap[e]! - d;
          this.cap[e ^ 1] = this.cap[e ^ 1]! + d;
          return d;
        }
      }
    }
    return 0;
  }
}
