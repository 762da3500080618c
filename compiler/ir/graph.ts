// dyno's IR: a small, ordered graph in the manner of onnx-ir. Every Value knows the Node that
// produces it and the Nodes that use it; Nodes keep file order; initializers are Tensors.
// Only compiler/onnx/import.ts and export.ts convert to and from protobuf; passes see this.
//
// Fields that passes do not interpret (doc strings, metadata, device configurations, subgraph
// bodies, training info, functions) travel in `extra` / opaque objects and are written back as
// they were read, so a load/save round trip preserves every field.
import { GraphError } from "../../runtime/common/errors.js";
import { DataType } from "./dtype.js";
import type { KeyValue, Tensor } from "./tensor.js";

/** A dimension: a number, a symbolic name ("batch"), or null when unknown. */
export type Dim = number | string | null;
export type Shape = Dim[];

/** A declared type as ONNX writes it (TypeProto, plain data with ONNX's field names). */
export type TypeDesc = Record<string, unknown>;

/** A value_info / graph input / graph output entry, as declared in the file. */
export interface ValueDecl {
  type?: TypeDesc;
  extra?: Record<string, unknown>; // doc_string, metadata_props
}

export interface Use {
  node: Node;
  /** Input slot, or -1 for an implicit use from inside a subgraph (If/Loop/Scan body). */
  index: number;
}

export class Value {
  producer: Node | null = null;
  readonly uses: Use[] = [];
  /** Element type and shape: declared in the file or inferred by a pass. */
  dtype?: DataType;
  shape?: Shape;
  /** The declaration to write back (graph input/output or value_info). */
  decl?: ValueDecl;
  constructor(readonly name: string) {}

  get consumers(): Node[] {
    return [...new Set(this.uses.map((u) => u.node))];
  }
}

/** An opaque subgraph (If/Loop/Scan body): carried untouched; `freeNames` are outer values it reads. */
export interface Subgraph {
  readonly proto: Record<string, unknown>;
  readonly freeNames: readonly string[];
}

export type Int = number | bigint;

/** An attribute; only the fields present in the file are set. */
export interface Attribute {
  name: string;
  type: number; // AttributeProto.AttributeType
  f?: number;
  i?: Int;
  s?: Uint8Array;
  t?: Tensor;
  g?: Subgraph;
  floats?: number[];
  ints?: Int[];
  strings?: Uint8Array[];
  tensors?: Tensor[];
  graphs?: Subgraph[];
  extra?: Record<string, unknown>; // ref_attr_name, doc_string, sparse tensors, type protos
}

export const AttrType = {
  UNDEFINED: 0, FLOAT: 1, INT: 2, STRING: 3, TENSOR: 4, GRAPH: 5, FLOATS: 6, INTS: 7, STRINGS: 8,
  TENSORS: 9, GRAPHS: 10, SPARSE_TENSOR: 11, SPARSE_TENSORS: 12, TYPE_PROTO: 13, TYPE_PROTOS: 14,
} as const;

export class Node {
  readonly inputs: (Value | null)[] = [];
  readonly outputs: (Value | null)[] = [];
  /** Outer-scope values read from inside subgraph attributes. */
  readonly implicitInputs: Value[] = [];
  constructor(
    public name: string,
    public opType: string,
    public domain: string,
    public attributes: Attribute[] = [],
    public extra: Record<string, unknown> = {},
  ) {}

  attr(name: string): Attribute | undefined {
    return this.attributes.find((a) => a.name === name);
  }

  attrInt(name: string, fallback: number): number;
  attrInt(name: string): number | undefined;
  attrInt(name: string, fallback?: number): number | undefined {
    const i = this.attr(name)?.i;
    return i === undefined ? fallback : Number(i);
  }

  attrInts(name: string): number[] | undefined {
    return this.attr(name)?.ints?.map(Number);
  }

  attrFloat(name: string, fallback: number): number {
    return this.attr(name)?.f ?? fallback;
  }

  attrString(name: string, fallback: string): string {
    const s = this.attr(name)?.s;
    return s === undefined ? fallback : new TextDecoder().decode(s);
  }

  /** Every value this node reads: its inputs (non-empty) and implicit subgraph inputs. */
  get reads(): Value[] {
    const out: Value[] = [];
    for (const v of this.inputs) if (v) out.push(v);
    out.push(...this.implicitInputs);
    return out;
  }

  get hasSubgraphs(): boolean {
    return this.attributes.some((a) => a.g !== undefined || (a.graphs?.length ?? 0) > 0);
  }

  /** A label for messages: the node name, or op type and first output. */
  get label(): string {
    return this.name || `${this.opType}(${this.outputs.find(Boolean)?.name ?? "?"})`;
  }
}

export interface OpsetId {
  domain: string;
  version: number;
  /** Carried through untouched (explicitly written default fields). */
  extra?: Record<string, unknown>;
}

export class Graph {
  name = "";
  readonly nodes: Node[] = [];
  readonly inputs: Value[] = [];
  readonly outputs: Value[] = [];
  readonly initializers = new Map<string, Tensor>();
  readonly values = new Map<string, Value>();
  /** Names whose declared types are written as value_info, in file order. */
  readonly valueInfo: string[] = [];
  extra: Record<string, unknown> = {};

  /** The value with this name, created on first mention. */
  value(name: string): Value {
    let v = this.values.get(name);
    if (!v) {
      v = new Value(name);
      this.values.set(name, v);
    }
    return v;
  }

  has(name: string): boolean {
    return this.values.has(name);
  }

