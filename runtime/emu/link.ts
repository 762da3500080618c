// Link emulation: a TCP proxy on loopback that shapes both directions, for tests, bench and demo.
// A byte proxy, so WebSocket and HTTP go through it alike.
//
//   device ──► 127.0.0.1:port ══ shaped up ══► target (server)
//          ◄──                 ══ shaped down ◄──
//
// Each direction is one link shared by every connection: a chunk of n bytes arriving at t leaves
// the link at finish = max(t, busyUntil) + n / rate (a token bucket of zero depth, kept as a
// virtual clock, so timer lateness never accumulates) and is delivered at finish + RTT/2 + jitter,
// never before the previous chunk of its connection (jitter delays, it does not reorder). Chunks
// are cut to at most 16 KiB so that a large write streams instead of arriving in one piece.
// A trace changes rate, RTT and jitter at its steps; bytes already scheduled keep their times.
import { existsSync, readFileSync } from "node:fs";
import net from "node:net";
import { performance } from "node:perf_hooks";
import * as z from "zod";
import { DynoError } from "../common/errors.js";
import { WAKE_SLACK_MS, wakeAt } from "../common/clock.js";
import { usePreciseTimers } from "../node/waker.js";
import { rng } from "../common/random.js";
import { PRESETS, type LinkStep, type LinkTrace } from "./link-presets.js";

export { PRESETS, type LinkStep, type LinkTrace } from "./link-presets.js";

/** A bad link spec: unknown preset, unreadable or malformed trace file, bad numbers. */
export class LinkError extends DynoError {
  override name = "LinkError";
}

export interface LinkShape {
  bandwidthMbps: number;
  rttMs: number;
  jitterMs?: number;
  name?: string;
}

/** A preset name, a trace file path, a constant shape or a trace. */
export type LinkSpec = string | LinkShape | LinkTrace;

const Step = z.object({
  at: z.number().nonnegative(),
  bandwidthMbps: z.number().positive().finite(),
  rttMs: z.number().nonnegative().finite(),
  jitterMs: z.number().nonnegative().finite().optional(),
  name: z.string().optional(),
}).strict();
const Trace = z.object({ name: z.string().min(1), steps: z.array(Step).min(1) }).strict();

function checkTrace(json: unknown, source: string): LinkTrace {
  const r = Trace.safeParse(json);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    throw new LinkError(`${source}: ${issue.path.join(".") || "(root)"}: ${issue.message} (a trace is { "name": "...", "steps": [{ "at": seconds, "bandwidthMbps": n, "rttMs": n, "jitterMs"?: n }] })`);
  }
  const t = r.data;
  if (t.steps[0]!.at !== 0) throw new LinkError(`${source}: steps.0.at is ${t.steps[0]!.at}; the first step must be at 0 s`);
  for (let i = 1; i < t.steps.length; i++) {
    if (!(t.steps[i]!.at > t.steps[i - 1]!.at)) throw new LinkError(`${source}: steps.${i}.at (${t.steps[i]!.at} s) must be after steps.${i - 1}.at (${t.steps[i - 1]!.at} s)`);
  }
  return t;
}

