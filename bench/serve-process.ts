// What the cloud benchmarks (bench/load.ts, bench/batching.ts) share: a `dyno serve` in its own
// process, the bookkeeping that kills every child process and removes temporary directories when a
// bench ends, the variant the devices send and the outputs every reply is checked against.
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, openSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import ort from "onnxruntime-node";
import { ROOT } from "../cli/bundle-cache.js";
import { perSampleDims, type Manifest, type Variant } from "../runtime/common/manifest.js";
import { randomFloats } from "../runtime/common/random.js";
import type { Payload } from "../runtime/exec/executor.js";
import type { NodeBundle } from "../runtime/node/bundle.js";
import { openExecutor } from "../runtime/node/executor.js";

export const HOST = "127.0.0.1";
export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

// --- child processes: every one is killed when the bench ends ------------------------------------

export const children = new Set<ChildProcess>();
export const track = (c: ChildProcess) => (children.add(c), c.once("exit", () => children.delete(c)), c);
/** Temporary directories (the token file): removed at exit, also after a signal. */
export const temporary = new Set<string>();
export const cleanUp = () => {
  for (const c of children) c.kill("SIGKILL");
  for (const d of temporary) rmSync(d, { recursive: true, force: true });
};

/** Waits for a child to exit; SIGKILL after `graceMs`. */
export function stopChild(c: ChildProcess, signal: NodeJS.Signals, graceMs: number): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const cut = setTimeout(() => c.kill("SIGKILL"), graceMs);
    c.once("exit", () => (clearTimeout(cut), resolve()));
    c.kill(signal);
  });
}

/** Calls `onLine` for each line a child prints on stdout. */
export function lines(c: ChildProcess, onLine: (line: string) => void): void {
  let buf = "";
  c.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
    buf += chunk;
    let i: number;
    while ((i = buf.indexOf("\n")) >= 0) {
      onLine(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
  });
}

export interface Serve {
  url: string;
  pid: number;
  child: ChildProcess;
  logPath: string;
}

/** `dyno serve` from the sources in its own process; resolves once it listens and is ready. */
export async function startServe(bundleDir: string, tokenFile: string, threads: number, extra: string[], logPath: string): Promise<Serve> {
  const args = ["serve", bundleDir, "--host", HOST, "--port", "0", "--token-file", tokenFile, "--threads", String(threads), ...extra];
  const code = `import(${JSON.stringify(pathToFileURL(join(ROOT, "cli/main.ts")).href)}).then(async (m) => { process.exitCode = await m.runCli(${JSON.stringify(args)}); })`;
  const log = openSync(logPath, "w");
  const child = track(spawn(process.execPath, ["--import", "tsx", "-e", code], { cwd: ROOT, stdio: ["ignore", "pipe", log] }));
  closeSync(log);
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("dyno serve did not listen within 60 s")), 60_000);
    lines(child, (line) => {
      const m = /^dyno serve: .* on (http:\/\/[^ ]+)/.exec(line);
      if (m) (clearTimeout(timer), resolve(m[1]!));
    });
    child.once("exit", (c) => (clearTimeout(timer), reject(new Error(`dyno serve exited (${c}) before listening: ${readFileSync(logPath, "utf8").slice(-2000)}`))));
  });
  if (new URL(url).hostname !== HOST) throw new Error(`dyno serve listens on ${url}, not ${HOST}`);
  for (let i = 0; i < 100; i++) {
    const ok = await fetch(`${url}/v2/health/ready`).then((r) => r.status === 200, () => false);
    if (ok) return { url, pid: child.pid!, child, logPath };
    await sleep(50);
  }
  throw new Error(`dyno serve at ${url} never became ready`);
}

/** The max of VmRSS (/proc/PID/status) sampled every 100 ms, in bytes. */
export function sampleRss(pid: number): { stop(): number } {
  let max = 0;
  const read = () => {
    try {
      const kb = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
      if (kb) max = Math.max(max, Number(kb[1]) * 1024);
    } catch {
      /* exited */
    }
  };
  read();
  const timer = setInterval(read, 100);
  return { stop: () => (read(), clearInterval(timer), max) };
}

// --- what the devices send, and what they must get back ------------------------------------------

/**
 * The variant a bench's devices send: `id`, or by default the 8-bit variant at the earliest inner
 * cut (the most cloud work); throws for an unknown or device-only one.
 */
export function benchVariant(m: Manifest, id: string | undefined, where: string): Variant {
  const cutOf = (v: Variant) => m.cuts.find((c) => c.id === v.cut)!;
  const variant = id !== undefined
    ? m.variants.find((v) => v.id === id)
    : m.variants.filter((v) => cutOf(v).kind === "inner" && v.codec.bits === 8 && v.admissible).sort((a, b) => cutOf(a).deviceSegments - cutOf(b).deviceSegments)[0];
  if (!variant) throw new Error(`no variant "${id}" in ${where} (variants: ${m.variants.map((v) => v.id).join(", ")})`);
  if (cutOf(variant).kind === "output") throw new Error(`${variant.id} runs on the device alone: pick a variant that sends something`);
  return variant;
}

/** A request a device sends, and the model's output for it run alone (float32 bytes). */
export interface Case {
  payloads: Payload[];
  expected: Uint8Array;
}

/** `count` seeded inputs' payloads for `variant` and their outputs, once, from the local Executor with the server's thread count. */
export async function expectedCases(bundle: NodeBundle, variant: Variant, threads: number, count: number, seed: number): Promise<Case[]> {
  const m = bundle.manifest;
  const local = await openExecutor(bundle, { threads });
  const dims = perSampleDims(m.model.inputs[0]!.shape);
  const size = dims.reduce((a, b) => a * b, 1);
  const cases: Case[] = [];
  for (let i = 0; i < count; i++) {
    const d = await local.device(variant.id, new ort.Tensor("float32", randomFloats(size, seed + i), dims));
    if (d.kind !== "split") throw new Error(`${variant.id} is not a split variant`);
    const out = (await local.cloud(variant.id, d.payloads)).outputs[m.model.outputs[0]!.name]!.data as Float32Array;
    cases.push({ payloads: d.payloads, expected: new Uint8Array(bytesOf(out)) });
  }
  await local.release();
  return cases;
}

export function bytesOf(a: Float32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(a, b) === 0;
}
