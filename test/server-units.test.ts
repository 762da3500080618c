// The units dyno serve is made of, each alone: admission (global, per client, per address), the
// log limiter and log escaping, the heartbeat, and the request-size bound behind --max-body.
import { perSampleDims } from "../runtime/common/manifest.js";
import { openExecutor } from "../runtime/node/executor.js";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import ort from "onnxruntime-node";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { Admission } from "../runtime/cloud/admission.js";
import { openBundle, type NodeBundle } from "../runtime/node/bundle.js";
import { Executor } from "../runtime/exec/executor.js";
import { Heartbeat } from "../runtime/cloud/heartbeat.js";
import { escapeLogText, LogLimiter } from "../runtime/cloud/log-limiter.js";
import { buildRequest, maxRequestBytes, modelId, ProtocolError } from "../runtime/common/protocol.js";
import { randomFloats } from "../runtime/common/random.js";
import { compileTestBundle, fixtures } from "./fixtures.js";

const MiB = 1 << 20;
const root = mkdtempSync(join(tmpdir(), "dyno-serve-units-"));
let bundle: NodeBundle;

const u = suite("serve units: admission, log limiter, heartbeat, request bound");

u.before(async () => {
  const fx = fixtures().find((f) => f.name === "resnet")!;
  await compileTestBundle(fx.path, join(root, "bundle"), { bits: [8], samples: 16, profileRuns: 1 });
  bundle = openBundle(join(root, "bundle"));
});
u.after(() => rmSync(root, { recursive: true, force: true }));

u("admission: global, per-client and per-address limits; release once; keys forgotten at 0", () => {
  const a = new Admission({ total: 4, perClient: 2, perAddress: 3 });
  const r1 = a.admit("c1", "10.0.0.1", 1);
  a.admit("c1", "10.0.0.1", 2);
  assert.throws(() => a.admit("c1", "10.0.0.1", 3), (e: ProtocolError) => e.kind === "overloaded" && /this client has 2 requests in flight \(limit 2 per client\)/.test(e.message) && e.id === 3);
  a.admit("c2", "10.0.0.1", 4);
  assert.throws(() => a.admit("c3", "10.0.0.1", 5), (e: ProtocolError) => /address 10\.0\.0\.1 has 3 requests in flight over its connections \(limit 3 per address\)/.test(e.message));
  a.admit("c4", "10.0.0.2", 6);
  assert.throws(() => a.admit("c5", "10.0.0.3", 7), (e: ProtocolError) => /server has 4 requests in flight \(limit 4\)/.test(e.message));
  r1();
  r1();
  assert.is(a.inflight, 3, "a second release is a no-op");
  a.admit("c5", "10.0.0.3", 8);
  assert.is(a.inflight, 4);
  assert.is(a.keys, 4 + 3, "c1, c2, c4, c5 and three addresses are tracked");
});

u("log limiter: the first lines pass, the rest become one summary per interval per category", () => {
  const out: string[] = [];
  const l = new LogLimiter({ burst: 3, intervalMs: 10_000, emit: (s) => out.push(s) });
  for (let k = 0; k < 10; k++) l.note("unauthorized requests", `10.0.0.${k % 4}`, `line ${k}`, 1000 + k);
  l.note("bad-request requests", "10.0.0.9", "other", 1500);
  assert.equal(out, ["line 0", "line 1", "line 2", "other"]);
  l.flush(5000);
  assert.is(out.length, 4, "no summary before the interval ends");
  l.flush(11_000);
  assert.equal(out.slice(4), ["dyno serve: 7 unauthorized requests from 4 addresses in the last 10 s (not logged one by one)"]);
  l.note("unauthorized requests", "10.0.0.1", "line again", 11_001);
  assert.is(out[out.length - 1], "line again", "a new interval starts with its own burst");
  l.flush(30_000);
  assert.is(out.length, 6, "nothing to summarise: no line");
});

u("escapeLogText: control characters as JSON escapes, length capped", () => {
  assert.is(escapeLogText("x\nFAKE LINE"), "x\\nFAKE LINE");
  assert.is(escapeLogText("a\r\tb\u001b[31m\u2028"), "a\\r\\tb\\u001b[31m\\u2028");
  assert.is(escapeLogText("é ok \"quoted\""), "é ok \"quoted\"");
  const long = escapeLogText("y".repeat(5000), 100);
  assert.ok(long.length < 130 && long.endsWith("... (4900 more characters)"), long);
});

u("heartbeat: ping each tick, cut after two unanswered, a pong resets", () => {
  const h = new Heartbeat(2);
  assert.is(h.tick(), "ping");
  assert.is(h.tick(), "ping");
  assert.is(h.tick(), "terminate");
  const g = new Heartbeat(2);
  assert.is(g.tick(), "ping");
  g.pong();
  assert.is(g.tick(), "ping");
  assert.is(g.tick(), "ping");
  g.pong();
  assert.is(g.tick(), "ping");
});

u("maxRequestBytes: float32 cut bytes of the largest variant + codec headers + the frame's header allowance", async () => {
  const m = bundle.manifest;
  const bound = maxRequestBytes(m);
  for (const v of m.variants) {
    const cut = m.cuts.find((c) => c.id === v.cut)!;
    if (cut.kind === "output") continue;
    assert.ok(bound >= cut.bytes, `${v.id}: ${cut.bytes} bytes of float32 at its cut`);
  }
  // A real float32 request at the input cut (what a device sends) fits.
  const f32 = m.variants.find((v) => v.codec.bits === "f32" && m.cuts.find((c) => c.id === v.cut)!.kind === "input")!;
  const local = await openExecutor(bundle);
  const dims = perSampleDims(m.model.inputs[0]!.shape);
  const d = await local.device(f32.id, new ort.Tensor("float32", randomFloats(dims.reduce((a, b) => a * b, 1), 3), dims));
  await local.release();
  if (d.kind !== "split") throw new Error("input cut is not split");
  const frame = buildRequest(9, modelId(m), f32, d.payloads);
  assert.ok(frame.length <= bound, `a real request of ${frame.length} bytes, bound ${bound}`);
  assert.ok(bound < 2 * MiB, `bound ${bound}`);
});

u.run();

const fair = suite("fair queue");

fair("FairQueue: round robin over clients, FIFO within one; remove and drain", async () => {
  const { FairQueue } = await import("../runtime/cloud/fair-queue.js");
  const q = new FairQueue<{ client: string; n: number }>();
  // A greedy client queues 5 before a quiet one queues 2.
  const greedy = [1, 2, 3, 4, 5].map((n) => ({ client: "greedy", n }));
  const quiet = [1, 2].map((n) => ({ client: "quiet", n }));
  for (const x of [...greedy, ...quiet]) q.push(x);
  const order = [];
  for (let x = q.take(); x; x = q.take()) order.push(`${x.client}${x.n}`);
  assert.equal(order, ["greedy1", "quiet1", "greedy2", "quiet2", "greedy3", "greedy4", "greedy5"]);
  q.push(greedy[0]!);
  q.push(quiet[0]!);
  assert.ok(q.remove(greedy[0]!));
  assert.not.ok(q.remove(greedy[0]!));
  assert.equal(q.drain(), [quiet[0]]);
  assert.is(q.length, 0);
  assert.is(q.take(), undefined);
});

fair.run();
