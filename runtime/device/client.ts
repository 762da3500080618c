// The device's transport to `dyno serve` (runtime/cloud/server.ts), over WebSocket or HTTP POST,
// in dyno's own protocol or KServe v2's, to one server or several.
//
//   const cloud = connectCloud({ url: "http://127.0.0.1:8080", model: manifest.model.sha256,
//                                token, transport: "ws", timeoutMs: 5000, maxInFlight: 8 });
//   connectCloud({ url: ["http://a:8080", "http://b:8080"], ... })   // spread + failover: ./endpoints.ts
//   connectCloud({ url, model, manifest, protocol: "kserve", gzip: true })   // ./kserve-client.ts
//   const d = await executor.device(variant.id, x);          // kind "split": payloads
//   const reply = await cloud.infer({ variant, payloads: d.payloads });
//   reply.outputs      // [{ name, dims, data: Float32Array }] in manifest.model.outputs order
//   reply.timing       // server side: queueMs, decodeMs, segmentMs, cloudMs (learn this), totalMs
//   reply.wallMs       // infer() call to reply, on the device: transfer + RTT = wallMs - totalMs
//   reply.bytesSent, reply.bytesReceived                    // whole frames (or bodies), as on the wire
//   reply.endpoint                                          // the server that answered
//   const rtt = await cloud.ping();                         // ms; cheap: no model work
//   const { rttMs, serialMs, bytes } = await cloud.probe(64 * 1024); // bandwidth = bytes/serialMs
//   const limits = await cloud.limits(manifest.model.name);  // { maxBody, ... } from the metadata
//   await cloud.close();
//
// - connectCloud does no I/O: the WebSocket opens on the first infer()/ping() and again on the
//   first call after it dropped. Over HTTP every call is one POST (keep-alive pooled by fetch).
// - Every failure rejects with a CloudError whose `kind` is a server error kind
//   (protocol.ts ERROR_STATUS: bad-request, checksum, unknown-variant, wrong-bundle, too-large,
//   overloaded, unauthorized, internal, unavailable, timeout, ...) or one of the client's own:
//   "connection" (cannot connect, or the connection dropped: every request pending on it
//   rejects at once) and "protocol" (a reply that is not a valid frame). "timeout" is also
//   raised by the client when no reply came within timeoutMs, and "overloaded" when maxInFlight
//   requests are already pending (nothing is queued). A promise settles exactly once.
//   WebSocket close codes map to kinds for every request pending on that connection: 4401
//   unauthorized, 1001 unavailable (server draining), 1009 too-large (see below).
// - Server limits: limits() reads them from the model metadata (GET /v2/models/NAME, `dyno`:
//   maxBody today; any it does not publish are absent). From then on a message over maxBody
//   rejects with "too-large" before anything is sent. A message over it sent anyway (the limit
//   unknown, or lowered since) makes the server drop the WebSocket (close 1009) together with
//   the replies to every other message on it. The server does not say which message it was: the
//   largest one sent on that connection rejects with "too-large", and the others, which did
//   nothing wrong, are sent again on a new connection (once each: inference is a pure function,
//   so running one twice is harmless), under their original deadline.
// - Cloud down, quickly: a refused connection rejects in about one RTT with kind "connection";
//   ping() with a short timeout is the probe; a draining server answers "unavailable" (HTTP
//   503, WebSocket close 1001).
//
// - protocol "kserve" (./kserve-client.ts): each infer() is POST /v2/models/<cut's model>/versions/
//   <model id>/infer with the payloads as binary UINT8 tensors and dyno_variant, answered with
//   binary FP32 outputs and the server's timing in the response parameters; the same CloudReply
//   and error kinds (its 404, the model or version unknown, is "wrong-bundle"). ping() is GET
//   /v2/health/ready, probe() the native padded pings (POST /v1/infer: dyno serve serves both
//   protocols on one port), info() and limits() GET /v2/models/NAME as for the native protocol.
//   HTTP only. A request over maxBody (the whole body before gzip) is refused here as above;
//   the server's own bound on a KServe body is --max-json-body (8x --max-body by default).
// - Several URLs (./endpoints.ts): one client per URL, requests spread over them, a request that
//   fails because its server did ("connection", "unavailable") or is busy ("overloaded") goes to
//   the next; the failed server is benched. One URL: the plain client, exactly as before.
//
// The WebSocket comes from `options.socket`: by default the global one (browsers, Node 22+),
// binaryType "arraybuffer", with the token as the subprotocol "dyno-bearer.<base64url>" because a
// browser cannot set headers on a WebSocket; runtime/node/client.ts gives `ws` with a header.
// Nothing here imports Node.
import { DynoError } from "../common/errors.js";
import { KSERVE_HEADER_LENGTH } from "../common/kserve.js";
import { Profile, type Variant } from "../common/manifest.js";
import {
  buildRequest, decodeResponse, encodePing, ERROR_STATUS, MessageType, peekId, PREFIX_BYTES, ProtocolError, WS_BEARER_PREFIX, WS_PROTOCOL, type ErrorKind,
  type OutputTensor, type ServerTiming, type Payload,
} from "../common/protocol.js";
import { spreadOver } from "./endpoints.js";
import { GZIP_KEEP, gzipPays, kserveBody, KServeReplyError, kserveReply, kservePath, type KServeManifest } from "./kserve-client.js";

