// dyno serve on real sockets on loopback: split inference over WebSocket and HTTP against the
// local Executor (bit for bit), pipelining, 8 concurrent devices, malformed / oversized /
// unauthorised requests, in-flight limits, timeouts, dropped connections, graceful shutdown,
// KServe v2 endpoints and /metrics, and the CLI. Runs are held in flight deterministically with
// the server's beforeRun gate, never with sleeps.
import { perSampleDims } from "../runtime/common/manifest.js";
import { openExecutor } from "../runtime/node/executor.js";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import ort from "onnxruntime-node";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import WebSocket from "ws";
import { compile } from "../compiler/bundler/compile.js";
import { analyzeModel } from "../compiler/pipeline.js";
import { openBundle, type NodeBundle } from "../runtime/node/bundle.js";
import { loadCalibration } from "../compiler/bundler/calibration.js";
import { connectCloud } from "../runtime/node/client.js";
import { Executor, type Payload } from "../runtime/exec/executor.js";
import { startLink } from "../runtime/emu/link.js";
import type { Variant } from "../runtime/common/manifest.js";
import { buildRequest, decodeRequest, decodeResponse, encodeRequest, modelId, type Response } from "../runtime/common/protocol.js";
import { randomFloats } from "../runtime/common/random.js";
import type { DynoServer } from "../runtime/cloud/server.js";
import { fixtures, ROOT } from "./fixtures.js";
import { gate, until } from "./helpers/waits.js";
import { cloudHarness, rejection } from "./helpers/cloud.js";

const SEED = 606;
const TOKEN = "s3cret-token";
const root = mkdtempSync(join(tmpdir(), "dyno-serve-"));
const bundleDir = join(root, "bundle");

let bundle: NodeBundle;
let local: Executor;
let MODEL = "";
/** Inner-cut variants of several codecs, plus the input cut (the whole model in the cloud). */
let variants: Variant[] = [];
const inputs: ort.Tensor[] = [];
/** payloads[v][i]: variant v's device payloads for input i; expected[v][i]: the local cloud output bytes. */
const payloads = new Map<string, Payload[][]>();
const expected = new Map<string, Uint8Array[]>();

const harness = cloudHarness({ bundle: () => bundle, token: TOKEN, timeoutMs: 5000 });
const { servers, clients } = harness;

const s = suite("dyno serve on loopback");

s.before(async () => {
  const fx = fixtures().find((f) => f.name === "resnet")!; // the names below (resnet, input, logits) are its
  const a = await analyzeModel(fx.path);
  const input = a.model.graph.inputs.find((v) => !a.model.graph.isInitializer(v.name))!;
  const perSample = perSampleDims(input.shape!);
  const calibration = await loadCalibration(fx.path, { inputDims: perSample, samples: 16 });
  await compile(a, fx.path, { out: bundleDir, calibration, bits: [4, 8], maxAccuracyDrop: 1, profileRuns: 1, dynoVersion: "test" });
  bundle = openBundle(bundleDir);
  local = await openExecutor(bundle);
  const m = bundle.manifest;
  MODEL = modelId(m);
  const cutKind = (v: Variant) => m.cuts.find((c) => c.id === v.cut)!.kind;
  const inner = m.variants.filter((v) => cutKind(v) === "inner");
  variants = [
    ...["f32", 4, 8, "f16"].map((b) => inner.find((v) => v.codec.bits === b)!),
    inner[inner.length - 1]!,
    m.variants.find((v) => cutKind(v) === "input" && v.codec.bits === 8)!,
  ];
  const dims = perSampleDims(m.model.inputs[0]!.shape);
  for (let i = 0; i < 4; i++) inputs.push(new ort.Tensor("float32", randomFloats(dims.reduce((p, q) => p * q, 1), SEED + i), dims));
  for (const v of variants) {
    const ps: Payload[][] = [];
    const outs: Uint8Array[] = [];
    for (const x of inputs) {
      const d = await local.device(v.id, x);
      if (d.kind !== "split") throw new Error(`${v.id} is not split`);
      ps.push(d.payloads);
      const c = await local.cloud(v.id, d.payloads);
      const y = c.outputs[m.model.outputs[0]!.name]!.data as Float32Array;
      outs.push(new Uint8Array(y.buffer.slice(y.byteOffset, y.byteOffset + y.byteLength)));
    }
    payloads.set(v.id, ps);
    expected.set(v.id, outs);
  }
});

