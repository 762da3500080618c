// `dyno serve`: the cloud half of split inference. One node:http server, with a `ws` WebSocket
// server on the same port, hosting the cloud segments of a bundle.
//
//   WS   /v1/ws             binary protocol frames (runtime/protocol.ts), pipelined, out of order
//   POST /v1/infer          one request frame in, one response frame out; status from the kind
//   GET  /v2, /v2/health/live, /v2/health/ready, /v2/models/NAME[/ready]   KServe v2 (JSON)
//   GET  /metrics           Prometheus text
//
// A request's way through:
//
//   frame read ──► admitted? ──► parsed + checked ──► executor queue ──► run ──► response
//                  (in-flight      (schema, CRC,      (one run at a       (cloud segments
//                   limits: else    manifest: else     time; bounded by    of the variant)
//                   overloaded)     an error reply)    the admission)
//
// No work starts before the request has passed every check, and nothing waits in an unbounded
// queue: admission counts a request from its arrival until its run has really finished (a timed
// out run still holds its slot until onnxruntime returns), so the executor queue never holds more
// than --max-inflight requests. Runs are serialised: one onnxruntime run at a time per session is
// the safe use, and intra-op threads (--threads) parallelise inside a run.
import { createHash, timingSafeEqual } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import type { Duplex } from "node:stream";
import ort from "onnxruntime-node";
import { WebSocketServer, type WebSocket } from "ws";
import { DynoError } from "../compiler/errors.js";
import { openBundle, type Bundle } from "./bundle.js";
import { Executor, PayloadError } from "./executor.js";
import type { Manifest } from "./manifest.js";
import { Registry } from "./metrics.js";
import {
  decodeFrame, encodePong, encodeResponse, ERROR_STATUS, errorResponse, MessageType, modelId, parseRequest, peekId,
  PROTOCOL_VERSION, ProtocolError, validateRequest, type ErrorKind, type OutputTensor, type Status, type Timing,
} from "./protocol.js";

export const WS_PATH = "/v1/ws";
export const INFER_PATH = "/v1/infer";
/** WebSocket close code for a missing or wrong token (private range 4000-4999: 4000 + HTTP 401). */
export const WS_CLOSE_UNAUTHORIZED = 4401;
/** Browsers cannot set an Authorization header on a WebSocket: they offer this subprotocol. */
export const WS_PROTOCOL = "dyno.v1";
export const WS_BEARER_PREFIX = "dyno-bearer.";

export const SERVE_DEFAULTS = {
  host: "127.0.0.1",
  port: 8080,
  maxBody: 64 * 1024 * 1024,
  maxInflight: 64,
  maxInflightPerClient: 16,
  timeoutMs: 30_000,
  threads: 1,
} as const;

export interface ServeOptions {
  /** A bundle directory (opened with checksums) or an open bundle. */
  bundle: string | Bundle;
  host?: string;
  /** 0 picks a free port (see DynoServer.port). */
  port?: number;
  /** Bearer token every request must carry (health checks excepted); none: no auth. */
  token?: string;
  /** Largest request message in bytes (HTTP body, WebSocket message). */
  maxBody?: number;
  /** Requests admitted at once in the whole server. */
  maxInflight?: number;
  /** Requests admitted at once per WebSocket connection, and per remote address over HTTP. */
  maxInflightPerClient?: number;
  /** From a request's arrival to its response; past it the reply is a `timeout` error. */
  timeoutMs?: number;
  /** onnxruntime intra-op threads per session. */
  threads?: number;
  /** One line per error response and per server-side failure (default: none). */
  log?: (line: string) => void;
  /** Reported by GET /v2. */
  version?: string;
  /** Awaited before each executor run; tests use it to hold requests in flight. */
  beforeRun?: (variant: string) => Promise<void> | void;
}

