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
// The queue is fair across clients (round robin, FIFO within a client): a free worker takes the
// oldest job of the client that was served longest ago. With one FIFO, a client holding its 16
// in-flight slots (one that never reads its replies, say) put 16 runs ahead of every other
// client's each time: their p99 rose 5-17x. Now another client waits for at most one run per
// busy client.
import { Worker } from "node:worker_threads";
import { DynoError } from "../common/errors.js";
import type { NodeBundle } from "../node/bundle.js";
import { FairQueue } from "./fair-queue.js";
import type { OutputTensor, Payload } from "../common/protocol.js";
import type { TileSet } from "../common/tiles.js";

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

/** Main thread -> worker: one run, or (profile) `runs` timed runs of the whole segment chain on a zero input. */
export type ToWorker =
  | { id: number; variant: string; buffer: ArrayBuffer; tensors: { name: string; offset: number; length: number }[] }
  | { id: number; profile: number };

/** Worker -> main thread. */
export type FromWorker =
  | { type: "ready" }
  | { type: "open-failed"; name: string; message: string }
  | { type: "done"; id: number; outputs: OutputTensor[]; decodeMs: number; segmentMs: number; edge?: EdgeRun; segments?: SegmentTimes }
  | { type: "profiled"; id: number; runs: number[][] }
  | { type: "run-failed"; id: number; payload: boolean; message: string };

/** Each segment's ms of one run, from segment `from` on (the cloud's live profile). */
export interface SegmentTimes {
  from: number;
  ms: number[];
}

export interface CloudRun {
  outputs: OutputTensor[];
  decodeMs: number;
  segmentMs: number;
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
  /** Awaited when a job has its worker, before it is sent (tests hold runs in flight with it). */
  beforeRun?: (variant: string) => Promise<void> | void;
  /** A worker died and was replaced, or could not be. */
  log?: (line: string) => void;
  edge?: EdgeConfig;
}

export interface PoolStats {
  workers: number;
  /** Jobs holding a worker (in beforeRun or running). */
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
  job: PendingJob | null;
}

interface PendingJob {
  id: number;
  variant: string;
  payloads: Payload[];
  /** Who the job is for (the server's per-address key): the unit of fairness. */
  client: string;
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

  private constructor(
    private readonly init: WorkerInit,
    private readonly options: PoolOptions,
    private readonly slots: Slot[],
  ) {
    for (const slot of slots) this.watch(slot);
  }

  static async open(bundle: NodeBundle, options: PoolOptions): Promise<WorkerPool> {
    if (!Number.isInteger(options.workers) || options.workers < 1) throw new DynoError(`worker pool: workers must be a positive integer, got ${options.workers}`);
    const init: WorkerInit = { dir: bundle.dir, threads: options.threads, edge: options.edge };
    const started = await Promise.allSettled(Array.from({ length: options.workers }, () => start(init)));
    const failed = started.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed) {
      await Promise.all(started.map((r) => (r.status === "fulfilled" ? r.value.terminate() : undefined)));
      throw failed.reason;
    }
    const workers = started.map((r) => (r as PromiseFulfilledResult<Worker>).value);
    return new WorkerPool(init, options, workers.map((worker) => ({ worker, job: null })));
  }

  stats(): PoolStats {
    return { workers: this.slots.length, busy: this.slots.filter((s) => s.job).length, queued: this.queue.length, completed: this.completed };
  }

  submit(variant: string, payloads: Payload[], client = ""): Job {
    let job!: PendingJob;
    const result = new Promise<CloudRun>((resolve, reject) => {
      job = { id: this.nextId++, variant, payloads, client, startedAt: null, resolve, reject };
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
    const slot = this.slots.find((s) => !s.job);
    if (!slot) return Promise.reject(new DynoError("worker pool: no idle worker to profile on"));
    const id = -this.nextId++;
    return new Promise((resolve, reject) => {
      const onMessage = (m: FromWorker) => {
        if (!("id" in m) || m.id !== id) return;
        slot.worker.off("message", onMessage);
        if (m.type === "profiled") resolve(m.runs);
        else if (m.type === "run-failed") reject(new DynoError(`profiling the cloud segments failed: ${m.message}`));
      };
      slot.worker.on("message", onMessage);
      slot.worker.postMessage({ id, profile: runs } satisfies ToWorker);
    });
  }

  /** Terminates every worker; call after the last job has come back. */
  async close(): Promise<void> {
    this.closed = true;
    for (const job of this.queue.drain()) job.reject(new DynoError("the worker pool is closed"));
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }

  private dispatch(): void {
    for (const slot of this.slots) {
      if (this.queue.length === 0) return;
      if (slot.job) continue;
      const job = this.queue.take()!;
      slot.job = job;
      job.startedAt = performance.now();
      void this.send(slot, job);
    }
  }

  private async send(slot: Slot, job: PendingJob): Promise<void> {
    try {
      await this.options.beforeRun?.(job.variant);
    } catch (e) {
      this.finish(slot, job, () => job.reject(e as Error));
      return;
    }
    // One buffer for every payload, transferred: the request's own bytes may be a view into a
    // pooled socket buffer, which must not be detached.
    const total = job.payloads.reduce((n, p) => n + p.bytes.length, 0);
    const all = new Uint8Array(total);
    const tensors: Extract<ToWorker, { tensors: unknown }>["tensors"] = [];
    let offset = 0;
    for (const p of job.payloads) {
      all.set(p.bytes, offset);
      tensors.push({ name: p.tensor, offset, length: p.bytes.length });
      offset += p.bytes.length;
    }
    const message: ToWorker = { id: job.id, variant: job.variant, buffer: all.buffer, tensors };
    slot.worker.postMessage(message, [all.buffer]);
  }

  private finish(slot: Slot, job: PendingJob, settle: () => void): void {
    if (slot.job !== job) return;
    slot.job = null;
    this.completed++;
    settle();
    this.dispatch();
  }

  private watch(slot: Slot): void {
    const { worker } = slot;
    worker.on("message", (m: FromWorker) => {
      const job = slot.job;
      if (!job || !("id" in m) || m.id !== job.id) return;
      if (m.type === "done") this.finish(slot, job, () => job.resolve({ outputs: m.outputs, decodeMs: m.decodeMs, segmentMs: m.segmentMs, edge: m.edge, segments: m.segments }));
      else if (m.type === "run-failed") this.finish(slot, job, () => job.reject(m.payload ? new WorkerPayloadError(m.message) : new Error(m.message)));
    });
    const died = (why: string) => {
      if (this.closed) return;
      worker.removeAllListeners();
      const job = slot.job;
      if (job) this.finish(slot, job, () => job.reject(new Error(`cloud worker died: ${why}`)));
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
      const fresh: Slot = { worker, job: null };
      this.slots.push(fresh);
      this.watch(fresh);
      this.dispatch();
    }, (e: Error) => {
      this.options.log?.(`dyno serve: cannot replace a cloud worker: ${e.message}`);
      if (this.slots.length === 0) for (const job of this.queue.drain()) job.reject(new Error(`no cloud worker left: ${e.message}`));
    });
  }
}