s.after(async () => {
  for (const c of clients) await c.close();
  for (const srv of servers) await srv.close();
  await local?.release();
  rmSync(root, { recursive: true, force: true });
});

// --- helpers -------------------------------------------------------------------------------------

const { serve, client } = harness;

function bytesOf(data: Float32Array): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/** Checks a reply against the local executor: variant v, input i. */
function checkReply(r: { outputs: { name: string; data: Float32Array }[] }, v: string, i: number, what: string) {
  assert.is(r.outputs.length, 1, what);
  assert.equal(bytesOf(r.outputs[0]!.data), expected.get(v)![i]!, `${what}: output of ${v} on input ${i} differs from the local Executor`);
}

const request = (v: Variant, i: number) => ({ variant: v, payloads: payloads.get(v.id)![i]! });
const goodFrame = (id: number, v = variants[1]!, i = 0) => buildRequest(id, MODEL, v, payloads.get(v.id)![i]!);
const auth = { Authorization: `Bearer ${TOKEN}` };

async function post(srv: DynoServer, body: Uint8Array, headers: Record<string, string> = auth): Promise<{ status: number; r: Response }> {
  const res = await fetch(`${srv.url}/v1/infer`, { method: "POST", body: body as Uint8Array<ArrayBuffer>, headers });
  return { status: res.status, r: decodeResponse(new Uint8Array(await res.arrayBuffer())) };
}

/** A raw WebSocket that sends forged frames one at a time and returns each reply. */
async function rawSocket(srv: DynoServer) {
  const ws = new WebSocket(`${srv.url.replace("http", "ws")}/v1/ws`, { headers: auth });
  const replies: Uint8Array[] = [];
  let wake: (() => void) | null = null;
  const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.on("close", (code, reason) => resolve({ code, reason: reason.toString() })));
  ws.on("message", (d: Buffer) => (replies.push(new Uint8Array(d)), wake?.()));
  ws.on("error", () => {});
  await new Promise((resolve, reject) => ws.once("open", resolve).once("error", reject));
  return {
    ws,
    closed,
    async send(bytes: Uint8Array): Promise<Response> {
      ws.send(bytes);
      while (replies.length === 0) await new Promise<void>((r) => (wake = r));
      return decodeResponse(replies.shift()!);
    },
  };
}

// --- tests ---------------------------------------------------------------------------------------

s("split inference over WebSocket and HTTP equals the local Executor bit for bit", async () => {
  const srv = await serve();
  for (const transport of ["ws", "http"] as const) {
    const c = client(srv, { transport });
    for (const v of variants) {
      for (let i = 0; i < 2; i++) {
        const r = await c.infer(request(v, i));
        checkReply(r, v.id, i, `${transport} ${v.id}`);
        assert.ok(r.timing.cloudMs > 0 && r.timing.segmentMs > 0 && r.timing.totalMs >= r.timing.cloudMs, JSON.stringify(r.timing));
        assert.ok(r.wallMs >= r.timing.totalMs, `wall ${r.wallMs} ms, server total ${r.timing.totalMs} ms`);
        assert.is(r.bytesSent, goodFrame(1, v, i).length);
        assert.ok(r.bytesReceived > 40);
      }
    }
    const rtt = await c.ping();
    assert.ok(rtt >= 0 && rtt < 1000, `ping ${rtt} ms`);
  }
});

