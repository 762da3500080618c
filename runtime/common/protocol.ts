// The wire protocol between a device and `dyno serve`: one schema for every side (Node device,
// browser device, cloud server). Browser-safe: no node: imports. docs/protocol.md has the tables.
//
// Every message, either direction, WebSocket binary message or HTTP body, is one frame:
//
//   0   u8[4]  magic "DYNO" (0x44 0x59 0x4e 0x4f)
//   4   u8     protocol version = 1
//   5   u8     type: 1 request, 2 response, 3 ping, 4 pong
//   6   u16    reserved, 0
//   8   u32    request id (chosen by the device, 1..2^32-1; 0 = "could not be read")
//   12  u32    header length H (at most MAX_HEADER_BYTES)
//   16  H      header: UTF-8 JSON (RequestHeader / ResponseHeader below; empty for ping/pong)
//   16+H       body: the tensors' bytes, concatenated in header order; ends exactly there
//
// The id sits in the fixed prefix, not in the JSON, so that a request whose header cannot be
// parsed still gets an error response its sender can match (pipelined WebSocket requests complete
// out of order). The header is JSON rather than a packed binary struct: it is a few hundred
// bytes against payloads of kilobytes, parses in microseconds, is readable in a packet dump and
// validated by the same zod schema everywhere; the fixed prefix carries the version, so any change
// to the header's fields bumps it.
import * as z from "zod";
import { DynoError } from "./errors.js";
import { headerLength, Kind, rawBodyLength, readHeader } from "../../kernels/format.js";
import { Bits, isImageCodec, perSampleDims, type Cut, type Manifest, type Variant } from "./manifest.js";
import { imageFormatOf, maxImageBytes } from "./image.js";

export const PROTOCOL_VERSION = 1;
/** The WebSocket subprotocol every client offers. */
export const WS_PROTOCOL = "dyno.v1";
/** Browsers cannot set an Authorization header on a WebSocket: they offer `dyno-bearer.<base64url token>`. */
export const WS_BEARER_PREFIX = "dyno-bearer.";
export const MAGIC = [0x44, 0x59, 0x4e, 0x4f] as const;
export const PREFIX_BYTES = 16;
/** The padding of a device's largest bandwidth probe (a padded ping): the server's --max-body admits it. */
export const MAX_PROBE_PAD_BYTES = 1 << 20;
/** Largest JSON header accepted (a request header is a few hundred bytes). */
export const MAX_HEADER_BYTES = 64 * 1024;
/** A symbolic dimension (batch) of a cut tensor accepts 1..this (as the executor's decode cap). */
export const MAX_SYMBOLIC_DIM = 64;
/** Characters of manifest.model.sha256 a request carries as the bundle identity. */
export const MODEL_ID_CHARS = 16;

export const MessageType = { Request: 1, Response: 2, Ping: 3, Pong: 4 } as const;
export type MessageType = (typeof MessageType)[keyof typeof MessageType];

/**
 * Error kinds a response can carry, with the HTTP status `POST /v1/infer` answers with.
 * The device reads the kind, never the message (which is for people).
 */
export const ERROR_STATUS = {
  /** Malformed frame or header, or a request that does not fit the variant (shape, codec, length). */
  "bad-request": 400,
  /** A protocol version this server does not speak. */
  "bad-version": 400,
  /** A payload's CRC-32 does not match its header: corrupted in transit. Retrying may help. */
  checksum: 400,
  /** Missing or wrong bearer token. */
  unauthorized: 401,
  /** The variant id is not in this server's bundle. */
  "unknown-variant": 404,
  /** The request was made for another bundle (model identity differs). */
  "wrong-bundle": 409,
  /** Message, header or body over the server's limits. */
  "too-large": 413,
  /** Too many requests in flight (per client or per server): back off, try again later. */
  overloaded: 429,
  /** The server failed; not the request's fault. */
  internal: 500,
  /** The server is shutting down (draining) or not ready. */
  unavailable: 503,
  /** No result within the server's per-request timeout. */
  timeout: 504,
} as const;
export type ErrorKind = keyof typeof ERROR_STATUS;
export const ERROR_KINDS = Object.keys(ERROR_STATUS) as ErrorKind[];
export type Status = "ok" | ErrorKind;

