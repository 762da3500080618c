// The Open Inference Protocol (KServe v2 REST, with Triton's binary tensor data and model
// repository extensions) on `dyno serve`: what a plain KServe or Triton client sends, turned into
// the native request the server already checks and runs, and the native outputs turned back.
//
//   one model per cut the cloud can start from:
//     NAME          the input cut: the model's own float32 input, so a plain client runs it all
//     NAME.c<id>    an inner cut: its cut tensors, in float32
//
//   an input tensor is either
//     FP32              the cut tensor itself (JSON data, nested or flat, or binary): the cut's
//                       float32 variant runs
//     UINT8 or BYTES    a dyno payload (what a device sends: the kernels' packed tensor with its
//                       own header, or a JPEG/WebP file of the input), as UINT8 [n] or [1, n],
//                       or as BYTES [1] (binary: a 4-byte little-endian length, then the bytes);
//                       the variant is the request's or the input's `dyno_variant` parameter,
//                       else the cut's variant whose codec the payload's header names
//
// Everything then goes through the native path (validateRequest, the worker pool), so the limits,
// errors and outputs are the native protocol's, bit for bit. Outputs are FP32, JSON or binary
// (`binary_data` per output, `binary_data_output` per request); an output with a NaN or an
// infinity, which JSON cannot carry, is sent binary. Request bodies may be gzip or deflate
// (zlib) compressed; responses are compressed when the client accepts it.
import { deflateSync, gunzipSync, gzipSync, inflateRawSync, inflateSync } from "node:zlib";
import { z } from "zod";
import { Kind, readHeader, writeHeader, headerLength } from "../../kernels/format.js";
import { isImageCodec, type Cut, type Manifest, type Variant } from "../common/manifest.js";
import { imageFormatOf } from "../common/image.js";
import { crc32, modelId, ProtocolError, type OutputTensor, type Request, type RequestTensor } from "../common/protocol.js";
import type { CutBatching } from "./worker-pool.js";
import { KSERVE_HEADER_LENGTH, kserveModelName } from "../common/kserve.js";

/** What `GET /v2` lists besides dyno's own protocol. */
export const KSERVE_EXTENSIONS = ["binary_tensor_data", "model_repository"] as const;

export const HEADER_LENGTH = KSERVE_HEADER_LENGTH;

/** A KServe model: one cut of the bundle. */
export interface KModel {
  name: string;
  cut: Cut;
  /** The cut's float32 variant (FP32 inputs run it). */
  f32: Variant;
  variants: Variant[];
}

/** The KServe models of a bundle: its input cut under the model's name, each inner cut as NAME.c<id>. */
export function kserveModels(m: Manifest): KModel[] {
  const out: KModel[] = [];
  for (const cut of m.cuts) {
    if (cut.kind === "output") continue;
    const variants = m.variants.filter((v) => v.cut === cut.id);
    const f32 = variants.find((v) => v.codec.bits === "f32");
    if (!f32) continue;
    out.push({ name: kserveModelName(m.model.name, cut), cut, f32, variants });
  }
  return out;
}

const DIM = (d: number | string | null) => (typeof d === "number" ? d : -1);

/** `GET /v2/models/{name}` of a cut model (the input cut's is the server's model metadata). */
export function cutMetadata(m: Manifest, k: KModel, batching: CutBatching) {
  return {
    name: k.name,
    versions: [modelId(m)],
    platform: "dyno",
    inputs: k.cut.tensors.map((t) => ({ name: t.name, datatype: "FP32", shape: t.shape.map(DIM) })),
    outputs: m.model.outputs.map((t) => ({ name: t.name, datatype: "FP32", shape: t.shape.map(DIM) })),
    dyno: { cut: k.cut.id, batching, variants: k.variants.map((v) => ({ id: v.id, codec: v.codec, admissible: v.admissible, accuracy: v.accuracy })) },
  };
}

const Param = z.union([z.string(), z.number(), z.boolean()]);
const Params = z.record(z.string(), Param);
const InferInput = z.object({
  name: z.string().min(1).max(512),
  shape: z.array(z.number().int().nonnegative().max(0xffffffff)).max(8),
  datatype: z.string().min(1).max(16),
  parameters: Params.optional(),
  data: z.unknown().optional(),
});
const InferOutput = z.object({ name: z.string().min(1).max(512), parameters: Params.optional() });
const InferRequest = z.object({
  id: z.string().max(256).optional(),
  model_name: z.string().optional(),
  model_version: z.string().optional(),
  parameters: Params.optional(),
  inputs: z.array(InferInput).min(1).max(256),
  outputs: z.array(InferOutput).max(256).optional(),
});
type InferInput = z.infer<typeof InferInput>;

