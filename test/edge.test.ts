// The edge tier (`dyno serve --role edge`, docs/d3.md): a device sends its cut to the edge, the
// edge runs on to the forward variant's cut, packs with its codec and forwards to the cloud.
// Every answer equals the same chain run here; killing the cloud mid-stream makes the edge finish
// the model itself, killing the edge makes the device finish: nothing lost, nothing wrong.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import ort from "onnxruntime-node";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { perSampleDims, type Variant } from "../runtime/common/manifest.js";
import { openBundle, type NodeBundle } from "../runtime/node/bundle.js";
import { openExecutor } from "../runtime/node/executor.js";
import type { Executor } from "../runtime/exec/executor.js";
import { createDevice, type Inference } from "../runtime/node/device.js";
import { startServer } from "../runtime/cloud/server.js";
import type { Calibration } from "../compiler/bundler/calibration.js";
import { compileTestBundle, fixtures } from "./fixtures.js";
import { answered, metricValue } from "./helpers/cloud.js";
import { until } from "./helpers/waits.js";
import { startCli, type CliProcess } from "./helpers/processes.js";
import { buildEdgeTiles } from "../cli/edge-tiles.js";
import { startTileWorker } from "../runtime/cloud/tile-worker.js";
import { startLink } from "../runtime/emu/link.js";
import { TILE_BATCH_HEADER, TILE_SET_HEADER, tileValues } from "../runtime/common/tiles.js";

const dir = mkdtempSync(join(tmpdir(), "dyno-edge-"));
let bundle: NodeBundle;
let cal: Calibration;
let local: Executor;
let first: Variant; // what the device sends (an early cut)
let forward: Variant; // what the edge sends (a later cut)
const out = () => bundle.manifest.model.outputs[0]!.name;

/** The device -> edge -> cloud chain run here, in one process: the reference for exactness. */
async function chain(x: Float32Array, fwd: Variant = forward, from: Variant = first): Promise<number[]> {
  const t = new ort.Tensor("float32", x, perSampleDims(bundle.manifest.model.inputs[0]!.shape));
  const d = await local.device(from.id, t);
  if (d.kind !== "split") throw new Error("expected a split variant");
  const pool = await local.decode(from, d.payloads);
  await local.runSegments(local.cutOf(from).deviceSegments, local.cutOf(fwd).deviceSegments, pool);
  const r = await local.cloud(fwd.id, await local.encodeCut(fwd, pool));
  return Array.from(r.outputs[out()]!.data as Float32Array);
}

const edge = suite("edge tier");

edge.before(async () => {
  ({ calibration: cal } = await compileTestBundle(fixtures()[0]!.path, join(dir, "bundle"), { bits: [4, 8], tiers: ["device", "edge", "cloud"] }));
  bundle = openBundle(join(dir, "bundle"));
  local = await openExecutor(bundle);
  const m = bundle.manifest;
  const inner = m.cuts.filter((c) => c.kind === "inner");
  assert.ok(inner.length >= 2, "the fixture bundle has two inner cuts");
  first = m.variants.find((v) => v.cut === inner[0]!.id && v.codec.bits === 8)!;
  forward = m.variants.find((v) => v.cut === inner[inner.length - 1]!.id && v.codec.bits === 4)!;
});

edge.after(async () => {
  await local.release();
  rmSync(dir, { recursive: true, force: true });
});

