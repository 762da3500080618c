// One worker thread of the cloud pool (runtime/cloud/worker-pool.ts has the protocol and the why):
// opens the bundle's sessions, then runs one request at a time. onnxruntime-node runs inference
// synchronously on the calling thread, which is why this is a thread of its own: while it runs,
// the server's main thread keeps answering health checks, timers and other clients.
import { openExecutor } from "../node/executor.js";
import { sep } from "node:path";
import { parentPort, workerData } from "node:worker_threads";
import ort from "onnxruntime-node";
import { openBundle, type NodeBundle } from "../node/bundle.js";
import { Executor, PayloadError, runChain } from "../exec/executor.js";
import type { OutputTensor, Payload } from "../common/protocol.js";
import type { Cut, Variant } from "../common/manifest.js";
import type { BatchResult, EdgeAutoConfig, EdgeConfig, EdgeRun, EdgeTileRun, EdgeTilesConfig, FromWorker, RunJob, SegmentBatching, ToWorker, WorkerInit } from "./worker-pool.js";
import { randomFloats } from "../common/random.js";
import { connectCloud, type CloudClient, type CloudReply } from "../node/client.js";
import { openSession } from "../node/session.js";
import { sliceRegion, splitTileValues, stitchRegion, TILE_BATCH_HEADER, TILE_PATH, TILE_SET_HEADER, TILE_TIMING_HEADER, tileValues } from "../common/tiles.js";
import { planTiers, tierSpace, type TierSetting } from "../plan/tiers.js";
import { initLink, updateLink } from "../plan/estimators.js";
import { stretch } from "./tile-worker.js";

const port = parentPort!;
const init = workerData as WorkerInit;
const send = (m: FromWorker, transfer: ArrayBuffer[] = []) => port.postMessage(m, transfer);

let bundle: NodeBundle | null = null;
try {
  // The main thread has checked every file's SHA-256; sizes are checked again here.
  bundle = openBundle(init.dir, { checksums: false });
  const executor = await openExecutor(bundle, { threads: init.threads });
  const outputNames = executor.manifest.model.outputs.map((o) => o.name);
  const edge = init.edge ? await edgeRunner(executor, init.edge, init.threads) : null;
  port.on("message", (m: ToWorker) => {
    if ("profile" in m) void profile(executor, m);
    else if ("check" in m) void checkBatching(executor, m);
    else if (edge) void runEdge(edge, outputNames, m);
    else if (m.jobs.length === 1) void run(executor, outputNames, m);
    else void runBatch(executor, outputNames, m);
  });
  send({ type: "ready" });
} catch (e) {
  // The pool terminates this worker when it reads the failure. A segment graph that does not load
  // may be at fault, or the weights file every segment reads its initializers from: both are named,
  // relative to the bundle.
  let message = (e as Error)?.message ?? String(e);
  if (bundle) {
    message = `bundle "${init.dir}": cannot open the cloud sessions (weights "${bundle.manifest.weights.file}"): ${message.replaceAll(`${bundle.dir}${sep}`, "")}`;
  }
  send({ type: "open-failed", name: (e as Error)?.name ?? "Error", message });
}

/** The server's own profile: one warm-up, then `runs` timed runs of the whole chain on a zero input. */
async function profile(executor: Executor, m: Extract<ToWorker, { profile: number }>): Promise<void> {
  try {
    const input = executor.manifest.model.inputs[0]!;
    const dims = input.shape.map((d) => (typeof d === "number" ? d : 1));
    const zero = new ort.Tensor("float32", new Float32Array(dims.reduce((a, b) => a * b, 1)), dims);
    const runs: number[][] = [];
    for (let r = -1; r < m.profile; r++) {
      const ms = await executor.runSegments(0, executor.manifest.segments.length, { [input.name]: zero });
      if (r >= 0) runs.push(ms);
    }
    send({ type: "profiled", id: m.id, runs });
  } catch (e) {
    send({ type: "run-failed", id: m.id, payload: false, message: (e as Error)?.message ?? String(e) });
  }
}

type RunMessage = Extract<ToWorker, { buffer: ArrayBuffer }>;

/** A request's payloads: views into the one buffer the pool transferred. */
function payloadsOf(m: RunMessage, job: RunJob = m.jobs[0]!): Payload[] {
  const all = new Uint8Array(m.buffer);
  return job.tensors.map((t) => ({ tensor: t.name, bytes: all.subarray(t.offset, t.offset + t.length) }));
}