/** A protocol-level failure: the kind goes on the wire, the message says what was wrong. */
export class ProtocolError extends DynoError {
  override name = "ProtocolError";
  constructor(
    readonly kind: ErrorKind,
    message: string,
    /** The request id when it could be read, else 0. */
    readonly id = 0,
  ) {
    super(message);
  }
}

const LosslessCodec = z.enum(["none", "lz4", "deflate", "zstd"]);
const Dims = z.array(z.number().int().nonnegative().max(0xffffffff)).max(8);

/** One cut tensor of a request: what the device sent and the codec it believes it used. */
export const RequestTensor = z.object({
  name: z.string().min(1).max(512),
  /** Payload bytes of this tensor in the body. */
  bytes: z.number().int().nonnegative().max(0xffffffff),
  /** CRC-32 (IEEE 802.3, as zlib) of the payload bytes. */
  crc32: z.number().int().nonnegative().max(0xffffffff),
  shape: Dims,
  bits: Bits,
  perChannel: z.boolean(),
  shuffle: z.boolean(),
  /** The variant's lossless stage (a payload may still say "none" when compression did not pay). */
  codec: LosslessCodec,
  /** An image codec's quality (bits "jpeg" or "webp"). */
  quality: z.number().int().min(1).max(100).optional(),
}).strict();
export type RequestTensor = z.infer<typeof RequestTensor>;

export const RequestHeader = z.object({
  variant: z.string().min(1).max(256),
  /** The first MODEL_ID_CHARS (at least 8) hex characters of manifest.model.sha256. */
  model: z.string().regex(/^[0-9a-f]{8,64}$/, "8 to 64 lowercase hex characters of manifest.model.sha256"),
  tensors: z.array(RequestTensor).min(1).max(256),
}).strict();
export type RequestHeader = z.infer<typeof RequestHeader>;

/** The server's times for one request (the manifest's Timing is a profile statistic). */
export const ServerTiming = z.object({
  /** Waiting for the executor (runs are serialised). */
  queueMs: z.number().nonnegative(),
  /** Unpacking the payloads (the executor's decode). */
  decodeMs: z.number().nonnegative(),
  /** The cloud segments (a batched request: the whole batch's run, which it waited for). */
  segmentMs: z.number().nonnegative(),
  /** decodeMs + segmentMs / rows: the cloud compute per inference (its share of a batch), the time the device should learn. */
  cloudMs: z.number().nonnegative(),
  /** Receipt of the request to the response, on the server: cloudMs + queueMs + checks. */
  totalMs: z.number().nonnegative(),
  /** Rows in the cloud run when the server batched this request with others (segmentMs is that run's); absent: it ran alone. */
  rows: z.number().int().positive().optional(),
}).strict();
export type ServerTiming = z.infer<typeof ServerTiming>;

export const ResponseTensor = z.object({
  name: z.string(),
  dtype: z.literal("float32"),
  shape: Dims,
  bytes: z.number().int().nonnegative().max(0xffffffff),
  crc32: z.number().int().nonnegative().max(0xffffffff),
}).strict();
export type ResponseTensor = z.infer<typeof ResponseTensor>;

export const ResponseHeader = z.object({
  status: z.enum(["ok", ...ERROR_KINDS] as [Status, ...Status[]]),
  /** For errors: what was wrong, naming the field, tensor or limit. */
  message: z.string().optional(),
  timing: ServerTiming.optional(),
  outputs: z.array(ResponseTensor).optional(),
}).strict();
export type ResponseHeader = z.infer<typeof ResponseHeader>;

/** One cut tensor packed by the kernels, as the executor makes it and a request carries it. */
export interface Payload {
  tensor: string;
  bytes: Uint8Array;
}

/** An output tensor, onnxruntime-free. */
export interface OutputTensor {
  name: string;
  dims: number[];
  data: Float32Array;
}

export interface Frame {
  version: number;
  type: MessageType;
  id: number;
  header: unknown;
  body: Uint8Array;
}

