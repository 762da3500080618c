// The device's cloud client over several `dyno serve`s and in either protocol: KServe v2 answers
// bit for bit what the native protocol answers; requests spread over two servers; one server
// killed (SIGKILL, a real process) mid-run loses no request and is used again once it is back;
// a request's own errors (400, a wrong token) are not sent to another server. The endpoint set's
// bench and order are checked as a table first.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import ort from "onnxruntime-node";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { perSampleDims, type Variant } from "../runtime/common/manifest.js";
import { randomFloats } from "../runtime/common/random.js";
import type { Payload } from "../runtime/exec/executor.js";
import { EndpointSet, type SpreadClient } from "../runtime/device/endpoints.js";
import { openBundle, type NodeBundle } from "../runtime/node/bundle.js";
import { connectCloud, type CloudClient, type CloudOptions, type CloudReply } from "../runtime/node/client.js";
import { openExecutor } from "../runtime/node/executor.js";
import type { DynoServer } from "../runtime/cloud/server.js";
import { cloudHarness, metricValue, rejection } from "./helpers/cloud.js";
import { startCli, type CliProcess } from "./helpers/processes.js";
import { compileTestBundle, fixtures } from "./fixtures.js";

const SEED = 2024;
const TOKEN = "cloud-client-token";
const root = mkdtempSync(join(tmpdir(), "dyno-cloud-client-"));
const bundleDir = join(root, "bundle");
const tokenFile = join(root, "token");
let bundle: NodeBundle;
const harness = cloudHarness({ bundle: () => bundle, token: TOKEN, timeoutMs: 5000 });
const children: CliProcess[] = [];
let a: DynoServer;
let b: DynoServer;

/** Device payloads of one input for several variants over several cuts (float and packed). */
const cases: { variant: Variant; payloads: Payload[] }[] = [];

const t = suite("cloud client: several clouds, either protocol");

t.before(async () => {
  await compileTestBundle(fixtures().find((f) => f.name === "resnet")!.path, bundleDir, { bits: [4, 8], samples: 16, profileRuns: 1 });
  writeFileSync(tokenFile, TOKEN);
  bundle = openBundle(bundleDir);
  const m = bundle.manifest;
  const local = await openExecutor(bundle);
  const dims = perSampleDims(m.model.inputs[0]!.shape);
  const x = new ort.Tensor("float32", randomFloats(dims.reduce((p, q) => p * q, 1), SEED), dims);
  for (const v of m.variants) {
    if (typeof v.codec.bits === "string" && !["f32", "f16"].includes(v.codec.bits)) continue; // images need sharp's shapes: the kserve test covers them
    const d = await local.device(v.id, x);
    if (d.kind === "split") cases.push({ variant: v, payloads: d.payloads });
  }
  await local.release();
  [a, b] = [await harness.serve({ profileRuns: 0, workers: 1 }), await harness.serve({ profileRuns: 0, workers: 1 })];
});

t.after(async () => {
  for (const c of harness.clients) await c.close().catch(() => {});
  for (const s of harness.servers) await s.close();
  for (const c of children) await c.kill();
  rmSync(root, { recursive: true, force: true });
});

const client = (url: string | string[], o: Partial<CloudOptions> = {}): CloudClient => {
  const c = connectCloud({ url, model: bundle.manifest.model.sha256, manifest: bundle.manifest, token: TOKEN, timeoutMs: 5000, ...o });
  harness.clients.push(c);
  return c;
};
const bytesOf = (r: CloudReply) => r.outputs.map((o) => ({ name: o.name, dims: o.dims, bytes: new Uint8Array(o.data.buffer, o.data.byteOffset, o.data.byteLength) }));
const okCount = (srv: DynoServer) => ["ws", "http", "kserve"].reduce((s, tr) => s + metricValue(srv, "dyno_requests_total", `transport="${tr}",status="ok"`), 0);
const countOf = (srv: DynoServer, transport: string, status: string) => metricValue(srv, "dyno_requests_total", `transport="${transport}",status="${status}"`);

// --- the endpoint set (pure) ---------------------------------------------------------------------

