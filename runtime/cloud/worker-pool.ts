// The cloud worker pool: `dyno serve` runs inference in worker threads, not on its main thread.
//
//   main thread                                   worker i (runtime/cloud/cloud-worker.ts)
//   HTTP / WS, auth, admission, validation        its own Executor: every segment session
//   submit(variant, payloads, client) ──► fair queue ──► idle worker? ──► beforeRun ──► postMessage
//                                                  (payloads copied into one ArrayBuffer, transferred)
//   resolve(outputs) ◄──────────────────────────── outputs (float32 buffers, transferred)
//
// Why: onnxruntime-node runs a session synchronously on the thread that calls run(), so on the
// main thread one long run held every health check, timer and other client behind it (health p50
// 1.2 -> 21 ms under load; a 20 ms deadline answered after 52-1,148 ms). In a pool the main thread
// only moves bytes, so deadlines fire on time and health checks answer while workers compute.
//
// Each worker opens the bundle's sessions once, so memory holds the weights once per worker; each
// worker runs one request at a time (one run at a time per session is onnxruntime's safe use), and
// `threads` intra-op threads parallelise inside a run. The queue is bounded by admission (the
// server never submits more than --max-inflight jobs). A job still queued can be cancelled (its
// deadline passed); a running one cannot: its worker is busy until onnxruntime returns, and the
// server holds its admission slot until then. A worker that dies fails its job and is replaced.
//
// Dynamic batching (--max-batch, --max-queue-delay-ms, --max-batch-bytes): a free worker takes
// the fair queue's next job and, behind it in fair order, the queued jobs of the same cut, up to
// the cut's batch size; the worker decodes each on its own, stacks their cut tensors along the
// batch dimension and runs the cloud segments once (cloud-worker.ts runBatch). A cut batches only
// when its batch dimension is free and, at start-up, every segment after it gave each batch
// size's rows bit for bit as run one at a time (checkBatching, seeded inputs; sizes 2..8 and
// powers of two); a batch is one of those sizes. Memory is bounded by --max-inflight (the queue)
// and --max-batch-bytes (a batch's decoded tensors). With no delay, batches form only from what
// queued while the workers were busy, so a lone device never waits for one.
//
// The queue is fair across clients (round robin, FIFO within a client): a free worker takes the
// oldest job of the client that was served longest ago. With one FIFO, a client holding its 16
// in-flight slots (one that never reads its replies, say) put 16 runs ahead of every other
// client's each time: their p99 rose 5-17x. Now another client waits for at most one run per
// busy client.
import { Worker } from "node:worker_threads";
import { DynoError } from "../common/errors.js";
import type { NodeBundle } from "../node/bundle.js";
import { FairQueue } from "./fair-queue.js";
import type { OutputTensor, Payload, ValidRequest } from "../common/protocol.js";
import type { TileSet } from "../common/tiles.js";
import type { Manifest } from "../common/manifest.js";

/** What a worker is started with (workerData). */
export interface WorkerInit {
  dir: string;
  threads: number;
  /** The edge role (`dyno serve --role edge`): run to the forward cut, then forward to the cloud. */
  edge?: EdgeConfig;
}

/** An edge tier between devices and the cloud (docs/d3.md). */
export interface EdgeConfig {
  /** The cloud server: http(s)://host:port (spoken to over WebSocket) or ws(s)://host:port. */
  cloud: string;
  token?: string;
  /** The variant the edge sends to the cloud: its cut is the edge's end, its codec the backbone's; "auto": planned per request (`auto`). */
  forward: string;
  /** With forward "auto": the profiles the edge plans from (it measures its own speed, the cloud's and the backbone's). */
  auto?: EdgeAutoConfig;
  /** Per request to the cloud; past it the edge finishes the request itself. */
  timeoutMs?: number;
  /** Tiles of the edge's span, scattered to edge-worker processes (`--edge-workers`). */
  tiles?: EdgeTilesConfig;
  /** Benchmarks: emulate an edge this many times slower than this machine (each compute step is stretched). */
  slowdown?: number;
}

/**
 * `--forward auto`: D3's partial re-adjustment at the edge's own boundary. For each request (its
 * device variant fixed) the edge plans its forward variant with the three-tier planner from the
 * bundle's profiled segment times scaled by what it measures: its own segment runs, the cloud's
 * reported times, and the backbone's bandwidth and RTT (its transfers, and a probe when it has not
 * sent for a while). It moves only when the plan gains over 10%.
 */