export type { OutputTensor, ServerTiming, Payload } from "../common/protocol.js";
export type { KServeManifest } from "./kserve-client.js";

export type CloudErrorKind = ErrorKind | "connection" | "protocol";

export class CloudError extends DynoError {
  override name = "CloudError";
  constructor(
    readonly kind: CloudErrorKind,
    message: string,
  ) {
    super(message);
  }
}

export interface CloudOptions {
  /**
   * The server: http(s)://host:port (the WebSocket URL is derived) or ws(s)://host:port; or
   * several (a list, or one string with commas): requests spread over them and fail over
   * (./endpoints.ts).
   */
  url: string | readonly string[];
  /**
   * "dyno" (default): the native binary protocol over `transport`. "kserve": KServe v2 REST with
   * the binary tensor extension (./kserve-client.ts); HTTP only, and needs `manifest`.
   */
  protocol?: "dyno" | "kserve";
  /** The bundle's manifest (or its model, cuts and variants): names each variant's KServe model. */
  manifest?: KServeManifest;
  /** kserve: gzip a request body when it pays (./kserve-client.ts gzipPays). Default false. */
  gzip?: boolean;
  /** Gzips a body (default: the global CompressionStream; runtime/node/client.ts: node:zlib). */
  gzipper?: Gzipper;
  /** Several URLs: an endpoint that failed is benched this long (default 250 ms), doubling at each failure in a row up to maxBenchMs (default 8000 ms). */
  benchMs?: number;
  maxBenchMs?: number;
  /** The bundle identity: manifest.model.sha256 (or its first 16 hex characters). */
  model: string;
  token?: string;
  /** Default "ws" ("http" with protocol "kserve", its only transport). */
  transport?: "ws" | "http";
  /** Per request (and per connection attempt), default 10 000 ms. */
  timeoutMs?: number;
  /** Requests pending at once; one more rejects with "overloaded". Default 16. */
  maxInFlight?: number;
  /** Opens the WebSocket (default globalSocket; Node: runtime/node/client.ts nodeSocket). */
  socket?: SocketFactory;
}

export interface CloudRequest {
  /** The variant the payloads were made with (a manifest Variant will do). */
  variant: Pick<Variant, "id" | "codec">;
  /** One per cut tensor, as Executor.device returns them. */
  payloads: readonly Payload[];
  /** Each tensor's shape, where its payload does not say (an image codec's file). */
  shapes?: Readonly<Record<string, readonly number[]>>;
}

