// Dynamic batching, from the server's side: N devices against one `dyno serve` in its own
// process, with batching off (--max-batch 1) and on (--max-batch B), in the same run.
//
//   npm run bench -- batching [--seconds 10] [--runs 2] [--quick] [--n 1,8,32] [--max-batch 8]
//                             [--delay-ms 0] [--workers 1] [--threads 1] [--variant ID]
//                             [--bundle DIR] [--out bench/results/batching.md]
//
// Each device is a real client (runtime/node/client.ts, WebSocket on loopback) in a closed loop:
// one request at a time of one variant (default: the 8-bit variant at the earliest inner cut,
// the most cloud work) for 16 seeded inputs, every output compared bit for bit with the local
// Executor's output for that input alone. Per cell (N, off|on), after one unmeasured request per
// device:
//   cloud CPU s/inf   the serve process's CPU time (/proc/PID/stat, every thread) / answers
//   cloud ms/inf      what the server reports as each request's compute (timing.cloudMs:
//                     decode + its share of the batch's segments), mean
//   throughput, p50 / p99 latency of the device's request, mean rows per run
//   cloud pred. err   the scheduler's cloud estimate for the next request (runtime/plan/
//                     estimators.ts: the server's published profile, corrected by every reply
//                     as a device does) against the reply's cloudMs: median |pred - got| / got
// Cells alternate off/on per N and run --runs times; the table shows the median and the range.
// Machines here are shared: compare cells of one run.
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { parseArgs } from "node:util";
import { cachedBundle, fixture, ROOT } from "../cli/bundle-cache.js";
import { table } from "../cli/format.js";
import type { Profile, Variant } from "../runtime/common/manifest.js";
import { quantile } from "../runtime/common/stats.js";
import { openBundle } from "../runtime/node/bundle.js";
import { connectCloud, type CloudClient } from "../runtime/node/client.js";
import { codecMs, initEstimates, observe, observationsOf, rangeMs, withCloudProfile, type Estimates } from "../runtime/plan/estimators.js";
import { benchVariant, bytesOf, cleanUp, expectedCases, sameBytes, startServe, stopChild, temporary, type Case } from "./serve-process.js";

const INPUTS = 16;
const SEED = 1616;
const CLIENT_TIMEOUT_MS = 30_000;

interface Cell {
  n: number;
  mode: "off" | "on";
  run: number;
  answers: number;
  wrong: number;
  lost: number;
  seconds: number;
  cpuSeconds: number;
  cloudMs: number[];
  latencies: number[];
  rows: number[];
  predErr: number[];
}

/** utime + stime of a process, seconds (every thread). */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) / 100; // fields 14 and 15, in clock ticks (USER_HZ 100)
}

