// Partitioning (a transform): cut a model into a device part and a cloud part, or a chain of
// segments, each a standalone ONNX model.
//
//                           device          ┆          cloud
//                                           ┆
//                 ┌────────── x (skip) ─────┼─────────────────────┐
//                 │                         ┆                     ▼
//   input ─► stem ┴─► x ─► conv ─► relu ─► h┼─► conv ─► h2 ───► add ─► relu ─► ... ─► out
//                                           ┆
//                                 the cut carries {x, h}
//
// A residual block computes add(x, f(x)). A cut placed inside the block, after the first conv
// of f, must carry two tensors: `h`, the branch so far, and `x`, the skip, because `add` runs on
// the cloud and reads `x`, which only the device has. A one-tensor cut exists only where every
// path from input to output passes through that tensor: between blocks. Inception branches and
// DenseNet's concatenations cross a cut the same way, one tensor per open branch.
//
// Each part gets: only the initializers it reads; static shape arithmetic it needs, recomputed
// on its side (or folded to a constant when its source tensor is on the other side); boundary
// tensors declared with dtype and shape (the batch stays symbolic); original names; opsets.
import { GraphError, UsageError } from "../../runtime/common/errors.js";
import { AttrType, Graph, Model, tensorTypeDesc, type Attribute, type Node, type Value } from "../ir/graph.js";
import { topoSort, verifyOrThrow } from "../ir/order.js";
import { Tensor } from "../ir/tensor.js";
import { staticValues, type StaticFacts } from "./static-values.js";

/** Splits at one cut: [device part, cloud part]. */
export function partition(model: Model, cut: readonly string[]): [Model, Model] {
  const [device, cloud] = partitionChain(model, [cut]);
  return [device!, cloud!];
}

/**
 * Splits at consecutive cuts into len(cuts)+1 segments that, run in order, reproduce the model.
 * Each cut must separate the inputs from the outputs, and every cut must lie after the previous.
 */
export function partitionChain(model: Model, cuts: readonly (readonly string[])[]): Model[] {
  const g = model.graph;
  const statics = staticValues(g);
  for (const cut of cuts) checkCutTensors(model, cut, statics);

  const nodes = topoSort(g).filter((n) => !statics.nodes.has(n));
  // A node's segment: the first cut whose ancestors include it (else the last segment).
  const segmentOf = new Map<Node, number>();
  cuts.forEach((cut, j) => {
    for (const n of ancestors(g, cut, statics)) if (!segmentOf.has(n)) segmentOf.set(n, j);
  });
  for (const n of nodes) if (!segmentOf.has(n)) segmentOf.set(n, cuts.length);

  const inputs = g.inputs.filter((v) => !statics.values.has(v.name));
  const boundaries: (readonly string[])[] = [inputs.map((v) => v.name), ...cuts, g.outputs.map((v) => v.name)];
  const producerSegment = (v: Value): number => (v.producer && segmentOf.has(v.producer) ? segmentOf.get(v.producer)! : -1);

  // Every value a segment reads from before it must arrive through the boundary in front of it.
  for (const n of nodes) {
    const s = segmentOf.get(n)!;
    for (const v of n.reads) {
      if (statics.values.has(v.name)) continue;
      const from = producerSegment(v);
      if (from < s && !boundaries[s]!.includes(v.name)) {
        throw new GraphError(notSeparating(model, boundaries[s]!, s, statics));
      }
    }
  }
  // Boundary tensors must exist by then: made in this segment or an earlier one, or passed on.
  for (let s = 1; s < boundaries.length; s++) {
    for (const name of boundaries[s]!) {
      const v = g.value(name);
      const from = producerSegment(v);
      if (from > s - 1) throw new UsageError(`cut ${s}: tensor "${name}" is computed after cut ${s - 1 === 0 ? "0" : s - 1}; cuts must be given in order`);
      if (from < s - 1 && !boundaries[s - 1]!.includes(name)) {
        throw new GraphError(notSeparating(model, boundaries[s - 1]!, s - 1, statics));
      }
    }
  }

  return boundaries.slice(1).map((outs, s) => {
    const segNodes = nodes.filter((n) => segmentOf.get(n) === s);
    return buildPart(model, statics, segNodes, boundaries[s]!, outs, `${g.name || "model"}_part${s}`);
  });
}

