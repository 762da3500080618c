// Asks onnxruntime for the shapes static inference could not find: one run of the model with
// those tensors added as graph outputs. Symbolic input dims are run at 1 and at 2; a dim that
// follows them keeps the symbol.
import ort from "onnxruntime-node";
import { ModelError } from "../../runtime/common/errors.js";
import { DataType, dtypeFromName } from "../ir/dtype.js";
import type { Dim, Model, Shape } from "../ir/graph.js";
import { serializeModel } from "./export.js";

export interface ObservedType {
  dtype: DataType;
  shape: Shape;
}

export async function observeShapes(model: Model, names: readonly string[]): Promise<Map<string, ObservedType>> {
  const g = model.graph;
  const probe = model.clone();
  const outputs = new Set(probe.graph.outputs.map((v) => v.name));
  for (const name of names) {
    if (outputs.has(name)) continue;
    const v = probe.graph.value(name);
    probe.graph.outputs.push(v);
    v.decl = { ...(v.decl ?? {}), type: undefined };
  }
  const bytes = serializeModel(probe);
  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(bytes, { graphOptimizationLevel: "disabled", intraOpNumThreads: 1, logSeverityLevel: 4 });
  } catch (e) {
    throw new ModelError(`onnxruntime cannot load "${model.source}" to observe shapes: ${(e as Error).message.split("\n")[0]}`);
  }
  const symbolic = g.inputs.some((v) => !g.isInitializer(v.name) && v.shape?.some((d) => typeof d !== "number"));
  const run = async (symbolValue: number) => {
    const feeds: Record<string, ort.Tensor> = {};
    for (const v of g.inputs) {
      if (g.isInitializer(v.name)) continue;
      if (!v.shape) throw new ModelError(`input "${v.name}" of "${model.source}" has no shape: give it with --input-shape`);
      const dims = v.shape.map((d) => (typeof d === "number" ? d : symbolValue));
      feeds[v.name] = zeros(v.dtype ?? DataType.FLOAT, dims, v.name);
    }
    try {
      return await session.run(feeds, names as string[]);
    } catch (e) {
      const why = ortReason(e);
      // A dynamic dim past the batch (samples, height, sequence) run at 1 is the usual cause.
      const dynamic = g.inputs.filter((v) => !g.isInitializer(v.name)).flatMap((v) => (v.shape ?? []).map((d, i) => ({ v, d, i })).filter(({ d, i }) => i > 0 && typeof d !== "number"));
      if (dynamic.length) {
        const list = dynamic.map(({ v, d, i }) => `input "${v.name}" dim ${i}${d ? ` ("${d}")` : ""}`).join(", ");
        const example = dynamic[0]!.v;
        const shown = (example.shape ?? []).map((d, i) => (typeof d === "number" ? d : i === 0 ? 1 : "N")).join(",");
        throw new ModelError(`"${model.source}" has dynamic dims that dyno cannot guess: ${list}; onnxruntime refused them at ${symbolValue} (${why}). Fix them with --input-shape, e.g. --input-shape ${example.name}=${shown} with N the size you run`);
      }
      throw new ModelError(`onnxruntime failed running "${model.source}" to observe shapes: ${why}`);
    }
  };
  const first = await run(1);
  const second = symbolic ? await run(2) : first;
  const out = new Map<string, ObservedType>();
  for (const name of names) {
    const a = first[name]!;
    const b = second[name]!;
    const symbol = symbolName(g.inputs.flatMap((v) => v.shape ?? []));
    const shape: Dim[] = a.dims.map((d, i) => (d === b.dims[i] ? d : d === 1 && b.dims[i] === 2 && symbol ? symbol : null));
    out.set(name, { dtype: dtypeFromName(ortTypeName(a.type)) ?? DataType.UNDEFINED, shape });
  }
  await session.release();
  return out;
}

/** onnxruntime's message without its source-file prefix, first line only. */
export function ortReason(e: unknown): string {
  const line = ((e as Error).message ?? String(e)).split("\n")[0]!;
  return line.replace(/\/onnxruntime_src\/\S+:\d+ \S+ /g, "").replace(/\s+/g, " ").trim();
}

function symbolName(dims: Dim[]): string | undefined {
  const syms = [...new Set(dims.filter((d): d is string => typeof d === "string"))];
  return syms.length === 1 ? syms[0] : undefined;
}

function ortTypeName(t: string): string {
  return t === "float32" ? "float32" : t === "float64" ? "float64" : t;
}

function zeros(dtype: DataType, dims: number[], name: string): ort.Tensor {
  const n = dims.reduce((a, b) => a * b, 1);
  switch (dtype) {
    case DataType.FLOAT: return new ort.Tensor("float32", new Float32Array(n), dims);
    case DataType.DOUBLE: return new ort.Tensor("float64", new Float64Array(n), dims);
    case DataType.INT64: return new ort.Tensor("int64", new BigInt64Array(n), dims);
    case DataType.INT32: return new ort.Tensor("int32", new Int32Array(n), dims);
    case DataType.UINT8: return new ort.Tensor("uint8", new Uint8Array(n), dims);
    case DataType.INT8: return new ort.Tensor("int8", new Int8Array(n), dims);
    case DataType.BOOL: return new ort.Tensor("bool", new Uint8Array(n), dims);
    case DataType.FLOAT16: return new ort.Tensor("float16", new Uint16Array(n), dims);
    default: throw new ModelError(`input "${name}": cannot make a probe tensor of element type ${dtype}`);
  }
}