async function run(executor: Executor, outputNames: string[], m: RunMessage): Promise<void> {
  const job = m.jobs[0]!;
  try {
    const r = await executor.cloud(job.variant, payloadsOf(m));
    const outputs = outputNames.map((name) => toOutput(name, r.outputs[name]));
    const from = executor.cutOf(executor.bundle.variant(job.variant)).deviceSegments;
    send({ type: "done", id: m.id, outputs, decodeMs: r.decodeMs, segmentMs: r.segmentMs.reduce((a, b) => a + b, 0), segments: { from, ms: r.segmentMs } }, outputs.map((o) => o.data.buffer as ArrayBuffer));
  } catch (e) {
    send({ type: "run-failed", id: m.id, payload: e instanceof PayloadError, message: (e as Error)?.message ?? String(e) });
  }
}

// ---------------------------------------------------------------------------------------------
// Dynamic batching (worker-pool.ts plans it): several requests of one cut, each decoded on its
// own (a bad payload fails its request only), their cut tensors stacked along the batch
// dimension, one run of the cloud segments, the outputs cut back into each request's rows. A
// batch that cannot stack (other non-batch dims) or whose run fails runs its requests one by one:
// no request is lost to its neighbours.

async function runBatch(executor: Executor, outputNames: string[], m: RunMessage): Promise<void> {
  const results: BatchResult[] = [];
  const decoded: { i: number; pool: Record<string, ort.Tensor>; rows: number }[] = [];
  const cut = executor.cutOf(executor.bundle.variant(m.jobs[0]!.variant));
  for (const [i, job] of m.jobs.entries()) {
    const t0 = performance.now();
    try {
      const v = executor.bundle.variant(job.variant);
      if (v.cut !== cut.id) throw new Error(`a batch of cut ${cut.id} holds a request of cut ${v.cut}`);
      const pool = (await executor.decode(v, payloadsOf(m, job))) as Record<string, ort.Tensor>;
      const rows = pool[cut.tensors[0]!.name]!.dims[0]!;
      for (const t of cut.tensors) if (pool[t.name]!.dims[0] !== rows) throw new PayloadError(`payloads disagree on the batch: "${t.name}" has ${pool[t.name]!.dims[0]} rows, "${cut.tensors[0]!.name}" ${rows}`);
      decoded.push({ i, pool, rows });
      results[i] = { outputs: [], decodeMs: performance.now() - t0 };
    } catch (e) {
      results[i] = { payload: e instanceof PayloadError, message: (e as Error)?.message ?? String(e) };
    }
  }
  const rows = decoded.reduce((a, d) => a + d.rows, 0);
  let segmentMs = 0;
  let segments: { from: number; ms: number[] } | undefined;
  const stacked = decoded.length > 1 ? stack(cut.tensors.map((t) => t.name), decoded.map((d) => d.pool)) : null;
  let done = false;
  if (stacked) {
    try {
      const ms = await executor.runSegments(cut.deviceSegments, executor.manifest.segments.length, stacked);
      const outs = outputNames.map((name) => toOutput(name, stacked[name]));
      if (outs.every((o) => o.dims[0] === rows)) {
        let at = 0;
        for (const d of decoded) {
          (results[d.i] as { outputs: OutputTensor[] }).outputs = outs.map((o) => rowsOfOutput(o, at, d.rows, rows));
          at += d.rows;
        }
        segmentMs = ms.reduce((a, b) => a + b, 0);
        segments = { from: cut.deviceSegments, ms };
        done = true;
      }
    } catch {
      // run them one by one below
    }
  }
  if (!done) {
    for (const d of decoded) {
      try {
        const ms = await executor.runSegments(cut.deviceSegments, executor.manifest.segments.length, d.pool);
        const r = results[d.i] as Extract<BatchResult, { outputs: unknown }>;
        r.outputs = outputNames.map((name) => toOutput(name, d.pool[name]));
        r.segmentMs = ms.reduce((a, b) => a + b, 0);
      } catch (e) {
        results[d.i] = { payload: false, message: (e as Error)?.message ?? String(e) };
      }
    }
  }
  const transfer = results.flatMap((r) => ("outputs" in r ? r.outputs.map((o) => o.data.buffer as ArrayBuffer) : []));
  send({ type: "batch-done", id: m.id, results, segmentMs, segments, rows: done ? rows : 1 }, transfer);
}

