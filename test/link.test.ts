// Link emulation on real sockets on loopback: rate, RTT, jitter without reordering, trace steps,
// HTTP through the proxy, teardown; and the spec parser's errors. The timing bands are loose on
// purpose: they check the shaper's model, not the machine's speed.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { describeLink, parseLinkSpec, PRESETS, startLink, stepAt, toTrace, type Link } from "../runtime/emu/link.js";

const SEED = 77;

function deadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout;
  return Promise.race([p, new Promise<T>((_, reject) => { t = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms); })]).finally(() => clearTimeout(t));
}

const listen = (server: net.Server | http.Server) => new Promise<number>((resolve) => server.listen(0, "127.0.0.1", () => resolve((server.address() as net.AddressInfo).port)));
const shut = (server: net.Server | http.Server) => new Promise<void>((resolve) => server.close(() => resolve()));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A server that answers "k" once it has received `expect` bytes on a connection; echoes otherwise. */
function sinkOrEcho(expect?: number): net.Server {
  return net.createServer((s) => {
    let got = 0;
    s.on("data", (d: Buffer) => {
      if (expect === undefined) return void s.write(d);
      got += d.length;
      if (got >= expect) { got -= expect; s.write("k"); }
    });
    s.on("error", () => {});
  });
}

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: "127.0.0.1", port }, () => resolve(s));
    s.once("error", reject);
  });
}

/** Seconds from writing `bytes` to the sink's reply. */
async function timedTransfer(sock: net.Socket, bytes: number): Promise<number> {
  const t0 = performance.now();
  const reply = new Promise<void>((resolve) => sock.once("data", () => resolve()));
  sock.write(Buffer.alloc(bytes, 7));
  await deadline(reply, 10_000, `transfer of ${bytes} B`);
  return (performance.now() - t0) / 1000;
}

async function withLink<T>(shape: Parameters<typeof startLink>[0]["shape"], server: net.Server, body: (link: Link) => Promise<T>): Promise<T> {
  const port = await listen(server);
  const link = await startLink({ target: { port }, shape, seed: SEED });
  try {
    return await body(link);
  } finally {
    await link.close();
    await shut(server);
  }
}

test("rate: 1 MB through an 8 Mbit/s link takes about 1 s", async () => {
  const SIZE = 1_000_000;
  await withLink({ bandwidthMbps: 8, rttMs: 0 }, sinkOrEcho(SIZE), async (link) => {
    const sock = await connect(link.port);
    const s = await timedTransfer(sock, SIZE);
    sock.destroy();
    assert.ok(s >= 0.8 && s <= 1.6, `1 MB at 8 Mbit/s took ${s.toFixed(3)} s`);
    assert.ok(link.stats().upBytes >= SIZE);
  });
});

test("a 3 MB stream (past the 1 MiB pause mark) arrives whole and in order at about the rate", async () => {
  const SIZE = 3_000_000;
  const data = Buffer.alloc(SIZE);
  for (let i = 0; i < SIZE; i++) data[i] = (i * 31 + (i >> 11)) & 0xff;
  await withLink({ bandwidthMbps: 200, rttMs: 0 }, sinkOrEcho(), async (link) => {
    const sock = await connect(link.port);
    const chunks: Buffer[] = [];
    let got = 0;
    const t0 = performance.now();
    const done = new Promise<void>((resolve) => sock.on("data", (d: Buffer) => { chunks.push(d); got += d.length; if (got >= SIZE) resolve(); }));
    sock.write(data);
    await deadline(done, 10_000, "3 MB echo");
    const s = (performance.now() - t0) / 1000;
    sock.destroy();
    assert.ok(Buffer.concat(chunks).equals(data), "bytes differ after the round trip");
    // Up and down share nothing, so the echo streams back while the upload goes on: ~0.12 s.
    assert.ok(s >= 0.1 && s <= 0.6, `3 MB echo at 200 Mbit/s took ${s.toFixed(3)} s`);
  });
});

test("RTT: a ping-pong through a 100 ms link takes about 100 ms more", async () => {
  await withLink({ bandwidthMbps: 1000, rttMs: 100 }, sinkOrEcho(), async (link) => {
    const sock = await connect(link.port);
    const times: number[] = [];
    for (let i = 0; i < 3; i++) {
      const t0 = performance.now();
      const back = new Promise((r) => sock.once("data", r));
      sock.write("p");
      await deadline(back, 5000, "ping");
      times.push(performance.now() - t0);
    }
    sock.destroy();
    for (const t of times) assert.ok(t >= 98 && t <= 160, `ping-pong took ${t.toFixed(1)} ms (${times.map((x) => x.toFixed(1)).join(", ")})`);
  });
});

