// Load: N devices against one `dyno serve` in its own process, quiet and beside hostile clients.
//
//   npm run bench -- load [--seconds 30] [--quick] [--n 1,8,32] [--transport ws|http]
//                         [--variant ID] [--threads 1] [--serve-args "--workers 2 ..."]
//                         [--hostile a,b,c] [--out bench/results/load.md]
//
//   bench process                              serve process (fresh per cell)     hostile process
//   N good clients (runtime/device/client.ts) ──ws──► dyno serve --token-file F     ◄── (a) never reads replies
//   each a closed loop: infer, check, next     (CLI from the sources, tsx)   ◄── (b) unauthenticated 4 MiB
//   RSS of serve: /proc/PID/status VmRSS       stderr -> a file (log lines)  ◄── (c) headers a byte at a time
//
// Per N (default 1, 8, 32; --quick: 1, 8 and 5 s) two cells of `seconds` each: quiet, and hostile
// (the hostile process starts a second before the good clients and runs throughout). A good
// client sends the requests of one fixed variant (default: the 8-bit variant at the earliest
// inner cut, the most cloud work) for 16 seeded inputs; every output is compared bit for bit with
// the output the local Executor computed once for that input (serve runs with --threads 1, as
// the Executor here, so that exact is the right test). Reported per cell: correct replies per
// second, p50/p99 latency of the correct replies, lost (infer() rejected, by kind), wrong, the
// server's max RSS, and for hostile cells p99 hostile / p99 quiet (goal <= 2x).
//
// Bounded: every loop stops at its deadline and at a count; hostile traffic is rate-limited; all
// traffic goes to 127.0.0.1; every child process is killed when the bench ends, also on error.
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import { cpus, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { parseArgs } from "node:util";
import WebSocket from "ws";
import { cachedBundle, fixture, ROOT } from "../cli/bundle-cache.js";
import { benchVariant, bytesOf, cleanUp, expectedCases, HOST, lines, sameBytes, sampleRss, sleep, startServe, stopChild, temporary, track, type Case } from "./serve-process.js";
import { humanBytes, table } from "../cli/format.js";
import { CloudError, connectCloud, type CloudClient } from "../runtime/node/client.js";
import type { Variant } from "../runtime/common/manifest.js";
import { buildRequest, modelId } from "../runtime/common/protocol.js";
import { quantile } from "../runtime/common/stats.js";

const INPUTS = 16;
const SEED = 1414;
/** Per good client and cell: a bound on the loop besides its deadline. */
const MAX_REQUESTS_PER_CLIENT = 1_000_000;
const CLIENT_TIMEOUT_MS = 10_000;
/** After a failed request a good client waits this long, so a refusing server is not spun on. */
const RETRY_PAUSE_MS = 50;
const HEAD_START_MS = 1000;

const now = () => performance.now();


// --- hostile clients (the child process) ----------------------------------------------------------

interface HostileConfig {
  url: string;
  /** The file holding the server's token (not the token: argv is visible to every local user). */
  tokenFile: string;
  /** A valid request frame (the good clients' variant), for the client that never reads. */
  frame: string;
  seconds: number;
  /** Which of the hostile clients run: "a", "b", "c". */
  kinds: string[];
  /** (a): requests per second it sends. */
  nonReaderRate: number;
  /** (b): connections flooding at once, and their total rate in MiB/s. */
  floodWorkers: number;
  floodMiBps: number;
  /** (c): connections sending headers a byte at a time, and the interval between bytes. */
  slowConnections: number;
  slowByteMs: number;
}

interface HostileStats {
  nonReader: { connections: number; sent: number; heldBack: number };
  flood: { attempts: number; bytes: number; refused: Record<string, number> };
  slow: { opened: number; cut: number; bytes: number };
}

const HOSTILE_DEFAULTS = { nonReaderRate: 2000, floodWorkers: 4, floodMiBps: 64, slowConnections: 200, slowByteMs: 100 } as const;

async function hostileMain(cfg: HostileConfig): Promise<void> {
  const stats: HostileStats = {
    nonReader: { connections: 0, sent: 0, heldBack: 0 },
    flood: { attempts: 0, bytes: 0, refused: {} },
    slow: { opened: 0, cut: 0, bytes: 0 },
  };
  const end = now() + cfg.seconds * 1000;
  let stopping = false;
  const live = () => !stopping && now() < end;
  const finish = () => {
    if (stopping) return;
    stopping = true;
    process.stdout.write(`hostile: ${JSON.stringify(stats)}\n`, () => process.exit(0));
  };
  process.on("SIGTERM", finish);
  setTimeout(finish, cfg.seconds * 1000 + 500);
  const url = new URL(cfg.url);
  if (url.hostname !== HOST) throw new Error(`hostile clients only talk to ${HOST}, not ${url.hostname}`);
  const wsUrl = `ws://${HOST}:${url.port}/v1/ws`;
  if (cfg.kinds.includes("a")) void nonReader(wsUrl, readFileSync(cfg.tokenFile, "utf8").trim(), cfg, readFileSync(cfg.frame), stats.nonReader, live);
  if (cfg.kinds.includes("b")) for (let w = 0; w < cfg.floodWorkers; w++) void flood(w, Number(url.port), wsUrl, cfg, stats.flood, live);
  if (cfg.kinds.includes("c")) slowHeaders(Number(url.port), cfg, stats.slow, live);
  console.log("hostile: ready");
}

/** (a) An authenticated client that sends requests and never reads a reply (its socket paused). */
async function nonReader(wsUrl: string, token: string, cfg: HostileConfig, frame: Uint8Array, s: HostileStats["nonReader"], live: () => boolean) {
  const perTick = Math.max(1, Math.round(cfg.nonReaderRate / 100));
  const cap = cfg.nonReaderRate * cfg.seconds;
  for (let attempt = 0; live() && attempt < 100 && s.sent < cap; attempt++) {
    const ws = new WebSocket(wsUrl, ["dyno.v1"], { headers: { Authorization: `Bearer ${token}` }, perMessageDeflate: false });
    ws.on("error", () => {});
    let closed = false;
    ws.once("close", () => (closed = true));
    const opened = await new Promise<boolean>((r) => (ws.once("open", () => r(true)), ws.once("close", () => r(false))));
    if (opened) {
      s.connections++;
      ws.pause();
      // Every 10 ms, rate/100 requests; held back while our own send buffer is past 4 MiB (the
      // server stopped reading from us), so this process stays bounded too.
      while (live() && !closed && s.sent < cap) {
        if (ws.bufferedAmount > 4 << 20) s.heldBack++;
        else for (let k = 0; k < perTick; k++) ws.send(frame), s.sent++;
        await sleep(10);
      }
    }
    ws.terminate();
    await sleep(100);
  }
}

/** (b) Unauthenticated large messages: WebSocket without / with a wrong token, and HTTP POSTs likewise. */
async function flood(worker: number, port: number, wsUrl: string, cfg: HostileConfig, s: HostileStats["flood"], live: () => boolean) {
  const size = 4 << 20;
  const body = Buffer.alloc(size, 0x5a);
  const headers: Record<string, string> = worker % 2 === 0 ? {} : { Authorization: "Bearer wrong-token" };
  const pauseMs = Math.max(5, (size / ((cfg.floodMiBps * (1 << 20)) / cfg.floodWorkers)) * 1000);
  const count = (what: string) => (s.refused[what] = (s.refused[what] ?? 0) + 1);
  for (let attempt = 0; live() && attempt < 100_000; attempt++) {
    s.attempts++;
    const t0 = now();
    if (worker % 4 < 2) {
      await new Promise<void>((resolve) => {
        const ws = new WebSocket(wsUrl, ["dyno.v1"], { headers, perMessageDeflate: false });
        const done = setTimeout(() => ws.terminate(), 2000);
        ws.on("error", () => {});
        ws.once("open", () => {
          ws.send(body, () => {});
          s.bytes += size;
        });
        ws.once("close", (code) => (count(`ws ${code}`), clearTimeout(done), resolve()));
      });
    } else {
      await new Promise<void>((resolve) => {
        const req = http.request({ host: HOST, port, path: "/v1/infer", method: "POST", agent: false, headers: { ...headers, "Content-Type": "application/octet-stream", "Content-Length": size } });
        const done = setTimeout(() => req.destroy(), 2000);
        let settled = false;
        const settle = (what: string) => settled || ((settled = true), count(what), clearTimeout(done), resolve());
        req.on("response", (res) => (res.resume(), settle(`http ${res.statusCode}`)));
        req.on("error", (e: NodeJS.ErrnoException) => settle(`http ${e.code ?? "error"}`));
        req.end(body);
        s.bytes += size;
      });
    }
    await sleep(Math.max(0, pauseMs - (now() - t0)));
  }
}

/** (c) Many connections sending the headers of a request one byte at a time, never finishing. */
function slowHeaders(port: number, cfg: HostileConfig, s: HostileStats["slow"], live: () => boolean) {
  const request = Buffer.from(`GET /v2/health/live HTTP/1.1\r\nHost: ${HOST}\r\nX-Slow: ${"a".repeat(8000)}\r\n\r\n`, "latin1");
  const open = new Map<net.Socket, number>();
  const connect = () => {
    if (!live() || s.opened >= cfg.slowConnections * 50) return;
    s.opened++;
    const sock = net.connect({ host: HOST, port });
    sock.on("error", () => {});
    sock.on("data", () => {});
    sock.once("connect", () => open.set(sock, 0));
    sock.once("close", () => {
      open.delete(sock);
      if (!live()) return;
      s.cut++;
      setTimeout(connect, cfg.slowByteMs);
    });
  };
  for (let i = 0; i < cfg.slowConnections; i++) connect();
  const tick = setInterval(() => {
    if (!live()) return clearInterval(tick);
    for (const [sock, sent] of open) {
      if (sent >= request.length || sock.destroyed) continue;
      sock.write(request.subarray(sent, sent + 1));
      open.set(sock, sent + 1);
      s.bytes++;
    }
  }, cfg.slowByteMs);
}

// --- the bench --------------------------------------------------------------------------------------


async function startHostile(cfg: HostileConfig): Promise<{ stop(): Promise<HostileStats | null> }> {
  const self = new URL(import.meta.url).pathname;
  const child = track(spawn(process.execPath, ["--import", "tsx", self, "--hostile-child", JSON.stringify(cfg)], { cwd: ROOT, stdio: ["ignore", "pipe", "inherit"] }));
  let stats: HostileStats | null = null;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("hostile clients did not start within 30 s")), 30_000);
    lines(child, (line) => {
      if (line === "hostile: ready") (clearTimeout(timer), resolve());
      else if (line.startsWith("hostile: {")) stats = JSON.parse(line.slice("hostile: ".length)) as HostileStats;
    });
    child.once("exit", (c) => (clearTimeout(timer), reject(new Error(`hostile clients exited (${c}) before starting`))));
  });
  return {
    async stop() {
      await stopChild(child, "SIGTERM", 3000);
      return stats;
    },
  };
}

