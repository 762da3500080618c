// The device's side of the Open Inference Protocol (KServe v2 REST) on `dyno serve`: a request
// made into the body KServe takes, and its response back into what the native protocol returns.
// Pure: the HTTP exchange is the client's (./client.ts).
//
//   POST /v2/models/<NAME or NAME.c<cut>>/versions/<model id>/infer
//     Content-Type: application/octet-stream
//     Inference-Header-Content-Length: <J>
//     [Content-Encoding: gzip]                              when it pays (gzipPays)
//     body: {"id": "<n>", "parameters": {"dyno_variant": "c13-b4-zstd", "binary_data_output": true},
//            "inputs": [{"name": "<cut tensor>", "datatype": "UINT8", "shape": [<bytes>],
//                        "parameters": {"binary_data_size": <bytes>}}, ...]}        (J bytes)
//           | payload 0 | payload 1 | ...                   each the packed tensor, as is
//
// The version in the path is the bundle's model id: a server with another bundle answers 404,
// which is "wrong-bundle" here as the native protocol's 409 is. Each payload travels as the UINT8
// tensor the device packed (its own header names shape and codec), the variant named in the
// request's parameters, so the server runs exactly what the native protocol would (the outputs
// are equal bit for bit: test/cloud-client.test.ts). Outputs come back binary, FP32 little-endian.
import { isImageCodec, type CodecSpec, type Cut, type Manifest, type Variant } from "../common/manifest.js";
import { KSERVE_BATCH_ROWS, KSERVE_TIMING, KServeInferResponse, kserveModelName } from "../common/kserve.js";
import { modelId, type OutputTensor, type Payload, type ServerTiming } from "../common/protocol.js";

/** What the client needs of the manifest to name a variant's KServe model. */
export type KServeManifest = Pick<Manifest, "model" | "cuts"> & { variants: readonly Pick<Variant, "id" | "cut">[] };

/** The infer path of `variant`'s cut, with the bundle's model id as the version; throws when the manifest has no such variant. */
export function kservePath(m: KServeManifest, variantId: string, version = modelId(m)): string {
  const v = m.variants.find((x) => x.id === variantId);
  const cut: Cut | undefined = v && m.cuts.find((c) => c.id === v.cut);
  if (!v || !cut) throw new RangeError(`variant "${variantId}" is not in the manifest of "${m.model.name}"`);
  if (cut.kind === "output") throw new RangeError(`variant "${variantId}" runs on the device alone: nothing to send`);
  return `/v2/models/${encodeURIComponent(kserveModelName(m.model.name, cut))}/versions/${encodeURIComponent(version)}/infer`;
}

/** The request body: the JSON header, then the payloads; `headerLength` is the JSON's. */
export function kserveBody(id: number, variantId: string, payloads: readonly Payload[]): { body: Uint8Array; headerLength: number } {
  const head = {
    id: String(id),
    parameters: { dyno_variant: variantId, binary_data_output: true },
    inputs: payloads.map((p) => ({ name: p.tensor, datatype: "UINT8", shape: [p.bytes.length], parameters: { binary_data_size: p.bytes.length } })),
  };
  const json = new TextEncoder().encode(JSON.stringify(head));
  const body = new Uint8Array(json.length + payloads.reduce((s, p) => s + p.bytes.length, 0));
  body.set(json, 0);
  let at = json.length;
  for (const p of payloads) (body.set(p.bytes, at), (at += p.bytes.length));
  return { body, headerLength: json.length };
}

/**
 * Whether gzip is worth trying on a request: not on a small body, nor on payloads that already
 * went through a lossless stage or are an image file (gzip finds little there, at a cost in device
 * time). The client then sends the gzip body only when it is at most GZIP_KEEP of the plain one.
 */
export function gzipPays(codec: Pick<CodecSpec, "bits" | "lossless">, bodyBytes: number): boolean {
  return bodyBytes >= GZIP_MIN_BYTES && codec.lossless === "none" && !isImageCodec(codec);
}
export const GZIP_MIN_BYTES = 1024;
export const GZIP_KEEP = 0.9;

/** A failure of a KServe response, before the client gives it an error kind. */
export class KServeReplyError extends Error {}

/** Outputs and timing of a 200 response (body as received, decompressed); `headerLength` from its header, if any. */
export function kserveReply(body: Uint8Array, headerLength: string | null): { outputs: OutputTensor[]; timing: ServerTiming; variant?: string } {
  const n = headerLength === null ? body.length : Number(headerLength);
  if (!(Number.isInteger(n) && n >= 0 && n <= body.length)) throw new KServeReplyError(`Inference-Header-Content-Length ${headerLength} is not within the ${body.length}-byte body`);
  let raw: unknown;
  try {
    raw = JSON.parse(new TextDecoder().decode(body.subarray(0, n)));
  } catch (e) {
    throw new KServeReplyError(`the response's JSON does not parse: ${(e as Error).message}`);
  }
  const r = KServeInferResponse.safeParse(raw);
  if (!r.success) throw new KServeReplyError(`the response is not a KServe infer response: ${r.error.issues.slice(0, 2).map((i) => `${i.path.join(".") || "(top)"}: ${i.message}`).join("; ")}`);
  let tail = body.subarray(n);
  const outputs = r.data.outputs.map((o): OutputTensor => {
    if (o.datatype !== "FP32") throw new KServeReplyError(`output "${o.name}" is ${o.datatype}, not FP32`);
    const count = o.shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(count);
    const size = o.parameters?.binary_data_size;
    if (size !== undefined) {
      if (size !== 4 * count || tail.length < size) throw new KServeReplyError(`output "${o.name}": binary_data_size ${size} for FP32 [${o.shape.join(",")}] with ${tail.length} bytes left`);
      const v = new DataView(tail.buffer, tail.byteOffset, size);
      for (let i = 0; i < count; i++) data[i] = v.getFloat32(4 * i, true);
      tail = tail.subarray(size);
    } else {
      const values = (o.data ?? []).flat(8);
      if (values.length !== count || !values.every((x) => typeof x === "number")) throw new KServeReplyError(`output "${o.name}": ${values.length} values for FP32 [${o.shape.join(",")}]`);
      data.set(values as number[]);
    }
    return { name: o.name, dims: o.shape, data };
  });
  if (tail.length > 0) throw new KServeReplyError(`${tail.length} bytes after the last binary output`);
  return { outputs, timing: timingOf(r.data.parameters ?? {}), ...(typeof r.data.parameters?.dyno_variant === "string" ? { variant: r.data.parameters.dyno_variant } : {}) };
}

/** The server's timing from the response parameters (with its batch's rows when batched). */
function timingOf(p: Record<string, string | number | boolean>): ServerTiming {
  const ms = (key: string) => {
    const v = p[key];
    if (typeof v !== "number" || !(v >= 0)) throw new KServeReplyError(`the response carries no server timing ("${key}" is ${JSON.stringify(v)}): is this dyno serve?`);
    return v;
  };
  const decodeMs = ms(KSERVE_TIMING.decodeMs);
  const cloudMs = ms(KSERVE_TIMING.cloudMs);
  const rows = p[KSERVE_BATCH_ROWS];
  return {
    queueMs: ms(KSERVE_TIMING.queueMs), decodeMs, segmentMs: ms(KSERVE_TIMING.segmentMs), cloudMs, totalMs: ms(KSERVE_TIMING.totalMs),
    ...(typeof rows === "number" && Number.isInteger(rows) && rows > 1 ? { rows } : {}),
  };
}
