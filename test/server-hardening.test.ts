// dyno serve under abuse (issue 14), on real sockets on loopback: unauthenticated floods, the
// connection cap, clients that never read their replies, dead peers (heartbeats), inference off
// the main thread (worker pool), deadlines while queued and running, per-address admission, log
// flooding and log injection, slow headers, and bundles with bad file names or truncated weights.
// Every wait is bounded and every assertion is on counts, bytes or states, never on a duration:
// "answered before the run ended" is checked against the server's own count of finished runs.
// Also the small units the server is made of: admission, the log limiter, heartbeats, the
// request-size bound.
import { perSampleDims } from "../runtime/common/manifest.js";
import { openExecutor } from "../runtime/node/executor.js";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { createHash, randomBytes } from "node:crypto";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import ort from "onnxruntime-node";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import WebSocket from "ws";
import { compile } from "../compiler/bundler/compile.js";
import { buildModel, node } from "../compiler/ir/builder.js";
import { Tensor } from "../compiler/ir/tensor.js";
import { saveModel } from "../compiler/onnx/export.js";
import { analyzeModel } from "../compiler/pipeline.js";
import { BundleError, openBundle, type NodeBundle } from "../runtime/node/bundle.js";
import { loadCalibration } from "../compiler/bundler/calibration.js";
import type { CloudError } from "../runtime/device/client.js";
import { Executor, type Payload } from "../runtime/exec/executor.js";
import { ManifestError } from "../runtime/common/manifest.js";
import type { Variant } from "../runtime/common/manifest.js";
import { buildRequest, encodeRequest, modelId, type RequestHeader } from "../runtime/common/protocol.js";
import { randomFloats } from "../runtime/common/random.js";
import { REPLY_WINDOW, STALL_MS, type DynoServer } from "../runtime/cloud/server.js";
import { compileTestBundle, fixtures, runDyno } from "./fixtures.js";
import { gate, until } from "./helpers/waits.js";
import { answered, cloudHarness, rejection } from "./helpers/cloud.js";

const SEED = 1414;
const TOKEN = "hardening-token";
const MiB = 1 << 20;
const root = mkdtempSync(join(tmpdir(), "dyno-harden-"));
const bundleDir = join(root, "bundle");

let bundle: NodeBundle;
let MODEL = "";
/** An inner-cut 8-bit variant (small, quick requests) and the 8-bit input cut (the whole model in the cloud). */
let inner: Variant;
let quick: Payload[] = [];
/**
 * A bundle whose cloud part is one long synchronous onnxruntime run (a 7x7 convolution over
 * 64x128x128, ~3 GMAC, in a single segment): the input-cut variant and a request's payloads.
 */
let slow: NodeBundle;
let slowVariant: Variant;
let long: Payload[] = [];

const harness = cloudHarness({ bundle: () => bundle, token: TOKEN, timeoutMs: 10_000 });
const { servers, clients } = harness;
const rawSockets: net.Socket[] = [];

const s = suite("dyno serve hardening");

s.before(async () => {
  const fx = fixtures().find((f) => f.name === "resnet")!;
  await compileTestBundle(fx.path, bundleDir, { bits: [8], samples: 16, profileRuns: 1 });
  bundle = openBundle(bundleDir);
  const m = bundle.manifest;
  MODEL = modelId(m);
  const kind = (v: Variant) => m.cuts.find((c) => c.id === v.cut)!.kind;
  inner = m.variants.find((v) => kind(v) === "inner" && v.codec.bits === 8)!;
  const local = await openExecutor(bundle);
  const dims = perSampleDims(m.model.inputs[0]!.shape);
  const one = new ort.Tensor("float32", randomFloats(dims.reduce((a, b) => a * b, 1), SEED), dims);
  const d = await local.device(inner.id, one);
  if (d.kind !== "split") throw new Error(`${inner.id} is not split`);
  quick = d.payloads;
  await local.release();
  slow = await compileSlowBundle(join(root, "slow"));
  slowVariant = slow.manifest.variants.find((v) => v.codec.bits === 8 && slow.manifest.cuts.find((c) => c.id === v.cut)!.kind === "input")!;
  const slowLocal = await openExecutor(slow);
  const sd = slow.manifest.model.inputs[0]!.shape as number[];
  const l = await slowLocal.device(slowVariant.id, new ort.Tensor("float32", randomFloats(sd.reduce((a, b) => a * b, 1), SEED + 1), sd));
  if (l.kind !== "split") throw new Error(`${slowVariant.id} is not split`);
  long = l.payloads;
  await slowLocal.release();
});

