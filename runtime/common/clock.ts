// Waking at a fraction of a millisecond. Node's timers fire on whole milliseconds and up to
// 1 ms late, which is 5-10% of a 15 ms emulated inference: the emulation (link shaping, the slow
// device) would be noisier than what it emulates. Two wakers:
// - spinWaker (any platform, the default): a timer wakes up to ~1 ms early and the rest is waited
//   out in event-loop turns (setImmediate; a MessageChannel in browsers). Other I/O runs between
//   them, but the event loop is busy for that last millisecond, so a process with many wake-ups
//   (a link at 100 Mbit/s) keeps a core busy;
// - on Node, runtime/node/waker.ts waits in a timer thread instead (usePreciseTimers), which costs
//   nothing while it waits. The Node device and the link emulation install it.

/**
 * One macrotask turn: setImmediate on Node; in a browser a MessageChannel message (a nested
 * setTimeout(0) is clamped to 4 ms there). Returns a cancel function.
 */
const nextTurn: (fn: () => void) => () => void =
  typeof setImmediate === "function"
    ? (fn) => {
      const t = setImmediate(fn);
      return () => clearImmediate(t);
    }
    : (() => {
      const channel = new MessageChannel();
      const queue = new Map<number, () => void>();
      let seq = 0;
      channel.port1.onmessage = (e: MessageEvent<number>) => {
        const fn = queue.get(e.data);
        queue.delete(e.data);
        fn?.();
      };
      return (fn: () => void) => {
        const id = ++seq;
        queue.set(id, fn);
        channel.port2.postMessage(id);
        return () => void queue.delete(id);
      };
    })();

/** How early (ms) a wake-up may come: the spin's resolution. */
export const WAKE_SLACK_MS = 0.02;

/** Calls `fn` once performance.now() >= `at` - WAKE_SLACK_MS, never synchronously; returns a cancel function. */
export type Waker = (at: number, fn: () => void) => () => void;

/** The platform-free waker: a timer to ~1.2 ms before `at`, then event-loop turns. */
export const spinWaker: Waker = (at, fn) => {
  let cancel = () => {};
  const step = () => {
    const wait = at - performance.now();
    if (wait <= WAKE_SLACK_MS) return fn();
    if (wait > 1.5) {
      const t = setTimeout(step, wait - 1.2);
      cancel = () => clearTimeout(t);
    } else {
      cancel = nextTurn(step);
    }
  };
  cancel = nextTurn(step);
  return () => cancel();
};

let waker: Waker = spinWaker;

/** Replaces the waker every wakeAt/sleep of this realm uses (runtime/node/waker.ts on Node). */
export function setWaker(w: Waker): void {
  waker = w;
}

/**
 * Calls `fn` once performance.now() >= `at` (to ~20 µs), never synchronously; returns a function
 * that cancels it (no timer is left behind).
 */
export function wakeAt(at: number, fn: () => void): () => void {
  return waker(at, fn);
}

/** Resolves at performance.now() >= `at` (to ~20 µs), never before. */
export function sleepUntil(at: number): Promise<void> {
  return new Promise((resolve) => void wakeAt(at, resolve));
}

export function sleep(ms: number): Promise<void> {
  return sleepUntil(performance.now() + ms);
}