edge("device -> edge -> cloud: the edge runs to the forward cut and forwards; answers equal the chain run here; a cloud killed mid-stream leaves the edge to finish", async () => {
  const cloud = await startServer({ bundle, port: 0, workers: 1, threads: 1 });
  const mid = await startServer({ bundle, port: 0, workers: 1, threads: 1, edge: { cloud: cloud.url, forward: forward.id, timeoutMs: 2000 } });
  const device = await createDevice({ bundle, cloud: mid.url, variant: first.id, bandwidthProbe: false, profile: false });
  try {
    const results: Promise<Inference>[] = [];
    for (let i = 0; i < 12; i++) {
      results.push(device.infer(cal.batch(i % cal.count, 1)));
      if (i === 5) {
        await until("the cloud to have answered some", () => answered(cloud, "ok") >= 3);
        await cloud.close();
      }
    }
    const done = await Promise.all(results);
    for (const [i, r] of done.entries()) {
      assert.is(r.kind, "split", `#${i} went through the edge`);
      assert.not.ok(r.fellBack, `#${i} did not fall back on the device`);
      assert.equal(Array.from(r.outputs[out()]!.data), await chain(cal.batch(i % cal.count, 1)), `#${i}: the edge's answer equals the chain run here`);
    }
    const forwarded = metricValue(mid, "dyno_edge_forwarded_total");
    const fallbacks = metricValue(mid, "dyno_edge_fallbacks_total");
    assert.ok(forwarded >= 3, `forwarded ${forwarded}`);
    assert.ok(fallbacks >= 1, `the edge finished ${fallbacks} itself after the cloud went`);
    assert.is(forwarded + fallbacks, 12, "every request was forwarded or finished on the edge");
    assert.ok(metricValue(mid, "dyno_edge_backbone_bytes_total") > 0);
    assert.match(JSON.stringify(await (await fetch(`${mid.url}/v2`)).json()), /"role":"edge"/);
  } finally {
    await device.close();
    await mid.close();
    await cloud.close().catch(() => {});
  }
});

edge("an edge killed mid-stream: the device finishes what the edge did not answer; nothing lost", async () => {
  const cloud = await startServer({ bundle, port: 0, workers: 1, threads: 1 });
  const mid = await startServer({ bundle, port: 0, workers: 1, threads: 1, edge: { cloud: cloud.url, forward: forward.id } });
  const device = await createDevice({ bundle, cloud: mid.url, variant: first.id, bandwidthProbe: false, profile: false, timeoutMs: 2000 });
  try {
    const done: Inference[] = [];
    for (let i = 0; i < 10; i++) {
      if (i === 4) await mid.close();
      done.push(await device.infer(cal.batch(i, 1)));
    }
    assert.is(done.length, 10);
    for (const [i, r] of done.entries()) {
      const got = Array.from(r.outputs[out()]!.data);
      if (i < 4) assert.equal(got, await chain(cal.batch(i, 1)), `#${i} via the edge`);
      else {
        assert.ok(r.fellBack, `#${i} ended on the device (${r.kind}, ${r.fallback ?? "no fallback"})`);
        // The device finishes the variant's cloud part from its own payloads: the cloud's answer.
        const t = new ort.Tensor("float32", cal.batch(i, 1), perSampleDims(bundle.manifest.model.inputs[0]!.shape));
        const d = await local.device(first.id, t);
        if (d.kind !== "split") throw new Error("expected a split variant");
        assert.equal(got, Array.from((await local.cloud(first.id, d.payloads)).outputs[out()]!.data as Float32Array), `#${i} equals the variant finished here`);
      }
    }
  } finally {
    await device.close();
    await mid.close().catch(() => {});
    await cloud.close();
  }
});