async function device(c: CloudClient, variant: Variant, from: number, segments: number, cases: Case[], first: number, until: number, est: Estimates, cell: Cell | null): Promise<Estimates> {
  for (let i = first; cell ? performance.now() < until : i < first + 1; i++) {
    const k = cases[i % cases.length]!;
    const pred = rangeMs(est.cloud, from, segments) + codecMs(est.cloud, variant.id);
    const t0 = performance.now();
    try {
      const r = await c.infer({ variant, payloads: k.payloads });
      const ms = performance.now() - t0;
      const ok = sameBytes(bytesOf(r.outputs[0]!.data), k.expected);
      est = observe(est, ...observationsOf({ variant: variant.id, deviceSegments: from, segments, decodeMs: r.timing.decodeMs, cloudMs: r.timing.cloudMs }));
      if (!cell) continue;
      if (!ok) cell.wrong++;
      else {
        cell.answers++;
        cell.latencies.push(ms);
        cell.cloudMs.push(r.timing.cloudMs);
        cell.rows.push(r.timing.rows ?? 1);
        cell.predErr.push(Math.abs(pred - r.timing.cloudMs) / r.timing.cloudMs);
      }
    } catch (e) {
      if (!cell) throw e;
      cell.lost++;
    }
  }
  return est;
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      seconds: { type: "string" },
      runs: { type: "string" },
      quick: { type: "boolean", default: false },
      n: { type: "string" },
      "max-batch": { type: "string", default: "8" },
      "delay-ms": { type: "string", default: "0" },
      workers: { type: "string", default: "1" },
      threads: { type: "string", default: "1" },
      variant: { type: "string" },
      bundle: { type: "string" },
      out: { type: "string", default: join(ROOT, "bench/results/batching.md") },
    },
  });
  const seconds = Number(values.seconds ?? (values.quick ? 3 : 10));
  const runs = Number(values.runs ?? (values.quick ? 1 : 2));
  const ns = (values.n ?? (values.quick ? "1,8" : "1,8,32")).split(",").map(Number);
  const maxBatch = Number(values["max-batch"]);
  const delayMs = Number(values["delay-ms"]);
  if (!(seconds > 0 && seconds <= 600)) throw new Error(`--seconds must be in (0, 600], got ${values.seconds}`);
  if (!(Number.isInteger(runs) && runs >= 1 && runs <= 20)) throw new Error(`--runs must be 1..20, got ${values.runs}`);
  if (ns.some((n) => !(Number.isInteger(n) && n >= 1 && n <= 256))) throw new Error(`--n must be whole numbers in [1, 256], got ${values.n}`);
  if (!(Number.isInteger(maxBatch) && maxBatch >= 2)) throw new Error(`--max-batch must be an integer >= 2 (1 is the "off" cell), got ${values["max-batch"]}`);

  const { bundle, dir: bundleDir } = values.bundle ? { bundle: openBundle(values.bundle), dir: values.bundle } : await cachedBundle(fixture());
  const m = bundle.manifest;
  const variant = benchVariant(m, values.variant, bundleDir);
  const from = m.cuts.find((c) => c.id === variant.cut)!.deviceSegments;
  const cases = await expectedCases(bundle, variant, Number(values.threads), INPUTS, SEED);

  const tmp = mkdtempSync(join(tmpdir(), "dyno-batching-"));
  temporary.add(tmp);
  const token = randomBytes(16).toString("hex");
  const tokenFile = join(tmp, "token");
  writeFileSync(tokenFile, token);
  const serveArgs = (mode: "off" | "on") => ["--workers", values.workers!, "--max-batch", mode === "off" ? "1" : String(maxBatch), "--max-queue-delay-ms", String(delayMs), "--max-inflight", "256", "--max-inflight-per-address", "256"];
  console.log(`batching: ${m.model.name}, variant ${variant.id}, N = ${ns.join(", ")}, ${seconds} s per cell, ${runs} run(s); serve --workers ${values.workers} --threads ${values.threads}, on: --max-batch ${maxBatch} --max-queue-delay-ms ${delayMs}; ${cpus().length} CPUs`);

  const cells: Cell[] = [];
  let batchLine = "";
  for (let run = 0; run < runs; run++) {
    for (const n of ns) {
      for (const mode of run % 2 === 0 ? (["off", "on"] as const) : (["on", "off"] as const)) {
        const server = await startServe(bundleDir, tokenFile, Number(values.threads), serveArgs(mode), join(tmp, `serve-${n}-${mode}.log`));
        const clients: CloudClient[] = [];
        const cell: Cell = { n, mode, run, answers: 0, wrong: 0, lost: 0, seconds: 0, cpuSeconds: 0, cloudMs: [], latencies: [], rows: [], predErr: [] };
        try {
          const meta = (await (await fetch(`${server.url}/v2/models/${m.model.name}`, { headers: { authorization: `Bearer ${token}` } })).json()) as { dyno: { profile?: Profile; batching: Record<string, { maxBatch: number; why?: string }> } };
          if (mode === "on") batchLine = `cut ${variant.cut}: ${JSON.stringify(meta.dyno.batching[variant.cut])}`;
          const est0 = meta.dyno.profile ? withCloudProfile(initEstimates(m), meta.dyno.profile) : initEstimates(m);
          for (let j = 0; j < n; j++) clients.push(connectCloud({ url: server.url, model: m.model.sha256, token, timeoutMs: CLIENT_TIMEOUT_MS, maxInFlight: 1 }));
          const est = await Promise.all(clients.map((c, j) => device(c, variant, from, m.segments.length, cases, j, 0, est0, null)));
          const cpu0 = cpuSeconds(server.pid);
          const t0 = performance.now();
          await Promise.all(clients.map((c, j) => device(c, variant, from, m.segments.length, cases, j + 1, t0 + seconds * 1000, est[j]!, cell)));
          cell.seconds = (performance.now() - t0) / 1000;
          cell.cpuSeconds = cpuSeconds(server.pid) - cpu0;
        } finally {
          await Promise.all(clients.map((c) => c.close().catch(() => {})));
          await stopChild(server.child, "SIGTERM", 3000);
        }
        cells.push(cell);
        console.log(`  run ${run + 1} N=${String(n).padStart(2)} ${mode.padEnd(3)}: ${(cell.answers / cell.seconds).toFixed(1)}/s, cloud CPU ${((cell.cpuSeconds / cell.answers) * 1000).toFixed(2)} ms/inf, p50 ${quantile([...cell.latencies].sort((a, b) => a - b), 0.5).toFixed(1)} ms, rows ${mean(cell.rows).toFixed(2)}, pred err ${(median(cell.predErr) * 100).toFixed(0)}%${cell.wrong || cell.lost ? `, WRONG ${cell.wrong} LOST ${cell.lost}` : ""}`);
      }
    }
  }
  if (cells.some((c) => c.wrong > 0 || c.lost > 0)) process.exitCode = 1;

  // Per (N, mode): the median over runs, and the range when more than one run.
  const stat = (n: number, mode: string, f: (c: Cell) => number, digits: number) => {
    const xs = cells.filter((c) => c.n === n && c.mode === mode).map(f);
    const mid = median(xs).toFixed(digits);
    return xs.length > 1 ? `${mid} (${Math.min(...xs).toFixed(digits)}-${Math.max(...xs).toFixed(digits)})` : mid;
  };
  const rows = ns.flatMap((n) => (["off", "on"] as const).map((mode) => [
    String(n), mode === "off" ? "off" : `on (<= ${maxBatch})`,
    stat(n, mode, (c) => (c.cpuSeconds / c.answers) * 1000, 2),
    stat(n, mode, (c) => mean(c.cloudMs), 2),
    stat(n, mode, (c) => c.answers / c.seconds, 1),
    stat(n, mode, (c) => quantile([...c.latencies].sort((a, b) => a - b), 0.5), 1),
    stat(n, mode, (c) => quantile([...c.latencies].sort((a, b) => a - b), 0.99), 1),
    stat(n, mode, (c) => mean(c.rows), 2),
    stat(n, mode, (c) => median(c.predErr) * 100, 0) + "%",
    String(cells.filter((c) => c.n === n && c.mode === mode).reduce((a, c) => a + c.wrong + c.lost, 0)),
  ]));
  const ratios = ns.map((n) => {
    const pair = (f: (c: Cell) => number) => {
      const r = cells.filter((c) => c.n === n && c.mode === "on").map((on) => f(on) / f(cells.find((c) => c.n === n && c.mode === "off" && c.run === on.run)!));
      return `${median(r).toFixed(2)}x${r.length > 1 ? ` (${Math.min(...r).toFixed(2)}-${Math.max(...r).toFixed(2)})` : ""}`;
    };
    return `- N = ${n}: throughput ${pair((c) => c.answers / c.seconds)}, cloud CPU per inference ${pair((c) => c.cpuSeconds / c.answers)}, p99 ${pair((c) => quantile([...c.latencies].sort((a, b) => a - b), 0.99))} (batched / unbatched, paired by run)`;
  });
  const header = ["N", "batching", "cloud CPU ms/inf", "cloud ms/inf (reported)", "answers/s", "p50 ms", "p99 ms", "rows/run", "cloud pred. err", "wrong+lost"];
  const text = table(header, rows);
  console.log(`\n${text}\n\n${ratios.join("\n")}\n\n${batchLine}`);
  const md = [
    `# Dynamic batching: ${m.model.name}, ${variant.id}`,
    "",
    `\`npm run bench -- batching ${process.argv.slice(2).join(" ")}\` on ${new Date().toISOString().slice(0, 10)}, ${cpus().length} CPUs (${cpus()[0]?.model ?? "?"}); serve --workers ${values.workers} --threads ${values.threads}; each device one request at a time over WebSocket on loopback; ${seconds} s per cell, ${runs} run(s), median (range).`,
    "",
    "| " + header.join(" | ") + " |",
    "| " + header.map(() => "---").join(" | ") + " |",
    ...rows.map((r) => "| " + r.join(" | ") + " |"),
    "",
    ...ratios,
    "",
    `The server's batching for this cut: ${batchLine}.`,
    "",
    "cloud CPU ms/inf is the serve process's CPU time over the answers (its main thread's protocol work included); cloud ms/inf is what the server reports per request (decode + its share of the batch's run), the number a device learns; cloud pred. err is the scheduler's estimate before each request against that report. Every output was compared bit for bit with the model run alone (wrong+lost counts failures). The devices share the 2 cores with the server, so at N = 32 the client side takes CPU too.",
    "",
  ].join("\n");
  mkdirSync(dirname(values.out!), { recursive: true });
  writeFileSync(values.out!, md);
  writeFileSync(values.out!.replace(/\.md$/, ".json"), JSON.stringify({ variant: variant.id, maxBatch, delayMs, seconds, cells: cells.map(({ latencies, cloudMs, rows: r, predErr, ...c }) => ({ ...c, p50: quantile([...latencies].sort((a, b) => a - b), 0.5), p99: quantile([...latencies].sort((a, b) => a - b), 0.99), cloudMs: mean(cloudMs), rows: mean(r), predErr: median(predErr) })) }, null, 1));
  console.log(`\nwrote ${values.out!.replace(`${ROOT}/`, "")}`);
}

process.on("exit", cleanUp);
for (const sig of ["SIGINT", "SIGTERM"] as const) process.on(sig, () => process.exit(130));
try {
  await main();
} finally {
  cleanUp();
}