export interface Request {
  id: number;
  header: RequestHeader;
  /** One per header tensor, in header order (views into the message). */
  payloads: Uint8Array[];
}

export interface Response {
  id: number;
  status: Status;
  message?: string;
  timing?: ServerTiming;
  outputs: OutputTensor[];
}

// ---------------------------------------------------------------------------------------------
// CRC-32 (IEEE 802.3 polynomial, reflected, as zlib and PNG): a 1 KiB table and a byte loop.
// Written here rather than taken from a package because it is ten lines, must run in browsers,
// and Node 20's zlib has no crc32 (it arrived in Node 22).

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

export function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

// ---------------------------------------------------------------------------------------------
// Framing

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder("utf-8", { fatal: true });

/** Writes one frame; `header` null means an empty header (ping, pong). */
export function encodeFrame(type: MessageType, id: number, header: object | null, body: readonly Uint8Array[] = [], version = PROTOCOL_VERSION): Uint8Array {
  const json = header === null ? new Uint8Array(0) : textEncoder.encode(JSON.stringify(header));
  const bodyBytes = body.reduce((n, b) => n + b.length, 0);
  const out = new Uint8Array(PREFIX_BYTES + json.length + bodyBytes);
  const v = new DataView(out.buffer);
  out.set(MAGIC, 0);
  out[4] = version;
  out[5] = type;
  v.setUint32(8, id >>> 0, true);
  v.setUint32(12, json.length, true);
  out.set(json, PREFIX_BYTES);
  let p = PREFIX_BYTES + json.length;
  for (const b of body) (out.set(b, p), (p += b.length));
  return out;
}

/** The id of a frame when its prefix is readable (for error replies to unreadable requests). */
export function peekId(bytes: Uint8Array): number {
  if (bytes.length < 12 || MAGIC.some((m, i) => bytes[i] !== m)) return 0;
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(8, true);
}

/** Parses the prefix and the JSON header; every malformation is a ProtocolError, never a crash. */
export function decodeFrame(bytes: Uint8Array, maxHeaderBytes = MAX_HEADER_BYTES): Frame {
  const id = peekId(bytes);
  const fail = (kind: ErrorKind, why: string): never => {
    throw new ProtocolError(kind, why, id);
  };
  if (bytes.length < PREFIX_BYTES) fail("bad-request", `truncated message: ${bytes.length} bytes, the frame prefix alone is ${PREFIX_BYTES}`);
  if (MAGIC.some((m, i) => bytes[i] !== m)) fail("bad-request", `bad magic ${hex(bytes.subarray(0, 4))}: not a dyno protocol message (expected "DYNO")`);
  if (bytes[4] !== PROTOCOL_VERSION) fail("bad-version", `protocol version ${bytes[4]} is not supported: this server speaks version ${PROTOCOL_VERSION}`);
  const type = bytes[5] as MessageType;
  if (type < MessageType.Request || type > MessageType.Pong) fail("bad-request", `unknown message type ${type}`);
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (v.getUint16(6, true) !== 0) fail("bad-request", "reserved bytes 6..7 of the prefix are not 0");
  const headerBytes = v.getUint32(12, true);
  if (headerBytes > maxHeaderBytes) fail("too-large", `header of ${headerBytes} bytes is over the limit of ${maxHeaderBytes}`);
  if (bytes.length < PREFIX_BYTES + headerBytes) fail("bad-request", `truncated message: ${bytes.length} bytes, the prefix announces a header up to byte ${PREFIX_BYTES + headerBytes}`);
  let header: unknown = null;
  if (headerBytes > 0) {
    try {
      header = JSON.parse(textDecoder.decode(bytes.subarray(PREFIX_BYTES, PREFIX_BYTES + headerBytes)));
    } catch (e) {
      fail("bad-request", `header is not UTF-8 JSON: ${(e as Error).message}`);
    }
  }
  return { version: bytes[4]!, type, id, header, body: bytes.subarray(PREFIX_BYTES + headerBytes) };
}

function hex(b: Uint8Array): string {
  return `0x${[...b].map((x) => x.toString(16).padStart(2, "0")).join("")}`;
}

