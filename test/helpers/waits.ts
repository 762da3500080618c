// Waiting in tests without fixed sleeps: a condition polled under a bound, and a gate that holds
// the server's runs at their start (the server's beforeRun hook) until the test opens it.

/** Polls a condition every 5 ms for at most `ms` (a bound, not an expectation). */
export async function until(what: string, ok: () => boolean, ms = 5000): Promise<void> {
  const end = performance.now() + ms;
  while (!ok()) {
    if (performance.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A gate for beforeRun: while held, runs wait at their start (holding their worker). */
export function gate() {
  let release: (() => void) | null = null;
  let held: Promise<void> | null = null;
  return {
    hold: () => void (held = new Promise((r) => (release = r))),
    open: () => (release?.(), (held = null)),
    beforeRun: () => held ?? undefined,
  };
}
