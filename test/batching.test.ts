// Dynamic batching on dyno serve (runtime/cloud/worker-pool.ts): requests of one cut queued
// together run as one onnxruntime run, and each gets exactly the output it would get alone. The
// queue is filled behind a held worker (the server's beforeRun gate), never with sleeps; every
// output is compared bit for bit with the local Executor's run of the same payload alone.
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import ort from "onnxruntime-node";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { perSampleDims, type Manifest, type Variant } from "../runtime/common/manifest.js";
import { randomFloats } from "../runtime/common/random.js";
import type { Executor, Payload } from "../runtime/exec/executor.js";
import { openBundle, type NodeBundle } from "../runtime/node/bundle.js";
import { openExecutor } from "../runtime/node/executor.js";
import { batchSizes } from "../runtime/cloud/worker-pool.js";
import { FairQueue } from "../runtime/cloud/fair-queue.js";
import type { DynoServer } from "../runtime/cloud/server.js";
import type { CloudReply } from "../runtime/node/client.js";
import { cloudHarness, metricValue, rejection } from "./helpers/cloud.js";
import { compileTestBundle, fixtures } from "./fixtures.js";

const TOKEN = "batch-token";
const auth = { headers: { authorization: `Bearer ${TOKEN}` } };
const root = mkdtempSync(join(tmpdir(), "dyno-batching-"));
let bundle: NodeBundle;
let local: Executor;
const harness = cloudHarness({ bundle: () => bundle, token: TOKEN, timeoutMs: 20_000 });

const b = suite("dynamic batching on dyno serve");

b.before(async () => {
  const fx = fixtures().find((f) => f.name === "resnet")!;
  await compileTestBundle(fx.path, join(root, "bundle"), { bits: [4, 8], samples: 16, profileRuns: 1 });
  bundle = openBundle(join(root, "bundle"));
  local = await openExecutor(bundle);
});

b.after(async () => {
  for (const c of harness.clients) await c.close().catch(() => {});
  for (const s of harness.servers) await s.close();
  await local?.release();
  rmSync(root, { recursive: true, force: true });
});

/** Holds the first run that gets a worker until open() (later runs pass). */
function gate() {
  let open!: () => void;
  const held = new Promise<void>((r) => (open = r));
  let first = true;
  return {
    open,
    beforeRun: () => {
      if (!first) return;
      first = false;
      return held;
    },
  };
}

/** Inner-cut variants with a kernel codec, grouped by cut. */
function byCut(): Map<number, Variant[]> {
  const m = bundle.manifest;
  const out = new Map<number, Variant[]>();
  for (const v of m.variants) {
    const cut = m.cuts.find((c) => c.id === v.cut)!;
    if (cut.kind !== "inner" || typeof v.codec.bits !== "number") continue;
    out.set(v.cut, [...(out.get(v.cut) ?? []), v]);
  }
  return out;
}

/** One request: a variant's payloads for a seeded input, and the local cloud's output alone. */
async function request(v: Variant, seed: number): Promise<{ v: Variant; payloads: Payload[]; want: Float32Array }> {
  const dims = perSampleDims(bundle.manifest.model.inputs[0]!.shape);
  const x = new ort.Tensor("float32", randomFloats(dims.reduce((p, q) => p * q, 1), seed), dims);
  const d = await local.device(v.id, x);
  if (d.kind !== "split") throw new Error(`${v.id} is not split`);
  const c = await local.cloud(v.id, d.payloads);
  return { v, payloads: d.payloads, want: c.outputs[bundle.manifest.model.outputs[0]!.name]!.data as Float32Array };
}

const same = (a: Float32Array, b: Float32Array) => a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

/** Waits (polling the pool's own count, no sleeps of a guessed length) until `n` jobs are queued. */
async function queued(srv: DynoServer, n: number): Promise<void> {
  for (let i = 0; i < 2000 && srv.stats().pool.queued < n; i++) await new Promise((r) => setTimeout(r, 5));
  assert.is(srv.stats().pool.queued, n, "requests queued behind the held worker");
}