edge("tiles on two edge-worker processes: scattered and stitched, answers equal the untiled chain; a worker killed mid-stream, then the other: retried, then untiled; nothing lost", async () => {
  const m = bundle.manifest;
  const inner = m.cuts.filter((c) => c.kind === "inner");
  // A float32 backbone, so that the answer compares with the untiled chain's to onnxruntime's
  // rounding (a quantised one could round a value the other way at a bin's edge).
  const fwd = m.variants.find((v) => v.cut === inner[inner.length - 1]!.id && v.codec.bits === "f32");
  assert.ok(fwd, "the bundle has a float32 variant at its last inner cut");
  const flags = ["--forward", fwd!.id, "--tile-from", String(first.cut), "--grid", "1x2"];
  const workers: CliProcess[] = await Promise.all([0, 1].map(() => startCli(["serve", join(dir, "bundle"), "--role", "edge-worker", "--port", "0", "--threads", "1", ...flags])));
  const set = await buildEdgeTiles(bundle, { from: first.cut, to: fwd!.cut, grid: { rows: 1, cols: 2 } });
  for (const w of workers) assert.match(w.out(), `set ${set.id.slice(0, 12)}`, "the workers built the edge's tile set");
  const urls = workers.map((w) => w.url);
  const cloud = await startServer({ bundle, port: 0, workers: 1, threads: 1 });
  const mid = await startServer({ bundle, port: 0, workers: 1, threads: 1, edge: { cloud: cloud.url, forward: fwd!.id, tiles: { set, workers: urls, timeoutMs: 5000, retryMs: 600_000 } } });
  const device = await createDevice({ bundle, cloud: mid.url, variant: first.id, bandwidthProbe: false, profile: false, timeoutMs: 20_000 });
  let worst = 0;
  const check = async (r: Inference, i: number) => {
    assert.is(r.kind, "split", `#${i} went through the edge`);
    assert.not.ok(r.fellBack, `#${i} was answered by the edge and cloud`);
    const want = await chain(cal.batch(i % cal.count, 1), fwd!);
    const got = Array.from(r.outputs[out()]!.data);
    assert.is(got.length, want.length);
    const diff = Math.max(...got.map((x, k) => Math.abs(x - want[k]!)));
    worst = Math.max(worst, diff);
    // Wrong regions or a missing halo differ by the activations' size; rounding by ~1e-6.
    assert.ok(diff <= 1e-4, `#${i}: the tiled answer differs from the untiled chain by ${diff}`);
  };
  const tilesOn = (url: string) => metricValue(mid, "dyno_edge_tiles_total", `worker="${url}"`);
  try {
    for (let i = 0; i < 4; i++) await check(await device.infer(cal.batch(i, 1)), i);
    assert.is(tilesOn(urls[0]!), 4, "worker 0 ran a tile of each request");
    assert.is(tilesOn(urls[1]!), 4, "worker 1 ran the other");
    // Worker 0 killed with requests in flight.
    const inflight: Promise<Inference>[] = [];
    for (let i = 4; i < 12; i++) inflight.push(device.infer(cal.batch(i, 1)));
    await until("worker 0 to run some tiles of the burst", () => tilesOn(urls[0]!) >= 6, 20_000);
    await workers[0]!.kill();
    for (const [k, r] of (await Promise.all(inflight)).entries()) await check(r, 4 + k);
    assert.ok(metricValue(mid, "dyno_edge_tile_failures_total", `worker="${urls[0]}"`) >= 1, "worker 0's failure was seen and its tile retried");
    assert.is(metricValue(mid, "dyno_edge_untiled_total"), 0, "worker 1 took worker 0's tiles");
    // Both gone: the edge runs its span untiled.
    await workers[1]!.kill();
    for (let i = 12; i < 15; i++) await check(await device.infer(cal.batch(i, 1)), i);
    assert.is(metricValue(mid, "dyno_edge_untiled_total"), 3, "with no worker the edge ran the span itself");
    assert.is(metricValue(mid, "dyno_edge_forwarded_total"), 15, "every request reached the cloud");
    const info = (await (await fetch(`${mid.url}/v2`)).json()) as { tiles?: { set: string } };
    assert.is(info.tiles?.set, set.id);
    console.log(`  tiled vs untiled chain: largest difference ${worst.toExponential(2)}`);
  } finally {
    await device.close();
    await mid.close();
    await cloud.close();
    for (const w of workers) await w.kill();
  }
});