function schemaError(what: string, error: z.ZodError): string {
  const issue = error.issues[0]!;
  const path = issue.path.length ? issue.path.join(".") : "(root)";
  return `${what}: ${path}: ${issue.message}${error.issues.length > 1 ? ` (and ${error.issues.length - 1} more)` : ""}`;
}

/** Splits a body into one view per tensor, checking the total length against the header. */
function splitBody(body: Uint8Array, lengths: number[], what: string, id: number): Uint8Array[] {
  const total = lengths.reduce((a, b) => a + b, 0);
  if (body.length !== total) {
    throw new ProtocolError("bad-request", `${what}: body is ${body.length} bytes, the header's tensors add up to ${total} (${body.length < total ? "truncated" : "trailing bytes"})`, id);
  }
  const out: Uint8Array[] = [];
  let p = 0;
  for (const n of lengths) (out.push(body.subarray(p, p + n)), (p += n));
  return out;
}

// ---------------------------------------------------------------------------------------------
// Requests

/** The bundle identity a request carries: a prefix of the model's SHA-256. */
export function modelId(manifest: Pick<Manifest, "model">): string {
  return manifest.model.sha256.slice(0, MODEL_ID_CHARS);
}

/** A request's frame from a header as given (tests use it to forge bad ones). */
export function encodeRequest(id: number, header: RequestHeader, payloads: readonly Uint8Array[]): Uint8Array {
  return encodeFrame(MessageType.Request, id, header, payloads);
}

/**
 * The request a device sends for `variant`: shapes from the payloads' own headers, lengths and
 * checksums computed, codec parameters from the variant (what the device believes).
 */
export function buildRequest(id: number, model: string, variant: Pick<Variant, "id" | "codec">, payloads: readonly Payload[], shapes?: Readonly<Record<string, readonly number[]>>): Uint8Array {
  const c = variant.codec;
  const image = isImageCodec(c);
  const tensors = payloads.map((p): RequestTensor => {
    let shape: number[];
    try {
      // An image file has no payload header of ours: its tensor's shape is the caller's.
      if (image) {
        const given = shapes?.[p.tensor];
        if (!given) throw new Error(`a ${c.bits} payload needs its tensor's shape`);
        shape = [...given];
      } else shape = readHeader(p.bytes).shape;
    } catch (e) {
      throw new ProtocolError("bad-request", `payload for "${p.tensor}": ${(e as Error).message}`, id);
    }
    return { name: p.tensor, bytes: p.bytes.length, crc32: crc32(p.bytes), shape, bits: c.bits, perChannel: c.perChannel, shuffle: c.shuffle, codec: c.lossless, ...(image ? { quality: c.quality ?? 75 } : {}) };
  });
  return encodeRequest(id, { variant: variant.id, model, tensors }, payloads.map((p) => p.bytes));
}

/** Parses a request frame: prefix, header schema, body lengths and checksums. */
export function decodeRequest(bytes: Uint8Array, maxHeaderBytes = MAX_HEADER_BYTES): Request {
  return parseRequest(decodeFrame(bytes, maxHeaderBytes));
}

/** decodeRequest after decodeFrame (the server reads the frame first to answer pings cheaply). */
export function parseRequest(f: Frame): Request {
  if (f.type !== MessageType.Request) throw new ProtocolError("bad-request", `expected a request (type 1), got message type ${f.type}`, f.id);
  if (f.id === 0) throw new ProtocolError("bad-request", "request id 0 is reserved (ids are 1..2^32-1)", 0);
  const r = RequestHeader.safeParse(f.header);
  if (!r.success) throw new ProtocolError("bad-request", schemaError("request header", r.error), f.id);
  const header = r.data;
  const payloads = splitBody(f.body, header.tensors.map((t) => t.bytes), "request", f.id);
  header.tensors.forEach((t, i) => {
    const sum = crc32(payloads[i]!);
    if (sum !== t.crc32) throw new ProtocolError("checksum", `payload for "${t.name}": CRC-32 is ${sum.toString(16).padStart(8, "0")}, the header says ${t.crc32.toString(16).padStart(8, "0")} (corrupted in transit)`, f.id);
  });
  return { id: f.id, header, payloads };
}