/** The cut tensors of several requests stacked along dim 0; null when their other dims differ. */
function stack(names: readonly string[], pools: Record<string, ort.Tensor>[]): Record<string, ort.Tensor> | null {
  const out: Record<string, ort.Tensor> = {};
  for (const name of names) {
    const parts = pools.map((p) => p[name]!);
    if (parts.some((t) => t.type !== "float32")) return null;
    const rest = parts[0]!.dims.slice(1);
    if (parts.some((t) => t.dims.length !== rest.length + 1 || t.dims.slice(1).some((d, k) => d !== rest[k]))) return null;
    const data = new Float32Array(parts.reduce((a, t) => a + t.size, 0));
    let at = 0;
    for (const t of parts) {
      data.set(t.data as Float32Array, at);
      at += t.size;
    }
    out[name] = new ort.Tensor("float32", data, [parts.reduce((a, t) => a + t.dims[0]!, 0), ...rest]);
  }
  return out;
}

/** Rows [at, at + n) of a batched output (of `total` rows), in a buffer of its own. */
function rowsOfOutput(o: OutputTensor, at: number, n: number, total: number): OutputTensor {
  const per = o.data.length / total;
  return { name: o.name, dims: [n, ...o.dims.slice(1)], data: o.data.slice(at * per, (at + n) * per) };
}

/**
 * The start-up batching check: per segment and batch size, are a batch's rows bit for bit the
 * rows run one at a time? Seeded uniform inputs at the model input; each segment is fed the
 * single runs' outputs of the one before, stacked, so every segment is checked on the inputs it
 * would see, even after one that does not batch. A segment that fails at a size, or whose outputs
 * do not keep the batch, is reported with why.
 */
async function checkBatching(executor: Executor, m: Extract<ToWorker, { check: number[] }>): Promise<void> {
  try {
    const sizes = m.check;
    const B = Math.max(...sizes);
    const input = executor.manifest.model.inputs[0]!;
    const rest = input.shape.slice(1).map((d) => (typeof d === "number" ? d : 1));
    const per = rest.reduce((a, b) => a * b, 1);
    let singles: Record<string, ort.Tensor>[] = Array.from({ length: B }, (_, r) => ({ [input.name]: new ort.Tensor("float32", randomFloats(per, 1000 + r), [1, ...rest]) }));
    const segments: SegmentBatching[] = [];
    for (let s = 0; s < executor.manifest.segments.length; s++) {
      const next: Record<string, ort.Tensor>[] = [];
      for (const one of singles) {
        const pool = { ...one };
        await executor.runSegments(s, s + 1, pool);
        next.push(pool);
      }
      const made = Object.keys(next[0]!).filter((k) => !(k in singles[0]!));
      const ok: number[] = [];
      let why: string | undefined;
      for (const n of sizes) {
        const pool = stack(executor.segmentInputs(s), singles.slice(0, n));
        if (!pool) {
          why = `segment ${s}: its inputs are not float32 tensors of one shape per row`;
          break;
        }
        try {
          await executor.runSegments(s, s + 1, pool);
        } catch (e) {
          why = `segment ${s} fails at batch ${n}: ${(e as Error)?.message ?? String(e)}`;
          break;
        }
        const bad = made.find((k) => {
          const t = pool[k]!;
          if (t.dims[0] !== n) return true;
          const a = t.data as ArrayLike<number>;
          const w = t.size / n;
          for (let r = 0; r < n; r++) {
            const b = next[r]![k]!.data as ArrayLike<number>;
            if (b.length !== w) return true;
            for (let i = 0; i < w; i++) if (!Object.is(a[r * w + i], b[i])) return true;
          }
          return false;
        });
        if (bad) {
          why = `segment ${s}: at batch ${n}, output "${bad}" is not bit for bit the rows run one at a time`;
          break;
        }
        ok.push(n);
      }
      segments.push({ sizes: ok, ...(why ? { why } : {}) });
      singles = next;
    }
    send({ type: "checked", id: m.id, segments });
  } catch (e) {
    send({ type: "run-failed", id: m.id, payload: false, message: (e as Error)?.message ?? String(e) });
  }
}