export interface EdgeAutoConfig {
  /** Profiled ms per segment (the bundle's, usually the compile machine's). */
  segmentMs: number[];
  /** Profiled encode + decode ms per variant id. */
  codecMs: Record<string, number>;
  /** The backbone before any measurement. */
  prior: { bandwidthMbps: number; rttMs: number };
}

export interface EdgeTilesConfig {
  set: TileSet;
  /** The edge workers: http://host:port each, holding `set` (`dyno serve --role edge-worker`). */
  workers: string[];
  /** Sent to the workers as a bearer token (the edge's own --token-file). */
  token?: string;
  /** Per tile request; past it (or on any failure) the tile goes to another worker. Default 5000. */
  timeoutMs?: number;
  /** A worker that failed is not sent tiles for this long, doubling with each failure in a row up to 32x (then tried again). Default 2000. */
  retryMs?: number;
  /** The workers' largest batch (their default 64); a larger request runs untiled on the edge. */
  maxBatch?: number;
}

/** How the edge ran its tiled span for one request. */
export interface EdgeTileRun {
  /** The worker that answered each tile (in the set's order); empty when the span ran untiled. */
  workers: string[];
  /** Tile requests that failed (each retried on another worker), by worker. */
  failures: string[];
  /** No worker answered some tile: the edge ran the span untiled itself. */
  untiled: boolean;
  /** Where the span's time went, ms: the parts before and after the run, cutting the tiles' inputs, scatter to gather (all tiles), stitching; and the slowest tile's run and queue wait as its worker reported them. */
  timing?: { beforeMs: number; sliceMs: number; scatterMs: number; stitchMs: number; afterMs: number; slowestRunMs: number; slowestQueueMs: number };
}

/** What the edge did with one request. */
export interface EdgeRun {
  /** The variant sent to the cloud ("" when the edge finished the request itself). */
  forwarded: string;
  /** With --forward auto, when the edge finished the request because its plan said so (not a failure). */
  finished?: boolean;
  /** Bytes sent to the cloud (edge -> cloud, the backbone). */
  backboneBytes: number;
  /** The cloud failed (down, timed out, refused) and the edge ran the rest of the model. */
  fallback: boolean;
  /** Set when the request went through the edge's tiled span. */
  tiles?: EdgeTileRun;
}

/** One request of a run: its variant and its payloads' places in the run's buffer. */
export interface RunJob {
  variant: string;
  tensors: { name: string; offset: number; length: number }[];
}

/**
 * Main thread -> worker: one run (one request, or several of one cut batched into one onnxruntime
 * run); (profile) `runs` timed runs of the whole segment chain on a zero input; (check) the
 * batching check of every segment at each of `sizes` (checkBatching).
 */
export type ToWorker =
  | { id: number; jobs: RunJob[]; buffer: ArrayBuffer }
  | { id: number; profile: number }
  | { id: number; check: number[] };

/** A batched run's answer for one of its requests. */
export type BatchResult = { outputs: OutputTensor[]; decodeMs: number; /** Its own run's, when the batch ran one by one. */ segmentMs?: number } | { payload: boolean; message: string };

/** Worker -> main thread. */
export type FromWorker =
  | { type: "ready" }
  | { type: "open-failed"; name: string; message: string }
  | { type: "done"; id: number; outputs: OutputTensor[]; decodeMs: number; segmentMs: number; edge?: EdgeRun; segments?: SegmentTimes }
  | { type: "batch-done"; id: number; results: BatchResult[]; segmentMs: number; segments?: SegmentTimes; rows: number }
  | { type: "profiled"; id: number; runs: number[][] }
  | { type: "checked"; id: number; segments: SegmentBatching[] }
  | { type: "run-failed"; id: number; payload: boolean; message: string };

/** What the start-up check found for one segment: the batch sizes whose rows came out bit for bit as run one by one, and why not more. */
export interface SegmentBatching {
  sizes: number[];
  why?: string;
}

/** Each segment's ms of one run, from segment `from` on (the cloud's live profile). */
export interface SegmentTimes {
  from: number;
  ms: number[];
}

export interface CloudRun {
  outputs: OutputTensor[];
  decodeMs: number;
  /** The segments' ms of the run this request was in (a batched run: the whole batch's). */
  segmentMs: number;
  /** Rows in the run (1 unbatched; a batch: every request's rows). */
  rows: number;
  edge?: EdgeRun;
  segments?: SegmentTimes;
}