/** What came in: the native request to validate and run, and how to answer. */
export interface ParsedInfer {
  id?: string;
  request: Request;
  /** Outputs asked for (all when absent), each JSON or binary. */
  outputs?: { name: string; binary: boolean }[];
  binaryDefault: boolean;
}

const bad = (why: string): never => {
  throw new ProtocolError("bad-request", why);
};

const ENCODINGS = ["", "identity", "gzip", "deflate"];

/** A request `Content-Encoding` this server decodes (none, identity, gzip, deflate). */
export function acceptsEncoding(encoding: string | undefined): boolean {
  return ENCODINGS.includes((encoding ?? "").trim().toLowerCase());
}

/**
 * The body of `Content-Encoding` gzip or deflate (zlib; raw deflate accepted too), at most
 * `limit` bytes decompressed; identity or none as is. Another encoding: null (the caller answers
 * with the encodings it takes).
 */
export function decodeContent(body: Uint8Array, encoding: string | undefined, limit: number): Uint8Array | null {
  if (!acceptsEncoding(encoding)) return null;
  const e = (encoding ?? "").trim().toLowerCase();
  if (e === "" || e === "identity") return body;
  try {
    if (e === "gzip") return gunzipSync(body, { maxOutputLength: limit });
    try {
      return inflateSync(body, { maxOutputLength: limit });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ERR_BUFFER_TOO_LARGE") throw err;
      return inflateRawSync(body, { maxOutputLength: limit });
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ERR_BUFFER_TOO_LARGE") throw new ProtocolError("too-large", `the ${e} body decompresses to more than ${limit} bytes`);
    throw new ProtocolError("bad-request", `the body is not valid ${e} data: ${(err as Error).message}`);
  }
}

/** The response encoding an Accept-Encoding asks for (q weights; gzip and deflate; else identity). */
export function responseEncoding(accept: string | undefined): "gzip" | "deflate" | "identity" {
  let best: "gzip" | "deflate" | "identity" = "identity";
  let weight = 0;
  for (const part of (accept ?? "").split(",")) {
    const [token, ...ps] = part.trim().split(";");
    const name = token!.trim().toLowerCase();
    if (name !== "gzip" && name !== "deflate" && name !== "identity") continue;
    const q = ps.map((p) => p.trim()).find((p) => p.startsWith("q="));
    const w = q ? Number(q.slice(2)) : 1;
    if (!(w > 0) || !(w > weight)) continue;
    best = name;
    weight = w;
  }
  return best;
}

export function encodeContent(body: Uint8Array, encoding: "gzip" | "deflate" | "identity"): Uint8Array {
  return encoding === "gzip" ? gzipSync(body) : encoding === "deflate" ? deflateSync(body) : body;
}

/** Flattens JSON tensor data (nested in row-major order, or flat). */
function flatten(data: unknown, out: unknown[], depth = 0): void {
  if (depth > 9) bad("tensor data nested deeper than its rank");
  if (Array.isArray(data)) for (const x of data) flatten(x, out, depth + 1);
  else out.push(data);
}

const count = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/** An input's JSON `data`, flattened, `n` values of it. */
function jsonValues(input: InferInput, n: number): unknown[] {
  if (input.data === undefined) bad(`input "${input.name}" has neither data nor binary_data_size`);
  const flat: unknown[] = [];
  flatten(input.data, flat);
  if (flat.length !== n) bad(`input "${input.name}": ${flat.length} values for ${input.datatype} [${input.shape.join(",")}] (needs ${n})`);
  return flat;
}

/** A float32 payload in the kernels' format: the cut's float32 variant's bytes. */
function f32Payload(shape: number[], values: Float32Array | Uint8Array): Uint8Array {
  const n = count(shape);
  const head = headerLength(shape.length, 0);
  const out = new Uint8Array(head + 4 * n);
  writeHeader(out, { kind: Kind.Float32, bits: 32, shuffle: false, perChannel: false, codec: "none", shape, ranges: new Float32Array(0), rawLength: 4 * n, storedLength: 4 * n });
  if (values instanceof Float32Array) {
    const v = new DataView(out.buffer, head);
    for (let i = 0; i < n; i++) v.setFloat32(4 * i, values[i]!, true);
  } else out.set(values, head);
  return out;
}

/** The cut tensor's shape against a request's: fixed dims equal, symbolic ones at least 1. */
function shapeFits(want: Cut["tensors"][number]["shape"], got: readonly number[]): boolean {
  return want.length === got.length && want.every((d, k) => (typeof d === "number" ? d === got[k] : got[k]! >= 1));
}

const fmtShape = (s: readonly (number | string | null)[]) => `[${s.map(DIM).join(",")}]`;

/**
 * Parses an infer request for model `k`: JSON (the whole body, or its first `headerLength` bytes
 * with the binary tensors after it), or a raw binary one (headerLength 0: the float32 bytes of a
 * cut with one tensor and at most one variable dimension).
 */
export function parseInfer(m: Manifest, k: KModel, body: Uint8Array, headerLength: number | undefined, nativeId: number): ParsedInfer {
  const model = modelId(m);
  if (headerLength === 0) {
    const spec = k.cut.tensors.length === 1 ? k.cut.tensors[0]! : bad(`a raw binary request (Inference-Header-Content-Length: 0) needs a model with one input; "${k.name}" has ${k.cut.tensors.length}`);
    const variable = spec.shape.filter((d) => typeof d !== "number").length;
    if (variable > 1) bad(`a raw binary request cannot size "${spec.name}" ${fmtShape(spec.shape)}: more than one variable dimension`);
    const fixed = spec.shape.reduce<number>((a, d) => a * (typeof d === "number" ? d : 1), 1);
    if (body.length === 0 || body.length % (4 * fixed) !== 0) bad(`a raw binary request of ${body.length} bytes is not a whole number of float32 "${spec.name}" ${fmtShape(spec.shape)} tensors`);
    const shape = spec.shape.map((d) => (typeof d === "number" ? d : body.length / (4 * fixed)));
    return { request: nativeRequest(nativeId, model, k.f32, [{ name: spec.name, shape, bytes: f32Payload(shape, body) }]), binaryDefault: true };
  }
  if (headerLength !== undefined && !(Number.isInteger(headerLength) && headerLength > 0 && headerLength <= body.length)) {
    bad(`Inference-Header-Content-Length ${headerLength} is not within the body of ${body.length} bytes`);
  }
  const jsonBytes = headerLength === undefined ? body : body.subarray(0, headerLength);
  let raw: unknown;
  try {
    raw = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(jsonBytes));
  } catch (e) {
    bad(`the inference request is not JSON: ${(e as Error).message}`);
  }
  const r = InferRequest.safeParse(raw);
  if (!r.success) bad(`inference request: ${r.error.issues.slice(0, 3).map((i) => `${i.path.join(".") || "(top)"}: ${i.message}`).join("; ")}`);
  const req = r.data!;
  let binary = headerLength === undefined ? new Uint8Array(0) : body.subarray(headerLength);
  const take = (input: InferInput): Uint8Array | undefined => {
    const size = input.parameters?.binary_data_size;
    if (size === undefined) return undefined;
    if (!(typeof size === "number" && Number.isInteger(size) && size >= 0)) bad(`input "${input.name}": binary_data_size must be a whole number of bytes, got ${JSON.stringify(size)}`);
    if (input.data !== undefined) bad(`input "${input.name}" has both binary_data_size and data`);
    if ((size as number) > binary.length) bad(`input "${input.name}": binary_data_size ${size} is more than the ${binary.length} binary bytes left in the body`);
    const b = binary.subarray(0, size as number);
    binary = binary.subarray(size as number);
    return b;
  };

  const names = k.cut.tensors.map((t) => `"${t.name}"`).join(", ");
  const seen = new Set<string>();
  const items: { name: string; shape: number[]; bytes: Uint8Array; packed: boolean; variant?: string }[] = [];
  for (const input of req.inputs) {
    const spec = k.cut.tensors.find((t) => t.name === input.name);
    if (!spec) bad(`input "${input.name}" is not an input of model "${k.name}" (inputs: ${names})`);
    if (seen.has(input.name)) bad(`input "${input.name}" appears twice`);
    seen.add(input.name);
    const bin = take(input);
    const dt = input.datatype.toUpperCase();
    const variant = input.parameters?.dyno_variant ?? req.parameters?.dyno_variant;
    if (variant !== undefined && typeof variant !== "string") bad(`dyno_variant must be a variant id string, got ${JSON.stringify(variant)}`);
    if (dt === "FP32") {
      if (!shapeFits(spec!.shape, input.shape)) bad(`input "${input.name}": shape [${input.shape.join(",")}] does not fit ${fmtShape(spec!.shape)}`);
      const n = count(input.shape);
      if (bin) {
        if (bin.length !== 4 * n) bad(`input "${input.name}": ${bin.length} binary bytes for FP32 [${input.shape.join(",")}] (needs ${4 * n})`);
        items.push({ name: input.name, shape: input.shape, bytes: f32Payload(input.shape, bin), packed: false });
      } else {
        const flat = jsonValues(input, n);
        const values = new Float32Array(n);
        for (let i = 0; i < n; i++) {
          const x = flat[i];
          if (typeof x !== "number") bad(`input "${input.name}": value ${i} is ${JSON.stringify(x)}, not a number`);
          values[i] = x as number;
        }
        items.push({ name: input.name, shape: input.shape, bytes: f32Payload(input.shape, values), packed: false });
      }
    } else if (dt === "UINT8" || dt === "BYTES") {
      let bytes: Uint8Array;
      if (dt === "UINT8") {
        if (!(input.shape.length === 1 || (input.shape.length === 2 && input.shape[0] === 1))) bad(`input "${input.name}": a packed payload as UINT8 has shape [n] or [1, n], got [${input.shape.join(",")}]`);
        const n = count(input.shape);
        if (bin) {
          if (bin.length !== n) bad(`input "${input.name}": ${bin.length} binary bytes for UINT8 [${input.shape.join(",")}]`);
          bytes = bin;
        } else {
          const flat = jsonValues(input, n);
          bytes = new Uint8Array(n);
          for (let i = 0; i < n; i++) {
            const x = flat[i];
            if (!(typeof x === "number" && Number.isInteger(x) && x >= 0 && x <= 255)) bad(`input "${input.name}": value ${i} is ${JSON.stringify(x)}, not a UINT8`);
            bytes[i] = x as number;
          }
        }
      } else {
        if (count(input.shape) !== 1) bad(`input "${input.name}": a packed payload as BYTES is one element (shape [1]), got [${input.shape.join(",")}]`);
        if (!bin) bad(`input "${input.name}": send a BYTES payload with the binary tensor data extension (binary_data_size), or as UINT8`);
        const b = bin!;
        if (b.length < 4) bad(`input "${input.name}": BYTES data needs a 4-byte length first`);
        const len = new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(0, true);
        if (len !== b.length - 4) bad(`input "${input.name}": the BYTES element says ${len} bytes, ${b.length - 4} follow`);
        bytes = b.subarray(4);
      }
      items.push({ name: input.name, shape: [], bytes, packed: true, variant: variant as string | undefined });
    } else bad(`input "${input.name}": datatype ${input.datatype} (this model takes FP32, or a dyno payload as UINT8 or BYTES)`);
  }
  if (binary.length > 0) bad(`${binary.length} binary bytes after the last input's binary_data_size`);
  const missing = k.cut.tensors.filter((t) => !seen.has(t.name));
  if (missing.length) bad(`model "${k.name}" needs input(s) ${missing.map((t) => `"${t.name}"`).join(", ")}`);
  const packed = items.filter((i) => i.packed);
  if (packed.length > 0 && packed.length !== items.length) bad("mix of FP32 and packed (UINT8/BYTES) inputs: a request is one variant, all packed or all FP32");

  let variant = k.f32;
  if (packed.length > 0) {
    const ids = [...new Set(packed.map((p) => p.variant).filter((v) => v !== undefined))];
    if (ids.length > 1) bad(`inputs name different variants: ${ids.join(", ")}`);
    variant = ids.length === 1 ? (k.variants.find((v) => v.id === ids[0]) ?? bad(`variant "${ids[0]}" is not a variant of model "${k.name}" (cut ${k.cut.id}: ${k.variants.map((v) => v.id).join(", ")})`)) : variantOf(k, packed[0]!.bytes, packed[0]!.name);
    for (const p of packed) {
      const spec = k.cut.tensors.find((t) => t.name === p.name)!;
      if (isImageCodec(variant.codec)) p.shape = spec.shape.map((d) => (typeof d === "number" ? d : 1));
      else {
        try {
          p.shape = readHeader(p.bytes).shape;
        } catch (e) {
          bad(`input "${p.name}": ${(e as Error).message}`);
        }
      }
    }
  }
  const outputs = req.outputs?.map((o) => {
    if (!m.model.outputs.some((t) => t.name === o.name)) bad(`output "${o.name}" is not an output of model "${k.name}" (outputs: ${m.model.outputs.map((t) => `"${t.name}"`).join(", ")})`);
    const b = o.parameters?.binary_data;
    if (b !== undefined && typeof b !== "boolean") bad(`output "${o.name}": binary_data must be true or false`);
    return { name: o.name, binary: b as boolean | undefined };
  });
  const binaryOutput = req.parameters?.binary_data_output;
  if (binaryOutput !== undefined && typeof binaryOutput !== "boolean") bad("binary_data_output must be true or false");
  const binaryDefault = binaryOutput === true;
  return {
    ...(req.id !== undefined ? { id: req.id } : {}),
    request: nativeRequest(nativeId, model, variant, items.map((i) => ({ name: i.name, shape: i.shape, bytes: i.bytes }))),
    ...(outputs ? { outputs: outputs.map((o) => ({ name: o.name, binary: o.binary ?? binaryDefault })) } : {}),
    binaryDefault,
  };
}