function checkCutTensors(model: Model, cut: readonly string[], statics: StaticFacts): void {
  const g = model.graph;
  if (cut.length === 0) throw new UsageError("a cut needs at least one tensor");
  const inner = subgraphNames(g);
  for (const name of cut) {
    if (inner.has(name)) throw new UsageError(`tensor "${name}" is inside the body of ${inner.get(name)!.label} (${inner.get(name)!.opType}); a cut cannot pass through a subgraph`);
    if (statics.values.has(name)) throw new UsageError(`tensor "${name}" is a constant or shape computation; it never crosses a cut`);
    if (!g.has(name) || (!g.value(name).producer && !g.inputs.includes(g.value(name)))) {
      throw new UsageError(`cut tensor "${name}" not found in model "${model.source}"`);
    }
  }
}

/** Compute nodes that must run before the cut tensors are available. */
function ancestors(g: Graph, cut: readonly string[], statics: StaticFacts): Set<Node> {
  const out = new Set<Node>();
  const stack = cut.map((name) => g.value(name).producer).filter((n): n is Node => !!n);
  while (stack.length) {
    const n = stack.pop()!;
    if (out.has(n) || statics.nodes.has(n)) continue;
    out.add(n);
    for (const v of n.reads) if (v.producer && !statics.values.has(v.name)) stack.push(v.producer);
  }
  return out;
}

/** One input-to-output path that avoids the tensors: why they do not separate the graph. */
function notSeparating(model: Model, cut: readonly string[], index: number, statics: StaticFacts): string {
  const g = model.graph;
  const blocked = new Set(cut);
  const prev = new Map<string, string>();
  const queue = g.inputs.filter((v) => !statics.values.has(v.name) && !blocked.has(v.name)).map((v) => v.name);
  queue.forEach((q) => prev.set(q, ""));
  const outputs = new Set(g.outputs.map((v) => v.name));
  while (queue.length) {
    const name = queue.shift()!;
    if (outputs.has(name)) {
      const path = [name];
      for (let p = prev.get(name)!; p; p = prev.get(p)!) path.unshift(p);
      return `tensors {${cut.join(", ")}} (cut ${index}) do not separate the inputs from the outputs of "${model.source}": path ${path.join(" -> ")} avoids them`;
    }
    for (const u of g.value(name).uses) {
      for (const o of u.node.outputs) {
        if (!o || blocked.has(o.name) || prev.has(o.name)) continue;
        prev.set(o.name, name);
        queue.push(o.name);
      }
    }
  }
  return `tensors {${cut.join(", ")}} (cut ${index}) do not separate the graph of "${model.source}": a later part reads a tensor made before the cut that is not in it`;
}

/** Value names defined inside subgraph bodies, mapped to the node that owns the body. */
function subgraphNames(g: Graph): Map<string, Node> {
  const out = new Map<string, Node>();
  const walk = (proto: Record<string, any>, owner: Node) => { // eslint-disable-line @typescript-eslint/no-explicit-any
    for (const n of proto.node ?? []) {
      for (const o of n.output ?? []) if (o) out.set(o, owner);
      for (const a of n.attribute ?? []) for (const sg of [a.g, ...(a.graphs ?? [])]) if (sg) walk(sg, owner);
    }
  };
  for (const n of g.nodes) for (const a of n.attributes) for (const sg of [a.g, ...(a.graphs ?? [])]) if (sg) walk(sg.proto, n);
  return out;
}

function buildPart(model: Model, statics: StaticFacts, nodes: Node[], inputs: readonly string[], outputs: readonly string[], name: string): Model {
  const src = model.graph;
  const part = new Graph();
  part.name = name;
  part.extra = { ...src.extra };
  delete part.extra.name;
  const available = new Set<string>([...inputs, ...nodes.flatMap((n) => n.outputs.filter((v): v is Value => !!v).map((v) => v.name))]);

  // Static values this part reads: copy their producing nodes, fold Shape of an absent tensor.
  const neededStatic = new Set<Node>();
  const folded: FoldedShape[] = [];
  const local = inputs.map((name) => src.value(name));
  const initializers = new Set<string>();
  const needStatic = (v: Value) => {
    if (src.initializers.has(v.name)) return void initializers.add(v.name);
    const p = v.producer;
    if (!p || neededStatic.has(p)) return;
    if ((p.opType === "Shape" || p.opType === "Size") && !available.has(p.inputs[0]!.name) && !src.initializers.has(p.inputs[0]!.name)) {
      folded.push(foldShape(p, v, local));
      return;
    }
    neededStatic.add(p);
    for (const r of p.reads) if (statics.values.has(r.name) || src.initializers.has(r.name)) needStatic(r);
  };
  for (const n of nodes) for (const v of n.reads) if (statics.values.has(v.name)) needStatic(v);
  for (const name of outputs) if (statics.values.has(name)) needStatic(src.value(name));

  for (const t of src.initializers.values()) if (initializers.has(t.name)) part.addInitializer(t);
  for (const f of folded) for (const t of f.initializers) part.addInitializer(t);
  for (const name of inputs) {
    const v = part.value(name);
    const s = src.value(name);
    v.dtype = s.dtype;
    v.shape = s.shape ? [...s.shape] : undefined;
    v.decl = s.producer === null && src.inputs.includes(s) ? s.decl : declare(s);
    part.inputs.push(v);
  }
  for (const n of topoSort(src)) {
    if (!neededStatic.has(n) && !nodes.includes(n)) continue;
    part.copyNode(n);
  }
  for (const f of folded) {
    for (const n of f.nodes) part.addNode(n.op, n.inputs, [n.output], { name: `${n.output}__node`, attributes: n.attributes ?? [] });
  }
  for (const v of part.values.values()) {
    const s = src.values.get(v.name);
    if (s && v.dtype === undefined) {
      v.dtype = s.dtype;
      v.shape = s.shape ? [...s.shape] : undefined;
    }
  }
  for (const name of outputs) {
    const v = part.value(name);
    const s = src.value(name);
    v.decl = src.outputs.includes(s) ? s.decl : declare(s);
    part.outputs.push(v);
  }
  for (const name of src.valueInfo) if (part.has(name) && !part.inputs.includes(part.value(name)) && !part.outputs.includes(part.value(name))) part.valueInfo.push(name);
  verifyOrThrow(part, `partition ${name}`);
  const out = new Model(part, model.opsets.map((o) => ({ ...o })), model.irVersion, { ...model.extra }, `${model.source}#${name}`);
  return out;
}