/** An output as float32 in a buffer of its own (transferred to the main thread, not copied). */
function toOutput(name: string, t: ort.Tensor | undefined): OutputTensor {
  if (!t) throw new Error(`the cloud segments did not produce model output "${name}"`);
  const data = t.data instanceof Float32Array ? t.data.slice() : Float32Array.from(t.data as ArrayLike<number | bigint>, Number);
  return { name, dims: [...t.dims], data };
}

// ---------------------------------------------------------------------------------------------
// The edge role: a cloud to the device, a device to the cloud. A request at cut c1 is decoded,
// the segments up to the forward variant's cut c2 run here, the cut tensors are packed with the
// forward variant's codec and sent on; a request already at or past c2 is relayed as it came.
// When the cloud fails (down, timed out, refused), the edge finishes the model itself: no request
// is lost, and the answer is the one the cloud would have given up to the backbone's codec.

interface EdgeRunner {
  slowdown: number;
  executor: Executor;
  /** The variant sent to the cloud (config.forward), or the planner's choice for a device variant. */
  forward: (v: Variant) => Variant;
  auto: AutoPlanner | null;
  client: () => CloudClient;
  drop: () => void;
  tiles: TileRunner | null;
}

async function edgeRunner(executor: Executor, config: EdgeConfig, threads: number): Promise<EdgeRunner> {
  let client: CloudClient | null = null;
  const connect = () => (client ??= connectCloud({ url: config.cloud, model: executor.manifest.model.sha256, token: config.token, timeoutMs: config.timeoutMs ?? 10_000 }));
  const auto = config.forward === "auto" ? autoPlanner(executor, config.auto!, () => connect().probe(16 * 1024), () => connect().ping()) : null;
  const fixed = auto ? null : executor.bundle.variant(config.forward);
  return {
    slowdown: config.slowdown ?? 1,
    executor,
    tiles: config.tiles ? await tileRunner(executor, config.tiles, threads) : null,
    forward: (v) => (auto ? auto.choose(v) : fixed!),
    auto,
    client: connect,
    drop: () => {
      void client?.close().catch(() => {});
      client = null;
    },
  };
}

async function runEdge(e: EdgeRunner, outputNames: string[], m: RunMessage): Promise<void> {
  try {
    const { executor } = e;
    const payloads = payloadsOf(m);
    const v = executor.bundle.variant(m.jobs[0]!.variant);
    const c1 = executor.cutOf(v);
    if (c1.kind === "output") throw new PayloadError(`variant "${v.id}" is device-only: the edge has nothing to run`);
    const fv = e.forward(v);
    const c2 = executor.cutOf(fv);
    let decodeMs = 0;
    let segmentMs = 0;
    let pool: Record<string, ort.Tensor> | null = null;
    let sendVariant = v;
    let sendPayloads = payloads;
    let tiles: EdgeTileRun | undefined;
    if (c1.deviceSegments < c2.deviceSegments) {
      const t0 = performance.now();
      pool = (await executor.decode(v, payloads)) as Record<string, ort.Tensor>;
      decodeMs = performance.now() - t0;
      const t = e.tiles;
      if (t && fv.cut === t.set.to && c1.deviceSegments <= t.from.deviceSegments) {
        segmentMs += await stretch(e.slowdown, (await executor.runSegments(c1.deviceSegments, t.from.deviceSegments, pool)).reduce((a, b) => a + b, 0));
        const t1 = performance.now();
        tiles = await runTiledSpan(t, pool as Record<string, ort.Tensor>, e.slowdown);
        segmentMs += performance.now() - t1;
      } else {
        const ms = await stretch(e.slowdown, (await executor.runSegments(c1.deviceSegments, c2.deviceSegments, pool)).reduce((a, b) => a + b, 0));
        e.auto?.edgeRan(c1.deviceSegments, c2.deviceSegments, ms);
        segmentMs += ms;
      }
      if (c2.kind !== "output") {
        sendVariant = fv;
        sendPayloads = await executor.encodeCut(fv, pool);
      }
    }
    const edge: EdgeRun = { forwarded: "", backboneBytes: 0, fallback: false, ...(tiles ? { tiles } : {}) };
    let outputs;
    if (pool && c2.kind === "output") {
      if (e.auto) edge.finished = true;
      outputs = outputNames.map((name) => toOutput(name, pool![name]));
    } else {
      try {
        const reply = await e.client().infer({ variant: sendVariant, payloads: sendPayloads });
        e.auto?.cloudReplied(reply, sendVariant);
        edge.forwarded = sendVariant.id;
        edge.backboneBytes = reply.bytesSent;
        outputs = outputNames.map((name) => {
          const o = reply.outputs.find((x) => x.name === name);
          if (!o) throw new Error(`the cloud's reply has no output "${name}"`);
          return { name, dims: o.dims, data: o.data.slice() };
        });
      } catch {
        // The cloud failed: finish here, from what would have been sent (decoded, so the answer is
        // the cloud's, not the edge's unquantised one).
        e.drop();
        edge.fallback = true;
        const at = executor.cutOf(sendVariant);
        const rest = await executor.decode(sendVariant, sendPayloads);
        segmentMs += await stretch(e.slowdown, (await executor.runSegments(at.deviceSegments, executor.manifest.segments.length, rest)).reduce((a, b) => a + b, 0));
        outputs = outputNames.map((name) => toOutput(name, rest[name] as ort.Tensor | undefined));
      }
    }
    send({ type: "done", id: m.id, outputs, decodeMs, segmentMs, edge }, outputs.map((o) => o.data.buffer as ArrayBuffer));
  } catch (err) {
    send({ type: "run-failed", id: m.id, payload: err instanceof PayloadError, message: (err as Error)?.message ?? String(err) });
  }
}

