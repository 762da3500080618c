// `dyno serve`: the cloud half of split inference. One node:http server, with a `ws` WebSocket
// server on the same port, hosting the cloud segments of a bundle in a pool of worker threads.
//
//   WS   /v1/ws             binary protocol frames (runtime/common/protocol.ts), pipelined, out of order
//   POST /v1/infer          one request frame in, one response frame out; status from the kind
//   GET  /v2, /v2/health/live, /v2/health/ready, /v2/models/NAME[/ready]   KServe v2 (JSON)
//   POST /v2/models/NAME[/versions/V]/infer, /v2/repository/index          KServe v2 inference (./kserve.ts)
//   GET  /metrics           Prometheus text
//
// A request's way through:
//
//   frame read ──► admitted? ──► parsed + checked ──► pool queue ──► worker run ──► response
//                  (in-flight      (schema, CRC,      (FIFO; bounded   (cloud segments of
//                   limits: else    manifest: else     by admission)    the variant, in a
//                   overloaded)     an error reply)                     worker thread)
//
// No work starts before the request has passed every check, and nothing waits in an unbounded
// queue: admission (runtime/cloud/admission.ts) counts a request from its arrival until its run has
// really finished (a timed out run still holds its slot until onnxruntime returns in its worker),
// so the pool never holds more than --max-inflight requests. The main thread does HTTP, WebSocket,
// auth, admission and validation only: onnxruntime-node runs synchronously on its calling thread,
// so runs happen in --workers worker threads (runtime/cloud/worker-pool.ts), one run at a time each, and
// the deadline timer, health checks and other clients are never held behind a run.
//
// Hostile clients (docs/security.md has every limit, its default and what the client sees):
// - an upgrade without a valid token is refused before any WebSocket exists (runtime/cloud/ws-refuse.ts);
// - at most --max-connections TCP connections; past it a new one is closed at accept;
// - headers, whole requests and idle keep-alive connections are timed (--headers-timeout-ms, ...);
// - a WebSocket peer reads its replies or stops being served: every few replies the server pings it
//   (a fresh nonce), and a pong proves the peer has read every reply sent before that ping (one
//   ordered stream). Requests of a peer with REPLY_WINDOW x --max-inflight-per-client replies
//   unread wait, unrun, until a pong; past --max-inflight-per-client waiting they are refused
//   (`overloaded`). The kernel's socket buffers hold thousands of small replies, so counting bytes
//   waiting in `ws` alone would let a peer that never reads keep a worker busy while they fill;
// - a WebSocket with more than --ws-send-buffer reply bytes waiting in `ws` is paused (not read
//   from) until half drained;
// - every --heartbeat-ms each socket is pinged and one that missed two pongs is terminated
//   (runtime/cloud/heartbeat.ts), a paused one included;
// - log lines are escaped and rate-limited per kind (runtime/cloud/log-limiter.ts).
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import type { Duplex } from "node:stream";
import { WebSocketServer, type WebSocket } from "ws";
import { DynoError } from "../common/errors.js";
import { Admission } from "./admission.js";
import { openBundle, type NodeBundle } from "../node/bundle.js";
import { Heartbeat } from "./heartbeat.js";
import { escapeLogText, LogLimiter } from "./log-limiter.js";
import type { Manifest, Profile } from "../common/manifest.js";
import { nodeBackend } from "../node/backend.js";
import { CloudProfile } from "./profile.js";
import { Registry } from "./metrics.js";
import {
  decodeFrame, encodePong, encodeResponse, ERROR_STATUS, errorResponse, MAX_PROBE_PAD_BYTES, maxRequestBytes, maxResponseBytes, MessageType, modelId,
  parseRequest, peekId, PREFIX_BYTES, PROTOCOL_VERSION, ProtocolError, validateRequest, WS_BEARER_PREFIX, WS_PROTOCOL, type ErrorKind, type OutputTensor, type Request as NativeRequest, type Status,
  type ServerTiming,
} from "../common/protocol.js";
import { MAX_BATCH, WorkerPayloadError, WorkerPool, type CutBatching, type EdgeConfig, type PoolStats } from "./worker-pool.js";
import { refuseHttp, refuseWebSocket } from "./ws-refuse.js";
import { KSERVE_BATCH_ROWS, KSERVE_TIMING } from "../common/kserve.js";
import { acceptsEncoding, cutMetadata, decodeContent, encodeContent, encodeInferResponse, HEADER_LENGTH, KSERVE_EXTENSIONS, kserveModels, parseInfer, responseEncoding } from "./kserve.js";

export const WS_PATH = "/v1/ws";
export const INFER_PATH = "/v1/infer";
/** WebSocket close code for a missing or wrong token (private range 4000-4999: 4000 + HTTP 401). */
export const WS_CLOSE_UNAUTHORIZED = 4401;
export { WS_BEARER_PREFIX, WS_PROTOCOL };

const MiB = 1024 * 1024;

/**
 * Replies a WebSocket peer may leave unread, as a multiple of --max-inflight-per-client. A peer
 * that reads its replies and keeps at most --max-inflight-per-client requests outstanding (more
 * are refused anyway) has fewer than 3x unread by the server's count: its outstanding ones, the
 * pings' spacing (a quarter window) and one round trip of replies; 4x never holds it back.
 */
export const REPLY_WINDOW = 4;

/** Window pings unanswered at once, at most (ws cuts a peer past 60 pending automatic pongs). */
export const MAX_PINGS_OUT = 4;

/** A refused peer whose oldest window ping is this old is not read from for this long (doubling). */
export const STALL_MS = 1000;
export const MAX_STALL_MS = 8000;

export const SERVE_DEFAULTS = {
  host: "127.0.0.1",
  port: 8080,
  maxInflight: 64,
  maxInflightPerClient: 16,
  timeoutMs: 30_000,
  threads: 1,
  workers: 1,
  maxBatch: 8,
  maxQueueDelayMs: 0,
  maxBatchBytes: 64 * 1024 * 1024,
  maxConnections: 256,
  heartbeatMs: 30_000,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 60_000,
  keepAliveTimeoutMs: 5_000,
  logIntervalMs: 10_000,
  logBurst: 5,
} as const;

/**
 * The default --max-body: the bundle's largest legal request (protocol.ts maxRequestBytes) with a
 * quarter more as margin, and never less than a device's largest bandwidth probe; whole KiB.
 */