interface CellStats {
  latencies: number[];
  ok: number;
  lost: number;
  wrong: number;
  errors: Record<string, number>;
}

type Mode = "quiet" | "hostile";

interface Row {
  n: number;
  mode: Mode;
  perS: number;
  p50: number;
  p99: number;
  lost: number;
  wrong: number;
  rss: number;
  errors: Record<string, number>;
  hostile: HostileStats | null;
  logLines: number;
  /** From the server's /metrics at the cell's end: WebSocket requests answered ok, and refused overloaded. */
  served: { ok: number; overloaded: number } | null;
  /** Requests the good clients had answered (measured, wrong and their first unmeasured one each). */
  good: number;
}

/** The server's count of WebSocket requests answered with `status`, from its /metrics text. */
function wsCount(metrics: string, status: string): number {
  return Number(new RegExp(`dyno_requests_total\\{transport="ws",status="${status}"\\} (\\d+)`).exec(metrics)?.[1] ?? 0);
}

/** One good client: a closed loop over the cases until `until` (or the count bound). */
async function goodClient(c: CloudClient, variant: Variant, cases: Case[], first: number, until: number, s: CellStats, measured: boolean, count = MAX_REQUESTS_PER_CLIENT) {
  for (let k = 0, i = first; k < count && (measured ? now() < until : true); k++, i++) {
    const x = cases[i % cases.length]!;
    const t0 = now();
    try {
      const r = await c.infer({ variant, payloads: x.payloads });
      const ms = now() - t0;
      if (r.outputs.length === 1 && sameBytes(bytesOf(r.outputs[0]!.data), x.expected)) {
        s.ok += measured ? 1 : 0;
        if (measured) s.latencies.push(ms);
      } else s.wrong++;
    } catch (e) {
      s.lost++;
      const kind = e instanceof CloudError ? e.kind : "error";
      s.errors[kind] = (s.errors[kind] ?? 0) + 1;
      await sleep(RETRY_PAUSE_MS);
    }
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      seconds: { type: "string" },
      quick: { type: "boolean", default: false },
      n: { type: "string" },
      transport: { type: "string", default: "ws" },
      variant: { type: "string" },
      threads: { type: "string", default: "1" },
      "serve-args": { type: "string", default: "" },
      hostile: { type: "string", default: "a,b,c" },
      out: { type: "string", default: join(ROOT, "bench/results/load.md") },
    },
  });
  const seconds = Number(values.seconds ?? (values.quick ? 5 : 30));
  const ns = (values.n ?? (values.quick ? "1,8" : "1,8,32")).split(",").map(Number);
  const transport = values.transport === "http" ? "http" : "ws";
  const threads = Number(values.threads);
  const serveArgs = values["serve-args"]!.split(/\s+/).filter(Boolean);
  const kinds = values.hostile!.split(",").filter(Boolean);
  if (kinds.length === 0 || kinds.some((k) => !["a", "b", "c"].includes(k))) throw new Error(`--hostile takes a list of a, b, c (a: never reads, b: unauthenticated flood, c: slow headers), got "${values.hostile}"`);
  if (!(seconds > 0 && seconds <= 600)) throw new Error(`--seconds must be in (0, 600], got ${values.seconds}`);
  if (ns.some((n) => !(Number.isInteger(n) && n >= 1 && n <= 256))) throw new Error(`--n must be whole numbers in [1, 256], got ${values.n}`);

  const fx = fixture();
  const { bundle, dir: bundleDir } = await cachedBundle(fx);
  const m = bundle.manifest;
  const variant = benchVariant(m, values.variant, bundleDir);
  const cases = await expectedCases(bundle, variant, threads, INPUTS, SEED);

  const tmp = mkdtempSync(join(tmpdir(), "dyno-load-"));
  temporary.add(tmp);
  try {
    const token = randomBytes(16).toString("hex");
    const tokenFile = join(tmp, "token");
    writeFileSync(tokenFile, token);
    const frame = buildRequest(1, modelId(m), variant, cases[0]!.payloads);
    const framePath = join(tmp, "frame.bin");
    writeFileSync(framePath, frame);
    console.log(`load: ${fx.name}, variant ${variant.id} (${frame.length} B requests), ${transport}, N = ${ns.join(", ")}, ${seconds} s per cell; serve --threads ${threads}${serveArgs.length ? ` ${serveArgs.join(" ")}` : ""}; ${cpus().length} CPUs`);

    const rows: Row[] = [];
    for (const n of ns) {
      for (const mode of ["quiet", "hostile"] as const) {
        const logPath = join(tmp, `serve-${n}-${mode}.log`);
        const server = await startServe(bundleDir, tokenFile, threads, serveArgs, logPath);
        const rss = sampleRss(server.pid);
        const clients: CloudClient[] = [];
        let hostile: Awaited<ReturnType<typeof startHostile>> | null = null;
        let hostileStats: HostileStats | null = null;
        const s: CellStats = { latencies: [], ok: 0, lost: 0, wrong: 0, errors: {} };
        let elapsed = seconds;
        try {
          if (mode === "hostile") {
            hostile = await startHostile({ url: server.url, tokenFile, frame: framePath, seconds: seconds + (HEAD_START_MS + CLIENT_TIMEOUT_MS) / 1000 + 5, kinds, ...HOSTILE_DEFAULTS });
            await sleep(HEAD_START_MS);
          }
          for (let j = 0; j < n; j++) clients.push(connectCloud({ url: server.url, model: m.model.sha256, token, transport, timeoutMs: CLIENT_TIMEOUT_MS, maxInFlight: 4 }));
          // One unmeasured request each (opens the WebSocket); checked and counted like the rest.
          await Promise.all(clients.map((c, j) => goodClient(c, variant, cases, j, 0, s, false, 1)));
          const t0 = now();
          await Promise.all(clients.map((c, j) => goodClient(c, variant, cases, j + 1, t0 + seconds * 1000, s, true)));
          elapsed = (now() - t0) / 1000;
          hostileStats = (await hostile?.stop()) ?? null;
        } finally {
          await Promise.all(clients.map((c) => c.close().catch(() => {})));
          await hostile?.stop();
          const maxRss = rss.stop();
          const metrics = await fetch(`${server.url}/metrics`, { headers: { Authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(5000) }).then((r) => r.text(), () => null);
          const served = metrics === null ? null : { ok: wsCount(metrics, "ok"), overloaded: wsCount(metrics, "overloaded") };
          await stopChild(server.child, "SIGTERM", 3000);
          const sorted = Float64Array.from(s.latencies).sort();
          const logLines = statSync(logPath).size === 0 ? 0 : readFileSync(logPath, "utf8").split("\n").length - 1;
          rows.push({ n, mode, perS: s.ok / elapsed, p50: quantile(sorted, 0.5), p99: quantile(sorted, 0.99), lost: s.lost, wrong: s.wrong, rss: maxRss, errors: s.errors, hostile: hostileStats, logLines, served, good: s.ok + s.wrong + n });
        }
        const r = rows[rows.length - 1]!;
        console.log(`  N=${n} ${mode}: ${r.perS.toFixed(1)}/s, p50 ${r.p50.toFixed(1)} ms, p99 ${r.p99.toFixed(1)} ms, lost ${r.lost}, wrong ${r.wrong}, max RSS ${humanBytes(r.rss)}`);
      }
    }
    report(rows, { fx: fx.name, variant, frameBytes: frame.length, transport, seconds, threads, serveArgs, kinds, out: values.out! });
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

function report(rows: Row[], o: { fx: string; variant: Variant; frameBytes: number; transport: string; seconds: number; threads: number; serveArgs: string[]; kinds: string[]; out: string }): void {
  const quietP99 = (n: number) => rows.find((r) => r.n === n && r.mode === "quiet")?.p99 ?? NaN;
  const kinds = (e: Record<string, number>) => Object.entries(e).map(([k, v]) => `${k} ${v}`).join(", ") || "-";
  const header = ["N", "mode", "req/s", "p50 ms", "p99 ms", "lost", "wrong", "max RSS", "p99 hostile/quiet", "lost by kind"];
  const cells = rows.map((r) => [
    r.n, r.mode, r.perS.toFixed(1), r.p50.toFixed(1), r.p99.toFixed(1), r.lost, r.wrong, humanBytes(r.rss),
    r.mode === "hostile" ? `${(r.p99 / quietP99(r.n)).toFixed(2)}x` : "-", kinds(r.errors),
  ]);
  console.log();
  console.log(table(header, cells));
  const worst = Math.max(...rows.filter((r) => r.mode === "hostile").map((r) => r.p99 / quietP99(r.n)));
  console.log(`\nworst p99 hostile/quiet: ${worst.toFixed(2)}x (goal <= 2x)${worst <= 2 ? "" : " — NOT MET"}; lost ${rows.reduce((a, r) => a + r.lost, 0)}, wrong ${rows.reduce((a, r) => a + r.wrong, 0)}`);

  const command = `npm run bench -- load${process.argv.slice(2).length ? ` ${process.argv.slice(2).join(" ")}` : ""}`;
  const md = [
    "# Load: N devices against one dyno serve, quiet and beside hostile clients",
    "",
    `Command: \`${command}\` (${new Date().toISOString().slice(0, 10)}, ${cpus().length} CPUs ${cpus()[0]?.model ?? ""}, Node ${process.version}).`,
    "",
    `- Server: \`dyno serve <${o.fx} bundle> --host 127.0.0.1 --port 0 --token-file F --threads ${o.threads}${o.serveArgs.length ? ` ${o.serveArgs.join(" ")}` : ""}\`, from the sources in its own process, a fresh one per cell; max RSS from /proc/PID/status VmRSS every 100 ms.`,
    `- Good clients: N clients of runtime/device/client.ts (${o.transport}, one request at a time each, timeout ${CLIENT_TIMEOUT_MS} ms) in the bench process, for ${o.seconds} s per cell, all sending variant \`${o.variant.id}\` (${o.frameBytes} B requests) for ${INPUTS} seeded inputs; every output compared bit for bit with the local Executor's. req/s, p50 and p99 count correct replies only; lost = infer() rejected; a failed client waits ${RETRY_PAUSE_MS} ms before its next request.`,
    `- Hostile (mode hostile: ${o.kinds.join(", ")}), in a separate process started ${HEAD_START_MS} ms before the good clients: (a) an authenticated WebSocket client that never reads (socket paused), sending the same requests at up to ${HOSTILE_DEFAULTS.nonReaderRate}/s; (b) ${HOSTILE_DEFAULTS.floodWorkers} unauthenticated flooders of 4 MiB messages (WebSocket and HTTP POST, no token and a wrong token), ${HOSTILE_DEFAULTS.floodMiBps} MiB/s in all; (c) ${HOSTILE_DEFAULTS.slowConnections} connections sending HTTP headers one byte every ${HOSTILE_DEFAULTS.slowByteMs} ms (reconnecting when cut).`,
    "",
    `| ${header.join(" | ")} |`,
    `|${header.map((_, i) => (i < 2 || i === header.length - 1 ? "---" : "---:")).join("|")}|`,
    ...cells.map((c) => `| ${c.join(" | ")} |`),
    "",
    `Worst p99 hostile/quiet: ${worst.toFixed(2)}x (goal <= 2x).`,
    "",
    "What the hostile clients did, and the server's log:",
    "",
    "| N | non-reader sent (held back ticks) | run for it / refused `overloaded` (server) | flood attempts, bytes | flood outcomes | slow connections opened / cut | server log lines |",
    "|---:|---|---|---|---|---|---:|",
    ...rows.filter((r) => r.mode === "hostile").map((r) => {
      const h = r.hostile;
      return h
        ? `| ${r.n} | ${h.nonReader.sent} on ${h.nonReader.connections} connection(s) (${h.nonReader.heldBack}) | ${r.served ? `${r.served.ok - r.good} / ${r.served.overloaded}` : "?"} | ${h.flood.attempts}, ${humanBytes(h.flood.bytes)} | ${kinds(h.flood.refused)} | ${h.slow.opened} / ${h.slow.cut} | ${r.logLines} |`
        : `| ${r.n} | (no report) | | | | | ${r.logLines} |`;
    }),
    "",
    `Quiet cells' server log lines: ${rows.filter((r) => r.mode === "quiet").map((r) => `N=${r.n}: ${r.logLines}`).join(", ")}.`,
    "",
    ...(o.transport === "http" ? ["Over HTTP every good client comes from 127.0.0.1: the server's per-client in-flight limit (per remote address) applies to all of them together.", ""] : []),
    "Everything runs on one machine (server, good and hostile clients share its CPUs), so a hostile cell also measures CPU contention; compare cells of one run, not runs of different machines.",
    "",
  ].join("\n");
  mkdirSync(dirname(o.out), { recursive: true });
  writeFileSync(o.out, md);
  console.log(`\nwrote ${o.out.replace(`${ROOT}/`, "")}`);
}

const hostileArg = process.argv.indexOf("--hostile-child");
if (hostileArg >= 0) await hostileMain(JSON.parse(process.argv[hostileArg + 1]!) as HostileConfig);
else {
  process.on("exit", cleanUp);
  for (const sig of ["SIGINT", "SIGTERM"] as const) process.on(sig, () => process.exit(130));
  try {
    await main();
  } finally {
    cleanUp();
  }
}