test("jitter delays but never reorders: 100 numbered writes come back in order", async () => {
  const N = 100;
  await withLink({ bandwidthMbps: 100, rttMs: 10, jitterMs: 40 }, sinkOrEcho(), async (link) => {
    const sock = await connect(link.port);
    let got = Buffer.alloc(0);
    const done = new Promise<void>((resolve) => sock.on("data", (d: Buffer) => { got = Buffer.concat([got, d]); if (got.length >= 4 * N) resolve(); }));
    for (let i = 0; i < N; i++) {
      const b = Buffer.alloc(4);
      b.writeUInt32LE(i);
      sock.write(b);
      if (i % 10 === 9) await sleep(2);
    }
    await deadline(done, 5000, "echo of 100 writes");
    sock.destroy();
    for (let i = 0; i < N; i++) assert.is(got.readUInt32LE(4 * i), i, `message ${i} out of order (seed ${SEED})`);
  });
});

test("trace: a step changes the rate (80 -> 4 Mbit/s at 0.3 s)", async () => {
  const trace = { name: "step", steps: [{ at: 0, bandwidthMbps: 80, rttMs: 0 }, { at: 0.3, bandwidthMbps: 4, rttMs: 0, name: "slow" }] };
  const SIZE = 200_000;
  await withLink(trace, sinkOrEcho(SIZE), async (link) => {
    assert.is(link.current().bandwidthMbps, 80);
    const sock = await connect(link.port);
    const fast = await timedTransfer(sock, SIZE);
    await sleep(Math.max(0, 320 - fast * 1000));
    assert.is(link.current().name, "slow");
    const slow = await timedTransfer(sock, SIZE);
    sock.destroy();
    assert.ok(fast < 0.12, `200 KB at 80 Mbit/s took ${fast.toFixed(3)} s`);
    assert.ok(slow >= 0.3 && slow <= 0.7, `200 KB at 4 Mbit/s took ${slow.toFixed(3)} s`);
    link.setShape("4g");
    assert.is(link.current().bandwidthMbps, 15);
    assert.match(link.describe(), /^link: emulated 4g \(15 Mbit\/s, 50 ms RTT, jitter 0 ms\) on loopback, shaping in a TCP proxy$/);
  });
});

test("HTTP goes through the proxy (a byte proxy: keep-alive, half-close)", async () => {
  const server = http.createServer((req, res) => {
    let body = "";
    req.on("data", (d) => (body += d));
    req.on("end", () => res.end(`got ${body.length} bytes on ${req.url}`));
  });
  const port = await listen(server);
  const link = await startLink({ target: { port }, shape: "wifi" });
  const agent = new http.Agent({ keepAlive: true });
  try {
    for (let i = 0; i < 2; i++) {
      const text = await deadline(new Promise<string>((resolve, reject) => {
        const req = http.request({ host: "127.0.0.1", port: link.port, path: `/infer/${i}`, method: "POST", agent }, (res) => {
          let out = "";
          res.on("data", (d) => (out += d));
          res.on("end", () => resolve(out));
        });
        req.on("error", reject);
        req.end("x".repeat(5000));
      }), 5000, "http request");
      assert.is(text, `got 5000 bytes on /infer/${i}`);
    }
    assert.is(link.stats().connections, 1, "keep-alive reused one connection");
  } finally {
    agent.destroy();
    await link.close();
    await shut(server);
  }
});