b("batch sizes and the fair order the batcher looks ahead in", () => {
  assert.equal(batchSizes(1), []);
  assert.equal(batchSizes(8), [2, 3, 4, 5, 6, 7, 8]);
  assert.equal(batchSizes(12), [2, 3, 4, 5, 6, 7, 8, 12]);
  assert.equal(batchSizes(32), [2, 3, 4, 5, 6, 7, 8, 16, 32]);
  const q = new FairQueue<{ client: string; n: number }>();
  for (const [client, n] of [["a", 1], ["a", 2], ["b", 3], ["c", 4], ["b", 5]] as const) q.push({ client, n });
  const order = q.order(() => true).map((x) => x.n);
  assert.equal(order, [1, 3, 4, 2, 5], "round robin over clients, FIFO within one");
  assert.equal(q.order((x) => x.n % 2 === 1).map((x) => x.n), [1, 3, 5]);
  assert.is(q.length, 5, "order() leaves the queue as it was");
  const taken: number[] = [];
  for (let x = q.take(); x; x = q.take()) taken.push(x.n);
  assert.equal(taken, order, "take() returns what order() said");
});

b("requests of one cut queued behind a busy worker run as one batch (several cuts: one batch each); every output is bit for bit its output alone", async () => {
  const g = gate();
  const srv = await harness.serve({ workers: 1, maxBatch: 8, beforeRun: g.beforeRun });
  const cuts = [...byCut()].filter(([, vs]) => vs.length >= 1).slice(0, 2);
  assert.is(cuts.length, 2, "the fixture has two inner cuts");
  const meta = (await (await fetch(`${srv.url}/v2/models/${bundle.manifest.model.name}`, auth)).json()) as { dyno: { batching: Record<string, { maxBatch: number; sizes: number[] }> } };
  for (const [cut] of cuts) assert.is(meta.dyno.batching[cut]!.maxBatch, 8, `cut ${cut} batches (metadata)`);
  // Six clients' requests on cut A (its variants in turn: 4-bit and 8-bit payloads mixed), three on cut B.
  const jobs = [
    ...(await Promise.all(Array.from({ length: 6 }, (_, i) => request(cuts[0]![1][i % cuts[0]![1].length]!, 100 + i)))),
    ...(await Promise.all(Array.from({ length: 3 }, (_, i) => request(cuts[1]![1][i % cuts[1]![1].length]!, 200 + i)))),
  ];
  const holder = request(cuts[0]![1][0]!, 99).then((r) => harness.client(srv).infer({ variant: r.v, payloads: r.payloads }));
  await queued(srv, 0);
  for (let i = 0; i < 200 && srv.stats().pool.busy < 1; i++) await new Promise((r) => setTimeout(r, 5));
  const replies = jobs.map((j) => harness.client(srv).infer({ variant: j.v, payloads: j.payloads }));
  await queued(srv, 9);
  g.open();
  await holder;
  const got = await Promise.all(replies);
  got.forEach((r: CloudReply, i) => {
    const j = jobs[i]!;
    assert.ok(same(r.outputs[0]!.data, j.want), `request ${i} (${j.v.id}): batched output differs from its output alone`);
    assert.is(r.outputs[0]!.dims[0], 1, "each request gets its own rows");
    assert.is(r.timing.rows, i < 6 ? 6 : 3, `request ${i} ran in a batch of ${i < 6 ? 6 : 3}`);
  });
  assert.is(metricValue(srv, "dyno_batch_rows_count"), 10, "every request's rows observed");
  assert.is(Number(/^dyno_batch_rows_bucket\{le="1"\} (\d+)/m.exec(srv.metrics())?.[1]), 1, "only the held request ran alone");
});