edge("an edge worker refuses what it cannot run, with a reason, and keeps serving", async () => {
  const m = bundle.manifest;
  const inner = m.cuts.filter((c) => c.kind === "inner");
  const set = await buildEdgeTiles(bundle, { from: first.cut, to: inner[inner.length - 1]!.id, grid: { rows: 2, cols: 2 } });
  const w = await startTileWorker({ tiles: set, token: "s3cret" });
  const tile = set.tiles[1]!;
  const body = new Float32Array(tileValues(tile.inputs, 1)).fill(0.5);
  const post = (path: string, headers: Record<string, string>, b: BodyInit = body) => fetch(`${w.url}${path}`, { method: "POST", headers: { authorization: "Bearer s3cret", [TILE_SET_HEADER]: set.id, ...headers }, body: b });
  try {
    const refused = async (r: Promise<Response>, status: number, why: RegExp) => {
      const res = await r;
      assert.is(res.status, status);
      assert.match(((await res.json()) as { error: string }).error, why);
    };
    await refused(fetch(`${w.url}/v1/tiles/1`, { method: "POST", body }), 401, /bearer token/);
    await refused(post("/v1/tiles/1", { authorization: "Bearer nope" }), 401, /bearer token/);
    await refused(post("/v1/tiles/1", { [TILE_SET_HEADER]: "0".repeat(64) }), 409, /same bundle, --forward, --tile-from and --grid/);
    await refused(post("/v1/tiles/9", {}), 404, /no tile "9" \(the set has 4: 0..3\)/);
    await refused(post("/v1/tiles/1e0", {}), 404, /no tile "1e0"/);
    await refused(post("/v1/tiles/", {}), 404, /no tile ""/);
    await refused(post("/v1/tiles/1", {}, body.subarray(1)), 400, /takes \d+ bytes, got \d+/);
    await refused(post("/v1/tiles/1", {}, new Float32Array(body.length * 2)), 413, /the body is larger/);
    await refused(post("/v1/tiles/1", { [TILE_BATCH_HEADER]: "0" }), 400, /not an integer in \[1, 64\]/);
    const ok = await post("/v1/tiles/1", {});
    assert.is(ok.status, 200);
    assert.is((await ok.arrayBuffer()).byteLength, tileValues(tile.outputs, 1) * 4, "the tile's outputs, float32");
    assert.is(w.runs, 1, "only the good request ran");
  } finally {
    await w.close();
  }
});

edge("--forward auto: the edge moves its own boundary with the backbone (forwards on a fast one, finishes on a slow one); the device's variant is kept; answers exact", async () => {
  const cloud = await startServer({ bundle, port: 0, workers: 1, threads: 1 });
  const backbone = await startLink({ target: { port: cloud.port }, shape: { bandwidthMbps: 200, rttMs: 1 }, seed: 1 });
  const prof = bundle.manifest.profiles.find((p) => p.role === "cloud")!;
  // The edge is emulated 50x slower than the profile, the cloud runs at its speed: on a fast
  // backbone the cloud should do the work, on a 0.1 Mbit/s one with 300 ms RTT the edge.
  const mid = await startServer({ bundle, port: 0, workers: 1, threads: 1, edge: { cloud: `http://127.0.0.1:${backbone.port}`, forward: "auto", slowdown: 50, timeoutMs: 20_000, auto: { segmentMs: prof.segments.map((t) => t.meanMs), codecMs: {}, prior: { bandwidthMbps: 200, rttMs: 1 } } } });
  const device = await createDevice({ bundle, cloud: mid.url, variant: first.id, bandwidthProbe: false, profile: false, timeoutMs: 30_000 });
  const finished = () => metricValue(mid, "dyno_edge_finished_total");
  const forwarded = () => metricValue(mid, "dyno_edge_forwarded_total");
  try {
    // The edge starts from the profile's speed (it may finish the first request itself, which is
    // how it measures that it is slower), then forwards.
    let settled = 0;
    for (let i = 0; i < 8; i++) {
      if (i === 2) settled = forwarded();
      const r = await device.infer(cal.batch(i, 1));
      assert.is(r.variant, first.id, "the device's variant is the device's");
    }
    assert.is(forwarded() - settled, 6, `on the fast backbone the requests go on to the cloud once the edge has timed itself (${finished()} finished on the edge)`);
    backbone.setShape({ bandwidthMbps: 0.1, rttMs: 300 });
    const before = finished();
    const results: { i: number; r: Inference; finishedBefore: number }[] = [];
    for (let i = 8; i < 24; i++) {
      const f = finished();
      results.push({ i, r: await device.infer(cal.batch(i, 1)), finishedBefore: f });
    }
    const late = finished() - before;
    assert.ok(late >= 10, `on the slow backbone the edge finished ${late} of 16 requests itself (forwarded ${forwarded() - settled - 6})`);
    // The last 6 all finished on the edge: it settled, and did not go back to the slow cloud.
    assert.ok(finished() - results[results.length - 6]!.finishedBefore === 6, "the edge stays on its plan");
    for (const { i, r } of results.slice(-6)) {
      assert.not.ok(r.fellBack);
      const t = new ort.Tensor("float32", cal.batch(i, 1), perSampleDims(bundle.manifest.model.inputs[0]!.shape));
      const d = await local.device(first.id, t);
      if (d.kind !== "split") throw new Error("expected a split variant");
      assert.equal(Array.from(r.outputs[out()]!.data), Array.from((await local.cloud(first.id, d.payloads)).outputs[out()]!.data as Float32Array), `#${i}: the edge's answer is the variant's, bit for bit`);
    }
  } finally {
    await device.close();
    await mid.close();
    await backbone.close();
    await cloud.close();
  }
});