function declare(v: Value) {
  if (v.dtype === undefined || !v.shape) throw new GraphError(`tensor "${v.name}" crosses a cut but its shape is unknown: run shape inference first`);
  return { type: tensorTypeDesc(v.dtype, v.shape) };
}

interface FoldedShape {
  initializers: Tensor[];
  nodes: { op: string; inputs: string[]; output: string; attributes?: Attribute[] }[];
}

/**
 * Shape(x) where x lives on the other side of the cut: a constant when x's shape is static;
 * otherwise each symbolic dim is read from a tensor this part has that carries the same symbol
 * (the batch crosses with every activation): Concat(constants, Gather(Shape(y), k)).
 */
function foldShape(node: Node, out: Value, local: Value[]): FoldedShape {
  const x = node.inputs[0]!;
  const shape = x.shape;
  if (!shape) throw new UsageError(`${node.label} reads the shape of "${x.name}" on the other side of the cut, and that shape is unknown`);
  const r = shape.length;
  const norm = (a: number) => Math.min(r, Math.max(0, a < 0 ? a + r : a));
  const dims = node.opType === "Size" ? shape : shape.slice(norm(node.attrInt("start", 0)), norm(node.attrInt("end", r)));
  if (dims.every((d) => typeof d === "number")) {
    const values = dims as number[];
    if (node.opType === "Size") return { initializers: [Tensor.fromInt64(out.name, [], [values.reduce((a, b) => a * b, 1)])], nodes: [] };
    return { initializers: [Tensor.fromInt64(out.name, [values.length], values)], nodes: [] };
  }
  if (node.opType === "Size") throw new UsageError(`${node.label} reads the size of "${x.name}" across the cut and it is not static: fix it with --input-shape`);
  const folded: FoldedShape = { initializers: [], nodes: [] };
  const pieces: string[] = [];
  const shapes = new Map<string, string>();
  dims.forEach((d, i) => {
    const piece = `${out.name}__dyno_dim${i}`;
    pieces.push(piece);
    if (typeof d === "number") return void folded.initializers.push(Tensor.fromInt64(piece, [1], [d]));
    const source = local.find((v) => v.shape?.includes(d));
    if (d === null || !source) {
      throw new UsageError(`${node.label} reads the shape of "${x.name}" across the cut; its dim ${i} (${d ?? "?"}) is not static and no tensor of this part carries it: fix it with --input-shape`);
    }
    if (!shapes.has(source.name)) {
      const s = `${out.name}__dyno_shape_of_${source.name}`;
      shapes.set(source.name, s);
      folded.nodes.push({ op: "Shape", inputs: [source.name], output: s });
    }
    const k = `${piece}__index`;
    folded.initializers.push(Tensor.fromInt64(k, [1], [source.shape!.indexOf(d)]));
    folded.nodes.push({ op: "Gather", inputs: [shapes.get(source.name)!, k], output: piece, attributes: [{ name: "axis", type: AttrType.INT, i: 0 }] });
  });
  folded.nodes.push({ op: "Concat", inputs: pieces, output: out.name, attributes: [{ name: "axis", type: AttrType.INT, i: 0 }] });
  return folded;
}
