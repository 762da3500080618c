// Waking at a fraction of a millisecond. Node's timers fire on whole milliseconds and up to
// 1 ms late, which is 5-10% of a 15 ms emulated inference: the emulation (link shaping, the slow
// device) would be noisier than what it emulates. So a timer wakes up to ~1 ms early and the rest
// is waited out in setImmediate turns; other I/O runs between them, the cost is a busy event loop
// for at most that last millisecond.

/** How early (ms) a wake-up may come: the spin's resolution. */
export const WAKE_SLACK_MS = 0.02;

/**
 * Calls `fn` once performance.now() >= `at` (to ~20 µs), never synchronously; returns a function
 * that cancels it (no timer is left behind).
 */
export function wakeAt(at: number, fn: () => void): () => void {
  let cancel = () => {};
  const step = () => {
    const wait = at - performance.now();
    if (wait <= WAKE_SLACK_MS) return fn();
    if (wait > 1.5) {
      const t = setTimeout(step, wait - 1.2);
      cancel = () => clearTimeout(t);
    } else {
      const t = setImmediate(step);
      cancel = () => clearImmediate(t);
    }
  };
  const first = setImmediate(step);
  cancel = () => clearImmediate(first);
  return () => cancel();
}

/** Resolves at performance.now() >= `at` (to ~20 µs), never before. */
export function sleepUntil(at: number): Promise<void> {
  return new Promise((resolve) => void wakeAt(at, resolve));
}

export function sleep(ms: number): Promise<void> {
  return sleepUntil(performance.now() + ms);
}
