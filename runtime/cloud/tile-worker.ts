// `dyno serve BUNDLE --role edge-worker`: one of the K processes an edge scatters its tiles to
// (D3's vertical separation, docs/d3.md). It holds every tile of the edge's tile set (so that
// any worker can take any tile when another fails), runs one tile at a time, and answers over
// HTTP on loopback or a LAN:
//
//   POST /v1/tiles/{index}   Authorization: Bearer T, x-dyno-tiles: <set id>, x-dyno-batch: N
//                            body: the tile's inputs, float32, in the set's order, regions only
//                            200: its outputs, float32, in order (x-dyno-tile-timing: run=MS;queue=MS);
//                            400 wrong length or header,
//                            401 token, 404 no such tile, 409 another tile set, 413 too large,
//                            503 too many waiting (a tile whose client left is not run)
//   GET  /v2                 { role: "edge-worker", tiles: <set id>, grid, from, to }
//   GET  /v2/health/live|ready, GET /metrics
import http from "node:http";
import ort from "onnxruntime-node";
import { openSession } from "../node/session.js";
import { splitTileValues, TILE_BATCH_HEADER, TILE_PATH, TILE_SET_HEADER, TILE_TIMING_HEADER, tileIoDims, tileValues, type TileSet } from "../common/tiles.js";
import { Registry } from "./metrics.js";
import { bearerOf, readBody, tokenCheck } from "./server.js";

export interface TileWorkerOptions {
  tiles: TileSet;
  host?: string;
  port?: number;
  token?: string;
  threads?: number;
  /** Benchmarks: emulate a worker this many times slower than this machine (each tile's run is stretched). */
  slowdown?: number;
  /** Largest batch a request may carry (bounds the body). Default 64, the executor's bound on a symbolic batch. */
  maxBatch?: number;
  /** Tile requests waiting for the worker at once; past it: 503. Default 32. */
  maxQueued?: number;
  /** Open TCP connections; past it new ones are closed at once. Default 256. */
  maxConnections?: number;
  log?: (line: string) => void;
}

export interface TileWorker {
  url: string;
  port: number;
  /** Tiles run so far. */
  readonly runs: number;
  close(): Promise<void>;
}