test("close() tears everything down: no open handles, the port refuses", async () => {
  const handles = () => process.getActiveResourcesInfo().filter((r) => r !== "TTYWrap").length;
  await sleep(5);
  const before = handles();
  const server = sinkOrEcho();
  const port = await listen(server);
  const link = await startLink({ target: { port }, shape: PRESETS["wifi-3g-4g"]!, seed: SEED });
  const sock = await connect(link.port);
  sock.on("error", () => {});
  sock.write(Buffer.alloc(300_000));
  await sleep(20);
  await link.close();
  await link.close();
  await shut(server);
  sock.destroy();
  await sleep(20);
  assert.is(handles(), before, `open: ${process.getActiveResourcesInfo().join(", ")}`);
  const refused = await new Promise<string>((resolve) => {
    const s = net.connect({ host: "127.0.0.1", port: link.port });
    s.on("connect", () => { s.destroy(); resolve("connected"); });
    s.on("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? "error"));
  });
  assert.is(refused, "ECONNREFUSED");
});

test("parseLinkSpec: presets from the brief, trace files, clear errors", () => {
  assert.equal([parseLinkSpec("3g").steps[0], parseLinkSpec("4G").steps[0]], [
    { at: 0, bandwidthMbps: 2, rttMs: 100, jitterMs: 0, name: "3g" },
    { at: 0, bandwidthMbps: 15, rttMs: 50, jitterMs: 0, name: "4g" },
  ]);
  for (const p of ["5g", "wifi"]) assert.equal([parseLinkSpec(p).steps[0]!.bandwidthMbps, parseLinkSpec(p).steps[0]!.rttMs], [100, 10]);
  const demo = parseLinkSpec("wifi-3g-4g");
  assert.equal(demo.steps.map((s) => [s.at, s.name]), [[0, "wifi"], [20, "3g"], [40, "4g"]]);
  assert.is(stepAt(demo, 25).name, "3g");
  assert.is(stepAt(demo, 1000).name, "4g");
  assert.match(describeLink(demo), /^link: emulated trace wifi-3g-4g \(0 s: wifi 100 Mbit\/s, 10 ms RTT, jitter 0 ms; 20 s: 3g 2 Mbit\/s, 100 ms RTT, jitter 0 ms; 40 s: 4g 15 Mbit\/s, 50 ms RTT, jitter 0 ms; the last step holds\) on loopback, shaping in a TCP proxy$/);
  parseLinkSpec("3g").steps[0]!.bandwidthMbps = 0;
  assert.is(PRESETS["3g"]!.steps[0]!.bandwidthMbps, 2, "presets are copied, not shared");

  assert.throws(() => parseLinkSpec("6g"), /unknown link preset "6g" \(presets: 3g, 4g, 5g, wifi, wifi-3g-4g; or give a trace .json file\)/);
  assert.throws(() => parseLinkSpec("nope/trace.json"), /link trace file "nope\/trace.json" not found/);
  const dir = mkdtempSync(join(tmpdir(), "dyno-link-"));
  try {
    const write = (name: string, text: string) => { const f = join(dir, name); writeFileSync(f, text); return f; };
    const good = write("good.json", JSON.stringify({ name: "mine", steps: [{ at: 0, bandwidthMbps: 5, rttMs: 30 }, { at: 2, bandwidthMbps: 1, rttMs: 80, jitterMs: 5 }] }));
    assert.is(parseLinkSpec(good).steps[1]!.jitterMs, 5);
    assert.throws(() => parseLinkSpec(write("bad.json", "{ nope")), /link trace file ".*bad.json" is not JSON/);
    assert.throws(() => parseLinkSpec(write("field.json", JSON.stringify({ name: "x", steps: [{ at: 0, bandwidthMbps: "fast", rttMs: 1 }] }))), /field.json": steps.0.bandwidthMbps: .*expected number/);
    assert.throws(() => parseLinkSpec(write("zero.json", JSON.stringify({ name: "x", steps: [{ at: 0, bandwidthMbps: 0, rttMs: 1 }] }))), /steps.0.bandwidthMbps: Too small/);
    assert.throws(() => parseLinkSpec(write("order.json", JSON.stringify({ name: "x", steps: [{ at: 0, bandwidthMbps: 1, rttMs: 1 }, { at: 0, bandwidthMbps: 2, rttMs: 1 }] }))), /steps.1.at \(0 s\) must be after steps.0.at \(0 s\)/);
    assert.throws(() => parseLinkSpec(write("late.json", JSON.stringify({ name: "x", steps: [{ at: 1, bandwidthMbps: 1, rttMs: 1 }] }))), /the first step must be at 0 s/);
    assert.throws(() => parseLinkSpec(write("typo.json", JSON.stringify({ name: "x", steps: [{ at: 0, bandwidthMbps: 1, rtt: 1 }] }))), /steps.0/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  assert.equal(toTrace({ bandwidthMbps: 8, rttMs: 20 }).name, "8 Mbit/s, 20 ms");
  assert.throws(() => toTrace({ bandwidthMbps: -1, rttMs: 20 }), /bandwidthMbps/);
});

test.run();
