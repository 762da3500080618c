// Summary statistics shared by compile, the device profile and run summaries.
import type { Timing } from "./manifest.js";

/** Nearest-rank quantile of ascending `sorted` (q in (0, 1]); 0 for an empty list. */
export function quantile(sorted: ArrayLike<number>, q: number): number {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]! : 0;
}

export function mean(xs: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < xs.length; i++) s += xs[i]!;
  return xs.length ? s / xs.length : 0;
}

/** Mean and p95 of millisecond samples, as the manifest records them (0.1 µs resolution). */
export function timingOf(ms: ArrayLike<number>): Timing {
  const sorted = Float64Array.from(ms).sort();
  const round = (x: number) => Math.round(x * 1e4) / 1e4;
  return { meanMs: round(mean(ms)), p95Ms: round(quantile(sorted, 0.95)), runs: ms.length };
}

/** Index i < n of the largest data[offset + i * stride]; the first on ties. */
export function argmax(data: ArrayLike<number>, offset = 0, n = data.length - offset, stride = 1): number {
  let best = 0;
  let top = data[offset]!;
  for (let i = 1, at = offset + stride; i < n; i++, at += stride) {
    const v = data[at]!;
    if (v > top) {
      top = v;
      best = i;
    }
  }
  return best;
}