/** y = Conv7x7(x): one node, so one segment and one synchronous run (its 4 MiB output is the reply). */
async function compileSlowBundle(dir: string): Promise<NodeBundle> {
  const C = 64;
  const H = 128;
  const model = buildModel({
    name: "slow",
    inputs: { x: ["float32", [1, C, H, H]] },
    initializers: [Tensor.fromFloat32("w", [C, C, 7, 7], randomFloats(C * C * 49, SEED + 5).map((v) => v / 100))],
    nodes: [
      node("Conv", ["x", "w"], ["y"], { pads: [3, 3, 3, 3] }),
    ],
    outputs: ["y"],
  });
  const path = join(root, "slow.onnx");
  saveModel(model, path);
  const a = await analyzeModel(path);
  const calibration = await loadCalibration(path, { inputDims: [1, C, H, H], samples: 2, calib: "random:2" });
  await compile(a, path, { out: dir, calibration, bits: [8], maxAccuracyDrop: 100, profileRuns: 1, dynoVersion: "test" });
  return openBundle(dir);
}

s.after(async () => {
  for (const sock of rawSockets) sock.destroy();
  for (const c of clients) await bounded(c.close().catch(() => {}));
  for (const srv of servers) await bounded(srv.close());
  rmSync(root, { recursive: true, force: true });
});

/** A close that may not finish (the server under test misbehaving) must not hang the suite. */
function bounded(p: Promise<unknown>, ms = 5000): Promise<unknown> {
  return Promise.race([p, new Promise((r) => setTimeout(r, ms).unref())]);
}

// --- helpers -------------------------------------------------------------------------------------

const { serve, client } = harness;

const wsUrl = (srv: DynoServer) => `${srv.url.replace("http", "ws")}/v1/ws`;

/** A raw TCP connection to the server that records what it receives and whether it was closed. */
function rawTcp(srv: DynoServer) {
  const sock = net.connect(srv.port, "127.0.0.1");
  rawSockets.push(sock);
  const state = { received: Buffer.alloc(0), closed: false, error: "" };
  sock.on("data", (d: Buffer) => (state.received = Buffer.concat([state.received, d])));
  sock.on("error", (e) => (state.error = e.message));
  sock.on("close", () => (state.closed = true));
  return { sock, state, connected: new Promise<void>((r) => sock.once("connect", () => r())) };
}

function upgradeRequest(srv: DynoServer, headers: string[] = []): string {
  return [
    "GET /v1/ws HTTP/1.1",
    `Host: 127.0.0.1:${srv.port}`,
    "Upgrade: websocket",
    "Connection: Upgrade",
    `Sec-WebSocket-Key: ${randomBytes(16).toString("base64")}`,
    "Sec-WebSocket-Version: 13",
    "Sec-WebSocket-Protocol: dyno.v1",
    ...headers,
    "",
    "",
  ].join("\r\n");
}

/** A client-to-server binary frame header announcing `length` payload bytes (masked, RFC 6455 5.2). */
function binaryFrameHeader(length: number): Buffer {
  const h = Buffer.alloc(14);
  h[0] = 0x82;
  h[1] = 0x80 | 127;
  h.writeBigUInt64BE(BigInt(length), 2);
  randomBytes(4).copy(h, 10);
  return h;
}

/** Writes `total` bytes in 256 KiB chunks, honouring back-pressure, until done or the socket closes. */
async function pump(sock: net.Socket, total: number): Promise<number> {
  const chunk = Buffer.alloc(256 * 1024, 0x5a);
  let written = 0;
  while (written < total && !sock.destroyed) {
    const ok = sock.write(chunk);
    written += chunk.length;
    if (!ok) {
      await new Promise<void>((r) => {
        const done = () => (sock.off("drain", done), sock.off("close", done), r());
        sock.on("drain", done).on("close", done);
      });
    }
  }
  return written;
}