/**
 * The largest request a device sends for any variant of `manifest`: the frame prefix, the most a
 * JSON header may be (MAX_HEADER_BYTES), and per cut tensor the payload header plus its body before
 * the lossless stage (which never stores more than that: a body it cannot shrink travels raw). For
 * float32 variants that body is the cut's float32 bytes; at the input cut, the float32 input.
 * Symbolic dims count 1, as devices send one input per request. `dyno serve` derives its default
 * --max-body from this (runtime/cloud/server.ts defaultMaxBody).
 */
export function maxRequestBytes(manifest: Pick<Manifest, "variants" | "cuts">): number {
  let largest = 0;
  for (const v of manifest.variants) {
    const cut = manifest.cuts.find((c) => c.id === v.cut);
    if (!cut || cut.kind === "output") continue;
    const bytes = cut.tensors.reduce((sum, t) => sum + maxPayloadBytes(t.shape, v.codec), 0);
    largest = Math.max(largest, bytes);
  }
  return PREFIX_BYTES + MAX_HEADER_BYTES + largest;
}

/** The largest payload `encode` makes for a tensor of `shape` with `codec` (symbolic dims: 1). */
function maxPayloadBytes(shape: Cut["tensors"][number]["shape"], codec: Variant["codec"]): number {
  const dims = perSampleDims(shape);
  const n = dims.reduce((a, b) => a * b, 1);
  if (isImageCodec(codec)) return maxImageBytes(n);
  const kind = codec.bits === "f32" ? Kind.Float32 : codec.bits === "f16" ? Kind.Float16 : Kind.Quantized;
  const bits = kind === Kind.Float32 ? 32 : kind === Kind.Float16 ? 16 : (codec.bits as number);
  const quantised = kind === Kind.Quantized;
  const ranges = !quantised ? 0 : codec.perChannel ? (dims[1] ?? 1) : 1;
  return headerLength(dims.length, ranges) + rawBodyLength(kind, bits, quantised && codec.shuffle, n);
}

/** The largest successful response for one input: every model output as float32, with its header. */
export function maxResponseBytes(manifest: Pick<Manifest, "model">): number {
  const body = manifest.model.outputs.reduce((sum, o) => sum + 4 * o.shape.reduce<number>((a, d) => a * (typeof d === "number" ? d : 1), 1), 0);
  // The JSON header: status, timing and, per output, name, shape, bytes and CRC.
  const header = 512 + manifest.model.outputs.reduce((sum, o) => sum + 160 + o.name.length, 0);
  return PREFIX_BYTES + header + body;
}

/** What a validated request runs: the variant and its payloads by cut tensor name. */
export interface ValidRequest {
  id: number;
  variant: Variant;
  cut: Cut;
  payloads: Payload[];
  /** The batch dimension of its first tensor (each payload's own header agrees with its tensor's shape); 1 for an image file. */
  rows: number;
}

/**
 * Checks a decoded request against the manifest before any work is done: bundle identity,
 * variant, the tensors of its cut, codec parameters (in the header and in each payload's own
 * header) and shapes. Non-admissible variants are served: admissibility is the scheduler's
 * accuracy policy, and the bench's oracle measures every variant.
 */