export function defaultMaxBody(manifest: Pick<Manifest, "variants" | "cuts">): number {
  const bytes = Math.max(MAX_PROBE_PAD_BYTES + PREFIX_BYTES, Math.ceil(maxRequestBytes(manifest) * 1.25));
  return Math.ceil(bytes / 1024) * 1024;
}

/** The default --ws-send-buffer: 1 MiB, or four of the bundle's largest replies if more. */
export function defaultWsSendBuffer(manifest: Pick<Manifest, "model">): number {
  return Math.max(MiB, 4 * maxResponseBytes(manifest));
}

export interface ServeOptions {
  /** A bundle directory (opened with checksums) or an open bundle. */
  bundle: string | NodeBundle;
  host?: string;
  /** 0 picks a free port (see DynoServer.port). */
  port?: number;
  /** Bearer token every request must carry (health checks excepted); none: no auth. */
  token?: string;
  /** Largest request message in bytes (HTTP body, WebSocket message); default: defaultMaxBody. */
  maxBody?: number;
  /** Largest KServe v2 infer body in bytes, JSON text included, and decompressed (default: 8x maxBody: a float32 in JSON text takes up to 16 bytes). */
  maxJsonBody?: number;
  /** Requests admitted at once in the whole server. */
  maxInflight?: number;
  /** Requests admitted at once per WebSocket connection, and per remote address over HTTP. */
  maxInflightPerClient?: number;
  /** Requests admitted at once per remote address over all its connections (default 2x per client). */
  maxInflightPerAddress?: number;
  /** From a request's arrival to its response; past it the reply is a `timeout` error. */
  timeoutMs?: number;
  /** onnxruntime intra-op threads per session (in each worker). */
  threads?: number;
  /** Worker threads running inference, each with its own sessions. */
  workers?: number;
  /** Dynamic batching: rows in one run at most (1: off); cuts that do not batch run alone (worker-pool.ts). */
  maxBatch?: number;
  /** How long a request may wait for others of its cut while a worker is free (0: batch only what is queued). */
  maxQueueDelayMs?: number;
  /** A batch's decoded cut tensors, bytes at most. */
  maxBatchBytes?: number;
  /** Open TCP connections (HTTP and WebSocket); past it a new connection is closed at accept. */
  maxConnections?: number;
  /** WebSocket ping interval; a socket that missed two pongs is terminated. */
  heartbeatMs?: number;
  /** Reply bytes waiting for one WebSocket past which the server stops reading from it (default: defaultWsSendBuffer). */
  wsSendBufferBytes?: number;
  /** Time for a client to send its request headers (Node's server.headersTimeout). */
  headersTimeoutMs?: number;
  /** Time for a client to send a whole HTTP request, body included (server.requestTimeout). */
  requestTimeoutMs?: number;
  /** An idle keep-alive HTTP connection is closed after this (server.keepAliveTimeout). */
  keepAliveTimeoutMs?: number;
  /** Log lines per kind written as they come in each interval; the rest are summarised. */
  logBurst?: number;
  logIntervalMs?: number;
  /** One line per error response and per server-side failure (default: none); escaped, rate-limited. */
  log?: (line: string) => void;
  /** Reported by GET /v2. */
  version?: string;
  /**
   * Origins whose pages may call this server from a browser (CORS: HTTP requests and their
   * preflights; WebSockets are not subject to it): exact origins ("https://app.example"), or "*"
   * for any. Auth is a bearer token, never a cookie, so no credentials are ever allowed. Default:
   * none (same-origin pages only).
   */
  allowOrigins?: string[];
  /**
   * More HTTP routes (the page of `dyno serve --page`): tried before the 404, after the server's
   * own; a handler that answered returns true.
   */
  routes?: (req: http.IncomingMessage, res: http.ServerResponse) => boolean | Promise<boolean>;
  /** Awaited when a request has its worker, before it runs; tests use it to hold requests in flight. */
  beforeRun?: (variant: string) => Promise<void> | void;
  /** Serve as an edge tier: run to the forward variant's cut, then forward to this cloud (docs/d3.md). */
  edge?: EdgeConfig;
  /**
   * Timed runs of the whole segment chain at start-up (after a warm-up), published as the
   * cloud's profile in the model metadata with the live times of requests (./profile.ts).
   * Default 5; 0: publish live times only.
   */
  profileRuns?: number;
}

/** Server state for tests and operators (also in /metrics). */
export interface ServerStats {
  /** Open TCP connections. */
  connections: number;
  ws: {
    open: number;
    /** Sockets not read from because their peer is not reading its replies. */
    paused: number;
    /** The most reply bytes seen waiting for one socket, right after a send. */
    maxBufferedBytes: number;
    /** The most requests seen held for one socket while its peer had a window of replies unread. */
    maxHeld: number;
    /** Times a peer that was refused and answered no window ping was not read from for a while. */
    stalls: number;
  };
  pool: PoolStats;
  /** Bytes read (and dropped) from refused WebSocket upgrades. */
  unauthorizedBytesRead: number;
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
  stats(): ServerStats;
  /** How each cut's requests run (cut id -> batching), as checked at start-up. */
  batching(): Record<string, CutBatching>;
  /**
   * Graceful shutdown: stop accepting, report not ready, refuse new requests (`unavailable`),
   * finish the admitted ones and send their responses, then close every socket, stop the workers
   * and release their onnxruntime sessions. Idempotent.
   */
  close(): Promise<void>;
}

type Transport = "ws" | "http";

/** Who a request counts against: its client (a connection, or an HTTP address) and its address. */
interface Client {
  key: string;
  remote: string;
}

interface Outcome {
  bytes: Uint8Array;
  status: Status;
}

/** A WebSocket's server-side state. */
interface Peer {
  ws: WebSocket;
  client: Client;
  beat: Heartbeat;
  /** Not read from: more than --ws-send-buffer reply bytes wait in `ws`, or `stalled`. */
  paused: boolean;
  /** Replies handed to the socket, and how many of them the peer has read (per its pongs). */
  replies: number;
  read: number;
  /** Window pings not yet answered, oldest first: nonce and the reply count when sent. */
  acks: { nonce: Buffer; replies: number; at: number }[];
  /** Not read from for a while: refusing, its oldest window ping unanswered for STALL_MS. */
  stalled: ReturnType<typeof setTimeout> | null;
  /** The next stall's length (doubling while the peer stays silent; reset by a pong). */
  stallMs: number;
  /** Requests held while the window is full, with their arrival times. */
  held: { bytes: Uint8Array; arrived: number }[];
}

