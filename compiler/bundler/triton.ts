// A Triton / KServe model repository from a bundle (`dyno export --format triton`): per cut the
// cloud can start from, one model named as `dyno serve`'s KServe route names it, run by stock
// Triton (an ensemble of onnxruntime models) with no dyno op (docs/serving.md).
//
//   REPO/NAME/config.pbtxt              ensemble, the input cut: the model's own inputs (FP32),
//   REPO/NAME/1/                          steps NAME.segment-00 -> ... -> NAME.segment-<n-1>
//   REPO/NAME.c<id>/config.pbtxt        ensemble, an inner cut: steps NAME.c<id>.unpack ->
//   REPO/NAME.c<id>/1/                    NAME.segment-<k> -> ... (the segments after the cut);
//                                         its inputs, for each cut tensor T:
//                                           bits        UINT8 [1]      the payload header's bit width
//                                           T__codes    UINT8 [R]      a sample's packed codes (the body)
//                                           T__ranges   FP32  [k, 2]   the header's (min, max) pairs
//                                         (dims without the batch, which Triton adds when max_batch_size > 0)
//   REPO/NAME.c<id>.unpack/1/model.onnx  the codes unpacked and dequantised with standard ONNX ops
//                                         (compiler/passes/standard-unpack.ts) into the cut tensors
//   REPO/NAME.segment-<k>/1/model.onnx   the bundle's segment k, weights inline, shared by the cuts
//
// Why segments and an ensemble, not one graph per cut: `dyno serve` runs one onnxruntime session
// per segment. In one joined graph onnxruntime's layout optimisation (NCHWc) carries a blocked
// layout across the segment boundaries, and a convolution or a global pooling that read a plain
// NCHW tensor in its own segment then sums in another order: the joined ResNet fixture differed
// from dyno serve in the last bits of most logits, even with every boundary kept as a graph
// output. One model per segment gives each segment the session `dyno serve` gives it, so the
// outputs are the same bits (test/triton-export.test.ts), and the repository holds each weight once.
//
// One model serves every quantised variant of its cut (bits travels with the request). The
// lossless stage is not in the model: a device sends the codes as they are before it (the same
// codes the variant's payload carries, so the outputs are the same) and the HTTP layer compresses
// (Content-Encoding gzip or deflate). Bit-shuffled codes are not unpacked: the device packs the
// same codes densely instead.
import { mkdirSync, readdirSync, existsSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { DynoError, UsageError } from "../../runtime/common/errors.js";
import { kserveModelName } from "../../runtime/common/kserve.js";
import { isImageCodec, type Cut, type Manifest, type Variant } from "../../runtime/common/manifest.js";
import type { NodeBundle } from "../../runtime/node/bundle.js";
import { DataType } from "../ir/dtype.js";
import { Graph, Model, type Dim, type Value } from "../ir/graph.js";
import { serializeModel } from "../onnx/export.js";
import { loadModel } from "../onnx/import.js";
import { BITS_INPUT, codesInput, insertStandardUnpack, rangesInput, rowBytes, unpackable } from "../passes/standard-unpack.js";

export const TRITON_PLATFORM = "onnxruntime_onnx";
export const TRITON_VERSION = "1";
export const TRITON_FILE = "model.onnx";
/** Default max_batch_size: `dyno serve`'s largest batch. */
export const DEFAULT_MAX_BATCH = 64;
/** The unpack model's opset: its ops mean the same from opset 9 on (standard-unpack.ts). */
const UNPACK_OPSET = 13;

export interface TritonTensor {
  name: string;
  /** Triton's data_type, e.g. TYPE_FP32. */
  dataType: string;
  /** Without the batch dimension when the model batches; -1 for a variable one. */
  dims: number[];
}

/** An ensemble step: a model and its tensors, by the model's name for them (the ensemble's are the same). */
export interface TritonStep {
  model: string;
  inputs: string[];
  outputs: string[];
}

export interface TritonModel {
  name: string;
  inputs: TritonTensor[];
  outputs: TritonTensor[];
  /** An onnxruntime model's graph, or an ensemble's steps. */
  onnx?: Model;
  steps?: TritonStep[];
  /** For a cut's model (an ensemble): the cut and the variants whose payloads it takes. */
  cut?: Cut;
  variants?: Variant[];
}

/** What becomes of one variant of the bundle: the model that serves it and how, or why none does. */
export interface VariantNote {
  variant: Variant;
  model: string | null;
  note: string;
}

export interface TritonRepository {
  maxBatchSize: number;
  models: TritonModel[];
  variants: VariantNote[];
}

const TRITON_TYPES: Record<number, string> = {
  [DataType.BOOL]: "TYPE_BOOL", [DataType.UINT8]: "TYPE_UINT8", [DataType.UINT16]: "TYPE_UINT16",
  [DataType.UINT32]: "TYPE_UINT32", [DataType.UINT64]: "TYPE_UINT64", [DataType.INT8]: "TYPE_INT8",
  [DataType.INT16]: "TYPE_INT16", [DataType.INT32]: "TYPE_INT32", [DataType.INT64]: "TYPE_INT64",
  [DataType.FLOAT16]: "TYPE_FP16", [DataType.FLOAT]: "TYPE_FP32", [DataType.DOUBLE]: "TYPE_FP64",
  [DataType.STRING]: "TYPE_STRING", [DataType.BFLOAT16]: "TYPE_BF16",
};

export const segmentModelName = (model: string, index: number) => `${model}.segment-${String(index).padStart(2, "0")}`;
export const unpackModelName = (cutModel: string) => `${cutModel}.unpack`;

/** Plans the repository: the models (in memory) and a note per variant that crosses a cut. */
export function tritonRepository(bundle: NodeBundle, options: { maxBatch?: number } = {}): TritonRepository {
  const m = bundle.manifest;
  const segments = m.segments.map((s) => loadModel(bundle.path(s.graph)));
  const cuts: { cut: Cut; name: string; unpack: Model | null; variants: Variant[] }[] = [];
  const variants: VariantNote[] = [];
  for (const cut of m.cuts) {
    if (cut.kind === "output") continue;
    const name = kserveModelName(m.model.name, cut);
    const ofCut = m.variants.filter((v) => v.cut === cut.id);
    if (cut.kind === "input") {
      cuts.push({ cut, name, unpack: null, variants: ofCut.filter((v) => v.codec.bits === "f32") });
      for (const v of ofCut) variants.push({ variant: v, model: v.codec.bits === "f32" ? name : null, note: inputCutNote(v, name) });
      continue;
    }
    const why = cut.tensors.map((t) => unpackable(t.shape) && `cut tensor "${t.name}": ${unpackable(t.shape)}`).find(Boolean);
    const quantised = ofCut.filter((v) => typeof v.codec.bits === "number");
    if (why || quantised.length === 0) {
      for (const v of ofCut) variants.push({ variant: v, model: null, note: `not exported: ${why || "the cut has no quantised variant"}` });
      continue;
    }
    cuts.push({ cut, name, unpack: unpackModel(segments[cut.deviceSegments]!, cut), variants: quantised });
    for (const v of ofCut) variants.push({ variant: v, model: typeof v.codec.bits === "number" ? name : null, note: innerCutNote(v, name) });
  }

  // Triton batches a model along a first dimension that every input and output has; an ensemble
  // and its steps batch alike, so one symbolic first dimension everywhere or no batching at all.
  const used = Math.min(...cuts.map((c) => c.cut.deviceSegments));
  const graphs = [...segments.slice(used), ...cuts.flatMap((c) => (c.unpack ? [c.unpack] : []))];
  const batches = (options.maxBatch ?? DEFAULT_MAX_BATCH) > 0 && graphs.every((g) => ioValues(g).every((v) => v.shape !== undefined && v.shape.length > 0 && typeof v.shape[0] !== "number"));
  const maxBatchSize = batches ? options.maxBatch ?? DEFAULT_MAX_BATCH : 0;

  const models: TritonModel[] = [];
  const onnxModel = (name: string, onnx: Model): TritonModel => {
    const g = onnx.graph;
    return { name, onnx, inputs: ioInputs(g).map((v) => tensorOf(name, v, batches)), outputs: g.outputs.map((v) => tensorOf(name, v, batches)) };
  };
  for (let k = used; k < segments.length; k++) models.push(onnxModel(segmentModelName(m.model.name, k), segments[k]!));
  for (const c of cuts) {
    const steps: TritonStep[] = [];
    let first: TritonModel;
    if (c.unpack) {
      first = onnxModel(unpackModelName(c.name), c.unpack);
      models.push(first);
      steps.push({ model: first.name, inputs: first.inputs.map((t) => t.name), outputs: first.outputs.map((t) => t.name) });
    } else first = models.find((x) => x.name === segmentModelName(m.model.name, 0))!;
    for (let k = c.cut.deviceSegments; k < segments.length; k++) {
      const g = segments[k]!.graph;
      steps.push({ model: segmentModelName(m.model.name, k), inputs: ioInputs(g).map((v) => v.name), outputs: g.outputs.map((v) => v.name) });
    }
    const last = models.find((x) => x.name === segmentModelName(m.model.name, segments.length - 1))!;
    models.push({ name: c.name, inputs: first.inputs, outputs: last.outputs, steps, cut: c.cut, variants: c.variants });
  }
  return { maxBatchSize, models, variants };
}

/** Cut tensors -> the same tensors, unpacked from their codes (the ensemble's first step). */
function unpackModel(firstCloudSegment: Model, cut: Cut): Model {
  const g = new Graph();
  g.name = `${firstCloudSegment.graph.name}_unpack`;
  for (const t of cut.tensors) {
    const from = firstCloudSegment.graph.inputs.find((v) => v.name === t.name);
    if (!from) throw new DynoError(`cut ${cut.id}: tensor "${t.name}" is not an input of the segment after it`);
    const v = g.value(t.name);
    v.dtype = from.dtype;
    v.shape = from.shape ? [...from.shape] : [...t.shape];
    v.decl = from.decl;
    g.inputs.push(v);
    g.outputs.push(v);
  }
  return insertStandardUnpack(new Model(g, [{ domain: "", version: UNPACK_OPSET }], 8), cut.tensors.map((t) => t.name));
}

const ioInputs = (g: Graph) => g.inputs.filter((v) => !g.isInitializer(v.name));
const ioValues = (m: Model) => [...ioInputs(m.graph), ...m.graph.outputs];

function tensorOf(model: string, v: Value, batches: boolean): TritonTensor {
  const dataType = v.dtype === undefined ? undefined : TRITON_TYPES[v.dtype];
  if (!dataType || !v.shape) throw new DynoError(`model ${model}: tensor "${v.name}" has no Triton data type or no declared shape`);
  return { name: v.name, dataType, dims: (batches ? v.shape.slice(1) : v.shape).map((d: Dim) => (typeof d === "number" ? d : -1)) };
}

function inputCutNote(v: Variant, name: string): string {
  if (v.codec.bits === "f32") return `${name} takes the float32 input itself`;
  const what = isImageCodec(v.codec) ? `a ${v.codec.bits} file (decoding one is no ONNX op)` : v.codec.bits === "f16" ? "float16" : `${v.codec.bits}-bit codes`;
  return `not exported: sends the input as ${what}; ${name} takes the float32 input (FP32)`;
}

function innerCutNote(v: Variant, name: string): string {
  const bits = v.codec.bits;
  if (typeof bits !== "number") return `not exported: sends ${bits === "f16" ? "float16" : "float32"} values; ${name} takes quantised codes (use a b<N> variant of cut ${v.cut})`;
  const redo = [
    v.codec.lossless !== "none" ? `without the ${v.codec.lossless} stage (compress the HTTP body instead)` : "",
    v.codec.shuffle ? "packed densely, not bit-shuffled" : "",
  ].filter(Boolean);
  return `${name} with bits=${bits}${redo.length ? `: the device sends the same codes ${redo.join(", ")}` : ""}`;
}

/** config.pbtxt: protobuf text format of Triton's ModelConfig (model_config.proto's field names). */
export function tritonConfig(t: TritonModel, maxBatchSize: number, source: Pick<Manifest, "model">): string {
  const q = (s: string) => JSON.stringify(s);
  const tensors = (list: TritonTensor[]) => list.map((x) => `  {\n    name: ${q(x.name)}\n    data_type: ${x.dataType}\n    dims: [ ${x.dims.join(", ")} ]\n  }`).join(",\n");
  const what = t.steps
    ? t.cut?.kind === "input" ? "the whole model" : `cut ${t.cut?.id}: its codes unpacked with standard ONNX ops, then the segments after it`
    : t.name.endsWith(".unpack") ? "unpacks a cut's codes (standard ONNX ops)" : "one segment of the model's chain";
  const lines = [
    `# dyno export --format triton: ${source.model.name}, ${what} (docs/serving.md)`,
    `name: ${q(t.name)}`,
    `platform: ${q(t.steps ? "ensemble" : TRITON_PLATFORM)}`,
    `max_batch_size: ${maxBatchSize}`,
    "input [", tensors(t.inputs), "]",
    "output [", tensors(t.outputs), "]",
  ];
  if (t.steps) {
    const map = (kind: string, names: string[]) => names.map((n) => `      ${kind} {\n        key: ${q(n)}\n        value: ${q(n)}\n      }`);
    const steps = t.steps.map((s) => ["    {", `      model_name: ${q(s.model)}`, "      model_version: -1", ...map("input_map", s.inputs), ...map("output_map", s.outputs), "    }"].join("\n"));
    lines.push("ensemble_scheduling {", "  step [", steps.join(",\n"), "  ]", "}");
  } else {
    lines.push("# dyno serve's bits on the CPU execution provider (remove for a GPU)", "instance_group [", "  {", "    kind: KIND_CPU", "  }", "]");
  }
  return lines.join("\n") + "\n";
}

/** The bytes of one sample's codes for cut tensor `name` at `bits` (a T__codes row). */
export function codesRowBytes(cut: Cut, name: string, bits: number): number {
  const t = cut.tensors.find((x) => x.name === name);
  if (!t) throw new DynoError(`cut ${cut.id} has no tensor "${name}"`);
  return rowBytes(t.shape, bits);
}

export interface WrittenModel {
  model: TritonModel;
  /** The model's directory. */
  dir: string;
  /** model.onnx's bytes (0 for an ensemble). */
  bytes: number;
}

/** Writes the repository into `dir` (absent or empty). */
export function writeTritonRepository(repo: TritonRepository, dir: string, source: Pick<Manifest, "model">): WrittenModel[] {
  if (existsSync(dir)) {
    if (!statSync(dir).isDirectory()) throw new UsageError(`"${dir}" exists and is not a directory`);
    if (readdirSync(dir).length > 0) throw new UsageError(`"${dir}" is not empty: give a new or empty directory for the model repository`);
  }
  return repo.models.map((t) => {
    const at = join(dir, t.name);
    mkdirSync(join(at, TRITON_VERSION), { recursive: true }); // an ensemble's version directory stays empty
    const bytes = t.onnx ? serializeModel(t.onnx) : null;
    if (bytes) writeFileSync(join(at, TRITON_VERSION, TRITON_FILE), bytes);
    writeFileSync(join(at, "config.pbtxt"), tritonConfig(t, repo.maxBatchSize, source));
    return { model: t, dir: at, bytes: bytes?.length ?? 0 };
  });
}

export { BITS_INPUT, codesInput, rangesInput };