s("pipelining: 16 requests in flight on one WebSocket, every reply matched to its request", async () => {
  const srv = await serve();
  const c = client(srv, { maxInFlight: 16 });
  const jobs = Array.from({ length: 16 }, (_, k) => ({ v: variants[k % variants.length]!, i: k % inputs.length }));
  const pending = jobs.map((j) => c.infer(request(j.v, j.i)));
  assert.is(c.inFlight, 16, "all 16 sent before any reply");
  const replies = await Promise.all(pending);
  replies.forEach((r, k) => checkReply(r, jobs[k]!.v.id, jobs[k]!.i, `request ${k}`));
  assert.is(new Set(replies.map((r) => r.id)).size, 16);
  assert.is(c.inFlight, 0);
});

s("8 concurrent devices (WebSocket and HTTP mixed), 6 requests each: every answer correct, none lost", async () => {
  // The HTTP devices share one remote address (loopback), so its per-client limit covers 4 x 6.
  const srv = await serve({ maxInflightPerClient: 24 });
  const devices = Array.from({ length: 8 }, (_, d) => client(srv, { transport: d % 2 ? "http" : "ws" }));
  const results = await Promise.all(devices.map(async (c, d) => {
    const jobs = Array.from({ length: 6 }, (_, k) => ({ v: variants[(d + k) % variants.length]!, i: (d * 3 + k) % inputs.length }));
    const replies = await Promise.all(jobs.map((j) => c.infer(request(j.v, j.i))));
    replies.forEach((r, k) => checkReply(r, jobs[k]!.v.id, jobs[k]!.i, `device ${d} request ${k}`));
    return replies.length;
  }));
  assert.equal(results, Array(8).fill(6));
  assert.match(srv.metrics(), /dyno_requests_total\{transport="ws",status="ok"\} 24\n/);
  assert.match(srv.metrics(), /dyno_requests_total\{transport="http",status="ok"\} 24\n/);
  assert.is(srv.inflight, 0);
});