t("endpoint set: round robin over equal load, fewest in flight first, a failed endpoint benched last with a doubling backoff, reset on success", () => {
  const s = new EndpointSet(3, { benchMs: 100, maxBenchMs: 350 });
  assert.equal([s.order(0), s.order(0), s.order(0), s.order(0)], [[0, 1, 2], [1, 2, 0], [2, 0, 1], [0, 1, 2]]);
  s.inFlight[1] = 2;
  assert.equal(s.order(0), [2, 0, 1], "busy endpoint 1 after the others (round robin at 1: 2, then 0)");
  s.inFlight[1] = 0;
  // Failures in a row: benched 100, 200, 350 (capped); a second failure while benched changes nothing.
  const rows: [number, number, number][] = [[1000, 100, 1100], [1050, 100, 1100], [1100, 200, 1300], [1300, 350, 1650], [1650, 350, 2000]];
  for (const [now, backoff, until] of rows) {
    s.failed(1, now);
    assert.equal([s.backoffMs[1], s.benchedUntil[1]], [backoff, until], `failed at ${now}`);
    assert.is(s.order(now + 1).at(-1), 1, `benched endpoint tried last at ${now + 1}`);
  }
  assert.ok(s.healthy(1, 2000), "back after its bench");
  s.succeeded(1);
  assert.equal([s.backoffMs[1], s.benchedUntil[1]], [0, 0]);
  // All benched: still an order (soonest back first), so a request is always tried somewhere.
  s.failed(0, 3000), s.failed(2, 3010), s.failed(1, 3020);
  assert.equal(s.order(3030), [0, 2, 1]);
});

t("endpoint set: the primary (probes, metadata) is the endpoint serving most, kept against a near tie, moved when it is benched", () => {
  const s = new EndpointSet(2);
  assert.is(s.primary(0), 0);
  for (let i = 0; i < 10; i++) s.succeeded(i % 2); // an even spread: 0 stays
  assert.is(s.primary(0), 0);
  for (let i = 0; i < 10; i++) s.succeeded(1);
  assert.is(s.primary(0), 1, "1 served far more");
  s.failed(1, 0);
  assert.equal(s.primaryOrder(1), [0, 1], "1 benched: 0 takes over");
});

// --- (a) KServe v2 = native ------------------------------------------------------------------------

t("kserve protocol: outputs bit-identical to the native protocol's over several cuts and codecs, with the server's timing; ping, probe and info", async () => {
  const native = client(a.url);
  const kserve = client(a.url, { protocol: "kserve" });
  const m = bundle.manifest;
  const cuts = new Set(cases.map((c) => c.variant.cut));
  assert.ok(cuts.size >= 3 && cases.some((c) => c.variant.codec.bits === 4) && cases.some((c) => c.variant.codec.bits === "f32"), `cases over ${cuts.size} cuts`);
  const before = countOf(a, "kserve", "ok");
  for (const c of cases) {
    const n = await native.infer({ variant: c.variant, payloads: c.payloads });
    const k = await kserve.infer({ variant: c.variant, payloads: c.payloads });
    assert.equal(bytesOf(k), bytesOf(n), `${c.variant.id}: kserve outputs differ from the native protocol's`);
    assert.equal(k.outputs.map((o) => o.name), m.model.outputs.map((o) => o.name));
    assert.ok(k.timing.cloudMs > 0 && k.timing.totalMs >= k.timing.cloudMs && Math.abs(k.timing.decodeMs + k.timing.segmentMs - k.timing.cloudMs) < 1e-6, JSON.stringify(k.timing));
    assert.ok(k.wallMs >= k.timing.totalMs, `${k.wallMs} >= ${k.timing.totalMs}`);
    const payloadBytes = c.payloads.reduce((s, p) => s + p.bytes.length, 0);
    assert.ok(k.bytesSent > payloadBytes && k.bytesReceived > 4 * k.outputs[0]!.data.length, `${k.bytesSent} ${k.bytesReceived}`);
    assert.is(k.endpoint, a.url);
  }
  assert.is(countOf(a, "kserve", "ok") - before, cases.length, "every kserve request went over KServe");
  assert.ok((await kserve.ping()) >= 0);
  const probe = await kserve.probe(32 * 1024);
  assert.is(probe.bytes, 32 * 1024);
  const info = await kserve.info(m.model.name);
  assert.ok(info.limits.maxBody! > 0 && info.limits.maxInflightPerClient! > 0, JSON.stringify(info.limits));
});

