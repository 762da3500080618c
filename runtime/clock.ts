// Sleeping to a fraction of a millisecond. Node's timers fire on whole milliseconds and up to
// 1 ms late, which is 5-10% of a 15 ms emulated inference: the emulation (link shaping, the slow
// device) would be noisier than what it emulates. So a timer wakes up to ~1 ms early and the rest
// is waited out in setImmediate turns; other I/O runs between them, the cost is a busy event loop
// for at most that last millisecond.

/** Resolves at performance.now() >= `at` (to ~20 µs), never before. */
export function sleepUntil(at: number): Promise<void> {
  return new Promise((resolve) => {
    const step = () => {
      const wait = at - performance.now();
      if (wait <= 0.02) resolve();
      else if (wait > 1.5) setTimeout(step, wait - 1.2);
      else setImmediate(step);
    };
    step();
  });
}

export function sleep(ms: number): Promise<void> {
  return sleepUntil(performance.now() + ms);
}