/** A request for a variant this bundle does not have, named with `name` (tiny body: fails validation). */
function unknownVariantFrame(id: number, name: string): Uint8Array {
  const header: RequestHeader = {
    variant: name,
    model: MODEL,
    tensors: [{ name: "input", bytes: 0, crc32: 0, shape: [1], bits: 8, perChannel: false, shuffle: false, codec: "none" }],
  };
  return encodeRequest(id, header, [new Uint8Array(0)]);
}

// --- 1. unauthenticated memory, connection cap, request-size bound ------------------------------

s("unauthenticated upgrades are refused before anything is read: 4401, then cut before 40 MiB get through", async () => {
  const srv = await serve();
  const conns = Array.from({ length: 4 }, () => rawTcp(srv));
  await Promise.all(conns.map((c) => c.connected));
  const total = 40 * MiB;
  const sent = await Promise.all(conns.map(async (c) => {
    c.sock.write(upgradeRequest(srv, ["Authorization: Bearer wrong"]));
    c.sock.write(binaryFrameHeader(total));
    return pump(c.sock, total);
  }));
  for (const c of conns) await until("the server to cut an unauthenticated socket", () => c.state.closed, 10_000);
  conns.forEach((c, k) => {
    assert.ok(sent[k]! < total, `connection ${k}: the server took all ${sent[k]} bytes of an unauthenticated message`);
    const text = c.state.received.toString("latin1");
    assert.match(text, /^HTTP\/1\.1 101 /, `connection ${k}: ${JSON.stringify(text.slice(0, 80))}`);
    const close = c.state.received.indexOf(0x88, text.indexOf("\r\n\r\n"));
    assert.ok(close > 0, `connection ${k}: no close frame`);
    assert.is(c.state.received.readUInt16BE(close + 2), 4401, `connection ${k}: close code`);
  });
  assert.ok(srv.stats().unauthorizedBytesRead < 4 * 256 * 1024, `the server read ${srv.stats().unauthorizedBytesRead} bytes from unauthenticated sockets`);
  // The ws client still reads the refusal as "unauthorized", with and without a token offered.
  for (const token of [undefined, "wrong"]) {
    const e = await rejection(client(srv, { token }).infer({ variant: inner, payloads: quick }));
    assert.is(e.kind, "unauthorized", `token ${token}: ${e.message}`);
  }
  assert.is((await client(srv).infer({ variant: inner, payloads: quick })).outputs.length, 1);
});

s("browsers: the token as the dyno-bearer. subprotocol is accepted, a wrong one closes 4401", async () => {
  const srv = await serve();
  const offer = (token: string) => ["dyno.v1", `dyno-bearer.${Buffer.from(token).toString("base64url")}`];
  const ok = new WebSocket(wsUrl(srv), offer(TOKEN));
  await new Promise((resolve, reject) => ok.once("open", resolve).once("error", reject));
  assert.is(ok.protocol, "dyno.v1");
  const reply = await new Promise<Buffer>((resolve) => {
    ok.once("message", (d: Buffer) => resolve(d));
    ok.send(buildRequest(7, MODEL, inner, quick));
  });
  assert.is(reply.readUInt32LE(8), 7);
  ok.close();
  const bad = new WebSocket(wsUrl(srv), offer("wrong"));
  bad.on("error", () => {});
  const code = await new Promise<number>((resolve) => bad.once("close", (c) => resolve(c)));
  assert.is(code, 4401);
});

s("the connection cap: past --max-connections a new connection is closed at once; a freed slot is usable", async () => {
  const srv = await serve({ maxConnections: 4 });
  const held = Array.from({ length: 4 }, () => rawTcp(srv));
  await Promise.all(held.map((c) => c.connected));
  await until("4 connections counted", () => srv.stats().connections === 4);
  const extra = rawTcp(srv);
  await until("the 5th connection to be closed", () => extra.state.closed, 5000);
  assert.is(extra.state.received.length, 0, "nothing is read or written on a refused connection");
  held[0]!.sock.destroy();
  await until("the slot to free", () => srv.stats().connections === 3);
  const res = await fetch(`${srv.url}/v2/health/live`);
  assert.is(res.status, 200);
  for (const c of held) c.sock.destroy();
});