edge("compile --tiers: every pair of crossings is profiled; a chain's accuracy is what the runtime's device -> edge -> cloud chain gives", async () => {
  const m = bundle.manifest;
  assert.ok(m.tiers, "the bundle has tiers");
  assert.equal(m.tiers!.names, ["device", "edge", "cloud"]);
  const chains = m.tiers!.chains;
  const cutSegments = (id: string) => m.cuts.find((c) => c.id === m.variants.find((v) => v.id === id)!.cut)!.deviceSegments;
  for (const c of chains) assert.ok(cutSegments(c.variants[1]!) > cutSegments(c.variants[0]!), `${c.variants.join(" > ")}: the second cut is later`);
  // Every admissible v1 at the input or an inner cut pairs with every later admissible v2 (2 bit widths + f32 per cut; an image file is no crossing to chain).
  const perCut = (cut: number) => m.variants.filter((v) => v.cut === cut && v.admissible && (typeof v.codec.bits === "number" || v.codec.bits === "f32")).length;
  const crossing = m.cuts.filter((c) => c.kind !== "output");
  const expected = crossing.reduce((s, a) => s + perCut(a.id) * crossing.filter((b) => b.kind === "inner" && b.deviceSegments > a.deviceSegments).reduce((t, b) => t + perCut(b.id), 0), 0);
  assert.is(chains.length, expected);
  // Three chains recomputed through the executor (top-1 on the first tiers.samples labelled samples).
  const n = m.tiers!.samples;
  const picks = [chains[0]!, chains[Math.floor(chains.length / 2)]!, chains[chains.length - 1]!];
  for (const c of picks) {
    const [a, b] = c.variants.map((id) => m.variants.find((v) => v.id === id)!);
    let correct = 0;
    for (let i = 0; i < n; i++) {
      const logits = await chain(cal.batch(i, 1), b!, a!);
      const top = logits.indexOf(Math.max(...logits));
      if (top === cal.labels![i]) correct++;
    }
    const value = (100 * correct) / n;
    assert.ok(Math.abs(value - c.accuracy.value) <= 100 / n + 1e-6, `${c.variants.join(" > ")}: the manifest says ${c.accuracy.value}, the runtime's chain gives ${value}`);
  }
});

edge.run();