export interface DynoServer {
  readonly host: string;
  readonly port: number;
  /** http://host:port */
  readonly url: string;
  readonly manifest: Manifest;
  /** Loaded and not draining. */
  readonly ready: boolean;
  /** Requests admitted and not yet finished. */
  readonly inflight: number;
  /** The /metrics text. */
  metrics(): string;
  /**
   * Graceful shutdown: stop accepting, report not ready, refuse new requests (`unavailable`),
   * finish the admitted ones and send their responses, then close every socket and release the
   * onnxruntime sessions. Idempotent.
   */
  close(): Promise<void>;
}

type Transport = "ws" | "http";

/** Admission is counted per client: a WebSocket connection, or a remote address over HTTP. */
interface Client {
  inflight: number;
  remote: string;
}

interface Outcome {
  bytes: Uint8Array;
  status: Status;
}

const CLOUD_SECONDS_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export async function startServer(options: ServeOptions): Promise<DynoServer> {
  const o = { ...SERVE_DEFAULTS, ...stripUndefined(options) };
  for (const [k, v] of Object.entries({ maxBody: o.maxBody, maxInflight: o.maxInflight, maxInflightPerClient: o.maxInflightPerClient, timeoutMs: o.timeoutMs, threads: o.threads })) {
    if (!Number.isInteger(v) || v < 1) throw new DynoError(`serve: ${k} must be a positive integer, got ${v}`);
  }
  const log = options.log ?? (() => {});
  const bundle = typeof options.bundle === "string" ? openBundle(options.bundle) : options.bundle;
  const manifest = bundle.manifest;
  const executor = await Executor.open(bundle, { threads: o.threads });
  const authorized = tokenCheck(options.token);

  const registry = new Registry();
  const m = {
    requests: registry.counter("dyno_requests_total", "Inference requests answered, by transport and status (ok or the error kind)."),
    errors: registry.counter("dyno_errors_total", "Error responses by kind."),
    variants: registry.counter("dyno_variant_requests_total", "Requests that passed validation, by variant."),
    cloud: registry.histogram("dyno_cloud_seconds", "Cloud compute per successful request (decode + segments), seconds.", CLOUD_SECONDS_BUCKETS),
    bytesIn: registry.counter("dyno_received_bytes_total", "Request bytes received, by transport."),
    inflight: registry.gauge("dyno_inflight_requests", "Requests admitted and not yet finished."),
    ready: registry.gauge("dyno_ready", "1 when loaded and not draining."),
  };

  let inflight = 0;
  let draining = false;
  let drained: (() => void) | null = null;
  let queue: Promise<void> = Promise.resolve();
  const httpClients = new Map<string, Client>();
  const id16 = modelId(manifest);

  const admit = (client: Client, id: number): (() => void) => {
    if (inflight >= o.maxInflight) throw new ProtocolError("overloaded", `server has ${inflight} requests in flight (limit ${o.maxInflight}); retry later`, id);
    if (client.inflight >= o.maxInflightPerClient) throw new ProtocolError("overloaded", `this client has ${client.inflight} requests in flight (limit ${o.maxInflightPerClient} per client); retry later`, id);
    inflight++;
    client.inflight++;
    m.inflight.set({}, inflight);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      inflight--;
      client.inflight--;
      m.inflight.set({}, inflight);
      if (inflight === 0 && drained) drained();
    };
  };

  /** Runs a checked request on the serialised executor queue, under the request's deadline. */
  const run = (valid: ReturnType<typeof validateRequest>, arrived: number, release: () => void) =>
    new Promise<{ outputs: OutputTensor[]; timing: Omit<Timing, "totalMs"> }>((resolve, reject) => {
      let state: "queued" | "running" | "done" = "queued";
      const timer = setTimeout(() => {
        if (state === "done") return;
        const where = state === "queued" ? "still waiting for the executor" : "the model was still running";
        state = "done";
        reject(new ProtocolError("timeout", `no result within ${o.timeoutMs} ms (${where})`, valid.id));
      }, Math.max(0, o.timeoutMs - (performance.now() - arrived)));
      const job = async () => {
        if (state === "done") return;
        state = "running";
        const started = performance.now();
        try {
          await options.beforeRun?.(valid.variant.id);
          const r = await executor.cloud(valid.variant.id, valid.payloads);
          const segmentMs = r.segmentMs.reduce((a, b) => a + b, 0);
          const outputs = manifest.model.outputs.map((spec) => toOutput(spec.name, r.outputs[spec.name]));
          if (state !== "running") return;
          state = "done";
          resolve({ outputs, timing: { queueMs: started - arrived, decodeMs: r.decodeMs, segmentMs, cloudMs: r.decodeMs + segmentMs } });
        } catch (e) {
          if (state !== "running") return;
          state = "done";
          reject(e);
        } finally {
          clearTimeout(timer);
        }
      };
      const done = queue.then(job);
      queue = done.finally(release);
    });

  /** One request frame in, one response frame out; never throws. */
  const handle = async (bytes: Uint8Array, client: Client, transport: Transport): Promise<Outcome> => {
    const arrived = performance.now();
    m.bytesIn.add({ transport }, bytes.length);
    let release: (() => void) | null = null;
    let id = peekId(bytes);
    let variant: string | undefined;
    try {
      const frame = decodeFrame(bytes);
      id = frame.id;
      if (frame.type === MessageType.Ping) {
        if (draining) throw new ProtocolError("unavailable", "server is shutting down", id);
        return { bytes: encodePong(id), status: "ok" };
      }
      if (draining) throw new ProtocolError("unavailable", "server is shutting down", id);
      release = admit(client, id);
      const valid = validateRequest(manifest, parseRequest(frame));
      variant = valid.variant.id;
      m.variants.add({ variant });
      const r = await run(valid, arrived, release);
      release = null; // the queue releases it when the run ends
      const timing: Timing = { ...r.timing, totalMs: performance.now() - arrived };
      m.cloud.observe(timing.cloudMs / 1000);
      m.requests.add({ transport, status: "ok" });
      return { bytes: encodeResponse({ id, status: "ok", timing, outputs: r.outputs }), status: "ok" };
    } catch (e) {
      const err = asProtocolError(e, id);
      if (err.kind !== "timeout") release?.();
      m.requests.add({ transport, status: err.kind });
      m.errors.add({ kind: err.kind });
      log(`dyno serve: ${transport} ${client.remote} request ${id}${variant ? ` (${variant})` : ""}: ${err.kind}: ${err.message}`);
      return { bytes: errorResponse(id, err.kind, err.message), status: err.kind };
    }
  };

  // --- HTTP ---------------------------------------------------------------------------------

  const server = http.createServer((req, res) => {
    route(req, res).catch((e) => {
      log(`dyno serve: internal error on ${req.method} ${req.url}: ${(e as Error).message}`);
      if (!res.headersSent) json(res, 500, { error: "internal error" });
      else res.destroy();
    });
  });
  server.on("clientError", (e, socket) => {
    if (socket.writable) socket.end("HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
    else socket.destroy();
    log(`dyno serve: bad HTTP from a client: ${e.message}`);
  });

  const route = async (req: http.IncomingMessage, res: http.ServerResponse) => {
    const path = (req.url ?? "/").split("?")[0]!;
    if (draining) res.setHeader("Connection", "close");
    if (path === "/v2/health/live") return get(req, res) && json(res, 200, { live: true });
    if (path === "/v2/health/ready") return get(req, res) && json(res, ready() ? 200 : 503, { ready: ready() });
    if (path === INFER_PATH) {
      if (req.method !== "POST") return methodNotAllowed(res, "POST");
      return inferHttp(req, res);
    }
    const known = path === "/v2" || path === "/metrics" || path.startsWith("/v2/models/");
    if (!known) return json(res, 404, { error: `no route ${req.method} ${path} (routes: POST ${INFER_PATH}, WS ${WS_PATH}, GET /v2, /v2/health/live, /v2/health/ready, /v2/models/NAME, /metrics)` });
    if (!get(req, res)) return;
    if (!authorized(bearerOf(req))) return unauthorizedJson(res);
    if (path === "/metrics") {
      res.writeHead(200, { "Content-Type": "text/plain; version=0.0.4; charset=utf-8" });
      return void res.end(registry.render());
    }
    if (path === "/v2") return json(res, 200, { name: "dyno", version: o.version ?? manifest.dyno, extensions: [`dyno-binary-v${PROTOCOL_VERSION}`] });
    const mm = path.match(/^\/v2\/models\/([^/]+)(?:\/versions\/([^/]+))?(\/ready)?$/);
    let name: string | null = null;
    try {
      name = mm ? decodeURIComponent(mm[1]!) : null;
    } catch {
      /* a bad %-escape names no model */
    }
    if (!mm || name !== manifest.model.name || (mm[2] !== undefined && mm[2] !== id16)) {
      return json(res, 404, { error: `unknown model "${name ?? path}": this server hosts "${manifest.model.name}" (version ${id16})` });
    }
    if (mm[3]) return json(res, ready() ? 200 : 503, { name: manifest.model.name, ready: ready() });
    return json(res, 200, modelMetadata(manifest, o.maxBody));
  };

  const get = (req: http.IncomingMessage, res: http.ServerResponse): boolean => {
    if (req.method === "GET" || req.method === "HEAD") return true;
    methodNotAllowed(res, "GET");
    return false;
  };

  const inferHttp = async (req: http.IncomingMessage, res: http.ServerResponse) => {
    const remote = req.socket.remoteAddress ?? "?";
    const reply = (kind: Status, bytes: Uint8Array, close = false) => {
      res.writeHead(kind === "ok" ? 200 : ERROR_STATUS[kind], {
        "Content-Type": "application/octet-stream",
        "Content-Length": bytes.length,
        ...(kind === "unauthorized" ? { "WWW-Authenticate": 'Bearer realm="dyno"' } : {}),
        ...(close || draining ? { Connection: "close" } : {}),
      });
      res.end(bytes);
    };
    const refuse = (kind: ErrorKind, message: string) => {
      m.requests.add({ transport: "http", status: kind });
      m.errors.add({ kind });
      log(`dyno serve: http ${remote}: ${kind}: ${message}`);
      // The body is left unread: close the connection rather than drain it.
      reply(kind, errorResponse(0, kind, message), true);
    };
    if (!authorized(bearerOf(req))) return refuse("unauthorized", "missing or wrong bearer token (send Authorization: Bearer <token>)");
    const body = await readBody(req, o.maxBody);
    if (body === "too-large") return refuse("too-large", `request body over the limit of ${o.maxBody} bytes (--max-body)`);
    if (body === null) return; // the client went away
    let client = httpClients.get(remote);
    if (!client) httpClients.set(remote, (client = { inflight: 0, remote }));
    const outcome = await handle(body, client, "http");
    if (client.inflight === 0) httpClients.delete(remote);
    if (!res.destroyed) reply(outcome.status, outcome.bytes);
  };

  // --- WebSocket ----------------------------------------------------------------------------

  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: o.maxBody,
    handleProtocols: (offered) => (offered.has(WS_PROTOCOL) ? WS_PROTOCOL : false),
  });
  const sockets = new Set<WebSocket>();

  server.on("upgrade", (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    const path = (req.url ?? "/").split("?")[0];
    if (path !== WS_PATH) return rejectUpgrade(socket, 404, `no WebSocket at ${path} (use ${WS_PATH})`);
    if (draining) return rejectUpgrade(socket, 503, "server is shutting down");
    const ok = authorized(bearerOf(req) ?? bearerOfProtocols(req));
    wss.handleUpgrade(req, socket, head, (ws) => {
      if (!ok) {
        m.errors.add({ kind: "unauthorized" });
        log(`dyno serve: ws ${req.socket.remoteAddress}: unauthorized: missing or wrong bearer token`);
        ws.close(WS_CLOSE_UNAUTHORIZED, "unauthorized: missing or wrong bearer token");
        return;
      }
      onConnection(ws, req.socket.remoteAddress ?? "?");
    });
  });

  const onConnection = (ws: WebSocket, remote: string) => {
    sockets.add(ws);
    const client: Client = { inflight: 0, remote };
    ws.on("close", () => sockets.delete(ws));
    ws.on("error", (e) => {
      // ws closes the connection itself (1009) when a message is over maxPayload.
      if ((e as { code?: string }).code === "WS_ERR_UNSUPPORTED_MESSAGE_LENGTH") {
        m.requests.add({ transport: "ws", status: "too-large" });
        m.errors.add({ kind: "too-large" });
      }
      log(`dyno serve: ws ${remote}: ${e.message}`);
    });
    ws.on("message", (data, isBinary) => {
      if (!isBinary) {
        m.errors.add({ kind: "bad-request" });
        ws.send(errorResponse(0, "bad-request", "text message: requests are binary WebSocket messages"));
        return;
      }
      const buf = data as Buffer;
      void handle(new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength), client, "ws").then((r) => {
        if (ws.readyState === ws.OPEN) ws.send(r.bytes);
      });
    });
  };

  // --- Listen, close ------------------------------------------------------------------------

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(o.port, o.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  server.on("error", (e) => log(`dyno serve: ${e.message}`));
  const address = server.address() as AddressInfo;
  const host = address.address;
  const urlHost = host.includes(":") ? `[${host}]` : host;
  const ready = () => !draining;
  m.ready.set({}, 1);

  let closing: Promise<void> | null = null;
  const close = () =>
    (closing ??= (async () => {
      draining = true;
      m.ready.set({}, 0);
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      if (inflight > 0) await new Promise<void>((resolve) => (drained = resolve));
      await queue;
      // The last responses are encoded and handed to their sockets in microtasks after their
      // runs end; a macrotask turn lets all of them go out before the sockets close.
      await new Promise((resolve) => setImmediate(resolve));
      await Promise.all([...sockets].map((ws) => closeSocket(ws)));
      server.closeIdleConnections();
      // Responses already handed to the kernel go out first; a client that holds a connection
      // open past a grace period is cut.
      const grace = setTimeout(() => server.closeAllConnections(), 2000);
      await closed;
      clearTimeout(grace);
      wss.close();
      await executor.release();
    })());

  return {
    host,
    port: address.port,
    url: `http://${urlHost}:${address.port}`,
    manifest,
    get ready() {
      return ready();
    },
    get inflight() {
      return inflight;
    },
    metrics: () => registry.render(),
    close,
  };
}