/** The variant of a cut whose codec a payload's own header (or image format) names. */
function variantOf(k: KModel, bytes: Uint8Array, name: string): Variant {
  const image = imageFormatOf(bytes);
  if (image) {
    return k.variants.find((v) => v.codec.bits === image) ?? bad(`input "${name}": a ${image} file, and model "${k.name}" has no ${image} variant`);
  }
  let h: ReturnType<typeof readHeader>;
  try {
    h = readHeader(bytes);
  } catch (e) {
    return bad(`input "${name}": not a dyno payload (${(e as Error).message}); FP32 tensors go as datatype FP32`);
  }
  const bits = h.kind === Kind.Float32 ? "f32" : h.kind === Kind.Float16 ? "f16" : h.bits;
  const same = k.variants.filter((v) => v.codec.bits === bits && (h.kind !== Kind.Quantized || (v.codec.perChannel === h.perChannel && v.codec.shuffle === h.shuffle)));
  // A payload whose lossless stage did not pay travels as "none": any variant of its bits then.
  return same.find((v) => v.codec.lossless === h.codec) ?? (h.codec === "none" ? same[0] : undefined)
    ?? bad(`input "${name}": no variant of model "${k.name}" sends ${bits}${h.kind === Kind.Quantized ? "-bit" : ""} ${h.codec} payloads (variants: ${k.variants.map((v) => v.id).join(", ")}); name one with the dyno_variant parameter`);
}