  /** Appends a node reading and writing the named values ("" is an omitted optional slot). */
  addNode(
    opType: string,
    inputs: readonly string[],
    outputs: readonly string[],
    options: { name?: string; domain?: string; attributes?: Attribute[]; extra?: Record<string, unknown>; implicit?: readonly string[] } = {},
  ): Node {
    const node = new Node(options.name ?? "", opType, options.domain ?? "", options.attributes ?? [], options.extra ?? {});
    inputs.forEach((name, index) => {
      if (!name) return void node.inputs.push(null);
      const v = this.value(name);
      node.inputs.push(v);
      v.uses.push({ node, index });
    });
    for (const name of options.implicit ?? []) {
      const v = this.value(name);
      node.implicitInputs.push(v);
      v.uses.push({ node, index: -1 });
    }
    for (const name of outputs) {
      if (!name) {
        node.outputs.push(null);
        continue;
      }
      const v = this.value(name);
      if (v.producer) throw new GraphError(`value "${name}" is produced twice (by ${v.producer.label} and ${node.label})`);
      v.producer = node;
      node.outputs.push(v);
    }
    this.nodes.push(node);
    return node;
  }

  /** Adds a copy of a node of another graph (same names, attributes shared: they are immutable). */
  copyNode(n: Node): Node {
    return this.addNode(n.opType, n.inputs.map((v) => v?.name ?? ""), n.outputs.map((v) => v?.name ?? ""), {
      name: n.name,
      domain: n.domain,
      attributes: n.attributes,
      extra: n.extra,
      implicit: n.implicitInputs.map((v) => v.name),
    });
  }

  /** Removes a node and its uses; its outputs lose their producer. */
  removeNode(node: Node): void {
    const i = this.nodes.indexOf(node);
    if (i < 0) throw new GraphError(`node ${node.label} is not in graph "${this.name}"`);
    this.nodes.splice(i, 1);
    for (const v of node.reads) {
      for (let j = v.uses.length - 1; j >= 0; j--) if (v.uses[j]!.node === node) v.uses.splice(j, 1);
    }
    for (const v of node.outputs) if (v && v.producer === node) v.producer = null;
  }

  addInitializer(t: Tensor): Value {
    this.initializers.set(t.name, t);
    const v = this.value(t.name);
    v.dtype = t.dtype;
    v.shape = [...t.dims];
    return v;
  }

  isInitializer(name: string): boolean {
    return this.initializers.has(name);
  }

  /** A deep copy of the structure; tensors and opaque payloads are shared (they are immutable). */
  clone(): Graph {
    const g = new Graph();
    g.name = this.name;
    g.extra = { ...this.extra };
    for (const [name, t] of this.initializers) g.initializers.set(name, t);
    for (const v of this.values.values()) copyValueFacts(v, g.value(v.name));
    for (const n of this.nodes) g.copyNode(n);
    for (const v of this.inputs) g.inputs.push(g.value(v.name));
    for (const v of this.outputs) g.outputs.push(g.value(v.name));
    g.valueInfo.push(...this.valueInfo);
    return g;
  }
}

export function copyValueFacts(from: Value, to: Value): void {
  if (from.dtype !== undefined) to.dtype = from.dtype;
  if (from.shape !== undefined) to.shape = [...from.shape];
  if (from.decl !== undefined) to.decl = from.decl;
}

export class Model {
  constructor(
    public graph: Graph,
    public opsets: OpsetId[],
    public irVersion: number = 8,
    /** ModelProto fields carried untouched: producer, doc_string, metadata_props, functions, ... */
    public extra: Record<string, unknown> = {},
    /** Where the model was read from, for messages. */
    public source = "<memory>",
  ) {}

  opset(domain = ""): number | undefined {
    const d = domain === "ai.onnx" ? "" : domain;
    return this.opsets.find((o) => (o.domain === "ai.onnx" ? "" : o.domain) === d)?.version;
  }

  withGraph(graph: Graph): Model {
    return new Model(graph, this.opsets.map((o) => ({ ...o })), this.irVersion, { ...this.extra }, this.source);
  }

  clone(): Model {
    return this.withGraph(this.graph.clone());
  }
}

/** A tensor TypeProto for declarations, as ONNX writes it. */
export function tensorTypeDesc(dtype: DataType, shape?: Shape): TypeDesc {
  const tensor: Record<string, unknown> = { elem_type: dtype };
  if (shape) {
    tensor.shape = {
      dim: shape.map((d) => (typeof d === "number" ? { dim_value: d } : typeof d === "string" ? { dim_param: d } : {})),
    };
  }
  return { tensor_type: tensor };
}

/** Reads dtype and shape from a declared tensor TypeProto (anything else: undefined). */
export function parseTensorType(type: TypeDesc | undefined): { dtype?: DataType; shape?: Shape } {
  const tt = (type?.tensor_type ?? type?.sparse_tensor_type) as { elem_type?: number; shape?: { dim?: Record<string, unknown>[] } } | undefined;
  if (!tt) return {};
  const out: { dtype?: DataType; shape?: Shape } = {};
  if (tt.elem_type !== undefined && tt.elem_type !== 0) out.dtype = tt.elem_type;
  if (tt.shape) {
    out.shape = (tt.shape.dim ?? []).map((d): Dim => {
      if (d.dim_value !== undefined) return Number(d.dim_value);
      if (typeof d.dim_param === "string" && d.dim_param !== "") return d.dim_param;
      return null;
    });
  }
  return out;
}

export type { KeyValue };