t("kserve gzip: a float payload goes compressed when it pays (same outputs, fewer bytes); random floats and zstd payloads go plain", async () => {
  const plain = client(a.url, { protocol: "kserve" });
  const gz = client(a.url, { protocol: "kserve", gzip: true });
  const floats = cases.filter((c) => c.variant.codec.bits === "f32");
  const ratio = (c: (typeof cases)[number]) => gzipSync(c.payloads[0]!.bytes).length / c.payloads[0]!.bytes.length;
  // A ReLU's output (many zeros) compresses; the seeded random input does not.
  const zeros = floats.reduce((x, y) => (ratio(y) < ratio(x) ? y : x));
  const input = floats.find((c) => bundle.manifest.cuts.find((k) => k.id === c.variant.cut)!.kind === "input")!;
  assert.ok(ratio(zeros) < 0.8 && ratio(input) > 0.9, `${zeros.variant.id} ${ratio(zeros)}, ${input.variant.id} ${ratio(input)}`);
  for (const [c, pays] of [[zeros, true], [input, false], [cases.find((x) => x.variant.codec.lossless === "zstd")!, false]] as const) {
    const [p, g] = [await plain.infer({ variant: c.variant, payloads: c.payloads }), await gz.infer({ variant: c.variant, payloads: c.payloads })];
    assert.equal(bytesOf(g), bytesOf(p), c.variant.id);
    if (pays) assert.ok(g.bytesSent < 0.8 * p.bytesSent, `${c.variant.id}: gzip ${g.bytesSent} B against ${p.bytesSent} B`);
    else assert.is(g.bytesSent, p.bytesSent, `${c.variant.id} sent plain`);
  }
});

t("kserve against another bundle: wrong-bundle (the version in the path is the bundle's id)", async () => {
  const c = cases[0]!;
  const other = client(a.url, { protocol: "kserve", model: "0123456789abcdef" });
  const e = await rejection(other.infer({ variant: c.variant, payloads: c.payloads }));
  assert.is(e.kind, "wrong-bundle", e.message);
  assert.match(e.message, /HTTP 404 .*unknown model/);
});

// --- (b) spreading ---------------------------------------------------------------------------------

for (const protocol of ["dyno", "kserve"] as const) {
  t(`${protocol}: two servers share the requests (round robin one at a time, both busy when pipelined)`, async () => {
    const c = client([a.url, b.url], { protocol });
    const [a0, b0] = [okCount(a), okCount(b)];
    const from: string[] = [];
    for (let i = 0; i < 10; i++) from.push((await c.infer({ variant: cases[i % cases.length]!.variant, payloads: cases[i % cases.length]!.payloads })).endpoint);
    assert.equal([from.filter((u) => u === a.url).length, from.filter((u) => u === b.url).length], [5, 5], from.join(" "));
    const burst = await Promise.all(cases.slice(0, 8).map((x) => c.infer({ variant: x.variant, payloads: x.payloads })));
    assert.ok(burst.some((r) => r.endpoint === a.url) && burst.some((r) => r.endpoint === b.url), burst.map((r) => r.endpoint).join(" "));
    // The servers' own counts agree with the replies.
    const byA = from.concat(burst.map((r) => r.endpoint)).filter((u) => u === a.url).length;
    assert.equal([okCount(a) - a0, okCount(b) - b0], [byA, 18 - byA]);
  });
}

// --- (c) a server killed mid-run -----------------------------------------------------------------

