// Precise wake-ups on Node without a busy event loop: a timer thread.
//
//   main thread                               timer thread (one per process)
//   wakeAt(at, fn) ── port.postMessage ──►    heap of deadlines
//                  ── Atomics.notify ──────►  Atomics.wait(ctl, seq, until the earliest)
//   fn() ◄─────────── port message [ids] ───  deadline reached: post the due ids
//
// Node's timers fire on whole milliseconds and up to 1 ms late. The platform-free waker of
// runtime/common/clock.ts makes up the last millisecond by spinning the event loop, which on a
// 2-core machine running the emulated device, the link proxy and the cloud costs the cloud most of
// a core (measured in docs/links.md). Here the waiting happens in a futex wait with a timeout in
// another thread (the kernel's high-resolution timers), which costs nothing while it waits, and a
// due deadline reaches the main thread as one message: about 0.1 ms after it, measured here, of
// which TIMER_LEAD_MS is taken off in advance. A deadline that arrives early by more than the
// clock's slack is waited out by the spin waker (at most that lead).
import { MessageChannel, Worker, type MessagePort } from "node:worker_threads";
import { setWaker, spinWaker, type Waker } from "../common/clock.js";

/** How much earlier than its deadline the timer thread posts a wake-up: the message's own latency. */
export const TIMER_LEAD_MS = 0.07;

// CommonJS, evaluated in the thread: works from the sources (tsx) and from dist/ alike.
const THREAD = `
const { workerData, receiveMessageOnPort } = require("node:worker_threads");
const { port, ctl, lead } = workerData;
const origin = performance.timeOrigin;
const now = () => origin + performance.now();
const heap = [];
const push = (x) => {
  heap.push(x);
  for (let i = heap.length - 1; i > 0; ) {
    const p = (i - 1) >> 1;
    if (heap[p].at <= heap[i].at) break;
    [heap[p], heap[i]] = [heap[i], heap[p]];
    i = p;
  }
};
const pop = () => {
  const top = heap[0];
  const last = heap.pop();
  if (heap.length > 0) {
    heap[0] = last;
    for (let i = 0; ; ) {
      const l = 2 * i + 1, r = l + 1;
      let m = i;
      if (l < heap.length && heap[l].at < heap[m].at) m = l;
      if (r < heap.length && heap[r].at < heap[m].at) m = r;
      if (m === i) break;
      [heap[m], heap[i]] = [heap[i], heap[m]];
      i = m;
    }
  }
  return top;
};
(function loop() {
for (;;) {
  const seen = Atomics.load(ctl, 0);
  for (let m; (m = receiveMessageOnPort(port)); ) {
    if (m.message === null) return;
    push(m.message);
  }
  const due = [];
  while (heap.length > 0 && heap[0].at - lead <= now()) due.push(pop().id);
  if (due.length > 0) port.postMessage(due);
  const wait = heap.length > 0 ? heap[0].at - lead - now() : Infinity;
  if (wait > 0) Atomics.wait(ctl, 0, seen, wait);
}
})();
`;

interface Thread {
  port: MessagePort;
  ctl: Int32Array;
  pending: Map<number, () => void>;
  seq: number;
}

let thread: Thread | null = null;
/** The thread died (it should not): the spin waker serves from then on. */
let broken = false;

function start(): Thread {
  const { port1, port2 } = new MessageChannel();
  const ctl = new Int32Array(new SharedArrayBuffer(4));
  const worker = new Worker(THREAD, { eval: true, workerData: { port: port2, ctl, lead: TIMER_LEAD_MS }, transferList: [port2] });
  // The thread never keeps the process alive; the port does, while a wake-up is pending.
  worker.unref();
  worker.on("error", () => {
    // Without its thread the clock falls back to the spin waker; pending wake-ups go there.
    const t = thread!;
    thread = null;
    broken = true;
    setWaker(spinWaker);
    for (const fn of t.pending.values()) fn();
    t.pending.clear();
  });
  const t: Thread = { port: port1, ctl, pending: new Map(), seq: 0 };
  port1.on("message", (ids: number[]) => {
    for (const id of ids) {
      const fn = t.pending.get(id);
      t.pending.delete(id);
      fn?.();
    }
    if (t.pending.size === 0) port1.unref();
  });
  port1.unref();
  return t;
}

/** The timer thread's waker: `fn` runs once performance.now() is within the clock's slack of `at`. */
export const threadWaker: Waker = (at, fn) => {
  if (broken) return spinWaker(at, fn);
  thread ??= start();
  const t = thread;
  const id = ++t.seq;
  let cancelled = false;
  let inner: (() => void) | null = null;
  // Early by up to TIMER_LEAD_MS (or a scheduling hiccup): the rest is spun.
  t.pending.set(id, () => {
    if (!cancelled) inner = spinWaker(at, fn);
  });
  if (t.pending.size === 1) t.port.ref();
  t.port.postMessage({ id, at: performance.timeOrigin + at });
  Atomics.add(t.ctl, 0, 1);
  Atomics.notify(t.ctl, 0);
  return () => {
    cancelled = true;
    inner?.();
    if (t.pending.delete(id) && t.pending.size === 0) t.port.unref();
  };
};

/** Makes runtime/common/clock.ts wake through the timer thread in this process (idempotent). */
export function usePreciseTimers(): void {
  // Started now: a thread takes ~15 ms to start, which the first wake-up would otherwise wait.
  if (!broken) thread ??= start();
  setWaker(threadWaker);
}