export interface CloudReply {
  id: number;
  outputs: OutputTensor[];
  timing: ServerTiming;
  /** The request body (or WebSocket message) as sent: after gzip, when it was gzipped. */
  bytesSent: number;
  bytesReceived: number;
  wallMs: number;
  /** The server that answered (http(s)://host:port). */
  endpoint: string;
}

/** Gzips a request body. */
export type Gzipper = (bytes: Uint8Array) => Promise<Uint8Array>;

/** What the server publishes of its limits (each absent when it does not). */
export interface ServerLimits {
  /** Largest request message, bytes (HTTP body, WebSocket message): --max-body. */
  maxBody?: number;
  /** Requests in flight at once in the server: --max-inflight. */
  maxInflight?: number;
  /** Per WebSocket connection or HTTP remote address: --max-inflight-per-client. */
  maxInflightPerClient?: number;
  /** Arrival to response, ms: --timeout-ms. */
  timeoutMs?: number;
}

/** What the model metadata tells a device: the limits, and the cloud's own profile if published. */
export interface ServerInfo {
  limits: ServerLimits;
  profile?: Profile;
}

const LIMITS = ["maxBody", "maxInflight", "maxInflightPerClient", "timeoutMs"] as const satisfies readonly (keyof ServerLimits)[];

export interface CloudClient {
  infer(request: CloudRequest): Promise<CloudReply>;
  /** Round-trip time in ms (WebSocket: a ping frame; HTTP: GET /v2/health/ready). */
  ping(): Promise<number>;
  /**
   * A bandwidth probe: a plain ping, then a ping padded with `padBytes` (the server ignores the
   * padding), one after the other on the same path. `serialMs` = padded - plain is the time the
   * padding took upstream; `bytes` = padded frame - plain frame.
   */
  probe(padBytes: number): Promise<LinkProbe>;
  /**
   * The server's limits, from GET /v2/models/NAME (`name`: manifest.model.name); the client
   * refuses a message over maxBody from then on. Rejects like infer() when the server cannot be
   * asked ("wrong-bundle" when it hosts another model).
   */
  limits(name: string): Promise<ServerLimits>;
  /**
   * The server's limits and, when it publishes one, its own profile of the cloud segments
   * (`dyno.profile` in the model metadata: measured where it runs, at start-up and under load).
   */
  info(name: string): Promise<ServerInfo>;
  /** Rejects everything pending ("connection": client closed) and closes the socket. */
  close(): Promise<void>;
  /** Requests sent and not yet settled. */
  readonly inFlight: number;
}

export interface LinkProbe {
  rttMs: number;
  serialMs: number;
  bytes: number;
}

export function connectCloud(options: CloudOptions): CloudClient {
  const urls = (typeof options.url === "string" ? options.url.split(",") : [...options.url]).map((u) => u.trim()).filter((u) => u !== "");
  if (urls.length === 0) throw new CloudError("connection", "no cloud url given");
  if (options.protocol === "kserve" && options.transport === "ws") throw new CloudError("bad-request", 'protocol "kserve" is HTTP only: transport "ws" is the native protocol\'s');
  if (options.protocol === "kserve" && !options.manifest) throw new CloudError("bad-request", 'protocol "kserve" needs the manifest (options.manifest): it names the model of each cut');
  if (urls.length === 1) return connectEndpoint(urls[0]!, options);
  const maxInFlight = options.maxInFlight ?? 16;
  const endpoints = urls.map((url) => connectEndpoint(url, { ...options, maxInFlight }));
  return spreadOver(endpoints.map((e) => e.url), endpoints, {
    maxInFlight, benchMs: options.benchMs, maxBenchMs: options.maxBenchMs,
    makeError: (kind, message) => new CloudError(kind, message),
  });
}

