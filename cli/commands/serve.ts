// dyno serve BUNDLE: host the cloud parts of a bundle (runtime/cloud/server.ts; docs/protocol.md; every
// limit, its default and what a client sees past it: docs/security.md).
import { readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { UsageError } from "../../runtime/common/errors.js";
import { SERVE_DEFAULTS, startServer, WS_PATH, INFER_PATH } from "../../runtime/cloud/server.js";
import type { Command } from "../args.js";
import { createPage, type Page } from "../page.js";
import { openBundle } from "../../runtime/node/bundle.js";
import { inputsFor } from "./run.js";
import { dynoVersion } from "../version.js";
import { buildEdgeTiles, tileSetText } from "../edge-tiles.js";
import { parseGrid } from "../../compiler/passes/tile-spatial.js";
import { startTileWorker } from "../../runtime/cloud/tile-worker.js";
import type { CutBatching, EdgeConfig } from "../../runtime/cloud/worker-pool.js";

export const serve: Command = {
  name: "serve",
  summary: "serve the cloud parts of a bundle over WebSocket and HTTP (KServe v2 health, Prometheus metrics)",
  usage: "serve BUNDLE [--host 127.0.0.1] [--port 8080] [--token-file F] [--workers N] [--threads N] [--max-batch N] [--max-queue-delay-ms N] [--max-batch-bytes BYTES] [--max-body BYTES] [--max-json-body BYTES] [--max-inflight N] [--max-inflight-per-client N] [--max-inflight-per-address N] [--timeout-ms N] [--max-connections N] [--heartbeat-ms N] [--ws-send-buffer BYTES] [--headers-timeout-ms N] [--request-timeout-ms N] [--keep-alive-timeout-ms N] [--profile-runs N] [--allow-origin ORIGIN] [--page [--page-inputs DATA] [--page-slowdown F]] [--role edge --cloud URL --forward VARIANT [--cloud-token-file F] [--edge-workers URL,... --tile-from CUT --grid RxC]] [--role edge-worker --forward VARIANT --tile-from CUT --grid RxC]",
  help: [
    `  --host H                       address to listen on (default ${SERVE_DEFAULTS.host})`,
    `  --port N                       port (default ${SERVE_DEFAULTS.port}; 0: any free port, printed)`,
    "  --token-file F                 require Authorization: Bearer <the file's content, trimmed> on every",
    "                                 request except /v2/health/* (browsers: subprotocol dyno-bearer.<base64url>)",
    "  --workers N                    worker threads running inference, each with its own sessions (default: cores)",
    "  --threads N                    onnxruntime intra-op threads per session (default: cores / workers, 1 to 4)",
    `  --max-batch N                  dynamic batching: requests of one cut queued together run as one onnxruntime`,
    `                                 run of up to N rows (default ${SERVE_DEFAULTS.maxBatch}; 1: off). A cut batches when its batch`,
    "                                 dimension is free and, at start-up, every segment after it gave each batch's rows",
    "                                 bit for bit as run alone (seeded inputs, sizes 2..8 and powers of two to N);",
    "                                 others run alone. GET /v2/models/NAME shows which (dyno.batching)",
    `  --max-queue-delay-ms N         how long a request may wait for others of its cut while a worker is free`,
    `                                 (default ${SERVE_DEFAULTS.maxQueueDelayMs}: batch only what queued while the workers were busy)`,
    `  --max-batch-bytes BYTES        a batch's decoded cut tensors at most (default ${SERVE_DEFAULTS.maxBatchBytes / 1024 / 1024} MiB)`,
    "  --profile-runs N               timed runs of the whole segment chain at start-up, published as the cloud's",
    "                                 own profile in the model metadata with the live times of requests (default 5;",
    "                                 0: live times only)",
    "  --max-body BYTES               largest request message (default: the bundle's largest request + 25%,",
    "                                 at least 1 MiB); over it: 413 / WS close 1009",
    "  --max-json-body BYTES          largest KServe v2 infer body, JSON tensors included, and decompressed",
    "                                 (default: 8x --max-body); over it: 413",
    `  --max-inflight N               requests in flight in the server (default ${SERVE_DEFAULTS.maxInflight}); over it: 429`,
    `  --max-inflight-per-client N    per WebSocket connection or HTTP remote address (default ${SERVE_DEFAULTS.maxInflightPerClient})`,
    "  --max-inflight-per-address N   per remote address over all its connections (default: 2x per client)",
    `  --timeout-ms N                 per request, arrival to response, queued or running (default ${SERVE_DEFAULTS.timeoutMs}); over it: 504`,
    `  --max-connections N            open TCP connections (default ${SERVE_DEFAULTS.maxConnections}); past it new ones are closed at once`,
    `  --heartbeat-ms N               WebSocket ping interval; 2 missed pongs cut the socket (default ${SERVE_DEFAULTS.heartbeatMs})`,
    "  --ws-send-buffer BYTES         reply bytes waiting for a WebSocket past which it is not read from",
    "                                 until they drain (default: 1 MiB, or 4 of the bundle's largest replies)",
    `  --headers-timeout-ms N         time to send request headers (default ${SERVE_DEFAULTS.headersTimeoutMs}); over it: 408, closed`,
    `  --request-timeout-ms N         time to send a whole HTTP request (default ${SERVE_DEFAULTS.requestTimeoutMs}); over it: 408, closed`,
    `  --keep-alive-timeout-ms N      idle keep-alive connections are closed after this (default ${SERVE_DEFAULTS.keepAliveTimeoutMs})`,
    "  --allow-origin ORIGIN          a web page origin (https://app.example, or *) that may call this server",
    "                                 from a browser (CORS; repeatable; default: none; --page adds its own)",
    "  --page                         also serve /page/: the device half in the browser (onnxruntime-web) against",
    "                                 this server, live cut/bits/times, and emulated links (wifi, 4g, 3g) to switch",
    "  --page-inputs DATA             the page's samples (default: the bundle's calibration data, else random:16)",
    "  --page-slowdown F              the page's emulated device is F times slower than the browser (default 20)",
    "  --role cloud|edge|edge-worker  cloud (default): run each request's cloud part. edge: a tier between devices",
    "                                 and the cloud (docs/d3.md): run the segments up to --forward's cut, pack with",
    "                                 its codec, send to --cloud; a request at or past that cut is relayed as it came;",
    "                                 when the cloud fails the edge finishes the model itself. edge-worker: hold the",
    "                                 tiles of an edge's span and run the ones the edge sends (HTTP, same token)",
    "  --cloud URL                    with --role edge: the cloud server (http://host:port; the edge speaks WebSocket to it)",
    "  --forward VARIANT|auto         with --role edge: the variant sent to the cloud (`dyno inspect`-style id, e.g.",
    "                                 c12-b4-zstd: its cut ends the edge's part, its codec packs the backbone).",
    "                                 auto: planned per request for the device's variant from the bundle's profile,",
    "                                 the edge's and the cloud's measured speed and the backbone's measured",
    "                                 bandwidth and RTT (D3's partial re-adjustment; moves on a gain over 10%)",
    "  --cloud-token-file F           with --role edge: the cloud's token",
    "  --edge-workers URL,...         with --role edge: edge-worker processes (http://host:port) to scatter the tiles",
    "                                 of the span --tile-from .. --forward's cut to; a tile whose worker fails goes to",
    "                                 another, and with none left the edge runs the span untiled. The workers get the",
    "                                 edge's --token-file token",
    "  --tile-from CUT                the cut (id, `dyno inspect`) where the tiled span starts: requests from devices",
    "                                 at or before it are tiled, later ones run untiled (default: the input)",
    "  --grid RxC                     the tiles of the span's longest spatially local run (e.g. 1x2, 2x2)",
    "  --emulate-slowdown F           with --role edge or edge-worker, for benchmarks: behave F times slower than",
    "                                 this machine (each compute step is stretched to F x its time; default 1)",
  ].join("\n"),
  options: {
    host: { type: "string" },
    port: { type: "string" },
    "token-file": { type: "string" },
    "max-body": { type: "string" },
    "max-json-body": { type: "string" },
    "max-inflight": { type: "string" },
    "max-inflight-per-client": { type: "string" },
    "max-inflight-per-address": { type: "string" },
    "timeout-ms": { type: "string" },
    threads: { type: "string" },
    workers: { type: "string" },
    "max-batch": { type: "string" },
    "max-queue-delay-ms": { type: "string" },
    "max-batch-bytes": { type: "string" },
    "profile-runs": { type: "string" },
    "max-connections": { type: "string" },
    "heartbeat-ms": { type: "string" },
    "ws-send-buffer": { type: "string" },
    "headers-timeout-ms": { type: "string" },
    "request-timeout-ms": { type: "string" },
    "keep-alive-timeout-ms": { type: "string" },
    "allow-origin": { type: "string", multiple: true },
    page: { type: "boolean" },
    "page-inputs": { type: "string" },
    "page-slowdown": { type: "string" },
    role: { type: "string" },
    cloud: { type: "string" },
    forward: { type: "string" },
    "cloud-token-file": { type: "string" },
    "edge-workers": { type: "string" },
    "tile-from": { type: "string" },
    grid: { type: "string" },
    "emulate-slowdown": { type: "string" },
  },
  async run({ values, positionals }) {
    if (positionals.length !== 1) throw new UsageError(`serve: expected one BUNDLE\nusage: dyno ${serve.usage}`);
    const int = (flag: string, min: number): number | undefined => {
      const v = values[flag] as string | undefined;
      if (v === undefined) return undefined;
      const n = Number(v);
      if (!/^\d+$/.test(v) || !Number.isSafeInteger(n) || n < min) throw new UsageError(`--${flag} "${v}" is not an integer >= ${min}`);
      return n;
    };
    if (!values.page && (values["page-inputs"] !== undefined || values["page-slowdown"] !== undefined)) throw new UsageError("--page-inputs and --page-slowdown go with --page");
    const token = values["token-file"] === undefined ? undefined : readToken(values["token-file"] as string);
    const bundle = openBundle(positionals[0]!);
    const role = (values.role as string | undefined) ?? "cloud";
    if (role !== "cloud" && role !== "edge" && role !== "edge-worker") throw new UsageError(`--role "${role}" is not cloud, edge or edge-worker`);
    const allowed: Record<string, string[]> = { cloud: [], edge: ["cloud", "forward", "cloud-token-file", "edge-workers", "tile-from", "grid", "emulate-slowdown"], "edge-worker": ["forward", "tile-from", "grid", "emulate-slowdown"] };
    for (const f of ["cloud", "forward", "cloud-token-file", "edge-workers", "tile-from", "grid", "emulate-slowdown"]) {
      if (values[f] !== undefined && !allowed[role]!.includes(f)) throw new UsageError(`--${f} goes with --role ${Object.keys(allowed).filter((r) => allowed[r]!.includes(f)).join(" or ")}`);
    }
    const slowdown = values["emulate-slowdown"] === undefined ? undefined : Number(values["emulate-slowdown"]);
    if (slowdown !== undefined && !(slowdown >= 1 && slowdown <= 10_000)) throw new UsageError(`--emulate-slowdown "${values["emulate-slowdown"]}" is not a number in [1, 10000]`);
    const forwardVariant = () => {
      const forward = values.forward as string | undefined;
      if (!forward) throw new UsageError(`--role ${role} needs --forward VARIANT`);
      const v = bundle.manifest.variants.find((x) => x.id === forward);
      if (!v) throw new UsageError(`--forward "${forward}": the bundle has no such variant (its variants: ${bundle.manifest.variants.slice(0, 6).map((x) => x.id).join(", ")}, ...)`);
      return v;
    };
    const tileSet = async () => {
      const spec = (values["tile-from"] as string | undefined) ?? String(bundle.manifest.cuts.find((c) => c.kind === "input")?.id ?? 0);
      if (!/^\d+$/.test(spec)) throw new UsageError(`--tile-from "${spec}" is not a cut id (\`dyno inspect\` lists them)`);
      if (!values.grid) throw new UsageError(`tiles need --grid RxC (e.g. 2x2)`);
      let grid;
      try {
        grid = parseGrid(values.grid as string);
      } catch {
        throw new UsageError(`--grid "${values.grid}" is not ROWSxCOLS (e.g. 2x2)`);
      }
      return buildEdgeTiles(bundle, { from: Number(spec), to: forwardVariant().cut, grid });
    };
    if (role === "edge-worker") {
      const other = ["max-body", "max-json-body", "max-inflight", "max-inflight-per-client", "max-inflight-per-address", "timeout-ms", "workers", "max-batch", "max-queue-delay-ms", "max-batch-bytes", "heartbeat-ms", "ws-send-buffer", "headers-timeout-ms", "request-timeout-ms", "keep-alive-timeout-ms", "profile-runs", "allow-origin", "page", "page-inputs", "page-slowdown"].find((f) => values[f] !== undefined);
      if (other) throw new UsageError(`--${other} goes with --role cloud or edge (an edge worker takes --host, --port, --token-file, --threads, --max-connections and its tile flags)`);
      const tiles = await tileSet();
      const worker = await startTileWorker({ tiles, host: values.host as string | undefined, port: int("port", 0) ?? SERVE_DEFAULTS.port, token, slowdown, maxConnections: int("max-connections", 1), threads: int("threads", 1) ?? Math.max(1, Math.min(4, availableParallelism())), log: (line) => console.error(line) });
      console.log(`dyno serve: edge worker for bundle ${bundle.manifest.model.name} on ${worker.url}: ${tileSetText(tiles)}`);
      await untilSignal(() => worker.close());
      return 0;
    }
    let edge: EdgeConfig | undefined;
    if (role === "edge") {
      if (!values.cloud || !values.forward) throw new UsageError("--role edge needs --cloud URL and --forward VARIANT");
      const url = values.cloud as string;
      if (!/^(https?|wss?):\/\/[^/\s]+\/?$/.test(url)) throw new UsageError(`--cloud "${url}" is not a server URL (http://host:port)`);
      if (values["edge-workers"] === undefined && (values["tile-from"] !== undefined || values.grid !== undefined)) throw new UsageError("--tile-from and --grid go with --edge-workers");
      const cloudToken = values["cloud-token-file"] === undefined ? undefined : readToken(values["cloud-token-file"] as string);
      if (values.forward === "auto") {
        if (values["edge-workers"] !== undefined) throw new UsageError("--forward auto goes without --edge-workers (the tiled span needs a fixed end: give --forward VARIANT)");
        const m = bundle.manifest;
        const prof = (role: "device" | "cloud") => m.profiles.find((p) => p.role === role) ?? m.profiles[0]!;
        edge = {
          cloud: url, forward: "auto", slowdown, token: cloudToken,
          auto: {
            segmentMs: prof("cloud").segments.map((t) => t.meanMs),
            codecMs: Object.fromEntries(m.variants.map((v) => [v.id, (prof("device").codec[v.id]?.meanMs ?? 0) + (prof("cloud").codec[v.id]?.meanMs ?? 0)])),
            prior: { bandwidthMbps: 15, rttMs: 50 },
          },
        };
      } else {
        const v = forwardVariant();
        if (!v.admissible) console.error(`dyno serve: --forward ${v.id} is not admissible (accuracy drop ${v.accuracy.drop} ${bundle.manifest.calibration.metric.unit})`);
        edge = { cloud: url, forward: v.id, slowdown, token: cloudToken };
        if (values["edge-workers"] !== undefined) {
          const workers = (values["edge-workers"] as string).split(",").map((w) => w.trim().replace(/\/$/, ""));
          for (const w of workers) if (!/^https?:\/\/[^/\s]+$/.test(w)) throw new UsageError(`--edge-workers: "${w}" is not a worker URL (http://host:port)`);
          const set = await tileSet();
          await checkEdgeWorkers(workers, set.id, token);
          edge.tiles = { set, workers, token };
          console.error(`dyno serve: edge ${tileSetText(set)} on ${workers.length} worker(s)`);
        }
      }
    }
    let page: Page | null = null;
    if (values.page) {
      const slowdown = Number(values["page-slowdown"] ?? 20);
      if (!(slowdown >= 1 && slowdown <= 1000)) throw new UsageError(`--page-slowdown "${values["page-slowdown"]}" is not a number in [1, 1000]`);
      page = createPage({ bundle, token, inputs: await inputsFor(bundle.manifest, values["page-inputs"] as string | undefined, "random:16"), slowdown });
    }
    const allowOrigins = [...((values["allow-origin"] as string[] | undefined) ?? [])];
    for (const o of allowOrigins) if (o !== "*" && !/^https?:\/\/[^/\s]+$/.test(o)) throw new UsageError(`--allow-origin "${o}" is not an origin (scheme://host[:port], or *)`);
    const cores = Math.max(1, availableParallelism());
    const workers = int("workers", 1) ?? cores;
    const server = await startServer({
      bundle,
      host: values.host as string | undefined,
      port: int("port", 0),
      token,
      maxBody: int("max-body", 1),
      maxJsonBody: int("max-json-body", 1),
      maxInflight: int("max-inflight", 1),
      maxInflightPerClient: int("max-inflight-per-client", 1),
      maxInflightPerAddress: int("max-inflight-per-address", 1),
      timeoutMs: int("timeout-ms", 1),
      workers,
      maxBatch: int("max-batch", 1),
      maxQueueDelayMs: int("max-queue-delay-ms", 0),
      maxBatchBytes: int("max-batch-bytes", 1),
      // Workers x threads stays within the cores: one thread each when every core has a worker.
      threads: int("threads", 1) ?? Math.max(1, Math.min(4, Math.floor(cores / workers))),
      maxConnections: int("max-connections", 1),
      heartbeatMs: int("heartbeat-ms", 1),
      wsSendBufferBytes: int("ws-send-buffer", 1),
      headersTimeoutMs: int("headers-timeout-ms", 1),
      requestTimeoutMs: int("request-timeout-ms", 1),
      keepAliveTimeoutMs: int("keep-alive-timeout-ms", 1),
      profileRuns: int("profile-runs", 0),
      version: dynoVersion(),
      log: (line) => console.error(line),
      routes: page ? (req, res) => page.routes(req, res) : undefined,
      allowOrigins,
      edge,
    });
    const m = server.manifest;
    console.log(`dyno serve: bundle ${m.model.name} (${m.variants.length} variants) on ${server.url} (ws ${WS_PATH}, http POST ${INFER_PATH})${edge ? `, edge: forwarding ${edge.forward === "auto" ? "as planned per request" : edge.forward} to ${edge.cloud}` : ""}`);
    console.log(batchingLine(server.batching()));
    if (page) {
      await page.start(server.host, server.port);
      allowOrigins.push(server.url); // the page calls the links' ports: other origins
      console.log(`dyno serve: page ${server.url}/page/${token === undefined ? "" : `#token=${encodeURIComponent(token)}`} (links: ${page.links().map((l) => `${l.name} ${l.url}`).join(", ")})`);
    }
    await untilSignal(() => Promise.all([server.close(), page?.close()]).then(() => {}), () => server.inflight);
    return 0;
  },
};

/** Waits for SIGINT or SIGTERM, then closes (finishing what is in flight). */
async function untilSignal(close: () => Promise<void>, inflight?: () => number): Promise<void> {
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      process.off("SIGINT", onInt).off("SIGTERM", onTerm);
      console.error(`dyno serve: ${signal}: ${inflight ? `finishing ${inflight()} request(s) in flight, then closing` : "closing"}`);
      close().then(() => resolve(), (e: Error) => {
        console.error(`dyno serve: error while closing: ${e.message}`);
        resolve();
      });
    };
    const onInt = () => stop("SIGINT");
    const onTerm = () => stop("SIGTERM");
    process.on("SIGINT", onInt).on("SIGTERM", onTerm);
  });
}