s("the default --max-body is the bundle's largest legal request with a margin, not 64 MiB; an explicit one wins", async () => {
  const m = bundle.manifest;
  const f32Input = m.variants.find((v) => v.codec.bits === "f32" && m.cuts.find((c) => c.id === v.cut)!.kind === "input")!;
  const cut = m.cuts.find((c) => c.id === f32Input.cut)!;
  const srv = await serve();
  const meta = await (await fetch(`${srv.url}/v2/models/resnet`, { headers: { Authorization: `Bearer ${TOKEN}` } })).json();
  assert.ok(meta.dyno.maxBody >= cut.bytes + 16 && meta.dyno.maxBody < 8 * MiB, `default maxBody ${meta.dyno.maxBody}, float32 input cut ${cut.bytes} bytes`);
  // The largest request a device sends (float32 at the input cut) is accepted under the default.
  const local = await openExecutor(bundle);
  const dims = perSampleDims(m.model.inputs[0]!.shape);
  const d = await local.device(f32Input.id, new ort.Tensor("float32", randomFloats(dims.reduce((a, b) => a * b, 1), SEED + 2), dims));
  await local.release();
  if (d.kind !== "split") throw new Error("input cut is not split");
  assert.is((await client(srv).infer({ variant: f32Input, payloads: d.payloads })).outputs.length, 1);
  const explicit = await serve({ maxBody: 123_456 });
  const meta2 = await (await fetch(`${explicit.url}/v2/models/resnet`, { headers: { Authorization: `Bearer ${TOKEN}` } })).json();
  assert.is(meta2.dyno.maxBody, 123_456);
});

// --- 2. back-pressure and heartbeats ---------------------------------------------------------------

s("a client that never reads its replies: the server stops reading from it, its buffer stays bounded, others are served", async () => {
  const limit = 256 * 1024;
  const srv = await serve({ wsSendBufferBytes: limit });
  const ws = new WebSocket(wsUrl(srv), { headers: { Authorization: `Bearer ${TOKEN}` } });
  ws.on("error", () => {});
  await new Promise((resolve, reject) => ws.once("open", resolve).once("error", reject));
  ws.pause(); // never read a reply
  const frame = unknownVariantFrame(1, "v".repeat(200));
  const n = 40_000; // ~18 MB of error replies: more than the kernel's socket buffers hold
  for (let k = 0; k < n; k++) ws.send(frame);
  await until("the server to stop reading from the client", () => srv.stats().ws.paused === 1, 20_000);
  const replyBytes = 600;
  const st = srv.stats();
  // The bound: the limit, plus the replies to the requests already read when it was crossed (one
  // socket read, at most 64 KiB of requests) and to those in flight.
  assert.ok(st.ws.maxBufferedBytes <= limit + 2 * 64 * 1024 + 16 * replyBytes, `the server buffered ${st.ws.maxBufferedBytes} bytes for a client that does not read (limit ${limit})`);
  const answered = Number(/dyno_errors_total\{kind="unknown-variant"\} (\d+)/.exec(srv.metrics())?.[1] ?? 0);
  assert.ok(answered < n, `the server read all ${n} requests of a client that does not read`);
  const other = client(srv);
  assert.is((await other.infer({ variant: inner, payloads: quick })).outputs.length, 1, "another client is served meanwhile");
  ws.terminate();
  await until("the paused socket to go", () => srv.stats().ws.open === 1);
});