// ---------------------------------------------------------------------------------------------
// The edge's tiled span (D3's vertical separation): the part before the tiled run and after it
// run here; each tile's input regions go to an edge worker (`--role edge-worker`) over HTTP, all
// tiles at once, and the outputs are stitched. A tile whose worker fails (refused, timed out, a
// wrong answer length) goes to the next worker; a worker that failed is skipped for retryMs; when
// no worker answers a tile, the edge runs the run untiled itself. The answer is the same either
// way: the tiles are exact (docs/d3.md), up to onnxruntime's rounding on small extents.

interface TileRunner {
  set: EdgeTilesConfig["set"];
  from: Cut;
  before: ort.InferenceSession | null;
  run: ort.InferenceSession;
  after: ort.InferenceSession | null;
  workers: { url: string; downUntil: number; failures: number }[];
  headers: Record<string, string>;
  timeoutMs: number;
  retryMs: number;
  maxBatch: number;
}

async function tileRunner(executor: Executor, c: EdgeTilesConfig, threads: number): Promise<TileRunner> {
  const open = (b: Uint8Array | null) => (b ? openSession(b, { threads }) : Promise.resolve(null));
  return {
    set: c.set,
    from: executor.manifest.cuts.find((x) => x.id === c.set.from)!,
    before: await open(c.set.before),
    run: (await open(c.set.run))!,
    after: await open(c.set.after),
    workers: c.workers.map((url) => ({ url: url.replace(/\/$/, ""), downUntil: 0, failures: 0 })),
    headers: { "content-type": "application/octet-stream", [TILE_SET_HEADER]: c.set.id, ...(c.token ? { authorization: `Bearer ${c.token}` } : {}) },
    timeoutMs: c.timeoutMs ?? 5000,
    retryMs: c.retryMs ?? 2000,
    maxBatch: c.maxBatch ?? 64,
  };
}

/** Runs one graph of the tiled span over `pool` (the executor's chain runner), stretched when emulated slower. */
async function runGraph(s: ort.InferenceSession, pool: Record<string, ort.Tensor>, slowdown: number): Promise<void> {
  await stretch(slowdown, (await runChain([s], pool))[0]!);
}

