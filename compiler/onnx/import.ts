// ONNX file -> IR. The only place (with export.ts) that sees protobuf data.
import { readFileSync, statSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { ModelError } from "../../runtime/common/errors.js";
import { Graph, Model, parseTensorType, type Attribute, type Int, type Subgraph } from "../ir/graph.js";
import { externalEntry, externalPath, Tensor, type TensorData } from "../ir/tensor.js";
import { ModelProto, PLAIN, type Plain } from "./proto.js";

/** Protobuf messages cannot exceed 2 GiB; bigger models keep their weights in external data files. */
const MAX_PROTO_BYTES = 2 ** 31 - 1;

/** Fields taken into IR structure at each level; everything else rides in `extra`. */
const MODEL_FIELDS = new Set(["ir_version", "opset_import", "graph"]);
const GRAPH_FIELDS = new Set(["name", "node", "initializer", "input", "output", "value_info"]);
const NODE_FIELDS = new Set(["input", "output", "name", "op_type", "domain", "attribute"]);
const ATTR_FIELDS = new Set(["name", "type", "f", "i", "s", "t", "g", "floats", "ints", "strings", "tensors", "graphs"]);
const TENSOR_FIELDS = new Set(["name", "dims", "data_type", "raw_data", "float_data", "int32_data", "int64_data", "uint64_data", "double_data", "string_data", "external_data"]);
const VALUE_INFO_FIELDS = new Set(["name", "type"]);

/** Reads an ONNX model file; external data stays on disk until a tensor's bytes are asked for. */
export function loadModel(path: string): Model {
  let size: number;
  try {
    const stat = statSync(path);
    if (stat.isDirectory()) throw new ModelError(`cannot read model "${path}": it is a directory`);
    size = stat.size;
  } catch (e) {
    if (e instanceof ModelError) throw e;
    throw new ModelError(`cannot read model "${path}": ${(e as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (e as Error).message}`);
  }
  if (size > MAX_PROTO_BYTES) {
    throw new ModelError(`model "${path}" is ${(size / 2 ** 30).toFixed(1)} GiB: an ONNX protobuf cannot exceed 2 GiB; store weights as external data`);
  }
  return parseModel(readFileSync(path), { source: path, baseDir: dirname(resolve(path)) });
}

export function parseModel(bytes: Uint8Array, options: { source?: string; baseDir?: string } = {}): Model {
  const source = options.source ?? "<bytes>";
  if (bytes.length === 0) throw new ModelError(`"${source}" is empty, not an ONNX model`);
  let plain: Plain;
  try {
    plain = ModelProto.toObject(ModelProto.decode(bytes), PLAIN);
  } catch (e) {
    throw new ModelError(`"${source}" is not a readable ONNX model (truncated or corrupt: ${(e as Error).message})`);
  }
  if (!plain.graph || plain.ir_version === undefined) {
    throw new ModelError(`"${source}" is not an ONNX model (no ${plain.graph ? "ir_version" : "graph"} found)`);
  }
  const ctx: Ctx = { source, baseDir: options.baseDir ?? process.cwd() };
  const graph = importGraph(plain.graph, ctx);
  checkExternalData(graph.initializers.values());
  const opsets = (plain.opset_import ?? []).map((o: Plain) => ({
    domain: o.domain ?? "",
    version: Number(o.version ?? 0),
    extra: extras(o, new Set(["domain", "version"]), presentDefaults(o, { domain: "", version: "0" })),
  }));
  return new Model(graph, opsets, Number(plain.ir_version), extras(plain, MODEL_FIELDS), source);
}

interface Ctx {
  source: string;
  baseDir: string;
}

function importGraph(p: Plain, ctx: Ctx): Graph {
  const g = new Graph();
  g.name = p.name ?? "";
  g.extra = extras(p, GRAPH_FIELDS, p.name === "" ? ["name"] : []);
  for (const t of p.initializer ?? []) g.addInitializer(importTensor(t, ctx));
  const declare = (vi: Plain) => {
    const v = g.value(vi.name);
    v.decl = { type: vi.type, extra: extras(vi, VALUE_INFO_FIELDS) };
    const { dtype, shape } = parseTensorType(vi.type);
    if (dtype !== undefined) v.dtype = dtype;
    if (shape !== undefined) v.shape = shape;
    return v;
  };
  for (const vi of p.input ?? []) g.inputs.push(declare(vi));
  for (const n of p.node ?? []) {
    const attributes = (n.attribute ?? []).map((a: Plain) => importAttribute(a, ctx));
    const implicit = new Set<string>();
    for (const a of attributes) for (const sg of [a.g, ...(a.graphs ?? [])]) if (sg) sg.freeNames.forEach((x: string) => implicit.add(x));
    try {
      g.addNode(n.op_type ?? "", n.input ?? [], n.output ?? [], {
        name: n.name ?? "",
        domain: n.domain ?? "",
        attributes,
        extra: extras(n, NODE_FIELDS, presentDefaults(n, { name: "", domain: "", op_type: "" })),
        implicit: [...implicit],
      });
    } catch (e) {
      throw new ModelError(`"${ctx.source}": ${(e as Error).message}`);
    }
  }
  for (const vi of p.output ?? []) g.outputs.push(declare(vi));
  for (const vi of p.value_info ?? []) {
    declare(vi);
    g.valueInfo.push(vi.name);
  }
  return g;
}

function importAttribute(a: Plain, ctx: Ctx): Attribute {
  const out: Attribute = { name: a.name ?? "", type: a.type ?? 0 };
  if (a.f !== undefined) out.f = a.f;
  if (a.i !== undefined) out.i = toInt(a.i);
  if (a.s !== undefined) out.s = a.s;
  if (a.t !== undefined) out.t = importTensor(a.t, ctx);
  if (a.g !== undefined) out.g = opaqueGraph(a.g);
  if (a.floats !== undefined) out.floats = a.floats;
  if (a.ints !== undefined) out.ints = a.ints.map(toInt);
  if (a.strings !== undefined) out.strings = a.strings;
  if (a.tensors !== undefined) out.tensors = a.tensors.map((t: Plain) => importTensor(t, ctx));
  if (a.graphs !== undefined) out.graphs = a.graphs.map(opaqueGraph);
  const extra = extras(a, ATTR_FIELDS, presentDefaults(a, { name: "", type: 0 }));
  if (Object.keys(extra).length) out.extra = extra;
  return out;
}

export function importTensor(t: Plain, ctx: Ctx): Tensor {
  const data: TensorData = {};
  if (t.raw_data !== undefined) data.raw = t.raw_data;
  if (t.float_data !== undefined) data.floats = t.float_data;
  if (t.int32_data !== undefined) data.int32s = t.int32_data;
  if (t.int64_data !== undefined) data.int64s = t.int64_data.map((x: string) => BigInt(x));
  if (t.uint64_data !== undefined) data.uint64s = t.uint64_data.map((x: string) => BigInt(x));
  if (t.double_data !== undefined) data.doubles = t.double_data;
  if (t.string_data !== undefined) data.strings = t.string_data;
  if (t.external_data !== undefined) {
    data.external = { entries: t.external_data.map((e: Plain) => ({ key: e.key ?? "", value: e.value ?? "" })), baseDir: ctx.baseDir };
  }
  const dims = (t.dims ?? []).map(Number);
  return new Tensor(t.name ?? "", t.data_type ?? 0, dims, data, extras(t, TENSOR_FIELDS, presentDefaults(t, { name: "", data_type: 0 })));
}

/** Subgraphs are carried as plain data; we only learn which outer values they read. */
function opaqueGraph(p: Plain): Subgraph {
  return { proto: p, freeNames: freeNames(p) };
}

function freeNames(p: Plain): string[] {
  const defined = new Set<string>();
  for (const vi of p.input ?? []) defined.add(vi.name);
  for (const t of p.initializer ?? []) defined.add(t.name);
  for (const t of p.sparse_initializer ?? []) if (t.values?.name) defined.add(t.values.name);
  for (const n of p.node ?? []) for (const o of n.output ?? []) if (o) defined.add(o);
  const free = new Set<string>();
  const read = (name: string) => {
    if (name && !defined.has(name)) free.add(name);
  };
  for (const n of p.node ?? []) {
    for (const i of n.input ?? []) read(i);
    for (const a of n.attribute ?? []) {
      for (const sg of [a.g, ...(a.graphs ?? [])]) if (sg) freeNames(sg).forEach(read);
    }
  }
  for (const vi of p.output ?? []) read(vi.name);
  return [...free];
}

/** External data must exist and hold each tensor's range: checked at load (stat only, no read). */
function checkExternalData(tensors: Iterable<Tensor>): void {
  const sizes = new Map<string, number>();
  for (const t of tensors) {
    const ref = t.data.external;
    if (!ref) continue;
    const path = externalPath(t.name, ref);
    let size = sizes.get(path);
    if (size === undefined) {
      try {
        size = statSync(path).size;
      } catch {
        throw new ModelError(`tensor "${t.name}": external data file "${path}" is missing`);
      }
      sizes.set(path, size);
    }
    const offset = Number(externalEntry(ref, "offset") ?? 0);
    const length = Number(externalEntry(ref, "length") ?? size - offset);
    if (!(offset >= 0 && length >= 0 && offset + length <= size)) {
      throw new ModelError(`tensor "${t.name}": external data [${offset}, +${length}) lies outside "${path}" (${size} bytes)`);
    }
  }
}

function toInt(x: string | number): Int {
  const n = Number(x);
  return Number.isSafeInteger(n) ? n : BigInt(x);
}

/**
 * The message's fields not in `handled`, for carrying through untouched. `present` lists handled
 * fields that the file set explicitly to their default value, so that they are written again.
 */
function extras(p: Plain, handled: Set<string>, present: string[] = []): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(p)) if (!handled.has(k)) out[k] = p[k];
  if (present.length) out[PRESENT] = present;
  return out;
}

/** Key in `extra` listing fields present with their default value (proto2 keeps presence). */
export const PRESENT = "$present";

function presentDefaults(p: Plain, defaults: Record<string, unknown>): string[] {
  return Object.keys(defaults).filter((k) => k in p && p[k] === defaults[k]);
}
