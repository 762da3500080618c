// IR -> ONNX file. The only place (with import.ts) that builds protobuf data.
import { closeSync, mkdirSync, openSync, renameSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { ModelError, UsageError } from "../../runtime/common/errors.js";
import type { Attribute, Graph, Model, Value } from "../ir/graph.js";
import type { Tensor } from "../ir/tensor.js";
import { PRESENT } from "./import.js";
import { ModelProto, type Plain } from "./proto.js";

export interface SaveOptions {
  /**
   * Write initializers of at least `threshold` bytes (default 1024) to one side file `location`
   * (relative to the model) instead of inline. Required for models whose weights exceed 2 GiB.
   */
  externalData?: { location: string; threshold?: number };
}

const MAX_PROTO_BYTES = 2 ** 31 - 1;
/** External tensors start at multiples of this, so a reader can map them aligned. */
const EXTERNAL_ALIGN = 64;

/** The model as ONNX bytes, every tensor inline (external data is read in). */
export function serializeModel(model: Model): Uint8Array {
  const plain = exportModel(model, (t) => tensorPlain(t, { raw_data: t.bytes() }));
  return encode(plain, model.source);
}

export function saveModel(model: Model, path: string, options: SaveOptions = {}): void {
  mkdirSync(dirname(resolve(path)), { recursive: true });
  const ext = options.externalData;
  if (!ext) {
    writeFileSync(path, serializeModel(model));
    return;
  }
  const weights = writeWeights(model.graph.initializers.values(), join(dirname(resolve(path)), checkLocation(ext.location)), ext.threshold ?? 1024);
  saveModelWithWeights(model, path, weights);
}

/** Where each tensor of a shared weights file lives. */
export interface SharedWeights {
  location: string;
  index: Map<string, { offset: number; length: number }>;
}

/**
 * Writes the tensors of at least `threshold` bytes to one data file (64-byte aligned), for any
 * number of graphs to reference with `saveModelWithWeights`: a bundle stores its weights once.
 * Written to a temporary file and renamed, since the tensors may be read from `path` itself.
 */
export function writeWeights(tensors: Iterable<Tensor>, path: string, threshold = 1024): SharedWeights {
  const location = checkLocation(basename(path));
  mkdirSync(dirname(resolve(path)), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, "w");
  const index = new Map<string, { offset: number; length: number }>();
  let offset = 0;
  try {
    for (const t of tensors) {
      if (t.byteLength < threshold || t.dtype === 8 /* string */ || index.has(t.name)) continue;
      offset += (EXTERNAL_ALIGN - (offset % EXTERNAL_ALIGN)) % EXTERNAL_ALIGN;
      const bytes = t.bytes();
      let done = 0;
      while (done < bytes.length) done += writeSync(fd, bytes, done, bytes.length - done, offset + done);
      index.set(t.name, { offset, length: bytes.length });
      offset += bytes.length;
    }
    closeSync(fd);
    renameSync(tmp, path);
  } catch (e) {
    try {
      closeSync(fd);
    } catch {
      /* already closed */
    }
    rmSync(tmp, { force: true });
    throw e;
  }
  return { location, index };
}

/** Saves a graph whose initializers listed in `weights` point into that shared file; others inline. */
export function saveModelWithWeights(model: Model, path: string, weights: SharedWeights): void {
  mkdirSync(dirname(resolve(path)), { recursive: true });
  const plain = exportModel(model, (t) => {
    const at = weights.index.get(t.name);
    if (!at || at.length !== t.byteLength) return tensorPlain(t, { raw_data: t.bytes() });
    const entries = [
      { key: "location", value: weights.location },
      { key: "offset", value: String(at.offset) },
      { key: "length", value: String(at.length) },
    ];
    return tensorPlain(t, { external_data: entries, data_location: 1 });
  });
  writeFileSync(path, encode(plain, model.source));
}

function checkLocation(location: string): string {
  if (!location || basename(location) !== location) {
    throw new UsageError(`external data location "${location}" must be a plain file name next to the model`);
  }
  return location;
}

type TensorWriter = (t: Tensor) => Plain;

function encode(plain: Plain, source: string): Uint8Array {
  const bytes = ModelProto.encode(ModelProto.fromObject(plain)).finish();
  if (bytes.length > MAX_PROTO_BYTES) {
    throw new ModelError(`model "${source}" would be ${bytes.length} bytes, over protobuf's 2 GiB: save it with external data`);
  }
  return bytes;
}

function exportModel(model: Model, writeInitializer: TensorWriter): Plain {
  return {
    ...model.extra,
    ir_version: String(model.irVersion),
    opset_import: model.opsets.map((o) => withPresent(o.extra ?? {}, { domain: o.domain, version: String(o.version) })),
    graph: exportGraph(model.graph, writeInitializer),
  };
}

function exportGraph(g: Graph, writeInitializer: TensorWriter): Plain {
  const decl = (v: Value): Plain => {
    const out: Plain = { ...(v.decl?.extra ?? {}), name: v.name };
    if (v.decl?.type) out.type = v.decl.type;
    return out;
  };
  const out: Plain = withPresent(g.extra, { name: g.name });
  out.node = g.nodes.map((n) =>
    withPresent(n.extra, {
      input: n.inputs.map((v) => v?.name ?? ""),
      output: n.outputs.map((v) => v?.name ?? ""),
      name: n.name,
      op_type: n.opType,
      domain: n.domain,
      attribute: n.attributes.map(exportAttribute),
    }),
  );
  out.initializer = [...g.initializers.values()].map(writeInitializer);
  out.input = g.inputs.map(decl);
  out.output = g.outputs.map(decl);
  out.value_info = g.valueInfo.map((name) => decl(g.value(name)));
  return out;
}

function exportAttribute(a: Attribute): Plain {
  const out: Plain = withPresent(a.extra ?? {}, { name: a.name, type: a.type });
  if (a.f !== undefined) out.f = a.f;
  if (a.i !== undefined) out.i = String(a.i);
  if (a.s !== undefined) out.s = a.s;
  if (a.t !== undefined) out.t = tensorPlain(a.t, dataFields(a.t));
  if (a.g !== undefined) out.g = a.g.proto;
  if (a.floats !== undefined) out.floats = a.floats;
  if (a.ints !== undefined) out.ints = a.ints.map(String);
  if (a.strings !== undefined) out.strings = a.strings;
  if (a.tensors !== undefined) out.tensors = a.tensors.map((t) => tensorPlain(t, dataFields(t)));
  if (a.graphs !== undefined) out.graphs = a.graphs.map((g) => g.proto);
  return out;
}

/** A tensor's data fields as it holds them (inline attribute tensors keep their form). */
function dataFields(t: Tensor): Plain {
  const d = t.data;
  if (d.external) return { raw_data: t.bytes() };
  const out: Plain = {};
  if (d.raw !== undefined) out.raw_data = d.raw;
  if (d.floats !== undefined) out.float_data = d.floats;
  if (d.int32s !== undefined) out.int32_data = d.int32s;
  if (d.int64s !== undefined) out.int64_data = d.int64s.map(String);
  if (d.uint64s !== undefined) out.uint64_data = d.uint64s.map(String);
  if (d.doubles !== undefined) out.double_data = d.doubles;
  if (d.strings !== undefined) out.string_data = d.strings;
  return out;
}

/**
 * An initializer keeps its original data form when it is inline; `data` overrides it only where
 * the tensor was external (now inline or re-externalised) — a round trip changes nothing else.
 */
function tensorPlain(t: Tensor, data: Plain): Plain {
  const { data_location: _location, ...rest } = t.extra as Plain;
  const fields = t.isExternal || "external_data" in data ? data : dataFields(t);
  const out = withPresent(t.isExternal || "external_data" in data ? rest : (t.extra as Plain), {
    name: t.name,
    data_type: t.dtype,
  });
  out.dims = t.dims.map(String);
  Object.assign(out, fields);
  return out;
}

/** Writes handled scalar fields, leaving out defaults unless the file had them explicitly. */
function withPresent(extra: Record<string, unknown>, fields: Plain): Plain {
  const { [PRESENT]: present, ...rest } = extra as Plain;
  const out: Plain = { ...rest };
  for (const [k, v] of Object.entries(fields)) {
    const isDefault = v === "" || v === 0 || v === "0" || (Array.isArray(v) && v.length === 0);
    if (!isDefault || (present as string[] | undefined)?.includes(k)) out[k] = v;
  }
  return out;
}