async function runTiledSpan(t: TileRunner, pool: Record<string, ort.Tensor>, slowdown: number): Promise<EdgeTileRun> {
  const t0 = performance.now();
  if (t.before) await runGraph(t.before, pool, slowdown);
  const t1 = performance.now();
  const n = pool[t.set.runInputs[0]!.name]!.dims[0]!;
  const result: EdgeTileRun = { workers: [], failures: [], untiled: false };
  const full = t.set.runOutputs.map((o) => ({ name: o.name, dims: [n, ...o.dims], data: new Float32Array(n * o.dims[0] * o.dims[1] * o.dims[2]) }));
  const bodies = t.set.tiles.map((tile) => tileBody(tile, n, pool));
  const t2 = performance.now();
  // A batch the workers refuse is no reason to doubt them: run it untiled here.
  const answered = n > t.maxBatch ? t.set.tiles.map(() => null) : await Promise.all(t.set.tiles.map((_, i) => scatterTile(t, i, n, bodies[i]!, result)));
  const t3 = performance.now();
  let slowest = { runMs: 0, queueMs: 0 };
  if (answered.some((a) => a === null)) {
    result.untiled = true;
    await runGraph(t.run, pool, slowdown);
  } else {
    for (const [i, tile] of t.set.tiles.entries()) {
      const { url, parts, runMs, queueMs } = answered[i]!;
      result.workers.push(url);
      if (runMs + queueMs > slowest.runMs + slowest.queueMs) slowest = { runMs, queueMs };
      tile.outputs.forEach((io, k) => {
        const f = full.find((x) => x.name === io.name)!;
        stitchRegion(f.data, f.dims, parts[k]!, io.region);
      });
    }
    for (const f of full) pool[f.name] = new ort.Tensor("float32", f.data, f.dims);
  }
  const t4 = performance.now();
  if (t.after) await runGraph(t.after, pool, slowdown);
  const t5 = performance.now();
  result.timing = { beforeMs: t1 - t0, sliceMs: t2 - t1, scatterMs: t3 - t2, stitchMs: t4 - t3, afterMs: t5 - t4, slowestRunMs: slowest.runMs, slowestQueueMs: slowest.queueMs };
  return result;
}

/** A tile's input regions, cut out of the pool's feature maps, in the set's order. */
function tileBody(tile: EdgeTilesConfig["set"]["tiles"][number], n: number, pool: Record<string, ort.Tensor>): Float32Array<ArrayBuffer> {
  const body = new Float32Array(tileValues(tile.inputs, n));
  let at = 0;
  for (const io of tile.inputs) {
    const x = pool[io.name]!;
    const part = sliceRegion(x.data as Float32Array, x.dims, io.region);
    body.set(part, at);
    at += part.length;
  }
  return body;
}

/** Sends tile `i` to a live worker (the i-th first, then the others): who answered and the tile's outputs, or null. */
async function scatterTile(t: TileRunner, i: number, n: number, body: Float32Array<ArrayBuffer>, result: EdgeTileRun): Promise<{ url: string; parts: Float32Array[]; runMs: number; queueMs: number } | null> {
  const tile = t.set.tiles[i]!;
  const want = tileValues(tile.outputs, n);
  const k = t.workers.length;
  for (let j = 0; j < k; j++) {
    const w = t.workers[(i + j) % k]!;
    if (w.downUntil > Date.now()) continue;
    try {
      const res = await fetch(`${w.url}${TILE_PATH}${i}`, {
        method: "POST",
        headers: { ...t.headers, [TILE_BATCH_HEADER]: String(n) },
        body,
        signal: AbortSignal.timeout(t.timeoutMs),
      });
      if (res.status !== 200) {
        const text = (await res.text()).slice(0, 200);
        // 4xx is about the request (or a worker with other flags: 401, 409), not the worker being
        // down; it is retried elsewhere without benching this worker. 5xx (busy, failed) benches it.
        throw Object.assign(new Error(`${res.status}: ${text}`), { bench: res.status >= 500 });
      }
      const bytes = new Uint8Array(await res.arrayBuffer());
      if (bytes.length !== want * 4) throw new Error(`answered ${bytes.length} bytes, the tile has ${want * 4}`);
      const data = new Float32Array(want);
      new Uint8Array(data.buffer).set(bytes);
      const parts = splitTileValues(data, tile.outputs, n);
      w.failures = 0;
      const timing = /run=([\d.]+);queue=([\d.]+)/.exec(res.headers.get(TILE_TIMING_HEADER) ?? "");
      return { url: w.url, parts, runMs: Number(timing?.[1] ?? 0), queueMs: Number(timing?.[2] ?? 0) };
    } catch (e) {
      // Network errors, timeouts, 5xx and wrong answers bench the worker, for retryMs doubling
      // with each failure in a row (at most 32x): a hung worker is not waited on every 2 s.
      if ((e as { bench?: boolean }).bench !== false) {
        w.failures++;
        w.downUntil = Date.now() + t.retryMs * 2 ** Math.min(5, w.failures - 1);
      }
      result.failures.push(w.url);
    }
  }
  return null;
}

// ---------------------------------------------------------------------------------------------
// --forward auto: the edge's boundary, re-planned per request with the device's variant kept
// (runtime/plan/tiers.ts readjust's edge-cloud case), from measured speeds and the backbone.