t("one server SIGKILLed mid-run: every request answered (by the other), none lost; the dead one benched, then used again once it is back", async () => {
  const serveArgs = (port: number) => ["serve", bundleDir, "--port", String(port), "--token-file", tokenFile, "--profile-runs", "0", "--workers", "1"];
  let dead = await startCli(serveArgs(0));
  children.push(dead);
  const port = Number(new URL(dead.url).port);
  const expected = new Map<string, ReturnType<typeof bytesOf>>();
  const reference = client(a.url);
  for (const c of cases) expected.set(c.variant.id, bytesOf(await reference.infer({ variant: c.variant, payloads: c.payloads })));

  const c = client([dead.url, a.url], { benchMs: 200, maxBenchMs: 400 }) as SpreadClient;
  // Warm: both connected and each has run once (the child's first run is slow).
  for (let i = 0; i < 2; i++) await c.infer({ variant: cases[0]!.variant, payloads: cases[0]!.payloads });
  const total = 48;
  const replies: CloudReply[] = [];
  let next = 0;
  let killing: Promise<void> | null = null;
  let killed = false;
  let afterKill = 0;
  const lane = async () => {
    while (next < total) {
      const x = cases[next++ % cases.length]!;
      const r = await c.infer({ variant: x.variant, payloads: x.payloads });
      assert.equal(bytesOf(r), expected.get(x.variant.id), `${x.variant.id} from ${r.endpoint}`);
      replies.push(r);
      if (killed && r.endpoint === dead.url) afterKill++;
      // Killed mid-run, with the other lanes' requests in flight on both servers.
      if (!killing && replies.filter((y) => y.endpoint === dead.url).length === 6) killing = dead.kill().then(() => void (killed = true));
    }
  };
  await Promise.all([lane(), lane(), lane(), lane()]);
  await killing;
  assert.ok(killed, "killed mid-run");
  assert.is(replies.length, total, "every request answered");
  const onDead = replies.filter((r) => r.endpoint === dead.url).length;
  assert.ok(onDead >= 6 && onDead < total / 2, `${onDead} answered by the killed server`);
  assert.is(afterKill, 0, "nothing from the killed server once it was dead");
  const [deadHealth, liveHealth] = c.endpoints();
  assert.ok(deadHealth!.failures >= 1 && liveHealth!.failures === 0, JSON.stringify(c.endpoints()));
  // Benched, not tried by every request: a few failures (those in flight, and one a bench), not one per request after the kill.
  assert.ok(deadHealth!.failures < total - onDead, `${deadHealth!.failures} failures for ${total - onDead} requests after the kill`);

  // Back on the same port: once its bench is over a request goes there again.
  dead = await startCli(serveArgs(port));
  children.push(dead);
  const url = dead.url;
  let back: CloudReply | null = null;
  const end = performance.now() + 8000;
  while (!back && performance.now() < end) {
    const r = await c.infer({ variant: cases[0]!.variant, payloads: cases[0]!.payloads });
    if (r.endpoint === url) back = r;
    else await new Promise((res) => setTimeout(res, 20));
  }
  assert.ok(back, "the restarted server answered again within 8 s");
  assert.equal(c.endpoints().map((e) => [e.healthy, e.benchedMs]), [[true, 0], [true, 0]], "healthy again, its backoff reset");
  assert.equal(bytesOf(back!), expected.get(cases[0]!.variant.id));
});

// --- (d), (e) a request's own errors ----------------------------------------------------------------

for (const protocol of ["dyno", "kserve"] as const) {
  t(`${protocol}: a bad request (400) is answered by one server and not sent to the other`, async () => {
    const c = client([a.url, b.url], { protocol });
    const x = cases.find((y) => y.variant.cut !== bundle.manifest.cuts.find((k) => k.kind === "input")!.id)!;
    const transport = protocol === "dyno" ? "ws" : "kserve";
    const before = countOf(a, transport, "bad-request") + countOf(b, transport, "bad-request");
    const e = await rejection(c.infer({ variant: x.variant, payloads: [{ tensor: "not-a-cut-tensor", bytes: x.payloads[0]!.bytes }] }));
    assert.is(e.kind, "bad-request", e.message);
    assert.match(e.message, /not-a-cut-tensor/);
    assert.not.match(e.message, /cloud endpoints failed/);
    assert.is(countOf(a, transport, "bad-request") + countOf(b, transport, "bad-request") - before, 1, "refused once, by one server");
    // The client is fine: the next request is answered.
    assert.ok((await c.infer({ variant: x.variant, payloads: x.payloads })).outputs.length > 0);
  });

  t(`${protocol}: a wrong token is a clear "unauthorized", not retried on the other server`, async () => {
    const c = client([a.url, b.url], { protocol, token: "not-the-token" });
    const x = cases[0]!;
    const e = await rejection(c.infer({ variant: x.variant, payloads: x.payloads }));
    assert.is(e.kind, "unauthorized", e.message);
    assert.match(e.message, /wrong bearer token/);
    assert.not.match(e.message, /cloud endpoints failed/);
    const i = await rejection(c.info(bundle.manifest.model.name));
    assert.is(i.kind, "unauthorized", i.message);
  });
}

t.run();