/** A preset name ("3g", "4g", "5g", "wifi", "wifi-3g-4g") or the path of a trace JSON file. */
export function parseLinkSpec(spec: string): LinkTrace {
  const preset = PRESETS[spec.toLowerCase()];
  if (preset) return structuredClone(preset);
  const looksLikeFile = spec.endsWith(".json") || spec.includes("/") || spec.includes("\\");
  if (!existsSync(spec)) {
    throw new LinkError(looksLikeFile
      ? `link trace file "${spec}" not found`
      : `unknown link preset "${spec}" (presets: ${Object.keys(PRESETS).join(", ")}; or give a trace .json file)`);
  }
  let text: string;
  try {
    text = readFileSync(spec, "utf8");
  } catch (e) {
    throw new LinkError(`link trace file "${spec}" cannot be read: ${(e as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new LinkError(`link trace file "${spec}" is not JSON: ${(e as Error).message}`);
  }
  return checkTrace(json, `link trace file "${spec}"`);
}

/** Any spec as a validated trace (a constant shape is a one-step trace). */
export function toTrace(spec: LinkSpec): LinkTrace {
  if (typeof spec === "string") return parseLinkSpec(spec);
  if ("steps" in spec) return checkTrace(spec, `link trace "${spec.name}"`);
  const name = spec.name ?? `${spec.bandwidthMbps} Mbit/s, ${spec.rttMs} ms`;
  return checkTrace({ name, steps: [{ at: 0, bandwidthMbps: spec.bandwidthMbps, rttMs: spec.rttMs, jitterMs: spec.jitterMs ?? 0 }] }, `link shape "${name}"`);
}

/** The step in force `seconds` after the trace started (the last step holds for ever). */
export function stepAt(trace: LinkTrace, seconds: number): LinkStep {
  let s = trace.steps[0]!;
  for (const t of trace.steps) if (t.at <= seconds) s = t;
  return s;
}

function stepText(s: LinkStep): string {
  return `${s.bandwidthMbps} Mbit/s, ${s.rttMs} ms RTT, jitter ${s.jitterMs ?? 0} ms`;
}

/** The line every output that uses the emulated link prints. */
export function describeLink(trace: LinkTrace): string {
  const where = "on loopback, shaping in a TCP proxy";
  if (trace.steps.length === 1) return `link: emulated ${trace.name} (${stepText(trace.steps[0]!)}) ${where}`;
  const steps = trace.steps.map((s) => `${s.at} s: ${s.name ? `${s.name} ` : ""}${stepText(s)}`).join("; ");
  return `link: emulated trace ${trace.name} (${steps}; the last step holds) ${where}`;
}

export interface LinkOptions {
  target: { host?: string; port: number };
  shape: LinkSpec;
  /** Seed of the jitter. */
  seed?: number;
  /** Port to listen on (default: any free port) on 127.0.0.1. */
  port?: number;
}

export interface LinkStats {
  /** Bytes delivered towards the target (device -> cloud) and back. */
  upBytes: number;
  downBytes: number;
  connections: number;
}

export interface Link {
  host: string;
  port: number;
  describe(): string;
  /** The step in force now. */
  current(): LinkStep;
  /** Replaces the shape; a trace restarts at its first step. */
  setShape(spec: LinkSpec): void;
  stats(): LinkStats;
  /** Closes the listener and every connection and timer. */
  close(): Promise<void>;
}

const PIECE = 16 * 1024;
const HIGH_WATER = 1 << 20;
const LOW_WATER = 1 << 18;

/** One direction of the link, shared by all connections. */
interface Direction {
  busyUntil: number;
  delivered: number;
}

/** One direction of one connection: a FIFO of pieces with non-decreasing delivery times. */
interface Pipe {
  from: net.Socket;
  to: net.Socket;
  dir: Direction;
  queue: { at: number; data: Buffer }[];
  head: number;
  pending: number;
  lastAt: number;
  /** Cancels the pending wake-up, when one is armed. */
  timer: (() => void) | null;
  ended: boolean;
  paused: boolean;
}

export async function startLink(options: LinkOptions): Promise<Link> {
  usePreciseTimers();
  let trace = toTrace(options.shape);
  let step = trace.steps[0]!;
  let traceTimers: NodeJS.Timeout[] = [];
  const random = rng(options.seed ?? 1);
  const up: Direction = { busyUntil: 0, delivered: 0 };
  const down: Direction = { busyUntil: 0, delivered: 0 };
  const pipes = new Set<Pipe>();
  const sockets = new Set<net.Socket>();
  let connections = 0;
  let closed = false;

  const schedule = () => {
    for (const t of traceTimers) clearTimeout(t);
    traceTimers = [];
    step = trace.steps[0]!;
    for (const s of trace.steps.slice(1)) {
      const t = setTimeout(() => { step = s; }, s.at * 1000);
      t.unref();
      traceTimers.push(t);
    }
  };
  schedule();

  const flush = (p: Pipe) => {
    p.timer = null;
    const now = performance.now();
    while (p.head < p.queue.length && p.queue[p.head]!.at <= now + WAKE_SLACK_MS) {
      const { data } = p.queue[p.head++]!;
      p.pending -= data.length;
      p.dir.delivered += data.length;
      if (!p.to.destroyed) p.to.write(data);
    }
    if (p.head === p.queue.length || p.head > 1024) {
      // Drop delivered pieces so a connection that never drains does not keep them alive.
      p.queue = p.queue.slice(p.head);
      p.head = 0;
    }
    if (p.paused && p.pending < LOW_WATER) {
      p.paused = false;
      p.from.resume();
    }
    if (p.head < p.queue.length) arm(p);
    else if (p.ended && !p.to.destroyed) p.to.end();
  };

  // Node's timers fire on whole milliseconds, up to 1 ms late: a piece due in 0.7 ms would
  // arrive after 1 ms, a 40% error on a 100 Mbit/s link. wakeAt (../common/clock.ts) is on time
  // to ~0.1 ms, through a timer thread that costs the cloud no CPU while it waits (../node/waker.ts).
  const arm = (p: Pipe) => {
    if (p.timer || p.head >= p.queue.length) return;
    p.timer = wakeAt(p.queue[p.head]!.at, () => flush(p));
  };

  const enqueue = (p: Pipe, chunk: Buffer) => {
    const rate = (step.bandwidthMbps * 1e6) / 8 / 1000; // bytes per ms
    const owd = step.rttMs / 2;
    const jitter = step.jitterMs ?? 0;
    for (let off = 0; off < chunk.length; off += PIECE) {
      const data = chunk.subarray(off, Math.min(chunk.length, off + PIECE));
      const now = performance.now();
      const finish = Math.max(now, p.dir.busyUntil) + data.length / rate;
      p.dir.busyUntil = finish;
      const at = Math.max(finish + owd + (jitter > 0 ? random() * jitter : 0), p.lastAt);
      p.lastAt = at;
      p.queue.push({ at, data });
      p.pending += data.length;
    }
    if (!p.paused && p.pending > HIGH_WATER) {
      p.paused = true;
      p.from.pause();
    }
    arm(p);
  };

  const pipe = (from: net.Socket, to: net.Socket, dir: Direction): Pipe => {
    const p: Pipe = { from, to, dir, queue: [], head: 0, pending: 0, lastAt: 0, timer: null, ended: false, paused: false };
    pipes.add(p);
    from.on("data", (chunk: Buffer) => enqueue(p, chunk));
    from.on("end", () => {
      p.ended = true;
      if (p.head >= p.queue.length && !p.timer) to.end();
    });
    return p;
  };

  const drop = (p: Pipe) => {
    p.timer?.();
    p.timer = null;
    pipes.delete(p);
  };

  const server = net.createServer({ allowHalfOpen: true }, (client) => {
    if (closed) return void client.destroy();
    connections++;
    const upstream = net.connect({ host: options.target.host ?? "127.0.0.1", port: options.target.port, allowHalfOpen: true });
    sockets.add(client);
    sockets.add(upstream);
    // The shaper decides when bytes leave; Nagle must not hold a piece back for the peer's
    // delayed ACK (up to 40 ms on Linux whenever two pieces are written within an RTT).
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    const a = pipe(client, upstream, up);
    const b = pipe(upstream, client, down);
    const teardown = () => {
      drop(a);
      drop(b);
      client.destroy();
      upstream.destroy();
    };
    for (const s of [client, upstream]) {
      s.on("error", teardown);
      s.on("close", () => {
        sockets.delete(s);
        if (client.destroyed && upstream.destroyed) teardown();
      });
    }
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", (e) => reject(new LinkError(`link emulation cannot listen on 127.0.0.1:${options.port ?? 0}: ${e.message}`)));
    server.listen(options.port ?? 0, "127.0.0.1", () => resolve());
  });
  const port = (server.address() as net.AddressInfo).port;

  return {
    host: "127.0.0.1",
    port,
    describe: () => describeLink(trace),
    current: () => ({ ...step }),
    setShape(spec) {
      trace = toTrace(spec);
      schedule();
    },
    stats: () => ({ upBytes: up.delivered, downBytes: down.delivered, connections }),
    close() {
      if (closed) return Promise.resolve();
      closed = true;
      for (const t of traceTimers) clearTimeout(t);
      traceTimers = [];
      for (const p of [...pipes]) drop(p);
      for (const s of sockets) s.destroy();
      sockets.clear();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