b("a bad payload in a batch fails alone; its neighbours are answered, batched", async () => {
  const g = gate();
  const srv = await harness.serve({ workers: 1, maxBatch: 8, beforeRun: g.beforeRun });
  const [, vs] = [...byCut()].find(([, vs]) => vs.some((v) => v.codec.lossless === "zstd"))!;
  const v = vs.find((x) => x.codec.lossless === "zstd")!;
  const jobs = await Promise.all([0, 1, 2, 3].map((i) => request(v, 300 + i)));
  // A payload whose header is right and whose zstd frame is not: only the worker's decode finds it.
  const bad = jobs[2]!.payloads.map((p) => {
    const bytes = p.bytes.slice();
    for (let i = bytes.length - 16; i < bytes.length; i++) bytes[i] ^= 0x5a;
    return { ...p, bytes };
  });
  const holder = harness.client(srv).infer({ variant: v, payloads: jobs[0]!.payloads });
  for (let i = 0; i < 200 && srv.stats().pool.busy < 1; i++) await new Promise((r) => setTimeout(r, 5));
  const replies = jobs.map((j, i) => harness.client(srv).infer({ variant: v, payloads: i === 2 ? bad : j.payloads }).then((r) => r, (e) => e));
  await queued(srv, 4);
  g.open();
  await holder;
  const got = await Promise.all(replies);
  const e = await rejection(Promise.reject(got[2]));
  assert.is(e.kind, "bad-request", e.message);
  for (const i of [0, 1, 3]) {
    const r = got[i] as CloudReply;
    assert.ok(same(r.outputs[0]!.data, jobs[i]!.want), `request ${i}`);
    assert.is(r.timing.rows, 3, "the three good ones ran as one batch");
  }
});

b("a request waits up to --max-queue-delay-ms for others of its cut while the worker is free; a full batch goes at once", async () => {
  const srv = await harness.serve({ workers: 1, maxBatch: 4, maxQueueDelayMs: 60_000 });
  const [, vs] = [...byCut()][0]!;
  const jobs = await Promise.all([0, 1, 2, 3].map((i) => request(vs[i % vs.length]!, 400 + i)));
  const got = await Promise.all(jobs.map((j) => harness.client(srv).infer({ variant: j.v, payloads: j.payloads })));
  got.forEach((r, i) => {
    assert.ok(same(r.outputs[0]!.data, jobs[i]!.want), `request ${i}`);
    assert.is(r.timing.rows, 4, "four requests sent at once ran as one full batch (not after the 60 s delay)");
  });
});

b("--max-batch 1 and a model whose batch dimension is fixed run every request alone, and the metadata says why", async () => {
  const off = await harness.serve({ maxBatch: 1 });
  const name = bundle.manifest.model.name;
  const cut = [...byCut()][0]![0];
  type Meta = { dyno: { batching: { maxBatch: number; why?: string } } };
  const m1 = (await (await fetch(`${off.url}/v2/models/${name}.c${cut}`, auth)).json()) as Meta;
  assert.equal(m1.dyno.batching.maxBatch, 1);
  assert.match(m1.dyno.batching.why!, /--max-batch 1/);
  // The same bundle, its manifest declaring batch 1 (as a model exported with a fixed batch does).
  const dir = join(root, "fixed");
  cpSync(join(root, "bundle"), dir, { recursive: true });
  const manifest = JSON.parse(readFileSync(join(dir, "manifest.json"), "utf8")) as Manifest;
  manifest.model.inputs[0]!.shape[0] = 1;
  for (const c of manifest.cuts) for (const t of c.tensors) t.shape[0] = 1;
  writeFileSync(join(dir, "manifest.json"), JSON.stringify(manifest));
  const fixed = await harness.serve({ bundle: openBundle(dir) });
  const m2 = (await (await fetch(`${fixed.url}/v2/models/${name}.c${cut}`, auth)).json()) as Meta;
  assert.equal(m2.dyno.batching.maxBatch, 1);
  assert.match(m2.dyno.batching.why!, /batch dimension is fixed \(1\)/);
  for (const c of Object.values(fixed.batching())) assert.is(c.maxBatch, 1);
});

b.run();