export function validateRequest(manifest: Manifest, req: Request): ValidRequest {
  const { id, header } = req;
  const fail = (kind: ErrorKind, why: string): never => {
    throw new ProtocolError(kind, why, id);
  };
  const mine = manifest.model.sha256;
  if (!mine.startsWith(header.model)) {
    fail("wrong-bundle", `request is for model ${header.model}, this server's bundle is "${manifest.model.name}" (${mine.slice(0, MODEL_ID_CHARS)})`);
  }
  const variant = manifest.variants.find((v) => v.id === header.variant);
  if (!variant) {
    const ids = manifest.variants.map((v) => v.id);
    fail("unknown-variant", `variant "${header.variant}" is not in bundle "${manifest.model.name}" (variants: ${ids.slice(0, 8).join(", ")}${ids.length > 8 ? `, ... ${ids.length} in all` : ""})`);
  }
  const v = variant!;
  const cut = manifest.cuts.find((c) => c.id === v.cut)!;
  if (cut.kind === "output") fail("bad-request", `variant "${v.id}" is device-only: the cloud has nothing to run`);
  if (header.tensors.length !== cut.tensors.length) {
    fail("bad-request", `variant "${v.id}" expects ${cut.tensors.length} tensor(s) (${cut.tensors.map((t) => t.name).join(", ")}), the request has ${header.tensors.length}`);
  }
  const payloads: Payload[] = [];
  const seen = new Set<string>();
  header.tensors.forEach((t, i) => {
    const spec = cut.tensors.find((s) => s.name === t.name);
    if (!spec) fail("bad-request", `tensor "${t.name}" is not a cut tensor of variant "${v.id}" (expected ${cut.tensors.map((s) => `"${s.name}"`).join(", ")})`);
    if (seen.has(t.name)) fail("bad-request", `tensor "${t.name}" appears twice in the request`);
    seen.add(t.name);
    const c = v.codec;
    const image = isImageCodec(c);
    const mismatch = [
      t.bits !== c.bits && `bits ${t.bits} (variant: ${c.bits})`,
      t.perChannel !== c.perChannel && `perChannel ${t.perChannel} (variant: ${c.perChannel})`,
      t.shuffle !== c.shuffle && `shuffle ${t.shuffle} (variant: ${c.shuffle})`,
      t.codec !== c.lossless && `codec ${t.codec} (variant: ${c.lossless})`,
      image && t.quality !== (c.quality ?? 75) && `quality ${t.quality} (variant: ${c.quality ?? 75})`,
    ].filter(Boolean);
    if (mismatch.length) fail("bad-request", `tensor "${t.name}": codec parameters do not match variant "${v.id}": ${mismatch.join(", ")}`);
    const want = spec!.shape;
    const shapeOk = t.shape.length === want.length && want.every((d, k) => (typeof d === "number" ? d === t.shape[k] : t.shape[k]! >= 1 && t.shape[k]! <= MAX_SYMBOLIC_DIM));
    if (!shapeOk) fail("bad-request", `tensor "${t.name}": shape [${t.shape.join(",")}] does not match the cut tensor [${want.map((d) => (typeof d === "number" ? d : d ?? "?")).join(",")}]`);
    const bytes = req.payloads[i]!;
    if (image) {
      // An image file: its magic bytes and its size here; the pixels when the executor decodes it.
      const values = t.shape.reduce((a, b) => a * b, 1);
      if (imageFormatOf(bytes) !== c.bits) fail("bad-request", `tensor "${t.name}": the payload is not a ${c.bits} file (variant "${v.id}")`);
      if (bytes.length > maxImageBytes(values)) fail("too-large", `tensor "${t.name}": a ${bytes.length}-byte ${c.bits} file for ${values} values (at most ${maxImageBytes(values)})`);
      payloads.push({ tensor: t.name, bytes });
      return;
    }
    let ph: ReturnType<typeof readHeader>;
    try {
      ph = readHeader(bytes, want.reduce<number>((a, d) => a * (typeof d === "number" ? d : MAX_SYMBOLIC_DIM), 1));
    } catch (e) {
      return fail("bad-request", `tensor "${t.name}": ${(e as Error).message}`);
    }
    if (ph.shape.length !== t.shape.length || ph.shape.some((d, k) => d !== t.shape[k])) {
      fail("bad-request", `tensor "${t.name}": the payload has shape [${ph.shape.join(",")}], the request header says [${t.shape.join(",")}]`);
    }
    const payloadBits: Bits = ph.kind === 1 ? "f32" : ph.kind === 2 ? "f16" : (ph.bits as Bits);
    const codecOk = ph.codec === c.lossless || ph.codec === "none";
    const quantised = ph.kind === 0;
    if (payloadBits !== c.bits || !codecOk || (quantised && (ph.perChannel !== c.perChannel || ph.shuffle !== c.shuffle))) {
      fail("bad-request", `tensor "${t.name}": the payload is ${describePayload(payloadBits, ph)}, variant "${v.id}" sends ${describePayload(c.bits, { perChannel: c.perChannel, shuffle: c.shuffle, codec: c.lossless })}`);
    }
    payloads.push({ tensor: t.name, bytes });
  });
  // An image file decodes to one row whatever its header says (Executor.decode).
  return { id, variant: v, cut, payloads, rows: isImageCodec(v.codec) ? 1 : header.tensors[0]!.shape[0] ?? 1 };
}