/** One server: the client over one URL, in either protocol. */
function connectEndpoint(url: string, options: CloudOptions): CloudClient & { url: string } {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const maxInFlight = options.maxInFlight ?? 16;
  const base = url.replace(/\/+$/, "").replace(/^ws(s?):/, "http$1:");
  if (!/^https?:\/\/[^/]+$/.test(base)) throw new CloudError("connection", `cloud url "${url}" is not http(s)://host:port or ws(s)://host:port`);
  const model = options.model.slice(0, 16);
  const kserve = options.protocol === "kserve" ? options.manifest! : null;
  const http = kserve || options.transport === "http" ? httpTransport(base, options.token, timeoutMs) : null;
  const transport = http ?? wsTransport(base, options.token, timeoutMs, options.socket ?? globalSocket);
  const gzip = options.gzip ? (options.gzipper ?? streamGzip) : null;
  let nextId = 1;
  let closed = false;
  let known: ServerLimits = {};
  /** A message over the server's --max-body is refused here: sent, it would be refused there. */
  const checkSize = (bytes: number, what: string) => {
    if (known.maxBody !== undefined && bytes > known.maxBody) {
      throw new CloudError("too-large", `${what} is ${bytes} bytes, over the server's limit of ${known.maxBody} bytes (--max-body): not sent`);
    }
  };
  const takeId = () => {
    const id = nextId;
    nextId = nextId >= 0xffffffff ? 1 : nextId + 1;
    return id;
  };
  const guard = () => {
    if (closed) throw new CloudError("connection", "cloud client is closed");
    if (transport.inFlight() >= maxInFlight) throw new CloudError("overloaded", `client: ${transport.inFlight()} requests already in flight (maxInFlight ${maxInFlight})`);
  };

  /** KServe v2: the payloads as UINT8 tensors, the variant named, outputs binary (./kserve-client.ts). */
  const inferKServe = async (request: CloudRequest, m: KServeManifest, t0: number, id: number): Promise<CloudReply> => {
    let path: string;
    try {
      path = kservePath(m, request.variant.id, model);
    } catch (e) {
      throw new CloudError("bad-request", (e as Error).message);
    }
    const { body, headerLength } = kserveBody(id, request.variant.id, request.payloads);
    checkSize(body.length, `request ${id} for ${request.variant.id}`);
    let sent = body;
    if (gzip && gzipPays(request.variant.codec, body.length)) {
      const packed = await gzip(body);
      if (packed.length <= GZIP_KEEP * body.length) sent = packed;
    }
    const res = await http!.call(path, {
      method: "POST",
      body: sent as Uint8Array<ArrayBuffer>,
      headers: {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": String(headerLength),
        ...(sent !== body ? { "Content-Encoding": "gzip" } : {}),
      },
    });
    const bytes = new Uint8Array(await res.arrayBuffer());
    // On the wire: the compressed length when the response was compressed (fetch inflates it).
    const received = Number(res.headers.get("content-length") ?? bytes.length);
    if (res.status !== 200) {
      const message = errorMessage(bytes);
      // 404: the model (a cut) or its version (the bundle's id) is not this server's.
      const kind = res.status === 404 ? "wrong-bundle" : res.status === 415 ? "bad-request" : kindOfStatus(res.status);
      throw new CloudError(kind, `HTTP ${res.status} from ${base}${path}: ${message}`);
    }
    let r: ReturnType<typeof kserveReply>;
    try {
      r = kserveReply(bytes, res.headers.get(KSERVE_HEADER_LENGTH));
    } catch (e) {
      if (!(e instanceof KServeReplyError)) throw e;
      throw new CloudError("protocol", `bad reply to request ${id} from ${base}${path}: ${e.message}`);
    }
    return { id, outputs: r.outputs, timing: r.timing, bytesSent: sent.length, bytesReceived: received, wallMs: now() - t0, endpoint: base };
  };

  return {
    url: base,
    async infer(request) {
      guard();
      const t0 = now();
      const id = takeId();
      if (kserve) return inferKServe(request, kserve, t0, id);
      let frame: Uint8Array;
      try {
        frame = buildRequest(id, model, request.variant, request.payloads, request.shapes);
      } catch (e) {
        throw new CloudError("bad-request", (e as Error).message);
      }
      checkSize(frame.length, `request ${id} for ${request.variant.id}`);
      const bytes = await transport.send(id, frame);
      const r = decodeReply(bytes, id);
      if (r.status !== "ok") throw new CloudError(r.status, r.message ?? r.status);
      if (!r.timing) throw new CloudError("protocol", `reply to request ${id} carries no timing`);
      return { id, outputs: r.outputs, timing: r.timing, bytesSent: frame.length, bytesReceived: bytes.length, wallMs: now() - t0, endpoint: base };
    },
    async ping() {
      guard();
      const t0 = now();
      await transport.ping(takeId());
      return now() - t0;
    },
    async probe(padBytes) {
      if (!(Number.isInteger(padBytes) && padBytes > 0)) throw new RangeError(`probe padding must be a whole number of bytes > 0, got ${padBytes}`);
      guard();
      checkSize(PREFIX_BYTES + padBytes, `a probe padded with ${padBytes} bytes`);
      // Sequential, not back to back: the plain ping's reply must not wait behind the padding.
      const t0 = now();
      await transport.ping(takeId(), 0, true);
      const t1 = now();
      await transport.ping(takeId(), padBytes, true);
      const rttMs = t1 - t0;
      return { rttMs, serialMs: now() - t1 - rttMs, bytes: padBytes };
    },
    async limits(name) {
      return (await this.info(name)).limits;
    },
    async info(name) {
      if (closed) throw new CloudError("connection", "cloud client is closed");
      const path = `/v2/models/${encodeURIComponent(name)}`;
      const res = await httpCall(base, options.token, timeoutMs, path, { method: "GET" });
      const text = await res.text();
      if (res.status !== 200) {
        const kind = res.status === 404 ? "wrong-bundle" : kindOfStatus(res.status);
        throw new CloudError(kind, `HTTP ${res.status} from ${base}${path}: ${text.slice(0, 300)}`);
      }
      let metadata: unknown;
      try {
        metadata = JSON.parse(text);
      } catch {
        throw new CloudError("protocol", `${base}${path} is not JSON: ${text.slice(0, 100)}`);
      }
      known = limitsOf(metadata);
      const published = Profile.safeParse((metadata as { dyno?: { profile?: unknown } } | null)?.dyno?.profile);
      return { limits: { ...known }, ...(published.success && published.data.role === "cloud" ? { profile: published.data } : {}) };
    },
    async close() {
      closed = true;
      await transport.close();
    },
    get inFlight() {
      return transport.inFlight();
    },
  };
}