interface AutoPlanner {
  choose(v: Variant): Variant;
  /** The edge ran segments [from, to) in `ms` (stretched, when emulated slower). */
  edgeRan(from: number, to: number, ms: number): void;
  cloudReplied(reply: CloudReply, sent: Variant): void;
}

function autoPlanner(executor: Executor, c: EdgeAutoConfig, probe: () => Promise<{ rttMs: number; serialMs: number; bytes: number }>, ping: () => Promise<number>): AutoPlanner {
  const m = executor.manifest;
  const space = tierSpace(m);
  const output = m.variants.find((v) => executor.cutOf(v).kind === "output") ?? null;
  let link = initLink(c.prior);
  const ratio = { edge: 1, cloud: 1, edgeSamples: 0, cloudSamples: 0 };
  let lastCloudAt = -Infinity;
  let probing = false;
  const current = new Map<string, string | null>();
  const profiled = (from: number, to: number) => c.segmentMs.slice(from, to).reduce((a, b) => a + b, 0);
  const setting = (): TierSetting => ({
    segmentMs: { device: c.segmentMs.map(() => 0), edge: c.segmentMs.map((x) => x * ratio.edge), cloud: c.segmentMs.map((x) => x * ratio.cloud) },
    codecMs: { edgeCloud: c.codecMs },
    links: { deviceEdge: { bandwidthMbps: 1000, rttMs: 0 }, edgeCloud: { bandwidthMbps: link.bandwidthBps / 1e6, rttMs: link.rttMs } },
  });
  // The backbone is measured by what crosses it; while nothing does (the edge finishing), or when
  // the estimate went stale, a probe every 5 s keeps it current.
  const maybeProbe = () => {
    if (probing || (performance.now() - lastCloudAt < 5000 && link.bandwidthStale === undefined)) return;
    probing = true;
    lastCloudAt = performance.now();
    probe().then(
      (p) => void (link = updateLink(link, { probe: true, rttMs: p.rttMs, bytes: p.bytes, serialMs: p.serialMs })),
      () => {},
    ).finally(() => (probing = false));
  };
  // A transfer's time is bandwidth and RTT together: while the RTT estimate is in doubt (a sample
  // off it, unconfirmed) transfers are no bandwidth samples, so the RTT is asked again (a ping)
  // at once, and every 2 s anyway.
  let pinging = false;
  let lastPingAt = -Infinity;
  const maybePing = () => {
    if (pinging || (!link.suspect && performance.now() - lastPingAt < 2000)) return;
    pinging = true;
    lastPingAt = performance.now();
    ping().then(
      (ms) => void (link = updateLink(link, { rttMs: ms })),
      () => {},
    ).finally(() => (pinging = false));
  };
  const ewma = (old: number, x: number, n: number) => (n === 0 ? x : old + 0.3 * (x - old));
  return {
    choose(v) {
      maybeProbe();
      const s = setting();
      let best;
      try {
        best = planTiers(space, s, { device: v.id }).plan;
      } catch {
        return v; // the device's variant is not in the plan space (not admissible): relay it
      }
      const kept = current.get(v.id);
      if (kept !== undefined && kept !== best.edge) {
        try {
          const now = planTiers(space, s, { device: v.id, edge: kept }).plan;
          if (best.latencyMs > now.latencyMs * 0.9) best = now; // under 10% better: stay
        } catch {
          // the kept plan is no longer admissible: move
        }
      }
      current.set(v.id, best.edge);
      if (best.edge === null) return output ?? v;
      return executor.bundle.variant(best.edge);
    },
    edgeRan(from, to, ms) {
      const p = profiled(from, to);
      if (p > 0.05 && ms > 0) ratio.edge = ewma(ratio.edge, ms / p, ratio.edgeSamples++);
    },
    cloudReplied(reply, sent) {
      lastCloudAt = performance.now();
      const transferMs = Math.max(0, reply.wallMs - reply.timing.totalMs);
      link = updateLink(link, { bytes: reply.bytesSent, seconds: transferMs / 1000 });
      maybePing();
      const p = profiled(executor.cutOf(sent).deviceSegments, m.segments.length);
      if (p > 0.05 && reply.timing.segmentMs > 0) ratio.cloud = ewma(ratio.cloud, reply.timing.segmentMs / p, ratio.cloudSamples++);
    },
  };
}