function describePayload(bits: Bits, h: { perChannel: boolean; shuffle: boolean; codec: string }): string {
  if (bits === "jpeg" || bits === "webp") return `a ${bits} file`;
  if (bits === "f32" || bits === "f16") return `${bits} (${h.codec})`;
  return `${bits}-bit${h.perChannel ? " per-channel" : ""}${h.shuffle ? " shuffled" : ""} (${h.codec})`;
}

// ---------------------------------------------------------------------------------------------
// Responses

export function encodeResponse(r: Response): Uint8Array {
  const header: ResponseHeader = { status: r.status };
  if (r.message !== undefined) header.message = r.message;
  if (r.timing) header.timing = r.timing;
  const bodies = r.outputs.map((o) => new Uint8Array(o.data.buffer, o.data.byteOffset, o.data.byteLength));
  if (r.status === "ok") header.outputs = r.outputs.map((o, i) => ({ name: o.name, dtype: "float32", shape: o.dims, bytes: bodies[i]!.length, crc32: crc32(bodies[i]!) }));
  return encodeFrame(MessageType.Response, r.id, header, r.status === "ok" ? bodies : []);
}

export function errorResponse(id: number, kind: ErrorKind, message: string): Uint8Array {
  return encodeResponse({ id, status: kind, message, outputs: [] });
}

/** Parses a response (or a pong, returned with status "ok" and no outputs). */
export function decodeResponse(bytes: Uint8Array): Response & { type: MessageType } {
  const f = decodeFrame(bytes);
  if (f.type === MessageType.Pong) return { type: f.type, id: f.id, status: "ok", outputs: [] };
  if (f.type !== MessageType.Response) throw new ProtocolError("bad-request", `expected a response (type 2), got message type ${f.type}`, f.id);
  const r = ResponseHeader.safeParse(f.header);
  if (!r.success) throw new ProtocolError("bad-request", schemaError("response header", r.error), f.id);
  const h = r.data;
  const specs = h.outputs ?? [];
  const bodies = splitBody(f.body, specs.map((o) => o.bytes), "response", f.id);
  const outputs = specs.map((o, i): OutputTensor => {
    const b = bodies[i]!;
    const n = o.shape.reduce((a, d) => a * d, 1);
    if (b.length !== 4 * n) throw new ProtocolError("bad-request", `output "${o.name}": ${b.length} bytes for shape [${o.shape.join(",")}] (float32 needs ${4 * n})`, f.id);
    if (crc32(b) !== o.crc32) throw new ProtocolError("checksum", `output "${o.name}": CRC-32 mismatch (corrupted in transit)`, f.id);
    // Copy: the body's offset in the message need not be 4-byte aligned.
    const data = new Float32Array(n);
    new Uint8Array(data.buffer).set(b);
    return { name: o.name, dims: o.shape, data };
  });
  return { type: f.type, id: f.id, status: h.status, message: h.message, timing: h.timing, outputs };
}

/**
 * A ping; `padBytes` zero bytes of body make it a bandwidth probe (the server ignores a ping's
 * body and answers with an empty pong, so the time it takes over an RTT is the body's transfer).
 */
export function encodePing(id: number, padBytes = 0): Uint8Array {
  if (!(Number.isInteger(padBytes) && padBytes >= 0)) throw new RangeError(`ping padding must be a whole number of bytes >= 0, got ${padBytes}`);
  return encodeFrame(MessageType.Ping, id, null, padBytes > 0 ? [new Uint8Array(padBytes)] : []);
}

export function encodePong(id: number): Uint8Array {
  return encodeFrame(MessageType.Pong, id, null);
}