s("a client that never reads its replies gets at most a window of them run, however small they are; others are served", async () => {
  // Small replies fit the kernel's socket buffers by the thousand, so a bound on bytes waiting
  // in `ws` alone let such a client keep the workers busy (before the window: every request ran).
  const srv = await serve({ maxInflightPerClient: 4, maxInflightPerAddress: 64 });
  const ws = new WebSocket(wsUrl(srv), { headers: { Authorization: `Bearer ${TOKEN}` } });
  ws.on("error", () => {});
  await new Promise((resolve, reject) => ws.once("open", resolve).once("error", reject));
  ws.pause(); // never read a reply (nor a ping)
  const n = 2000;
  const frames = Array.from({ length: n }, (_, k) => buildRequest(k + 1, MODEL, inner, quick));
  for (const f of frames.slice(0, 100)) ws.send(f);
  const window = REPLY_WINDOW * 4;
  const seen = () => answered(srv, "ok") + answered(srv, "overloaded");
  await until("the window to fill", () => seen() >= window, 20_000);
  // Then a steady stream: refused, and once its oldest window ping is STALL_MS old, not read.
  let sent = 100;
  const end = performance.now() + STALL_MS + 1500;
  while (performance.now() < end && sent < n) {
    for (let k = 0; k < 10 && sent < n; k++) ws.send(frames[sent++]!);
    await new Promise((r) => setTimeout(r, 10));
  }
  await until("the server to stop reading from the silent client", () => srv.stats().ws.stalls >= 1, 20_000);
  const ok = answered(srv, "ok");
  assert.ok(ok <= window, `${ok} requests run for a client that reads none of its replies (window ${window})`);
  assert.is(srv.stats().ws.maxHeld, 4, "held: up to --max-inflight-per-client");
  assert.ok(seen() < sent - 4, `the server read every request of a client that reads nothing (${seen()} answered of ${sent} sent)`);
  const other = client(srv);
  assert.is((await other.infer({ variant: inner, payloads: quick })).outputs.length, 1, "another client is served meanwhile");
  // Held requests are answered at shutdown, not dropped.
  await srv.close();
  const held = answered(srv, "unavailable");
  assert.is(held, 4, "the held requests were answered `unavailable` at shutdown");
  ws.terminate();
});

s("a client that reads its replies is never held back by the window, pipelining up to its limit or past it", async () => {
  const srv = await serve({ maxInflightPerClient: 4 });
  const ws = new WebSocket(wsUrl(srv), { headers: { Authorization: `Bearer ${TOKEN}` } });
  ws.binaryType = "nodebuffer";
  ws.on("error", () => {});
  await new Promise((resolve, reject) => ws.once("open", resolve).once("error", reject));
  // 400 requests, 4 at a time (the limit), each sent as a reply is read: all run.
  const total = 400;
  let next = 0;
  let replies = 0;
  // The client must not be cut: a burst of window pings would look like a ping flood to `ws`
  // (it terminates a peer past 60 pending automatic pongs), so pings are capped.
  const cut = new Promise<never>((_, reject) => ws.once("close", (c) => reject(new Error(`the client's connection closed (${c}) with requests unanswered`))));
  cut.catch(() => {});
  const done = new Promise<void>((resolve) => {
    ws.on("message", () => {
      replies++;
      if (next < total) ws.send(buildRequest(++next, MODEL, inner, quick));
      if (replies === total) resolve();
    });
  });
  for (let k = 0; k < 4; k++) ws.send(buildRequest(++next, MODEL, inner, quick));
  await Promise.race([done, cut]);
  const count = (status: string) => answered(srv, status);
  assert.is(count("ok"), total, "every request of a reading client within its limit ran");
  // A burst far past the limit and the window: every request is answered (run or `overloaded`).
  let burstReplies = 0;
  const burst = 300;
  const all = new Promise<void>((resolve) => ws.on("message", () => ++burstReplies === burst && resolve()));
  for (let k = 0; k < burst; k++) ws.send(buildRequest(total + k + 1, MODEL, inner, quick));
  await Promise.race([all, cut]);
  assert.is(count("ok") + count("overloaded"), total + burst, "every request of the burst answered");
  ws.terminate();
});

s("heartbeats: a peer that never answers pings is cut after two missed pongs; a live one stays", async () => {
  const srv = await serve({ heartbeatMs: 40 });
  const deaf = new WebSocket(wsUrl(srv), { headers: { Authorization: `Bearer ${TOKEN}` }, autoPong: false });
  const live = new WebSocket(wsUrl(srv), { headers: { Authorization: `Bearer ${TOKEN}` } });
  for (const w of [deaf, live]) {
    w.on("error", () => {});
    await new Promise((resolve, reject) => w.once("open", resolve).once("error", reject));
  }
  let pings = 0;
  deaf.on("ping", () => pings++);
  const closed = new Promise<number>((resolve) => deaf.once("close", (c) => resolve(c)));
  await until("the deaf peer to be cut", () => deaf.readyState === WebSocket.CLOSED, 10_000);
  assert.is(await closed, 1006, "terminated, not closed politely");
  assert.ok(pings >= 2, `${pings} pings before the cut`);
  assert.is(live.readyState, WebSocket.OPEN, "the live peer answers its pings and stays");
  live.close();
});