function decodeReply(bytes: Uint8Array, id: number) {
  let r: ReturnType<typeof decodeResponse>;
  try {
    r = decodeResponse(bytes);
  } catch (e) {
    throw new CloudError("protocol", `bad reply to request ${id}: ${(e as Error).message}`);
  }
  // An error the server could not attribute (an HTTP body it refused unread) carries id 0.
  if (r.id !== id && !(r.id === 0 && r.status !== "ok")) throw new CloudError("protocol", `reply for request ${r.id} to request ${id}`);
  return r;
}

const now = () => performance.now();

/** The `error` of a KServe error body ({"error": "..."}), else the body's start. */
function errorMessage(body: Uint8Array): string {
  const text = new TextDecoder().decode(body.subarray(0, 2000));
  try {
    const e = (JSON.parse(text) as { error?: unknown }).error;
    if (typeof e === "string") return e;
  } catch {
    /* not JSON: the text as it is */
  }
  return text.slice(0, 300);
}

/** Gzip with the global CompressionStream (browsers, Node 18+). */
export const streamGzip: Gzipper = async (bytes) => {
  const Stream = (globalThis as unknown as { CompressionStream?: new (format: string) => TransformStream<Uint8Array, Uint8Array> }).CompressionStream;
  if (!Stream) throw new CloudError("bad-request", "no CompressionStream in this environment: gzip needs one (or options.gzipper)");
  return new Uint8Array(await new Response(new Blob([bytes as Uint8Array<ArrayBuffer>]).stream().pipeThrough(new Stream("gzip"))).arrayBuffer());
};