const BATCH_ROWS_BUCKETS = [1, 2, 4, 8, 16, 32, 64];
const CLOUD_SECONDS_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export async function startServer(options: ServeOptions): Promise<DynoServer> {
  const bundle = typeof options.bundle === "string" ? openBundle(options.bundle) : options.bundle;
  const manifest = bundle.manifest;
  const given = stripUndefined(options);
  const o = {
    ...SERVE_DEFAULTS,
    maxBody: defaultMaxBody(manifest),
    wsSendBufferBytes: defaultWsSendBuffer(manifest),
    maxInflightPerAddress: 2 * (given.maxInflightPerClient ?? SERVE_DEFAULTS.maxInflightPerClient),
    maxJsonBody: 8 * (given.maxBody ?? defaultMaxBody(manifest)),
    ...given,
  };
  const positive = {
    maxBody: o.maxBody, maxJsonBody: o.maxJsonBody, maxInflight: o.maxInflight, maxInflightPerClient: o.maxInflightPerClient, maxInflightPerAddress: o.maxInflightPerAddress,
    timeoutMs: o.timeoutMs, threads: o.threads, workers: o.workers, maxBatch: o.maxBatch, maxBatchBytes: o.maxBatchBytes, maxConnections: o.maxConnections, heartbeatMs: o.heartbeatMs,
    wsSendBufferBytes: o.wsSendBufferBytes, headersTimeoutMs: o.headersTimeoutMs, requestTimeoutMs: o.requestTimeoutMs,
    keepAliveTimeoutMs: o.keepAliveTimeoutMs, logBurst: o.logBurst, logIntervalMs: o.logIntervalMs,
  };
  for (const [k, v] of Object.entries(positive)) {
    if (!Number.isInteger(v) || v < 1) throw new DynoError(`serve: ${k} must be a positive integer, got ${v}`);
  }
  if (!Number.isFinite(o.maxQueueDelayMs) || o.maxQueueDelayMs < 0) throw new DynoError(`serve: maxQueueDelayMs must be a number >= 0, got ${o.maxQueueDelayMs}`);
  if (o.maxBatch > MAX_BATCH) throw new DynoError(`serve: maxBatch must be at most ${MAX_BATCH}, got ${o.maxBatch}`);
  if (o.headersTimeoutMs > o.requestTimeoutMs) throw new DynoError(`serve: headersTimeoutMs (${o.headersTimeoutMs}) must not exceed requestTimeoutMs (${o.requestTimeoutMs})`);

  const sink = options.log ?? (() => {});
  const limiter = new LogLimiter({ burst: o.logBurst, intervalMs: o.logIntervalMs, emit: sink });
  /** Every log line: escaped, and rate-limited per `category` (its summary's noun). */
  const log = (category: string, remote: string, line: string) => limiter.note(category, remote, escapeLogText(line), performance.now());
  const pool = await WorkerPool.open(bundle, {
    workers: o.workers,
    threads: o.threads,
    batch: { maxBatch: o.maxBatch, maxQueueDelayMs: o.maxQueueDelayMs, maxBatchBytes: o.maxBatchBytes },
    beforeRun: options.beforeRun,
    log: (line) => log("worker failures", "-", line),
    edge: options.edge,
  });
  const authorized = tokenCheck(options.token);
  // The cloud's own profile (not the edge's: its segments forward), before the first request.
  const profileRuns = options.profileRuns ?? 5;
  let cloudProfile: CloudProfile | null = null;
  if (!options.edge) {
    const backend = `${nodeBackend.name} (${o.threads} thread${o.threads === 1 ? "" : "s"})`;
    try {
      cloudProfile = profileRuns > 0
        ? CloudProfile.fromRuns(manifest, await pool.profile(profileRuns), backend, nodeBackend.machine())
        : new CloudProfile(manifest, null, backend, nodeBackend.machine());
    } catch (e) {
      await pool.close();
      throw e;
    }
  }
  try {
    await pool.planBatching();
  } catch (e) {
    await pool.close();
    throw e;
  }

  const registry = new Registry();
  const m = {
    requests: registry.counter("dyno_requests_total", "Inference requests answered, by transport and status (ok or the error kind)."),
    errors: registry.counter("dyno_errors_total", "Error responses by kind."),
    variants: registry.counter("dyno_variant_requests_total", "Requests that passed validation, by variant."),
    cloud: registry.histogram("dyno_cloud_seconds", "Cloud compute per successful request (decode + segments), seconds.", CLOUD_SECONDS_BUCKETS),
    bytesIn: registry.counter("dyno_received_bytes_total", "Request bytes received, by transport."),
    inflight: registry.gauge("dyno_inflight_requests", "Requests admitted and not yet finished."),
    ready: registry.gauge("dyno_ready", "1 when loaded and not draining."),
    connections: registry.gauge("dyno_connections", "Open TCP connections."),
    refused: registry.counter("dyno_refused_connections_total", "Connections refused, by reason (max-connections, unauthorized)."),
    terminated: registry.counter("dyno_ws_terminated_total", "WebSocket connections cut by the server, by reason (heartbeat)."),
    edgeForwarded: registry.counter("dyno_edge_forwarded_total", "Edge role: requests forwarded to the cloud, by the variant sent."),
    edgeFallbacks: registry.counter("dyno_edge_fallbacks_total", "Edge role: requests the edge finished itself because the cloud failed."),
    backboneBytes: registry.counter("dyno_edge_backbone_bytes_total", "Edge role: bytes sent to the cloud (the backbone)."),
    edgeTiles: registry.counter("dyno_edge_tiles_total", "Edge role: tiles run on edge workers, by worker."),
    edgeTileFailures: registry.counter("dyno_edge_tile_failures_total", "Edge role: tile requests that failed (retried on another worker), by worker."),
    edgeSpan: registry.counter("dyno_edge_tiled_span_seconds_total", "Edge role: time of the tiled span by stage (before, slice, scatter: all tiles out and back, stitch, after; slowest_run and slowest_queue: the slowest tile as its worker reported it)."),
    edgeFinished: registry.counter("dyno_edge_finished_total", "Edge role, --forward auto: requests the edge finished itself because its plan said so."),
    batchRows: registry.histogram("dyno_batch_rows", "Rows in each request's cloud run (1: it ran alone; more: batched with other requests).", BATCH_ROWS_BUCKETS),
    edgeUntiled: registry.counter("dyno_edge_untiled_total", "Edge role: requests whose tiled span the edge ran untiled because no worker answered a tile."),
    paused: registry.gauge("dyno_ws_paused", "WebSocket connections not read from while their peer does not read its replies."),
  };

  const admission = new Admission({ total: o.maxInflight, perClient: o.maxInflightPerClient, perAddress: o.maxInflightPerAddress });
  const stats = { connections: 0, paused: 0, maxBufferedBytes: 0, maxHeld: 0, stalls: 0, unauthorizedBytesRead: 0 };
  let draining = false;
  let drained: (() => void) | null = null;
  const id16 = modelId(manifest);

  const admit = (client: Client, id: number): (() => void) => {
    const release = admission.admit(client.key, client.remote, id);
    m.inflight.set({}, admission.inflight);
    return () => {
      release();
      m.inflight.set({}, admission.inflight);
      if (admission.inflight === 0 && drained) drained();
    };
  };

  /**
   * Runs a checked request in the pool under its deadline. The deadline answers at once, queued or
   * running; `release` is called when the job is off the pool (cancelled while queued, or back
   * from its worker), never before.
   */
  const run = (valid: ReturnType<typeof validateRequest>, client: Client, arrived: number, release: () => void) =>
    new Promise<{ outputs: OutputTensor[]; timing: Omit<ServerTiming, "totalMs"> }>((resolve, reject) => {
      const job = pool.submit(valid, client.key);
      let answered = false;
      const timer = setTimeout(() => {
        answered = true;
        const where = job.cancel() ? "still waiting for the executor" : "the model was still running";
        reject(new ProtocolError("timeout", `no result within ${o.timeoutMs} ms (${where})`, valid.id));
      }, Math.max(0, o.timeoutMs - (performance.now() - arrived)));
      job.result.then((r) => {
        if (answered) return;
        const queueMs = (job.startedAt ?? arrived) - arrived;
        if (r.edge?.forwarded) m.edgeForwarded.add({ variant: r.edge.forwarded });
        if (r.edge?.finished) m.edgeFinished.add({});
        if (r.edge?.fallback) {
          m.edgeFallbacks.add({});
          log("edge fallbacks", "-", `dyno serve: the cloud failed; the edge finished a request of ${valid.variant.id} itself`);
        }
        if (r.edge) m.backboneBytes.add({}, r.edge.backboneBytes);
        // A batch's segment times are shared by its rows: the profile and cloudMs are per inference.
        if (r.segments) cloudProfile?.observe(r.segments.from, r.rows > 1 ? r.segments.ms.map((x) => x / r.rows) : r.segments.ms);
        const tiles = r.edge?.tiles;
        if (tiles) {
          for (const w of tiles.workers) m.edgeTiles.add({ worker: w });
          for (const w of tiles.failures) m.edgeTileFailures.add({ worker: w });
          if (tiles.failures.length) log("edge worker failures", "-", `dyno serve: edge worker(s) ${[...new Set(tiles.failures)].join(", ")} failed a tile${tiles.untiled ? "; no worker answered, the edge ran the span untiled" : "; retried on another worker"}`);
          if (tiles.untiled) m.edgeUntiled.add({});
          if (tiles.timing) {
            const t = tiles.timing;
            for (const [stage, ms] of [["before", t.beforeMs], ["slice", t.sliceMs], ["scatter", t.scatterMs], ["stitch", t.stitchMs], ["after", t.afterMs], ["slowest_run", t.slowestRunMs], ["slowest_queue", t.slowestQueueMs]] as const) m.edgeSpan.add({ stage }, ms / 1000);
          }
        }
        if (!r.edge) m.batchRows.observe(r.rows);
        resolve({ outputs: r.outputs, timing: { queueMs, decodeMs: r.decodeMs, segmentMs: r.segmentMs, cloudMs: r.decodeMs + r.segmentMs / r.rows, ...(r.rows > 1 ? { rows: r.rows } : {}) } });
      }, (e: unknown) => {
        if (!answered) reject(e);
      }).finally(() => {
        answered = true;
        clearTimeout(timer);
        release();
      });
    });

  /** An error reply: counted by transport and kind, logged (escaped, rate-limited) as `line`. */
  /** An error answer counted by transport and kind, and logged (escaped, rate-limited) as `line`. */
  const countError = (transport: Transport | "kserve", remote: string, kind: ErrorKind, line: string) => {
    m.requests.add({ transport, status: kind });
    m.errors.add({ kind });
    log(`${kind} requests`, remote, line);
  };
  const errorReply = (transport: Transport, remote: string, id: number, kind: ErrorKind, message: string, line: string): Uint8Array => {
    countError(transport, remote, kind, line);
    return errorResponse(id, kind, message);
  };

  /**
   * Admits, checks and runs one request, whichever protocol brought it (`parse` runs once the
   * request is admitted); `seen.variant` is set once it is valid, for the error line.
   */
  const serve = async (client: Client, id: number, arrived: number, parse: () => NativeRequest, seen: { variant?: string }) => {
    const release = admit(client, id);
    let handedOver = false;
    try {
      const valid = validateRequest(manifest, parse());
      seen.variant = valid.variant.id;
      m.variants.add({ variant: valid.variant.id });
      handedOver = true; // from here run() releases the slot, when the job is off the pool
      const r = await run(valid, client, arrived, release);
      const timing: ServerTiming = { ...r.timing, totalMs: performance.now() - arrived };
      m.cloud.observe(timing.cloudMs / 1000);
      return { variant: valid.variant.id, outputs: r.outputs, timing };
    } catch (e) {
      if (!handedOver) release();
      throw e;
    }
  };

  /** One request frame in, one response frame out; never throws. */
  const handle = async (bytes: Uint8Array, client: Client, transport: Transport, arrived = performance.now()): Promise<Outcome> => {
    m.bytesIn.add({ transport }, bytes.length);
    let id = peekId(bytes);
    const seen: { variant?: string } = {};
    try {
      const frame = decodeFrame(bytes);
      id = frame.id;
      if (draining) throw new ProtocolError("unavailable", "server is shutting down", id);
      if (frame.type === MessageType.Ping) return { bytes: encodePong(id), status: "ok" };
      const r = await serve(client, id, arrived, () => parseRequest(frame), seen);
      m.requests.add({ transport, status: "ok" });
      return { bytes: encodeResponse({ id, status: "ok", timing: r.timing, outputs: r.outputs }), status: "ok" };
    } catch (e) {
      const err = asProtocolError(e, id);
      const line = `dyno serve: ${transport} ${client.remote} request ${id}${seen.variant ? ` (${seen.variant})` : ""}: ${err.kind}: ${err.message}`;
      return { bytes: errorReply(transport, client.remote, id, err.kind, err.message, line), status: err.kind };
    }
  };

  // --- HTTP ---------------------------------------------------------------------------------

  const server = http.createServer({
    headersTimeout: o.headersTimeoutMs,
    requestTimeout: o.requestTimeoutMs,
    // Node checks both timeouts on this period (default 30 s, which would let a 10 s bound be 40 s).
    connectionsCheckingInterval: Math.max(10, Math.min(1000, Math.floor(o.headersTimeoutMs / 4))),
  }, (req, res) => {
    route(req, res).catch((e) => {
      log("internal errors", req.socket.remoteAddress ?? "?", `dyno serve: internal error on ${req.method} ${req.url}: ${(e as Error).message}`);
      if (!res.headersSent) json(res, 500, { error: "internal error" });
      else res.destroy();
    });
  });
  server.keepAliveTimeout = o.keepAliveTimeoutMs;
  // Refused at accept: never read, never answered (the peer sees the connection closed).
  server.maxConnections = o.maxConnections;
  server.on("drop", (data?: { remoteAddress?: string }) => {
    m.refused.add({ reason: "max-connections" });
    const remote = data?.remoteAddress ?? "?";
    log("connections over --max-connections", remote, `dyno serve: ${remote}: connection refused: ${o.maxConnections} connections open (--max-connections)`);
  });
  server.on("connection", (socket) => {
    stats.connections++;
    m.connections.set({}, stats.connections);
    socket.once("close", () => {
      stats.connections--;
      m.connections.set({}, stats.connections);
    });
  });
  server.on("clientError", (e: NodeJS.ErrnoException, socket) => {
    // Headers or a whole request not sent within their timeout: 408, as Node itself answers.
    const status = e.code === "ERR_HTTP_REQUEST_TIMEOUT" ? 408 : e.code === "HPE_HEADER_OVERFLOW" ? 431 : 400;
    if (socket.writable) socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    else socket.destroy();
    const remote = (socket as { remoteAddress?: string }).remoteAddress ?? "?";
    log("slow or malformed HTTP requests", remote, `dyno serve: bad HTTP from ${remote}: ${e.message}`);
  });

  // Read at each request: `dyno serve --page` adds the server's own origin once it listens.
  const origins = { has: (o: string) => (options.allowOrigins ?? []).includes(o) };
  /** CORS: headers for an allowed Origin; a preflight answered here (true). */
  const cors = (req: http.IncomingMessage, res: http.ServerResponse): boolean => {
    const origin = req.headers.origin;
    if (origin === undefined) return false;
    const allowed = origins.has("*") || origins.has(origin);
    if (allowed) {
      res.setHeader("Access-Control-Allow-Origin", origins.has("*") ? "*" : origin);
      res.setHeader("Vary", "Origin");
    }
    if (req.method !== "OPTIONS" || req.headers["access-control-request-method"] === undefined) return false;
    if (!allowed) {
      json(res, 403, { error: `origin ${escapeLogText(origin)} may not call this server from a browser (dyno serve --allow-origin)` });
      return true;
    }
    res.writeHead(204, {
      "Access-Control-Allow-Methods": "GET, HEAD, POST, OPTIONS",
      "Access-Control-Allow-Headers": "Authorization, Content-Type",
      "Access-Control-Max-Age": "600",
    });
    res.end();
    return true;
  };

  const route = async (req: http.IncomingMessage, res: http.ServerResponse) => {
    const path = (req.url ?? "/").split("?")[0]!;
    if (draining) res.setHeader("Connection", "close");
    if (cors(req, res)) return;
    if (path === "/v2/health/live") return get(req, res) && json(res, 200, { live: true });
    if (path === "/v2/health/ready") return get(req, res) && json(res, ready() ? 200 : 503, { ready: ready() });
    if (path === INFER_PATH) {
      if (req.method !== "POST") return methodNotAllowed(res, "POST");
      return inferHttp(req, res);
    }
    if (path === "/v2/repository/index") {
      if (req.method !== "POST") return methodNotAllowed(res, "POST");
      return repositoryIndex(req, res);
    }
    const im = path.match(/^\/v2\/models\/([^/]+)(?:\/versions\/([^/]+))?\/infer$/);
    if (im) {
      if (req.method !== "POST") return methodNotAllowed(res, "POST");
      return inferKServe(req, res, im[1]!, im[2]);
    }
    const known = path === "/v2" || path === "/metrics" || path.startsWith("/v2/models/");
    if (!known && options.routes && (await options.routes(req, res))) return;
    if (!known) return json(res, 404, { error: `no route ${req.method} ${path} (routes: POST ${INFER_PATH}, WS ${WS_PATH}, GET /v2, /v2/health/live, /v2/health/ready, /v2/models/NAME[/ready], POST /v2/models/NAME/infer, POST /v2/repository/index, GET /metrics)` });
    if (!get(req, res)) return;
    if (!authorized(bearerOf(req))) return unauthorizedJson(res);
    if (path === "/metrics") {
      res.writeHead(200, { "Content-Type": "text/plain; version=0.0.4; charset=utf-8" });
      return void res.end(registry.render());
    }
    if (path === "/v2") return json(res, 200, { name: "dyno", version: o.version ?? manifest.dyno, extensions: [...KSERVE_EXTENSIONS, `dyno-binary-v${PROTOCOL_VERSION}`], ...(options.edge ? { role: "edge", forward: options.edge.forward, ...(options.edge.tiles ? { tiles: { set: options.edge.tiles.set.id, grid: options.edge.tiles.set.grid, from: options.edge.tiles.set.from, workers: options.edge.tiles.workers } } : {}) } : {}) });
    const mm = path.match(/^\/v2\/models\/([^/]+)(?:\/versions\/([^/]+))?(\/ready)?$/);
    const k = mm ? kmodel(mm[1]!, mm[2]) : unknownModel(path);
    if ("error" in k) return json(res, 404, k);
    if (mm![3]) return json(res, ready() ? 200 : 503, { name: k.name, ready: ready() });
    const batching = pool.cutBatching();
    return json(res, 200, k.cut.kind === "input" ? modelMetadata(manifest, o, cloudProfile?.snapshot() ?? null, batching) : cutMetadata(manifest, k, batching[k.cut.id]!));
  };

  // --- KServe v2 inference (./kserve.ts) -----------------------------------------------------

  const kmodels = kserveModels(manifest);
  const unknownModel = (name: string) => ({ error: `unknown model "${escapeLogText(name)}": this server hosts ${kmodels.map((k) => `"${k.name}"`).join(", ")} (version ${id16})` });
  /** A model by its URL-encoded name and optional version, or the 404 body. */
  const kmodel = (encoded: string, version: string | undefined) => {
    let name: string | null = null;
    try {
      name = decodeURIComponent(encoded);
    } catch {
      /* a bad %-escape names no model */
    }
    const k = kmodels.find((x) => x.name === name);
    if (!k || (version !== undefined && version !== id16)) return unknownModel(name ?? encoded);
    return k;
  };

  const repositoryIndex = async (req: http.IncomingMessage, res: http.ServerResponse) => {
    if (!authorized(bearerOf(req))) return unauthorizedJson(res);
    const body = await readBody(req, 64 * 1024);
    if (body === null) return;
    if (body === "too-large") return json(res, 413, { error: "a repository index request is at most 64 KiB" });
    let onlyReady = false;
    if (body.length > 0) {
      let r: unknown;
      try {
        r = JSON.parse(new TextDecoder().decode(body));
      } catch {
        return json(res, 400, { error: "the repository index request is not JSON" });
      }
      const ready = (r as { ready?: unknown } | null)?.ready;
      if (typeof r !== "object" || r === null || Array.isArray(r) || (ready !== undefined && typeof ready !== "boolean")) return json(res, 400, { error: 'a repository index request is {"ready": true|false} or empty' });
      onlyReady = ready === true;
    }
    const up = ready();
    if (onlyReady && !up) return json(res, 200, []);
    return json(res, 200, kmodels.map((k) => ({ name: k.name, version: id16, state: up ? "READY" : "UNAVAILABLE", ...(up ? {} : { reason: draining ? "the server is shutting down" : "not ready" }) })));
  };

  const inferKServe = async (req: http.IncomingMessage, res: http.ServerResponse, encoded: string, version: string | undefined) => {
    const remote = req.socket.remoteAddress ?? "?";
    const fail = (kind: ErrorKind, message: string, close = false) => {
      countError("kserve", remote, kind, `dyno serve: kserve ${remote}: ${kind}: ${message}`);
      const bytes = new TextEncoder().encode(JSON.stringify({ error: message }));
      res.writeHead(ERROR_STATUS[kind], {
        "Content-Type": "application/json", "Content-Length": bytes.length,
        ...(kind === "unauthorized" ? { "WWW-Authenticate": 'Bearer realm="dyno"' } : {}),
        ...(close || draining ? { Connection: "close" } : {}),
      });
      res.end(bytes);
    };
    const k = kmodel(encoded, version);
    if ("error" in k) return fail("unknown-variant", k.error, true);
    if (!authorized(bearerOf(req))) return fail("unauthorized", "missing or wrong bearer token (send Authorization: Bearer <token>)", true);
    const encoding = req.headers["content-encoding"];
    if (!acceptsEncoding(encoding)) {
      // Triton answers this with 501; 415 is HTTP's own status for it. Either way: what it takes.
      m.requests.add({ transport: "kserve", status: "bad-request" });
      res.writeHead(415, { "Content-Type": "application/json", "Accept-Encoding": "gzip, deflate", Connection: "close" });
      return void res.end(JSON.stringify({ error: `unsupported Content-Encoding "${escapeLogText(encoding ?? "")}" (gzip, deflate or identity)` }));
    }
    const raw = await readBody(req, o.maxJsonBody);
    if (raw === "too-large") return fail("too-large", `request body over the limit of ${o.maxJsonBody} bytes (--max-json-body)`, true);
    if (raw === null) return;
    m.bytesIn.add({ transport: "kserve" }, raw.length);
    const arrived = performance.now();
    const client = { key: `http ${remote}`, remote };
    const id = ++kserveIds;
    try {
      if (draining) throw new ProtocolError("unavailable", "server is shutting down", id);
      const body = decodeContent(raw, encoding, o.maxJsonBody)!;
      const lengthHeader = req.headers[HEADER_LENGTH];
      const headerLength = lengthHeader === undefined ? undefined : /^\d+$/.test(String(lengthHeader).trim()) ? Number(lengthHeader) : NaN;
      if (Number.isNaN(headerLength)) throw new ProtocolError("bad-request", `Inference-Header-Content-Length "${escapeLogText(String(lengthHeader))}" is not a byte count`);
      const parsed = parseInfer(manifest, k, body, headerLength, id);
      const r = await serve(client, id, arrived, () => parsed.request, {});
      const { timing } = r;
      m.requests.add({ transport: "kserve", status: "ok" });
      const out = encodeInferResponse(k, id16, parsed, r.outputs, {
        dyno_variant: r.variant,
        ...Object.fromEntries(Object.entries(KSERVE_TIMING).map(([field, param]) => [param, timing[field as keyof typeof KSERVE_TIMING]])),
        [KSERVE_BATCH_ROWS]: timing.rows ?? 1,
      });
      const enc = out.body.length >= 1024 ? responseEncoding(req.headers["accept-encoding"]) : "identity";
      const sent = encodeContent(out.body, enc);
      if (res.destroyed) return;
      res.writeHead(200, {
        "Content-Type": out.headerLength === undefined ? "application/json" : "application/octet-stream",
        "Content-Length": sent.length,
        ...(out.headerLength !== undefined ? { "Inference-Header-Content-Length": out.headerLength } : {}),
        ...(enc !== "identity" ? { "Content-Encoding": enc } : {}),
        ...(draining ? { Connection: "close" } : {}),
      });
      res.end(sent);
    } catch (e) {
      const err = asProtocolError(e, id);
      if (!res.destroyed) fail(err.kind, err.message);
    }
  };
  let kserveIds = 0;

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
      // The body is left unread: close the connection rather than drain it.
      reply(kind, errorReply("http", remote, 0, kind, message, `dyno serve: http ${remote}: ${kind}: ${message}`), true);
    };
    if (!authorized(bearerOf(req))) return refuse("unauthorized", "missing or wrong bearer token (send Authorization: Bearer <token>)");
    const body = await readBody(req, o.maxBody);
    if (body === "too-large") return refuse("too-large", `request body over the limit of ${o.maxBody} bytes (--max-body)`);
    if (body === null) return; // the client went away
    const outcome = await handle(body, { key: `http ${remote}`, remote }, "http");
    if (!res.destroyed) reply(outcome.status, outcome.bytes);
  };

  // --- WebSocket ----------------------------------------------------------------------------

  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: o.maxBody,
    handleProtocols: (offered) => (offered.has(WS_PROTOCOL) ? WS_PROTOCOL : false),
  });
  const peers = new Set<Peer>();
  let connectionCount = 0;

  server.on("upgrade", (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    const remote = req.socket.remoteAddress ?? "?";
    const path = (req.url ?? "/").split("?")[0];
    if (path !== WS_PATH) return refuseHttp(socket, head, 404, `no WebSocket at ${path} (use ${WS_PATH})`);
    if (draining) return refuseHttp(socket, head, 503, "server is shutting down");
    if (!authorized(bearerOf(req) ?? bearerOfProtocols(req))) {
      m.errors.add({ kind: "unauthorized" });
      m.refused.add({ reason: "unauthorized" });
      log("unauthorized requests", remote, `dyno serve: ws ${remote}: unauthorized: missing or wrong bearer token`);
      return refuseWebSocket(req, socket, head, WS_CLOSE_UNAUTHORIZED, "unauthorized: missing or wrong bearer token", WS_PROTOCOL, (n) => (stats.unauthorizedBytesRead += n));
    }
    wss.handleUpgrade(req, socket, head, (ws) => onConnection(ws, remote));
  });

  const window = REPLY_WINDOW * o.maxInflightPerClient;
  const pingEvery = Math.max(1, Math.floor(window / 4));

  const pause = (peer: Peer) => {
    if (peer.paused) return;
    peer.paused = true;
    m.paused.set({}, ++stats.paused);
    peer.ws.pause();
  };
  const resume = (peer: Peer) => {
    if (!peer.paused || peer.stalled || peer.ws.bufferedAmount > o.wsSendBufferBytes / 2) return;
    peer.paused = false;
    m.paused.set({}, --stats.paused);
    peer.ws.resume();
  };

  /**
   * Pings with a nonce to learn what the peer has read: every `pingEvery` replies, or at once
   * when requests wait for the window (`urgent`). At most MAX_PINGS_OUT unanswered: `ws` (and
   * browsers alike) cut a peer that floods them with pings faster than their pongs go out.
   */
  const askRead = (peer: Peer, urgent: boolean) => {
    const last = peer.acks.at(-1)?.replies ?? peer.read;
    if (peer.acks.length >= MAX_PINGS_OUT || peer.replies === last) return;
    if (!urgent && peer.replies - last < pingEvery) return;
    const nonce = randomBytes(8);
    peer.acks.push({ nonce, replies: peer.replies, at: performance.now() });
    try {
      peer.ws.ping(nonce);
    } catch {
      /* closing already */
    }
  };

  /**
   * Sends a reply. Past --ws-send-buffer waiting bytes, stops reading from the peer until half of
   * them drained; every `pingEvery` replies, pings with a nonce to learn what the peer has read.
   */
  const send = (peer: Peer, bytes: Uint8Array) => {
    const { ws } = peer;
    if (ws.readyState !== ws.OPEN) return;
    ws.send(bytes, () => resume(peer));
    peer.replies++;
    askRead(peer, false);
    const buffered = ws.bufferedAmount;
    stats.maxBufferedBytes = Math.max(stats.maxBufferedBytes, buffered);
    if (buffered > o.wsSendBufferBytes) pause(peer);
  };

  /** Handles a WebSocket request now; its reply goes back on the same socket. */
  const answer = (peer: Peer, bytes: Uint8Array, arrived: number) => void handle(bytes, peer.client, "ws", arrived).then((r) => send(peer, r.bytes));

  /**
   * Runs a request, or holds it while the peer has a window of replies unread; past
   * --max-inflight-per-client held, refuses it (`overloaded`, without decoding it) and keeps
   * reading, so the pong that opens the window is never stuck behind requests.
   */
  const request = (peer: Peer, bytes: Uint8Array, arrived: number) => {
    if (peer.held.length === 0 && peer.replies - peer.read < window) return answer(peer, bytes, arrived);
    if (peer.held.length < o.maxInflightPerClient) {
      peer.held.push({ bytes, arrived });
      stats.maxHeld = Math.max(stats.maxHeld, peer.held.length);
      askRead(peer, true);
      return;
    }
    const unread = peer.replies - peer.read;
    const message = `this connection has ${unread} replies unread and ${peer.held.length} requests waiting: read replies before sending more`;
    send(peer, errorReply("ws", peer.client.remote, peekId(bytes), "overloaded", message, `dyno serve: ws ${peer.client.remote}: overloaded: ${unread} replies unread`));
    // Refusing, and no pong for STALL_MS: the peer is not reading. Stop reading it for a while
    // (doubling up to MAX_STALL_MS), then read again: a pong behind its requests is then found.
    const oldest = peer.acks[0];
    if (!peer.stalled && oldest && performance.now() - oldest.at > STALL_MS) {
      pause(peer);
      peer.stalled = setTimeout(() => {
        peer.stalled = null;
        peer.stallMs = Math.min(MAX_STALL_MS, peer.stallMs * 2);
        resume(peer);
      }, peer.stallMs);
      stats.stalls++;
    }
  };

  /** A pong: the peer has read every reply sent before the ping it answers. */
  const pong = (peer: Peer, data: Buffer) => {
    peer.beat.pong();
    const k = peer.acks.findIndex((a) => a.nonce.equals(data));
    if (k < 0) return; // a heartbeat's pong, or one we never asked for
    peer.read = peer.acks[k]!.replies;
    peer.stallMs = STALL_MS;
    peer.acks.splice(0, k + 1);
    while (peer.held.length > 0 && peer.replies - peer.read < window) {
      const { bytes, arrived } = peer.held.shift()!;
      answer(peer, bytes, arrived);
    }
    // Replies sent while pings were capped, with requests still waiting: ask again.
    if (peer.held.length > 0) askRead(peer, true);
  };

  const onConnection = (ws: WebSocket, remote: string) => {
    const peer: Peer = { ws, client: { key: `ws#${++connectionCount}`, remote }, beat: new Heartbeat(2), paused: false, replies: 0, read: 0, acks: [], held: [], stalled: null, stallMs: STALL_MS };
    peers.add(peer);
    ws.on("close", () => {
      peers.delete(peer);
      if (peer.paused) m.paused.set({}, --stats.paused);
      peer.held.length = 0;
      if (peer.stalled) clearTimeout(peer.stalled);
    });
    ws.on("pong", (data) => pong(peer, data));
    ws.on("error", (e) => {
      // ws closes the connection itself (1009) when a message is over maxPayload.
      if ((e as { code?: string }).code === "WS_ERR_UNSUPPORTED_MESSAGE_LENGTH") {
        m.requests.add({ transport: "ws", status: "too-large" });
        m.errors.add({ kind: "too-large" });
      }
      log("WebSocket errors", remote, `dyno serve: ws ${remote}: ${e.message}`);
    });
    ws.on("message", (data, isBinary) => {
      if (!isBinary) {
        m.errors.add({ kind: "bad-request" });
        send(peer, errorResponse(0, "bad-request", "text message: requests are binary WebSocket messages"));
        return;
      }
      const buf = data as Buffer;
      request(peer, new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength), performance.now());
    });
  };

  const heartbeat = setInterval(() => {
    for (const peer of peers) {
      if (peer.beat.tick() === "ping") {
        try {
          peer.ws.ping();
        } catch {
          /* closing already */
        }
        continue;
      }
      m.terminated.add({ reason: "heartbeat" });
      log("WebSocket peers cut for missed pongs", peer.client.remote, `dyno serve: ws ${peer.client.remote}: no pong to the last 2 pings (--heartbeat-ms ${o.heartbeatMs}): connection cut`);
      peer.ws.terminate();
    }
  }, o.heartbeatMs);
  heartbeat.unref();
  const flushLog = setInterval(() => limiter.flush(performance.now()), Math.max(10, Math.min(1000, Math.floor(o.logIntervalMs / 4))));
  flushLog.unref();

  // --- Listen, close ------------------------------------------------------------------------

  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(o.port, o.host, () => {
        server.off("error", reject);
        resolve();
      });
    });
  } catch (e) {
    clearInterval(heartbeat);
    clearInterval(flushLog);
    await pool.close();
    throw e;
  }
  server.on("error", (e) => log("server errors", "-", `dyno serve: ${e.message}`));
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
      // Requests held for a peer's unread replies are answered too: `unavailable`.
      for (const peer of peers) {
        for (const { bytes, arrived } of peer.held.splice(0)) answer(peer, bytes, arrived);
      }
      if (admission.inflight > 0) await new Promise<void>((resolve) => (drained = resolve));
      // The last responses are encoded and handed to their sockets in microtasks after their
      // runs end; a macrotask turn lets all of them go out before the sockets close.
      await new Promise((resolve) => setImmediate(resolve));
      await Promise.all([...peers].map((p) => closeSocket(p.ws)));
      server.closeIdleConnections();
      // Responses already handed to the kernel go out first; a client that holds a connection
      // open past a grace period is cut.
      const grace = setTimeout(() => server.closeAllConnections(), 2000);
      await closed;
      clearTimeout(grace);
      clearInterval(heartbeat);
      clearInterval(flushLog);
      limiter.flush(Infinity);
      wss.close();
      await pool.close();
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
      return admission.inflight;
    },
    metrics: () => registry.render(),
    batching: () => pool.cutBatching(),
    stats: () => ({
      connections: stats.connections,
      ws: { open: peers.size, paused: stats.paused, maxBufferedBytes: stats.maxBufferedBytes, maxHeld: stats.maxHeld, stalls: stats.stalls },
      pool: pool.stats(),
      unauthorizedBytesRead: stats.unauthorizedBytesRead,
    }),
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
/** A constant-time check of a presented token against `token` (none: everything passes). */
export function tokenCheck(token: string | undefined): (presented: string | undefined) => boolean {
  if (token === undefined) return () => true;
  const want = createHash("sha256").update(token).digest();
  return (presented) => presented !== undefined && timingSafeEqual(createHash("sha256").update(presented).digest(), want);
}