/** Closes a WebSocket politely (1001), cutting it if the peer does not answer within a second. */
function closeSocket(ws: WebSocket): Promise<void> {
  if (ws.readyState === ws.CLOSED) return Promise.resolve();
  return new Promise((resolve) => {
    const cut = setTimeout(() => ws.terminate(), 1000);
    ws.once("close", () => {
      clearTimeout(cut);
      resolve();
    });
    ws.close(1001, "server shutting down");
  });
}

function rejectUpgrade(socket: Duplex, status: number, message: string): void {
  socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(message)}\r\n\r\n${message}`);
}

function json(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(text) });
  res.end(text);
}

function methodNotAllowed(res: http.ServerResponse, allow: string): void {
  res.setHeader("Allow", allow);
  json(res, 405, { error: `method not allowed (use ${allow})` });
}

function unauthorizedJson(res: http.ServerResponse): void {
  res.setHeader("WWW-Authenticate", 'Bearer realm="dyno"');
  json(res, 401, { error: "missing or wrong bearer token (send Authorization: Bearer <token>)" });
}

/**
 * A token check in constant time: both sides are hashed first, so timingSafeEqual compares equal
 * lengths and the time does not reveal the token's length either. No token configured: all pass.
 */
function tokenCheck(token: string | undefined): (presented: string | undefined) => boolean {
  if (token === undefined) return () => true;
  const want = createHash("sha256").update(token).digest();
  return (presented) => presented !== undefined && timingSafeEqual(createHash("sha256").update(presented).digest(), want);
}

function bearerOf(req: http.IncomingMessage): string | undefined {
  const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(req.headers.authorization ?? "");
  return m ? m[1] : undefined;
}

/** The token a browser offers as the subprotocol `dyno-bearer.<base64url token>`. */
function bearerOfProtocols(req: http.IncomingMessage): string | undefined {
  const offered = (req.headers["sec-websocket-protocol"] ?? "").split(",").map((s) => s.trim());
  const p = offered.find((s) => s.startsWith(WS_BEARER_PREFIX));
  return p ? Buffer.from(p.slice(WS_BEARER_PREFIX.length), "base64url").toString("utf8") : undefined;
}

/** Reads a body up to `limit` bytes: "too-large" past it (reading stops), null if the client left. */
function readBody(req: http.IncomingMessage, limit: number): Promise<Uint8Array | "too-large" | null> {
  const declared = Number(req.headers["content-length"]);
  if (Number.isFinite(declared) && declared > limit) return Promise.resolve("too-large");
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let total = 0;
    const finish = (r: Uint8Array | "too-large" | null) => {
      req.off("data", onData).off("end", onEnd).off("error", onGone).off("aborted", onGone);
      resolve(r);
    };
    const onData = (c: Buffer) => {
      total += c.length;
      if (total > limit) {
        req.pause();
        finish("too-large");
      } else chunks.push(c);
    };
    const onEnd = () => {
      const b = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, total);
      finish(new Uint8Array(b.buffer, b.byteOffset, b.byteLength));
    };
    const onGone = () => finish(null);
    req.on("data", onData).on("end", onEnd).on("error", onGone).on("aborted", onGone);
  });
}

function asProtocolError(e: unknown, id: number): ProtocolError {
  if (e instanceof ProtocolError) return e;
  if (e instanceof PayloadError) return new ProtocolError("bad-request", e.message, id);
  return new ProtocolError("internal", `cloud run failed: ${(e as Error)?.message ?? String(e)}`, id);
}

function toOutput(name: string, t: ort.Tensor | undefined): OutputTensor {
  if (!t) throw new DynoError(`the cloud segments did not produce model output "${name}"`);
  const data = t.data instanceof Float32Array ? t.data : Float32Array.from(t.data as ArrayLike<number | bigint>, Number);
  return { name, dims: [...t.dims], data };
}

const DATATYPES: Record<string, string> = { float32: "FP32", float16: "FP16", float64: "FP64", int64: "INT64", int32: "INT32", int8: "INT8", uint8: "UINT8", bool: "BOOL" };

/** KServe v2 model metadata, plus what a dyno device needs to know about the variants. */
function modelMetadata(manifest: Manifest, maxBody: number) {
  const tensor = (t: { name: string; dtype: string; shape: (number | string | null)[] }) => ({
    name: t.name,
    datatype: DATATYPES[t.dtype] ?? t.dtype.toUpperCase(),
    shape: t.shape.map((d) => (typeof d === "number" ? d : -1)),
  });
  const cuts = new Map(manifest.cuts.map((c) => [c.id, c]));
  return {
    name: manifest.model.name,
    versions: [modelId(manifest)],
    platform: "dyno",
    inputs: manifest.model.inputs.map(tensor),
    // The binary protocol returns every output as float32.
    outputs: manifest.model.outputs.map((t) => ({ ...tensor(t), datatype: "FP32" })),
    dyno: {
      protocol: PROTOCOL_VERSION,
      model: modelId(manifest),
      endpoints: { ws: WS_PATH, http: INFER_PATH },
      maxBody,
      variants: manifest.variants
        .filter((v) => cuts.get(v.cut)!.kind !== "output")
        .map((v) => ({ id: v.id, cut: v.cut, codec: v.codec, admissible: v.admissible, accuracy: v.accuracy, tensors: cuts.get(v.cut)!.tensors.map(tensor) })),
    },
  };
}

function stripUndefined<T extends object>(x: T): Partial<T> {
  return Object.fromEntries(Object.entries(x).filter(([, v]) => v !== undefined)) as Partial<T>;
}