/** The limits in model metadata: `dyno.maxBody` etc., or under `dyno.limits`; anything else is absent. */
function limitsOf(metadata: unknown): ServerLimits {
  const dyno = (metadata as { dyno?: Record<string, unknown> } | null)?.dyno;
  const nested = dyno?.limits as Record<string, unknown> | undefined;
  const out: ServerLimits = {};
  for (const k of LIMITS) {
    const v = nested?.[k] ?? dyno?.[k];
    if (typeof v === "number" && Number.isSafeInteger(v) && v > 0) out[k] = v;
  }
  return out;
}

function checkPong(reply: Uint8Array, id: number): void {
  let r: ReturnType<typeof decodeResponse>;
  try {
    r = decodeResponse(reply);
  } catch (e) {
    throw new CloudError("protocol", `bad reply to ping ${id}: ${(e as ProtocolError).message}`);
  }
  if (r.type !== MessageType.Pong) throw new CloudError(r.status === "ok" ? "protocol" : r.status, r.message ?? "not a pong");
}

/** Sends frames, returns reply frames; the kinds of its failures are final. */
interface Transport {
  send(id: number, frame: Uint8Array): Promise<Uint8Array>;
  /** A ping frame padded with `padBytes`; `asFrame` sends it as a frame even over HTTP. */
  ping(id: number, padBytes?: number, asFrame?: boolean): Promise<void>;
  inFlight(): number;
  close(): Promise<void>;
}

// --- HTTP ---------------------------------------------------------------------------------------

/** One HTTP exchange with the token, under `timeoutMs`; `pending` holds it while it runs (close aborts it). */
async function httpCall(base: string, token: string | undefined, timeoutMs: number, path: string, init: RequestInit, pending?: Set<AbortController>): Promise<Response> {
  const auth: Record<string, string> = token === undefined ? {} : { Authorization: `Bearer ${token}` };
  const ctl = new AbortController();
  pending?.add(ctl);
  let timedOut = false;
  const timer = setTimeout(() => ((timedOut = true), ctl.abort()), timeoutMs);
  try {
    return await fetch(`${base}${path}`, { ...init, headers: { ...auth, ...(init.headers as Record<string, string>) }, signal: ctl.signal });
  } catch (e) {
    if (timedOut) throw new CloudError("timeout", `no reply from ${base} within ${timeoutMs} ms`);
    if (ctl.signal.aborted) throw new CloudError("connection", "cloud client is closed");
    const cause = (e as { cause?: { code?: string; message?: string } }).cause;
    throw new CloudError("connection", `cannot reach ${base}: ${cause?.code ?? cause?.message ?? (e as Error).message}`);
  } finally {
    clearTimeout(timer);
    pending?.delete(ctl);
  }
}

function httpTransport(base: string, token: string | undefined, timeoutMs: number): Transport & { call(path: string, init: RequestInit): Promise<Response> } {
  const pending = new Set<AbortController>();
  const call = (path: string, init: RequestInit) => httpCall(base, token, timeoutMs, path, init, pending);

  return {
    call,
    async send(_id, frame) {
      const res = await call("/v1/infer", { method: "POST", body: frame as Uint8Array<ArrayBuffer>, headers: { "Content-Type": "application/octet-stream" } });
      const body = new Uint8Array(await res.arrayBuffer());
      if (!(res.headers.get("content-type") ?? "").startsWith("application/octet-stream")) {
        throw new CloudError(kindOfStatus(res.status), `HTTP ${res.status} from ${base}/v1/infer: ${new TextDecoder().decode(body.subarray(0, 300))}`);
      }
      return body;
    },
    async ping(id, padBytes = 0, asFrame = false) {
      if (asFrame) return checkPong(await this.send(id, encodePing(id, padBytes)), id);
      const res = await call("/v2/health/ready", { method: "GET" });
      await res.arrayBuffer();
      if (res.status !== 200) throw new CloudError(kindOfStatus(res.status), `HTTP ${res.status} from ${base}/v2/health/ready`);
    },
    inFlight: () => pending.size,
    async close() {
      for (const c of pending) c.abort();
    },
  };
}