/**
 * Each edge worker must hold the edge's tile set: one that answers with another set is an error
 * (started with other flags or another bundle); one that does not answer yet is only a warning
 * (the edge skips it until it does, and runs untiled when none does).
 */
async function checkEdgeWorkers(workers: string[], id: string, token: string | undefined): Promise<void> {
  for (const w of workers) {
    let info: { role?: string; tiles?: string };
    try {
      const res = await fetch(`${w}/v2`, { headers: token ? { authorization: `Bearer ${token}` } : {}, signal: AbortSignal.timeout(3000) });
      if (res.status === 401) throw new UsageError(`--edge-workers: ${w} refused the edge's token (start the workers with the edge's --token-file)`);
      info = (await res.json()) as typeof info;
    } catch (e) {
      if (e instanceof UsageError) throw e;
      console.error(`dyno serve: edge worker ${w} does not answer yet (${(e as Error).message}); its tiles go to the others until it does`);
      continue;
    }
    if (info.role !== "edge-worker") throw new UsageError(`--edge-workers: ${w} is not an edge worker (role ${info.role ?? "cloud"})`);
    if (info.tiles !== id) throw new UsageError(`--edge-workers: ${w} holds tile set ${String(info.tiles).slice(0, 12)}, this edge ${id.slice(0, 12)}: start it with the same bundle, --forward, --tile-from and --grid`);
  }
}

function readToken(path: string): string {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new UsageError(`--token-file "${path}": ${(e as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (e as Error).message}`);
  }
  const token = text.trim();
  if (!token) throw new UsageError(`--token-file "${path}" is empty`);
  if (/\s/.test(token)) throw new UsageError(`--token-file "${path}": the token contains whitespace (one token, no spaces or newlines)`);
  return token;
}

/** One line: which cuts batch (and up to how many rows), which run alone and why. */
function batchingLine(b: Record<string, CutBatching>): string {
  const on = Object.entries(b).filter(([, x]) => x.maxBatch > 1);
  const off = Object.entries(b).filter(([, x]) => x.maxBatch === 1);
  const why = [...new Set(off.map(([, x]) => x.why ?? "?"))];
  const batched = on.length ? `cuts ${on.map(([id, x]) => `c${id}${x.why ? `(<=${x.maxBatch})` : ""}`).join(" ")} batch up to ${Math.max(...on.map(([, x]) => x.maxBatch))} rows` : "no cut batches";
  return `dyno serve: batching: ${batched}${off.length ? `; ${off.length} cut(s) run alone: ${why.join("; ")}` : ""}`;
}
