// A tiny builder for tests and examples:
//   const g = buildGraph({
//     inputs: { x: ["float32", [1, 3, 8, 8]] },
//     initializers: [Tensor.fromFloat32("w", [4, 3, 3, 3], w)],
//     nodes: [node("Conv", ["x", "w"], ["y"], { pads: [1, 1, 1, 1] }), node("Relu", ["y"], ["z"])],
//     outputs: ["z"],
//   });
import { dtypeFromName, type DataType } from "./dtype.js";
import { AttrType, Graph, Model, tensorTypeDesc, type Attribute, type OpsetId, type Shape } from "./graph.js";
import { Tensor } from "./tensor.js";

export type AttrValue = number | string | number[] | string[] | Tensor;

export interface NodeSpec {
  opType: string;
  inputs: string[];
  outputs: string[];
  attributes: Attribute[];
  name?: string;
  domain?: string;
}

/** A node spec; integers become INT(S), other numbers FLOAT(S); use `floats()` to force floats. */
export function node(opType: string, inputs: string[], outputs: string[], attrs: Record<string, AttrValue | FloatList> = {}, options: { name?: string; domain?: string } = {}): NodeSpec {
  return { opType, inputs, outputs, attributes: Object.entries(attrs).map(([k, v]) => attribute(k, v)), ...options };
}

class FloatList {
  constructor(readonly values: number[]) {}
}

export function floats(...values: number[]): FloatList {
  return new FloatList(values);
}

export function attribute(name: string, v: AttrValue | FloatList): Attribute {
  if (v instanceof FloatList) return { name, type: AttrType.FLOATS, floats: v.values };
  if (v instanceof Tensor) return { name, type: AttrType.TENSOR, t: v };
  if (typeof v === "number") return Number.isInteger(v) ? { name, type: AttrType.INT, i: v } : { name, type: AttrType.FLOAT, f: v };
  if (typeof v === "string") return { name, type: AttrType.STRING, s: new TextEncoder().encode(v) };
  if (v.length > 0 && typeof v[0] === "string") return { name, type: AttrType.STRINGS, strings: (v as string[]).map((s) => new TextEncoder().encode(s)) };
  const nums = v as number[];
  return nums.every(Number.isInteger) ? { name, type: AttrType.INTS, ints: nums } : { name, type: AttrType.FLOATS, floats: nums };
}

export interface GraphSpec {
  name?: string;
  inputs: Record<string, [string, Shape]>;
  outputs: string[];
  nodes: NodeSpec[];
  initializers?: Tensor[];
}

export function buildGraph(spec: GraphSpec): Graph {
  const g = new Graph();
  g.name = spec.name ?? "test";
  for (const t of spec.initializers ?? []) g.addInitializer(t);
  for (const [name, [dtype, shape]] of Object.entries(spec.inputs)) {
    const v = g.value(name);
    v.dtype = dtypeOf(dtype);
    v.shape = [...shape];
    v.decl = { type: tensorTypeDesc(v.dtype, shape) };
    g.inputs.push(v);
  }
  spec.nodes.forEach((n, i) => g.addNode(n.opType, n.inputs, n.outputs, { name: n.name ?? `${n.opType.toLowerCase()}_${i}`, domain: n.domain ?? "", attributes: n.attributes }));
  for (const name of spec.outputs) {
    const v = g.value(name);
    v.decl = { type: tensorTypeDesc(v.dtype ?? 1) };
    g.outputs.push(v);
  }
  return g;
}

export function buildModel(spec: GraphSpec, opsets: OpsetId[] = [{ domain: "", version: 17 }]): Model {
  return new Model(buildGraph(spec), opsets, 8);
}

function dtypeOf(name: string): DataType {
  const t = dtypeFromName(name);
  if (t === undefined) throw new Error(`unknown dtype "${name}"`);
  return t;
}