function kindOfStatus(status: number): CloudErrorKind {
  const kind = (Object.keys(ERROR_STATUS) as ErrorKind[]).find((k) => ERROR_STATUS[k] === status);
  return kind ?? (status >= 500 ? "internal" : "protocol");
}

// --- WebSocket ----------------------------------------------------------------------------------

/** The part of the WebSocket API shared by browsers and the `ws` package. */
export interface SocketLike {
  binaryType: string;
  readyState: number;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: { message?: string }) => void) | null;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
}

/** Opens a WebSocket to `url` offering the dyno.v1 subprotocol and carrying `token`. */
export type SocketFactory = (url: string, token: string | undefined) => Promise<SocketLike>;

/**
 * The global WebSocket (browsers, Node 22+): it cannot set headers, so the token rides in a
 * second subprotocol (the server accepts both). Node's `ws` with a header: runtime/node/client.ts.
 */
export const globalSocket: SocketFactory = async (url, token) => {
  const WebSocketImpl = (globalThis as unknown as { WebSocket?: new (u: string, p: string[]) => SocketLike }).WebSocket;
  if (!WebSocketImpl) throw new CloudError("connection", "no WebSocket in this environment: on Node 20 connect through runtime/node/client.ts, or use transport http");
  const protocols = [WS_PROTOCOL];
  if (token !== undefined) protocols.push(`${WS_BEARER_PREFIX}${base64url(token)}`);
  return new WebSocketImpl(url, protocols);
};