// --- 3. inference off the main thread ---------------------------------------------------------------

s("while a worker runs a long inference, /v2/health/live answers before it finishes", async () => {
  const srv = await serve({ bundle: slow, workers: 1 });
  const c = client(srv, { timeoutMs: 60_000, model: slow.manifest.model.sha256 });
  let replies = 0;
  const runs = Array.from({ length: 3 }, () => c.infer({ variant: slowVariant, payloads: long }).then((r) => (replies++, r)));
  for (const r of runs) r.catch(() => {}); // awaited below; a failed assertion must not leave them unhandled
  await until("the first run to start", () => srv.stats().pool.busy === 1, 10_000);
  const before = srv.stats().pool.completed;
  const res = await fetch(`${srv.url}/v2/health/live`);
  assert.is(res.status, 200);
  const finished = srv.stats().pool.completed - before;
  assert.is(finished, 0, `${finished} run(s) finished while the health check waited`);
  assert.is(replies, 0);
  for (const r of await Promise.all(runs)) assert.is(r.outputs.length, 1);
});

s("--timeout-ms is enforced while running: the timeout reply goes out at the deadline, before the run ends", async () => {
  const srv = await serve({ bundle: slow, workers: 1, timeoutMs: 5 });
  const c = client(srv, { timeoutMs: 60_000, model: slow.manifest.model.sha256 });
  const e = await rejection(c.infer({ variant: slowVariant, payloads: long }));
  const at = { completed: srv.stats().pool.completed, inflight: srv.inflight };
  assert.is(e.kind, "timeout", e.message);
  assert.match(e.message, /no result within 5 ms \(the model was still running\)/);
  assert.equal(at, { completed: 0, inflight: 1 }, "the run was still going when its timeout reply arrived; its slot is still held");
  await until("the late run to finish and release its slot", () => srv.inflight === 0, 20_000);
  assert.is(srv.stats().pool.completed, 1);
});

s("--max-inflight-per-client holds across connections: 4 connections from one address hold at most the per-address limit", async () => {
  const g = gate();
  const srv = await serve({ maxInflightPerClient: 2, maxInflightPerAddress: 3, beforeRun: g.beforeRun });
  g.hold();
  const conns = Array.from({ length: 4 }, () => client(srv));
  const settled = conns.flatMap((c) => [0, 1].map(() => c.infer({ variant: inner, payloads: quick }).then(() => "ok", (e: CloudError) => e.kind)));
  await until("the over-limit requests to be refused", () => srv.inflight === 3 && /kind="overloaded"\} 5\n/.test(srv.metrics()), 10_000);
  assert.is(srv.inflight, 3);
  g.open();
  const kinds = await Promise.all(settled);
  assert.is(kinds.filter((k) => k === "ok").length, 3, kinds.join(","));
  assert.is(kinds.filter((k) => k === "overloaded").length, 5, kinds.join(","));
});

// --- 4, 5. logs ---------------------------------------------------------------------------------

s("500 bad-token requests log a handful of lines and one summary", async () => {
  const lines: string[] = [];
  // One interval for the whole test: the summary is written when the server closes.
  const srv = await serve({ log: (l) => lines.push(l), logIntervalMs: 600_000 });
  for (let k = 0; k < 50; k++) {
    await Promise.all(Array.from({ length: 10 }, () => fetch(`${srv.url}/v1/infer`, { method: "POST", body: new Uint8Array(16), headers: { Authorization: "Bearer nope" } }).then((r) => r.arrayBuffer())));
  }
  assert.ok(lines.length <= 5, `${lines.length} lines before the interval ended:\n${lines.slice(0, 12).join("\n")}`);
  await srv.close();
  assert.ok(lines.length <= 6, `${lines.length} lines:\n${lines.slice(0, 12).join("\n")}`);
  const summary = lines.find((l) => /unauthorized requests from 1 address/.test(l))!;
  const first = lines.filter((l) => /unauthorized: missing or wrong bearer token/.test(l)).length;
  assert.match(summary, new RegExp(`^dyno serve: ${500 - first} unauthorized requests from 1 address in the last`));
});