export async function startTileWorker(o: TileWorkerOptions): Promise<TileWorker> {
  const set = o.tiles;
  const sessions: ort.InferenceSession[] = [];
  for (const t of set.tiles) sessions.push(await openSession(t.model, { threads: o.threads ?? 1 }));
  const authorized = tokenCheck(o.token);
  const maxBatch = o.maxBatch ?? 64;
  const maxQueued = o.maxQueued ?? 32;
  let queued = 0;
  const registry = new Registry();
  const runsTotal = registry.counter("dyno_tile_runs_total", "Edge worker: tiles run, by tile index.");
  const refusals = registry.counter("dyno_tile_refusals_total", "Edge worker: tile requests refused, by reason.");
  const runMs = registry.histogram("dyno_tile_run_seconds", "Edge worker: time to run one tile.", [0.001, 0.005, 0.02, 0.05, 0.1, 0.5, 2]);
  let runs = 0;
  // onnxruntime-node runs a session on the calling thread: one tile at a time, in arrival order.
  let queue: Promise<unknown> = Promise.resolve();

  const reply = (res: http.ServerResponse, status: number, body: unknown) => {
    const text = JSON.stringify(body);
    res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) }).end(text);
  };
  const refuse = (res: http.ServerResponse, status: number, reason: string, error: string) => {
    refusals.add({ reason });
    reply(res, status, { error });
  };

  const server = http.createServer(async (req, res) => {
    const path = (req.url ?? "/").split("?")[0]!;
    if (req.method === "GET" && (path === "/v2/health/live" || path === "/v2/health/ready")) return reply(res, 200, { live: true, ready: true });
    if (!authorized(bearerOf(req))) return refuse(res, 401, "unauthorized", "missing or wrong bearer token (send Authorization: Bearer <token>)");
    if (req.method === "GET" && path === "/v2") return reply(res, 200, { name: "dyno", role: "edge-worker", tiles: set.id, grid: set.grid, from: set.from, to: set.to });
    if (req.method === "GET" && path === "/metrics") {
      const text = registry.render();
      return res.writeHead(200, { "content-type": "text/plain; version=0.0.4" }).end(text);
    }
    if (!path.startsWith(TILE_PATH)) return refuse(res, 404, "not-found", `no route ${req.method} ${path}`);
    if (req.method !== "POST") return refuse(res, 405, "method", "use POST for tiles");
    const spec = path.slice(TILE_PATH.length);
    const index = /^\d{1,6}$/.test(spec) ? Number(spec) : -1;
    const tile = index >= 0 ? set.tiles[index] : undefined;
    if (!tile) return refuse(res, 404, "no-tile", `no tile "${spec.slice(0, 32)}" (the set has ${set.tiles.length}: 0..${set.tiles.length - 1})`);
    if (req.headers[TILE_SET_HEADER] !== set.id) return refuse(res, 409, "other-set", `this worker holds tile set ${set.id.slice(0, 12)}, the request is for ${String(req.headers[TILE_SET_HEADER] ?? "none").slice(0, 12)}: start the edge and its workers with the same bundle, --forward, --tile-from and --grid`);
    const n = Number(req.headers[TILE_BATCH_HEADER] ?? "1");
    if (!Number.isInteger(n) || n < 1 || n > maxBatch) return refuse(res, 400, "batch", `${TILE_BATCH_HEADER} "${req.headers[TILE_BATCH_HEADER]}" is not an integer in [1, ${maxBatch}]`);
    if (queued >= maxQueued) return refuse(res, 503, "busy", `${queued} tile requests are waiting already (at most ${maxQueued}); try another worker`);
    const want = tileValues(tile.inputs, n) * 4;
    const body = await readBody(req, want);
    if (body === null) return;
    if (body === "too-large") return refuse(res, 413, "too-large", `tile ${index} with batch ${n} takes ${want} bytes; the body is larger`);
    if (body.length !== want) return refuse(res, 400, "length", `tile ${index} with batch ${n} takes ${want} bytes, got ${body.length}`);
    const data = new Float32Array(body.byteLength / 4);
    new Uint8Array(data.buffer).set(body);
    const parts = splitTileValues(data, tile.inputs, n);
    const feeds = Object.fromEntries(tile.inputs.map((io, k) => [io.name, new ort.Tensor("float32", parts[k]!, tileIoDims(io, n))]));
    const arrived = performance.now();
    let ranMs = 0;
    let waitedMs = 0;
    queued++;
    const job = queue.then(async () => {
      queued--;
      // The edge gave up on this tile (timed out, went elsewhere): do not run it for nobody.
      if (res.closed || !res.socket || res.socket.destroyed) return null;
      const t0 = performance.now();
      waitedMs = t0 - arrived;
      const out = await sessions[index]!.run(feeds);
      // An emulated slower worker stays busy for the stretched time (the queue waits with it).
      runMs.observe((await stretch(o.slowdown ?? 1, performance.now() - t0)) / 1000);
      ranMs = performance.now() - t0;
      return out;
    });
    queue = job.catch(() => {});
    let out: ort.InferenceSession.ReturnType;
    try {
      const r = await job;
      if (r === null) return refusals.add({ reason: "abandoned" });
      out = r;
    } catch (e) {
      o.log?.(`dyno serve (edge-worker): tile ${index} failed: ${(e as Error).message}`);
      return refuse(res, 500, "run-failed", `tile ${index} failed to run (the worker's log says why)`);
    }
    runs++;
    runsTotal.add({ tile: String(index) });
    const outs = tile.outputs.map((io) => out[io.name]!.data as Float32Array);
    const bytes = outs.reduce((s, p) => s + p.byteLength, 0);
    res.writeHead(200, { "content-type": "application/octet-stream", "content-length": bytes, [TILE_TIMING_HEADER]: `run=${ranMs.toFixed(2)};queue=${waitedMs.toFixed(2)}` });
    for (const p of outs) res.write(new Uint8Array(p.buffer, p.byteOffset, p.byteLength));
    res.end();
  });
  server.maxConnections = o.maxConnections ?? 256;
  server.headersTimeout = 10_000;
  server.requestTimeout = 60_000;
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((resolve, reject) => server.once("error", reject).listen(o.port ?? 0, o.host ?? "127.0.0.1", () => resolve()));
  const port = (server.address() as { port: number }).port;
  const host = o.host ?? "127.0.0.1";
  return {
    url: `http://${host.includes(":") ? `[${host}]` : host}:${port}`,
    port,
    get runs() {
      return runs;
    },
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      await queue;
      for (const s of sessions) await s.release();
    },
  };
}

/** Emulated slow edge or worker (benchmarks): a step that took `ms` is stretched to slowdown x ms; returns that. */
export async function stretch(slowdown: number, ms: number): Promise<number> {
  if (slowdown <= 1 || ms <= 0) return ms;
  await new Promise((r) => setTimeout(r, (slowdown - 1) * ms));
  return slowdown * ms;
}