function base64url(s: string): string {
  const bin = Array.from(new TextEncoder().encode(s), (b) => String.fromCharCode(b)).join("");
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

interface Pending {
  frame: Uint8Array;
  /** The connection that holds it. */
  on: Connection;
  /** Handed to that connection's socket (not only waiting for it to open). */
  sent: boolean;
  /** Already sent again once, after a neighbour's oversize message dropped its connection. */
  resent: boolean;
  resolve(bytes: Uint8Array): void;
  reject(e: CloudError): void;
}

interface Connection {
  socket: SocketLike | null;
  opened: Promise<SocketLike>;
  pending: Map<number, Pending>;
  dead: boolean;
}

const OPEN = 1;

function closeKind(code: number): CloudErrorKind {
  if (code === 4401) return "unauthorized";
  if (code === 1001) return "unavailable";
  if (code === 1009) return "too-large";
  return "connection";
}

function wsTransport(base: string, token: string | undefined, timeoutMs: number, openSocket: SocketFactory): Transport {
  const url = `${base.replace(/^http/, "ws")}/v1/ws`;
  let conn: Connection | null = null;
  let pendingCount = 0;
  let closing = false;

  /**
   * Fails every request of a dead connection at once, each exactly once; except after a 1009
   * (a message over the server's --max-body), when only the largest message sent rejects and
   * the others go again on a new connection (see the header).
   */
  const kill = (c: Connection, err: CloudError) => {
    if (c.dead) return;
    c.dead = true;
    if (conn === c) conn = null;
    const waiting = [...c.pending];
    c.pending.clear();
    const oversize = err.kind === "too-large" && !closing;
    const largest = oversize ? Math.max(0, ...waiting.filter(([, p]) => p.sent).map(([, p]) => p.frame.length)) : 0;
    for (const [id, p] of waiting) {
      if (!oversize || (p.sent && p.frame.length === largest)) p.reject(err);
      else if (p.resent) p.reject(new CloudError("connection", `${err.message}; request ${id} was already sent again once`));
      else {
        p.resent = true;
        dispatch(id, p);
      }
    }
    try {
      c.socket?.close();
    } catch {
      /* already closing */
    }
  };

  const connect = (): Connection => {
    if (conn && !conn.dead) return conn;
    const c: Connection = { socket: null, opened: null as unknown as Promise<SocketLike>, pending: new Map(), dead: false };
    conn = c;
    c.opened = new Promise<SocketLike>((resolve, reject) => {
      let lastError = "";
      const timer = setTimeout(() => {
        const err = new CloudError("connection", `cannot connect to ${url} within ${timeoutMs} ms`);
        reject(err);
        kill(c, err);
      }, timeoutMs);
      openSocket(url, token).then((socket) => {
        c.socket = socket;
        if (c.dead) return socket.close();
        socket.binaryType = "arraybuffer";
        socket.onopen = () => {
          clearTimeout(timer);
          resolve(socket);
        };
        socket.onerror = (ev) => {
          lastError = ev?.message ?? "";
        };
        socket.onclose = (ev) => {
          clearTimeout(timer);
          const status = /Unexpected server response: (\d+)/.exec(lastError);
          const kind = status ? kindOfStatus(Number(status[1])) : closeKind(ev.code);
          const why = ev.reason || lastError || `closed (code ${ev.code})`;
          const err = new CloudError(kind, `cloud connection ${url}: ${why}`);
          reject(err);
          kill(c, err);
        };
        socket.onmessage = (ev) => {
          const bytes = ev.data instanceof ArrayBuffer ? new Uint8Array(ev.data) : null;
          const id = bytes ? peekId(bytes) : 0;
          const p = c.pending.get(id);
          if (!p || !bytes) return; // a reply after its request timed out, or unattributable
          c.pending.delete(id);
          p.resolve(bytes);
        };
      }, (e: Error) => {
        clearTimeout(timer);
        const err = new CloudError("connection", `cannot open a WebSocket: ${e.message}`);
        reject(err);
        kill(c, err);
      });
    });
    c.opened.catch(() => {}); // observed by the requests waiting on it
    return c;
  };

  /** Puts a request on the open connection (opening one if needed) and sends it once it is open. */
  const dispatch = (id: number, p: Pending) => {
    const c = connect();
    p.on = c;
    p.sent = false;
    c.pending.set(id, p);
    c.opened.then((socket) => {
      if (c.dead || c.pending.get(id) !== p) return;
      // Closing already (e.g. refused after the handshake): onclose rejects with its reason.
      if (socket.readyState !== OPEN) return;
      socket.send(p.frame);
      p.sent = true;
    }, () => {
      /* kill() has rejected or moved the pending entry */
    });
  };

  /** Sends a frame and waits for the frame with the same id. */
  const exchange = (id: number, frame: Uint8Array): Promise<Uint8Array> => {
    pendingCount++;
    return new Promise<Uint8Array>((resolve, reject) => {
      let settled = false;
      const settle = (f: () => void) => {
        if (settled) return;
        settled = true;
        pendingCount--;
        clearTimeout(timer);
        f();
      };
      const p: Pending = {
        frame, on: null as unknown as Connection, sent: false, resent: false,
        resolve: (b) => settle(() => resolve(b)),
        reject: (e) => settle(() => reject(e)),
      };
      const timer = setTimeout(() => {
        if (p.on.pending.get(id) === p) p.on.pending.delete(id);
        settle(() => reject(new CloudError("timeout", `no reply from ${url} to request ${id} within ${timeoutMs} ms`)));
      }, timeoutMs);
      dispatch(id, p);
    });
  };

  return {
    send: exchange,
    async ping(id, padBytes = 0) {
      checkPong(await exchange(id, encodePing(id, padBytes)), id);
    },
    inFlight: () => pendingCount,
    async close() {
      closing = true;
      const c = conn;
      if (!c) return;
      const socket = c.socket;
      kill(c, new CloudError("connection", "cloud client is closed"));
      if (socket && socket.readyState !== 3) {
        await new Promise<void>((resolve) => {
          const done = setTimeout(resolve, 1000);
          const prev = socket.onclose;
          socket.onclose = (ev) => {
            clearTimeout(done);
            prev?.(ev);
            resolve();
          };
        });
      }
    },
  };
}