/** A run the worker refused for its payload (a codec or shape problem): the request's fault. */
export class WorkerPayloadError extends DynoError {
  override name = "WorkerPayloadError";
}

export interface PoolOptions {
  workers: number;
  /** onnxruntime intra-op threads per session, in each worker. */
  threads: number;
  /** Dynamic batching (cloud role only); absent or maxBatch 1: every request runs alone. */
  batch?: BatchOptions;
  /** Awaited when a job has its worker, before it is sent (tests hold runs in flight with it). */
  beforeRun?: (variant: string) => Promise<void> | void;
  /** A worker died and was replaced, or could not be. */
  log?: (line: string) => void;
  edge?: EdgeConfig;
}

/**
 * Dynamic batching: requests for the same cut queued together run as one onnxruntime run of the
 * cloud segments, their cut tensors stacked along the batch dimension.
 */
export interface BatchOptions {
  /** Rows in one run at most (a request's own batch counts its rows). */
  maxBatch: number;
  /** How long a request may wait for others of its cut when a worker is free (0: batch what is already queued). */
  maxQueueDelayMs: number;
  /** The decoded cut tensors of one batch, bytes at most (float32): bounds a worker's memory. */
  maxBatchBytes: number;
}

/** How requests of one cut run: batched at these sizes, or alone and why. */
export interface CutBatching {
  /** The largest batch in rows (1: unbatched). */
  maxBatch: number;
  /** Batch sizes checked bit for bit at start-up (runs are made of these sizes only). */
  sizes: number[];
  /** Why not batched, or not beyond maxBatch. */
  why?: string;
}

export interface PoolStats {
  workers: number;
  /** Runs holding a worker (in beforeRun or running); a batch is one. */
  busy: number;
  queued: number;
  /** Runs that have come back from a worker, ok or failed. */
  completed: number;
}

/** A submitted run. */
export interface Job {
  /** Settles when the run has come back (or the job was cancelled while queued). */
  readonly result: Promise<CloudRun>;
  /** When it got its worker (performance.now()), or null while queued. */
  readonly startedAt: number | null;
  /** Removes the job if it is still queued (true); false once it has a worker. */
  cancel(): boolean;
}

interface Slot {
  worker: Worker;
  /** The run it is busy with: its id and requests (one, or a batch). */
  run: { id: number; jobs: PendingJob[] } | null;
}

interface PendingJob {
  id: number;
  variant: string;
  payloads: Payload[];
  /** Who the job is for (the server's per-address key): the unit of fairness. */
  client: string;
  /** Its variant's cut (the batching key) and its rows (the tensors' batch dimension). */
  cut: number;
  rows: number;
  queuedAt: number;
  startedAt: number | null;
  resolve(r: CloudRun): void;
  reject(e: Error): void;
}

const here = import.meta.url;

/** Source checkouts run the TypeScript entry through tsx; built ones run dist/runtime/cloud-worker.js. */
function spawn(init: WorkerInit): Worker {
  if (here.endsWith(".ts")) {
    const entry = new URL("./cloud-worker.ts", here).href;
    const tsx = import.meta.resolve("tsx/esm/api");
    const boot = `import(${JSON.stringify(tsx)}).then((t) => { t.register(); return import(${JSON.stringify(entry)}); })`;
    return new Worker(boot, { eval: true, workerData: init });
  }
  return new Worker(new URL("./cloud-worker.js", here), { workerData: init });
}

/** Starts a worker and waits until its sessions are open; rejects with the worker's own error. */
function start(init: WorkerInit): Promise<Worker> {
  const worker = spawn(init);
  return new Promise((resolve, reject) => {
    const fail = (e: Error) => {
      cleanup();
      void worker.terminate();
      reject(e);
    };
    const onMessage = (m: FromWorker) => {
      if (m.type === "ready") {
        cleanup();
        resolve(worker);
      } else if (m.type === "open-failed") fail(new DynoError(m.message));
    };
    const onError = (e: Error) => fail(new DynoError(`cloud worker failed to start: ${e.message}`));
    const onExit = (code: number) => fail(new DynoError(`cloud worker exited (code ${code}) before its sessions were open`));
    const cleanup = () => worker.off("message", onMessage).off("error", onError).off("exit", onExit);
    worker.on("message", onMessage).on("error", onError).on("exit", onExit);
  });
}

export class WorkerPool {
  private readonly queue = new FairQueue<PendingJob>();
  private nextId = 1;
  private completed = 0;
  private closed = false;
  /** Per cut id: how its requests run (all unbatched until checkBatching). */
  private batching = new Map<number, CutBatching & { cap: number }>();
  private holdTimer: ReturnType<typeof setTimeout> | null = null;
  private holdUntil = Infinity;