s("malformed requests get the right kind and message, and the same WebSocket connection keeps serving", async () => {
  const srv = await serve();
  const sock = await rawSocket(srv);
  const good = goodFrame(1);
  const header = decodeRequest(good).header;
  const body = good.subarray(good.length - header.tensors[0]!.bytes);
  const t0 = header.tensors[0]!;
  const flipped = good.slice();
  flipped[flipped.length - 1]! ^= 1;
  const cases: [string, Uint8Array, string, RegExp][] = [
    ["truncated header", good.subarray(0, 40), "bad-request", /truncated message: 40 bytes, the prefix announces a header/],
    ["bad magic", Uint8Array.from([0x48, 0x54, 0x54, 0x50, ...good.subarray(4)]), "bad-request", /bad magic .*not a dyno protocol message/],
    ["wrong version", Uint8Array.from(good, (b, k) => (k === 4 ? 9 : b)), "bad-version", /protocol version 9 is not supported/],
    ["unknown variant", encodeRequest(2, { ...header, variant: "c999-b4-zstd" }, [body]), "unknown-variant", /variant "c999-b4-zstd" is not in bundle "resnet"/],
    ["shape mismatch", encodeRequest(2, { ...header, tensors: [{ ...t0, shape: t0.shape.map((d, k) => (k === 2 ? d + 1 : d)) }] }, [body]), "bad-request", /shape \[.*\] does not match the cut tensor/],
    ["length mismatch", encodeRequest(2, { ...header, tensors: [{ ...t0, bytes: t0.bytes + 5 }] }, [body]), "bad-request", /the header's tensors add up to .* \(truncated\)/],
    ["bad checksum", flipped, "checksum", /CRC-32 is [0-9a-f]{8}, the header says [0-9a-f]{8}/],
    ["wrong bundle", encodeRequest(2, { ...header, model: "0123456789abcdef" }, [body]), "wrong-bundle", /request is for model 0123456789abcdef/],
    ["bits out of range", encodeRequest(2, { ...header, tensors: [{ ...t0, bits: 17 as never }] }, [body]), "bad-request", /tensors\.0\.bits/],
  ];
  for (const [what, bytes, kind, message] of cases) {
    const r = await sock.send(bytes);
    assert.is(r.status, kind, `${what}: ${r.message}`);
    assert.match(r.message ?? "", message, what);
    const ok = await sock.send(goodFrame(100));
    assert.is(ok.status, "ok", `after ${what}: ${ok.message}`);
    assert.is(ok.id, 100);
    assert.equal(bytesOf(ok.outputs[0]!.data), expected.get(variants[1]!.id)![0]!);
  }
  // Over HTTP, the same cases map to HTTP statuses.
  const statuses: Record<string, number> = { "bad-request": 400, "bad-version": 400, checksum: 400, "unknown-variant": 404, "wrong-bundle": 409 };
  for (const [what, bytes, kind] of cases) {
    const { status, r } = await post(srv, bytes);
    assert.equal([status, r.status], [statuses[kind], kind], what);
  }
  assert.is((await post(srv, goodFrame(3))).status, 200);
  sock.ws.close();
  const metrics = srv.metrics();
  assert.match(metrics, /dyno_errors_total\{kind="checksum"\} 2\n/);
  assert.match(metrics, /dyno_errors_total\{kind="bad-request"\} 10\n/);
});

s("oversized bodies: HTTP 413 (server keeps serving), WebSocket closed with 1009 and the next call reconnects", async () => {
  const srv = await serve({ maxBody: 48 * 1024 });
  const f32 = variants[0]!; // float32 at the first inner cut: 64 KiB of payload
  const big = goodFrame(5, f32);
  assert.ok(big.length > 48 * 1024);
  const { status, r } = await post(srv, big);
  assert.equal([status, r.status], [413, "too-large"]);
  assert.match(r.message ?? "", /request body over the limit of 49152 bytes \(--max-body\)/);
  assert.is((await post(srv, goodFrame(6))).status, 200);
  const sock = await rawSocket(srv);
  sock.ws.send(big);
  assert.is((await sock.closed).code, 1009);
  for (const transport of ["ws", "http"] as const) {
    const c = client(srv, { transport });
    const e = await rejection(c.infer(request(f32, 0)));
    assert.is(e.kind, "too-large", `${transport}: ${e.message}`);
    checkReply(await c.infer(request(variants[1]!, 1)), variants[1]!.id, 1, `${transport} after an oversized message`);
  }
  assert.match(srv.metrics(), /dyno_errors_total\{kind="too-large"\} 4\n/);
});

s("bearer token: missing or wrong -> 401 / WebSocket close 4401 (kind unauthorized); health is open", async () => {
  const srv = await serve();
  for (const headers of [{}, { Authorization: "Bearer wrong" }, { Authorization: `Basic ${TOKEN}` }] as Record<string, string>[]) {
    const { status, r } = await post(srv, goodFrame(1), headers);
    assert.equal([status, r.status], [401, "unauthorized"]);
    assert.match(r.message ?? "", /missing or wrong bearer token/);
  }
  for (const token of [undefined, "wrong", `${TOKEN}x`]) {
    for (const transport of ["ws", "http"] as const) {
      const e = await rejection(client(srv, { token, transport }).infer(request(variants[0]!, 0)));
      assert.is(e.kind, "unauthorized", `${transport} token ${token}: ${e.message}`);
      assert.match(e.message, /unauthorized|missing or wrong bearer token/);
    }
  }
  for (const path of ["/metrics", "/v2", "/v2/models/resnet"]) assert.is((await fetch(`${srv.url}${path}`)).status, 401, path);
  assert.is((await fetch(`${srv.url}/v2/health/live`)).status, 200);
  assert.is((await fetch(`${srv.url}/v2/health/ready`)).status, 200);
  checkReply(await client(srv).infer(request(variants[2]!, 3)), variants[2]!.id, 3, "with the right token");
});

s("in-flight limits: per client and per server -> overloaded (429) at once, then fine again", async () => {
  const g = gate();
  const srv = await serve({ maxInflightPerClient: 2, maxInflight: 3, beforeRun: g.beforeRun });
  g.hold();
  const a = client(srv);
  const held = [a.infer(request(variants[0]!, 0)), a.infer(request(variants[0]!, 1))];
  const e = await rejection(a.infer(request(variants[0]!, 2)));
  assert.is(e.kind, "overloaded");
  assert.match(e.message, /this client has 2 requests in flight \(limit 2 per client\)/);
  const b = client(srv);
  const third = b.infer(request(variants[1]!, 0));
  await until("3 requests admitted", () => srv.inflight === 3);
  const e2 = await rejection(client(srv).infer(request(variants[1]!, 1)));
  assert.is(e2.kind, "overloaded");
  assert.match(e2.message, /server has 3 requests in flight \(limit 3\)/);
  const { status } = await post(srv, goodFrame(9));
  assert.is(status, 429);
  g.open();
  const replies = await Promise.all([...held, third]);
  checkReply(replies[0]!, variants[0]!.id, 0, "held 0");
  checkReply(replies[2]!, variants[1]!.id, 0, "held 2");
  checkReply(await a.infer(request(variants[0]!, 2)), variants[0]!.id, 2, "after the limit");
  assert.match(srv.metrics(), /dyno_errors_total\{kind="overloaded"\} 3\n/);
});

s("timeouts: the server answers timeout (504) and keeps serving; the client's own timeout rejects once", async () => {
  const g = gate();
  const srv = await serve({ timeoutMs: 150, beforeRun: g.beforeRun });
  g.hold();
  const c = client(srv);
  const e = await rejection(c.infer(request(variants[0]!, 0)));
  assert.is(e.kind, "timeout");
  assert.match(e.message, /no result within 150 ms \(the model was still running\)/);
  const queued = await rejection(c.infer(request(variants[0]!, 1)));
  assert.match(queued.message, /no result within 150 ms \(still waiting for the executor\)/);
  const { status } = await post(srv, goodFrame(4));
  assert.is(status, 504);
  g.open();
  await until("held runs finish", () => srv.inflight === 0);
  checkReply(await c.infer(request(variants[0]!, 1)), variants[0]!.id, 1, "after timeouts");
  // Client-side timeout: the server holds the run longer than the client waits.
  const g2 = gate();
  const slow = await serve({ beforeRun: g2.beforeRun });
  g2.hold();
  const impatient = client(slow, { timeoutMs: 100 });
  const e2 = await rejection(impatient.infer(request(variants[0]!, 0)));
  assert.is(e2.kind, "timeout");
  assert.match(e2.message, /no reply from .* to request \d+ within 100 ms/);
  assert.is(impatient.inFlight, 0);
  g2.open();
  await until("late run finishes", () => slow.inflight === 0);
  checkReply(await impatient.infer(request(variants[0]!, 3)), variants[0]!.id, 3, "after a late reply was dropped");
});

s("a dropped connection rejects every pending request at once; the next call reconnects; a closed port fails fast", async () => {
  const g = gate();
  const srv = await serve({ beforeRun: g.beforeRun });
  const link = await startLink({ target: { port: srv.port }, shape: { bandwidthMbps: 1000, rttMs: 1 } });
  const c = client(srv, { url: `http://127.0.0.1:${link.port}` });
  checkReply(await c.infer(request(variants[0]!, 0)), variants[0]!.id, 0, "through the link");
  g.hold();
  const pending = [0, 1, 2].map((i) => c.infer(request(variants[0]!, i)));
  await until("3 requests admitted", () => srv.inflight === 3);
  const t0 = performance.now();
  await link.close();
  const errors = await Promise.all(pending.map(rejection));
  assert.ok(performance.now() - t0 < 1000, "rejected promptly");
  for (const e of errors) assert.is(e.kind, "connection", e.message);
  g.open();
  await until("runs finish", () => srv.inflight === 0);
  const again = await startLink({ target: { port: srv.port }, shape: { bandwidthMbps: 1000, rttMs: 1 }, port: link.port });
  checkReply(await c.infer(request(variants[1]!, 2)), variants[1]!.id, 2, "after reconnecting");
  await c.close();
  await again.close();
  // Nothing listens on a closed server's port: "connection", quickly, over both transports.
  const gone = await serve();
  const url = gone.url;
  await gone.close();
  for (const transport of ["ws", "http"] as const) {
    const t1 = performance.now();
    const e = await rejection(connectCloud({ url, model: MODEL, transport, timeoutMs: 5000 }).ping());
    assert.is(e.kind, "connection", e.message);
    assert.ok(performance.now() - t1 < 1000, `${transport}: ${performance.now() - t1} ms`);
  }
});

s("graceful shutdown: 4 in-flight requests finish ok, new ones are refused, sockets close", async () => {
  const g = gate();
  const srv = await serve({ beforeRun: g.beforeRun });
  const ws = client(srv);
  const http = client(srv, { transport: "http" });
  await ws.ping();
  g.hold();
  const inFlight = [ws.infer(request(variants[0]!, 0)), ws.infer(request(variants[1]!, 1)), http.infer(request(variants[2]!, 2)), http.infer(request(variants[3]!, 3))];
  await until("4 requests admitted", () => srv.inflight === 4);
  const closing = srv.close();
  assert.is(srv.ready, false);
  const refused = await rejection(ws.infer(request(variants[0]!, 0)));
  assert.is(refused.kind, "unavailable");
  assert.match(refused.message, /server is shutting down/);
  assert.is((await rejection(connectCloud({ url: srv.url, model: MODEL, token: TOKEN, transport: "http" }).infer(request(variants[0]!, 0)))).kind, "connection");
  g.open();
  const replies = await Promise.all(inFlight);
  replies.forEach((r, k) => checkReply(r, variants[k]!.id, k, `in flight ${k}`));
  await closing;
  const after = await rejection(ws.infer(request(variants[0]!, 0)));
  assert.is(after.kind, "connection");
});

s("KServe v2 health and metadata, /metrics counters move", async () => {
  const srv = await serve();
  const get = async (path: string) => {
    const res = await fetch(`${srv.url}${path}`, { headers: auth });
    return { status: res.status, body: res.headers.get("content-type")?.includes("json") ? await res.json() : await res.text() };
  };
  assert.equal(await get("/v2/health/live"), { status: 200, body: { live: true } });
  assert.equal(await get("/v2/health/ready"), { status: 200, body: { ready: true } });
  const meta = await get("/v2/models/resnet");
  assert.is(meta.status, 200);
  assert.is(meta.body.platform, "dyno");
  assert.equal(meta.body.inputs, [{ name: "input", datatype: "FP32", shape: [-1, 1, 64, 64] }]);
  assert.equal(meta.body.outputs, [{ name: "logits", datatype: "FP32", shape: [-1, 10] }]);
  assert.is(meta.body.dyno.model, MODEL);
  assert.ok(meta.body.dyno.variants.some((v: { id: string }) => v.id === variants[1]!.id));
  assert.is((await get(`/v2/models/resnet/versions/${MODEL}`)).status, 200);
  assert.is((await get("/v2/models/resnet/ready")).status, 200);
  const unknown = await get("/v2/models/vgg");
  assert.is(unknown.status, 404);
  assert.match(unknown.body.error, /unknown model "vgg": this server hosts "resnet"/);
  assert.is((await get("/nope")).status, 404);
  assert.equal((await get("/v2")).body.name, "dyno");
  const count = (text: string, re: RegExp) => Number(re.exec(text)?.[1] ?? 0);
  const before = (await get("/metrics")).body as string;
  const c = client(srv);
  await c.infer(request(variants[1]!, 0));
  await c.infer(request(variants[1]!, 1));
  await rejection(c.infer({ variant: { ...variants[1]!, id: "c999-b4-zstd" }, payloads: payloads.get(variants[1]!.id)![0]! }));
  const after = (await get("/metrics")).body as string;
  const ok = /dyno_requests_total\{transport="ws",status="ok"\} (\d+)/;
  assert.is(count(after, ok) - count(before, ok), 2);
  assert.is(count(after, /dyno_errors_total\{kind="unknown-variant"\} (\d+)/), 1);
  assert.is(count(after, new RegExp(`dyno_variant_requests_total\\{variant="${variants[1]!.id}"\\} (\\d+)`)), 2);
  assert.is(count(after, /dyno_cloud_seconds_count (\d+)/) - count(before, /dyno_cloud_seconds_count (\d+)/), 2);
  assert.ok(count(after, /dyno_received_bytes_total\{transport="ws"\} (\d+)/) > 2 * payloads.get(variants[1]!.id)![0]![0]!.bytes.length);
  assert.match(after, /# TYPE dyno_cloud_seconds histogram\n(dyno_cloud_seconds_bucket\{le="[\d.e+-]+"\} \d+\n)+dyno_cloud_seconds_bucket\{le="\+Inf"\} \d+\n/);
  assert.match(after, /dyno_inflight_requests 0\n/);
});

s("dyno serve CLI: prints the listening line, serves with --token-file, exits 0 on SIGTERM", async () => {
  const tokenFile = join(root, "token");
  writeFileSync(tokenFile, `${TOKEN}\n`);
  const code = `import("${ROOT}cli/main.ts").then(async (m) => { process.exitCode = await m.runCli(${JSON.stringify(["serve", bundleDir, "--port", "0", "--token-file", tokenFile, "--threads", "1"])}); })`;
  const child = spawn(process.execPath, ["--import", "tsx", "-e", code], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  child.stdout.on("data", (d) => (out += d));
  child.stderr.on("data", (d) => (err += d));
  const exited = new Promise<number | null>((resolve) => child.on("exit", (c) => resolve(c)));
  const kill = setTimeout(() => child.kill("SIGKILL"), 30_000);
  try {
    await until("the listening line", () => /\n/.test(out) || child.exitCode !== null, 25_000);
    const m = /^dyno serve: bundle resnet \((\d+) variants\) on (http:\/\/127\.0\.0\.1:(\d+)) \(ws \/v1\/ws, http POST \/v1\/infer\)$/m.exec(out);
    assert.ok(m, `stdout: ${out}\nstderr: ${err}`);
    assert.is(Number(m![1]), bundle.manifest.variants.length);
    const c = connectCloud({ url: m![2]!, model: MODEL, token: TOKEN });
    checkReply(await c.infer(request(variants[1]!, 0)), variants[1]!.id, 0, "via the CLI");
    const bad = await rejection(c.infer({ variant: { ...variants[1]!, id: "c999-b4-zstd" }, payloads: payloads.get(variants[1]!.id)![0]! }));
    assert.is(bad.kind, "unknown-variant");
    await c.close();
    child.kill("SIGTERM");
    assert.is(await exited, 0, err);
    assert.match(err, /request \d+: unknown-variant: variant "c999-b4-zstd" is not in bundle/);
    assert.match(err, /SIGTERM: finishing 0 request\(s\) in flight, then closing/);
  } finally {
    clearTimeout(kill);
    if (child.exitCode === null) child.kill("SIGKILL");
  }
});

s.run();