function nativeRequest(id: number, model: string, v: Variant, tensors: { name: string; shape: number[]; bytes: Uint8Array }[]): Request {
  const c = v.codec;
  const header = {
    variant: v.id,
    model,
    tensors: tensors.map((t): RequestTensor => ({
      name: t.name, bytes: t.bytes.length, crc32: crc32(t.bytes), shape: t.shape, bits: c.bits, perChannel: c.perChannel, shuffle: c.shuffle, codec: c.lossless,
      ...(isImageCodec(c) ? { quality: c.quality ?? 75 } : {}),
    })),
  };
  return { id, header, payloads: tensors.map((t) => t.bytes) };
}

/**
 * The response body: JSON, then the binary outputs in order; `headerLength` when any output is
 * binary (for Inference-Header-Content-Length).
 */
export function encodeInferResponse(k: KModel, version: string, p: Pick<ParsedInfer, "id" | "outputs" | "binaryDefault">, outputs: OutputTensor[], parameters: Record<string, number | string | boolean>): { body: Uint8Array; headerLength?: number } {
  const wanted = p.outputs ?? outputs.map((o) => ({ name: o.name, binary: p.binaryDefault }));
  const tails: Uint8Array[] = [];
  const list = wanted.map((w) => {
    const o = outputs.find((x) => x.name === w.name)!;
    const finite = o.data.every((x) => Number.isFinite(x));
    if (w.binary || !finite) {
      const b = new Uint8Array(o.data.length * 4);
      const v = new DataView(b.buffer);
      for (let i = 0; i < o.data.length; i++) v.setFloat32(4 * i, o.data[i]!, true);
      tails.push(b);
      return { name: o.name, datatype: "FP32", shape: o.dims, parameters: { binary_data_size: b.length } };
    }
    return { name: o.name, datatype: "FP32", shape: o.dims, data: Array.from(o.data) };
  });
  const json = new TextEncoder().encode(JSON.stringify({ model_name: k.name, model_version: version, ...(p.id ? { id: p.id } : {}), parameters, outputs: list }));
  if (tails.length === 0) return { body: json };
  const body = new Uint8Array(json.length + tails.reduce((a, t) => a + t.length, 0));
  body.set(json, 0);
  let at = json.length;
  for (const t of tails) (body.set(t, at), (at += t.length));
  return { body, headerLength: json.length };
}