  private constructor(
    private readonly init: WorkerInit,
    private readonly options: PoolOptions,
    private readonly manifest: Manifest,
    private readonly slots: Slot[],
  ) {
    for (const slot of slots) this.watch(slot);
  }

  static async open(bundle: NodeBundle, options: PoolOptions): Promise<WorkerPool> {
    if (!Number.isInteger(options.workers) || options.workers < 1) throw new DynoError(`worker pool: workers must be a positive integer, got ${options.workers}`);
    const b = options.batch;
    if (b && (!Number.isInteger(b.maxBatch) || b.maxBatch < 1 || b.maxBatch > MAX_BATCH)) throw new DynoError(`worker pool: maxBatch must be an integer in 1..${MAX_BATCH}, got ${b.maxBatch}`);
    if (b && (!Number.isFinite(b.maxQueueDelayMs) || b.maxQueueDelayMs < 0)) throw new DynoError(`worker pool: maxQueueDelayMs must be >= 0, got ${b.maxQueueDelayMs}`);
    const init: WorkerInit = { dir: bundle.dir, threads: options.threads, edge: options.edge };
    const started = await Promise.allSettled(Array.from({ length: options.workers }, () => start(init)));
    const failed = started.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed) {
      await Promise.all(started.map((r) => (r.status === "fulfilled" ? r.value.terminate() : undefined)));
      throw failed.reason;
    }
    const workers = started.map((r) => (r as PromiseFulfilledResult<Worker>).value);
    return new WorkerPool(init, options, bundle.manifest, workers.map((worker) => ({ worker, run: null })));
  }

  stats(): PoolStats {
    return { workers: this.slots.length, busy: this.slots.filter((s) => s.run).length, queued: this.queue.length, completed: this.completed };
  }

  /** How each cut's requests run (cut id -> batching), as checked at start-up. */
  cutBatching(): Record<string, CutBatching> {
    return Object.fromEntries([...this.batching].map(([id, { maxBatch, sizes, why }]) => [id, { maxBatch, sizes, ...(why ? { why } : {}) }]));
  }

  /** Queues a checked request (validateRequest) for `client`. */
  submit(request: Pick<ValidRequest, "variant" | "payloads" | "rows">, client = ""): Job {
    let job!: PendingJob;
    const { variant, payloads, rows } = request;
    const result = new Promise<CloudRun>((resolve, reject) => {
      job = { id: this.nextId++, variant: variant.id, payloads, client, cut: variant.cut, rows, queuedAt: performance.now(), startedAt: null, resolve, reject };
    });
    if (this.closed) job.reject(new DynoError("the worker pool is closed"));
    else this.queue.push(job);
    this.dispatch();
    return {
      result,
      get startedAt() {
        return job.startedAt;
      },
      cancel: () => {
        if (!this.queue.remove(job)) return false;
        job.reject(new DynoError("cancelled while queued"));
        return true;
      },
    };
  }

  /**
   * Times `runs` runs of the whole segment chain (after one warm-up) on one idle worker, before
   * the pool takes requests: ms per run per segment. Rejects when the worker cannot.
   */
  profile(runs: number): Promise<number[][]> {
    return this.ask({ profile: runs }, "profiling the cloud segments").then((m) => (m as Extract<FromWorker, { type: "profiled" }>).runs);
  }

  /** Terminates every worker; call after the last job has come back. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.holdTimer) clearTimeout(this.holdTimer);
    for (const job of this.queue.drain()) job.reject(new DynoError("the worker pool is closed"));
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }

  /** Sends one start-up message to an idle worker and waits for its answer. */
  private ask(message: { profile: number } | { check: number[] }, what: string): Promise<FromWorker> {
    const slot = this.slots.find((s) => !s.run);
    if (!slot) return Promise.reject(new DynoError(`worker pool: no idle worker for ${what}`));
    const id = -this.nextId++;
    return new Promise((resolve, reject) => {
      const onMessage = (m: FromWorker) => {
        if (!("id" in m) || m.id !== id) return;
        slot.worker.off("message", onMessage);
        if (m.type === "run-failed") reject(new DynoError(`${what} failed: ${m.message}`));
        else resolve(m);
      };
      slot.worker.on("message", onMessage);
      slot.worker.postMessage({ id, ...message } satisfies ToWorker);
    });
  }

  /**
   * Which cuts batch, and at which sizes. A cut batches when its tensors' batch dimension is not
   * fixed and every segment after it gave, at each size, rows bit for bit equal to the same rows
   * run one at a time (checkBatching, on seeded inputs); a batch is made of those sizes only.
   * Until it is called every request runs alone; the server calls it after its profile runs, so
   * the published profile is timed on sessions that ran only the profile's warm-up, as before.
   */
  async planBatching(): Promise<void> {
    const m = this.manifest;
    const b = this.options.batch;
    const crossing = m.cuts.filter((c) => c.kind !== "output");
    const off = (why: string) => {
      for (const c of crossing) this.batching.set(c.id, { maxBatch: 1, sizes: [1], why, cap: 1 });
    };
    if (!b || b.maxBatch === 1) return off("batching is off (--max-batch 1)");
    if (this.options.edge) return off("the edge role runs each request alone");
    const fixed = m.model.inputs[0]!.shape[0];
    if (typeof fixed === "number") return off(`the model's batch dimension is fixed (${fixed})`);
    const checked = ((await this.ask({ check: batchSizes(b.maxBatch) }, "checking the cloud segments' batching")) as Extract<FromWorker, { type: "checked" }>).segments;
    for (const c of crossing) {
      let sizes = [1, ...batchSizes(b.maxBatch)];
      let why: string | undefined;
      const fixedCut = c.tensors.find((t) => typeof t.shape[0] === "number");
      if (fixedCut) why = `cut tensor "${fixedCut.name}" has a fixed batch dimension (${fixedCut.shape[0]})`;
      for (let s = c.deviceSegments; s < m.segments.length && !why; s++) {
        const ok = new Set(checked[s]!.sizes);
        const kept = sizes.filter((n) => n === 1 || ok.has(n));
        if (kept.length < sizes.length) why = checked[s]!.why;
        sizes = kept;
      }
      if (fixedCut) sizes = [1];
      const rowBytes = 4 * c.tensors.reduce((a, t) => a + t.shape.slice(1).reduce<number>((x, d) => x * (typeof d === "number" ? d : 1), 1), 0);
      const byBytes = Math.max(1, Math.floor(b.maxBatchBytes / Math.max(1, rowBytes)));
      const cap = Math.min(sizes.at(-1)!, byBytes);
      if (cap < sizes.at(-1)! && !why) why = `--max-batch-bytes ${b.maxBatchBytes} holds ${byBytes} rows of this cut (${rowBytes} bytes each)`;
      sizes = sizes.filter((n) => n <= cap);
      this.batching.set(c.id, { maxBatch: sizes.at(-1)!, sizes, why, cap });
    }
  }

  private dispatch(): void {
    for (const slot of this.slots) {
      if (this.queue.length === 0) return;
      if (slot.run) continue;
      const jobs = this.nextRun();
      if (!jobs) return;
      const now = performance.now();
      for (const job of jobs) job.startedAt = now;
      slot.run = { id: this.nextId++, jobs };
      void this.send(slot, slot.run);
    }
  }

  /**
   * The next run: the fair queue's next request, with the requests of its cut queued behind it
   * (in fair order) up to the cut's batch size; a batch is one of the sizes checked at start-up.
   * With a queue delay, a cut whose batch is not full waits until its oldest request has waited
   * that long (other cuts' requests go meanwhile); null when nothing may run now.
   */
  private nextRun(): PendingJob[] | null {
    const now = performance.now();
    const delay = this.options.batch?.maxQueueDelayMs ?? 0;
    const held = new Set<number>();
    let until = Infinity;
    for (;;) {
      const head = this.queue.order((j) => !held.has(j.cut), 1)[0];
      if (!head) break;
      const plan = this.batching.get(head.cut);
      let jobs = [head];
      if (plan && plan.cap > 1 && head.rows < plan.cap) {
        let rows = 0;
        jobs = [];
        for (const j of this.queue.order((x) => x.cut === head.cut)) {
          if (rows + j.rows > plan.cap) continue;
          jobs.push(j);
          rows += j.rows;
        }
        while (jobs.length > 1 && !plan.sizes.includes(rows)) rows -= jobs.pop()!.rows;
        if (delay > 0 && rows < plan.cap && now - head.queuedAt < delay) {
          held.add(head.cut);
          until = Math.min(until, head.queuedAt + delay);
          continue;
        }
      }
      for (const j of jobs) this.queue.take((x) => x === j);
      return jobs;
    }
    if (until < Infinity && until < this.holdUntil) {
      if (this.holdTimer) clearTimeout(this.holdTimer);
      this.holdUntil = until;
      this.holdTimer = setTimeout(() => {
        this.holdTimer = null;
        this.holdUntil = Infinity;
        this.dispatch();
      }, Math.max(0, until - now));
    }
    return null;
  }

  private async send(slot: Slot, run: NonNullable<Slot["run"]>): Promise<void> {
    try {
      for (const job of run.jobs) await this.options.beforeRun?.(job.variant);
    } catch (e) {
      this.finish(slot, run, (job) => job.reject(e as Error));
      return;
    }
    // One buffer for every payload, transferred: the request's own bytes may be a view into a
    // pooled socket buffer, which must not be detached.
    const total = run.jobs.reduce((n, j) => n + j.payloads.reduce((k, p) => k + p.bytes.length, 0), 0);
    const all = new Uint8Array(total);
    let offset = 0;
    const jobs: RunJob[] = run.jobs.map((job) => ({
      variant: job.variant,
      tensors: job.payloads.map((p) => {
        all.set(p.bytes, offset);
        offset += p.bytes.length;
        return { name: p.tensor, offset: offset - p.bytes.length, length: p.bytes.length };
      }),
    }));
    slot.worker.postMessage({ id: run.id, jobs, buffer: all.buffer } satisfies ToWorker, [all.buffer]);
  }

  private finish(slot: Slot, run: NonNullable<Slot["run"]>, settle: (job: PendingJob, i: number) => void): void {
    if (slot.run !== run) return;
    slot.run = null;
    this.completed += run.jobs.length;
    run.jobs.forEach(settle);
    this.dispatch();
  }

  private watch(slot: Slot): void {
    const { worker } = slot;
    worker.on("message", (m: FromWorker) => {
      const run = slot.run;
      if (!run || !("id" in m) || m.id !== run.id) return;
      if (m.type === "done") this.finish(slot, run, (job) => job.resolve({ outputs: m.outputs, decodeMs: m.decodeMs, segmentMs: m.segmentMs, rows: 1, edge: m.edge, segments: m.segments }));
      else if (m.type === "batch-done") {
        this.finish(slot, run, (job, i) => {
          const r = m.results[i]!;
          if ("outputs" in r) job.resolve({ outputs: r.outputs, decodeMs: r.decodeMs, segmentMs: r.segmentMs ?? m.segmentMs, rows: m.rows, segments: m.segments });
          else job.reject(r.payload ? new WorkerPayloadError(r.message) : new Error(r.message));
        });
      } else if (m.type === "run-failed") this.finish(slot, run, (job) => job.reject(m.payload ? new WorkerPayloadError(m.message) : new Error(m.message)));
    });
    const died = (why: string) => {
      if (this.closed) return;
      worker.removeAllListeners();
      const run = slot.run;
      if (run) this.finish(slot, run, (job) => job.reject(new Error(`cloud worker died: ${why}`)));
      this.replace(slot, why);
    };
    worker.on("error", (e) => died(e.message));
    worker.on("exit", (code) => died(`exited with code ${code}`));
  }

  /** A dead worker's slot gets a new worker; until it is ready the slot takes no job. */
  private replace(slot: Slot, why: string): void {
    const i = this.slots.indexOf(slot);
    if (i < 0) return;
    this.slots.splice(i, 1);
    this.options.log?.(`dyno serve: a cloud worker died (${why}); starting another`);
    start(this.init).then((worker) => {
      if (this.closed) return void worker.terminate();
      const fresh: Slot = { worker, run: null };
      this.slots.push(fresh);
      this.watch(fresh);
      this.dispatch();
    }, (e: Error) => {
      this.options.log?.(`dyno serve: cannot replace a cloud worker: ${e.message}`);
      if (this.slots.length === 0) for (const job of this.queue.drain()) job.reject(new Error(`no cloud worker left: ${e.message}`));
    });
  }
}

/** --max-batch's ceiling. */
export const MAX_BATCH = 64;

/** The batch sizes checked at start-up for a largest batch `max`: every size to 8, then powers of two, and max itself. */
export function batchSizes(max: number): number[] {
  const out = new Set<number>();
  for (let n = 2; n <= Math.min(8, max); n++) out.add(n);
  for (let n = 16; n < max; n *= 2) out.add(n);
  if (max > 1) out.add(max);
  return [...out].sort((a, b) => a - b);
}