/** The token of an `Authorization: Bearer <token>` header. */
export function bearerOf(req: http.IncomingMessage): string | undefined {
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
export function readBody(req: http.IncomingMessage, limit: number): Promise<Uint8Array | "too-large" | null> {
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
  if (e instanceof WorkerPayloadError) return new ProtocolError("bad-request", e.message, id);
  return new ProtocolError("internal", `cloud run failed: ${(e as Error)?.message ?? String(e)}`, id);
}

const DATATYPES: Record<string, string> = { float32: "FP32", float16: "FP16", float64: "FP64", int64: "INT64", int32: "INT32", int8: "INT8", uint8: "UINT8", bool: "BOOL" };

/** KServe v2 model metadata, plus what a dyno device needs to know about the variants and limits. */
function modelMetadata(manifest: Manifest, o: { maxBody: number; maxJsonBody: number; maxInflight: number; maxInflightPerClient: number; maxInflightPerAddress: number; timeoutMs: number }, profile: Profile | null, batching: Record<string, CutBatching>) {
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
      maxBody: o.maxBody,
      limits: { maxBody: o.maxBody, maxJsonBody: o.maxJsonBody, maxInflight: o.maxInflight, maxInflightPerClient: o.maxInflightPerClient, maxInflightPerAddress: o.maxInflightPerAddress, timeoutMs: o.timeoutMs },
      variants: manifest.variants
        .filter((v) => cuts.get(v.cut)!.kind !== "output")
        .map((v) => ({ id: v.id, cut: v.cut, codec: v.codec, admissible: v.admissible, accuracy: v.accuracy, tensors: cuts.get(v.cut)!.tensors.map(tensor) })),
      // Per cut id: batched up to maxBatch rows at the sizes checked at start-up, or alone and why.
      batching,
      // This server's own per-segment times (start-up runs, then live): devices plan with them.
      ...(profile ? { profile } : {}),
    },
  };
}

function stripUndefined<T extends object>(x: T): Partial<T> {
  return Object.fromEntries(Object.entries(x).filter(([, v]) => v !== undefined)) as Partial<T>;
}
