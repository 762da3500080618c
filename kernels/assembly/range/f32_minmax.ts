// Min/max reduction over float32, the range that input-specific quantisation (DynO §2) takes from
// each tensor at run time. f32.min/f32.max (and their SIMD forms) propagate NaN, so a NaN anywhere
// reaches the result and the caller rejects it without a second pass; +-Inf shows up as an
// infinite bound the same way.

// Four accumulators per bound hide the min/max latency; 16 floats (4 vectors) per tile.
@inline
function minmaxSpan(x: usize, n: usize, out: usize, first: bool): void {
  let lo0 = f32x4.splat(Infinity), lo1 = lo0, lo2 = lo0, lo3 = lo0;
  let hi0 = f32x4.splat(-Infinity), hi1 = hi0, hi2 = hi0, hi3 = hi0;
  let i: usize = 0;
  for (; i + 16 <= n; i += 16) {
    const p = x + (i << 2);
    const a = v128.load(p), b = v128.load(p, 16), c = v128.load(p, 32), d = v128.load(p, 48);
    lo0 = f32x4.min(lo0, a); hi0 = f32x4.max(hi0, a);
    lo1 = f32x4.min(lo1, b); hi1 = f32x4.max(hi1, b);
    lo2 = f32x4.min(lo2, c); hi2 = f32x4.max(hi2, c);
    lo3 = f32x4.min(lo3, d); hi3 = f32x4.max(hi3, d);
  }
  const lo = f32x4.min(f32x4.min(lo0, lo1), f32x4.min(lo2, lo3));
  const hi = f32x4.max(f32x4.max(hi0, hi1), f32x4.max(hi2, hi3));
  let mn = min<f32>(min<f32>(f32x4.extract_lane(lo, 0), f32x4.extract_lane(lo, 1)),
                    min<f32>(f32x4.extract_lane(lo, 2), f32x4.extract_lane(lo, 3)));
  let mx = max<f32>(max<f32>(f32x4.extract_lane(hi, 0), f32x4.extract_lane(hi, 1)),
                    max<f32>(f32x4.extract_lane(hi, 2), f32x4.extract_lane(hi, 3)));
  for (; i < n; i++) {
    const v = load<f32>(x + (i << 2));
    mn = min<f32>(mn, v);
    mx = max<f32>(mx, v);
  }
  if (!first) {
    mn = min<f32>(mn, load<f32>(out));
    mx = max<f32>(mx, load<f32>(out, 4));
  }
  store<f32>(out, mn);
  store<f32>(out, mx, 4);
}

/** Writes [min, max] of x[0..n) to out (two f32). n = 0 gives [+Inf, -Inf]. */
export function f32_minmax__simd128(x: usize, n: usize, out: usize): void {
  minmaxSpan(x, n, out, true);
}

/**
 * Per-channel ranges along axis 1 of a tensor viewed as [outer, channels, inner]:
 * writes [min_c, max_c] for every channel c to out (2 * channels f32).
 */
export function f32_minmax_channels__simd128(x: usize, outer: usize, channels: usize, inner: usize, out: usize): void {
  for (let o: usize = 0; o < outer; o++) {
    for (let c: usize = 0; c < channels; c++) {
      minmaxSpan(x + ((o * channels + c) * inner << 2), inner, out + (c << 3), o == 0);
    }
  }
}