s("a variant name with a newline is logged as one line, escaped", async () => {
  const lines: string[] = [];
  const srv = await serve({ log: (l) => lines.push(l) });
  const ws = new WebSocket(wsUrl(srv), { headers: { Authorization: `Bearer ${TOKEN}` } });
  await new Promise((resolve, reject) => ws.once("open", resolve).once("error", reject));
  await new Promise<void>((resolve) => {
    ws.once("message", () => resolve());
    ws.send(unknownVariantFrame(3, "x\nFAKE LINE"));
  });
  ws.close();
  const text = lines.join("\n");
  const physical = text.split("\n");
  assert.is(physical.filter((l) => l.startsWith("FAKE LINE")).length, 0, text);
  const mentions = physical.filter((l) => l.includes("FAKE LINE"));
  assert.is(mentions.length, 1, text);
  assert.ok(mentions[0]!.includes("x\\nFAKE LINE"), mentions[0]);
});

// --- 6. slow clients ---------------------------------------------------------------------------------

s("a client sending its headers one byte at a time is cut at --headers-timeout-ms", async () => {
  const srv = await serve({ headersTimeoutMs: 300 });
  const c = rawTcp(srv);
  await c.connected;
  const request = "GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Slow: " + "a".repeat(80) + "\r\n\r\n";
  let sent = 0;
  while (sent < request.length && !c.state.closed) {
    c.sock.write(request[sent++]!);
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.ok(c.state.closed, `still connected after ${sent} of ${request.length} bytes`);
  assert.ok(sent < request.length, "cut before the headers were complete");
  assert.match(c.state.received.toString("latin1"), /^(HTTP\/1\.1 408|$)/, JSON.stringify(c.state.received.toString("latin1")));
});

// --- 7. bundles ---------------------------------------------------------------------------------------

function copyBundle(name: string): string {
  const dir = join(root, name);
  cpSync(bundleDir, dir, { recursive: true });
  return dir;
}

function editManifest(dir: string, edit: (m: Record<string, any>) => void): void {
  const path = join(dir, "manifest.json");
  const m = JSON.parse(readFileSync(path, "utf8"));
  edit(m);
  writeFileSync(path, JSON.stringify(m));
}

s("manifest file names: '.', '..' and dot-files are refused; a directory where a file should be is a clear error", () => {
  for (const bad of [".", "..", ".hidden", "../weights.bin", "a/b"]) {
    const dir = copyBundle(`bad-name-${bad.replace(/\W/g, "_")}`);
    editManifest(dir, (m) => (m.weights.file = bad));
    try {
      openBundle(dir);
      assert.unreachable(`"${bad}" was accepted`);
    } catch (e) {
      assert.instance(e, ManifestError, `${bad}: ${e}`);
      assert.match((e as Error).message, /weights\.file: a plain file name inside the bundle \(no path, no leading dot\)/);
    }
  }
  const dir = copyBundle("dir-for-file");
  const weights = bundle.manifest.weights.file;
  rmSync(join(dir, weights));
  mkdirSync(join(dir, weights));
  try {
    openBundle(dir);
    assert.unreachable("a directory was accepted as weights");
  } catch (e) {
    assert.instance(e, BundleError, String(e));
    assert.match((e as Error).message, new RegExp(`file "${weights.replace(".", "\\.")}" listed in the manifest is a directory, not a file`));
  }
});

s("a truncated weights file with a re-hashed manifest: dyno serve prints one clean dyno: line naming the file", async () => {
  const dir = copyBundle("truncated");
  const weights = bundle.manifest.weights.file;
  const path = join(dir, weights);
  truncateSync(path, Math.floor(bundle.manifest.weights.bytes / 2));
  const data = readFileSync(path);
  editManifest(dir, (m) => {
    m.weights.bytes = data.length;
    m.weights.sha256 = createHash("sha256").update(data).digest("hex");
  });
  const r = runDyno(["serve", dir, "--port", "0", "--workers", "1"]);
  assert.is(r.code, 1, r.stderr);
  const lines = r.stderr.split("\n").filter((l) => l.length > 0);
  assert.is(lines.length, 1, `stderr:\n${r.stderr}`);
  assert.match(lines[0]!, new RegExp(`^dyno: .*"${weights.replace(".", "\\.")}"`), lines[0]);
  assert.not.match(r.stderr, /\x1b\[/, "no terminal colour codes");
});

s.run();
