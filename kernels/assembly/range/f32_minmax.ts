// Min/max reduction over float32, the range that input-specific quantisation (DynO §2) takes from
// each tensor at run time. f32x4.pmin/pmax (b < a ? b : a) are single instructions on x86/ARM,
// where the NaN-propagating f32x4.min/max cost several; NaN is caught by a separate x != x mask
// and reported as a NaN result, +-Inf shows up as an infinite bound: the caller rejects both.
// pmin/pmax leave the sign of a zero bound to input order, so callers treat -0 and +0 alike.

// Four accumulators per bound hide the latency; 16 floats (4 vectors) per tile.
@inline
function minmaxSpan(x: usize, n: usize, out: usize, first: bool): void {
  let lo0 = f32x4.splat(Infinity), lo1 = lo0, lo2 = lo0, lo3 = lo0;
  let hi0 = f32x4.splat(-Infinity), hi1 = hi0, hi2 = hi0, hi3 = hi0;
  let nan = i32x4.splat(0);
  let i: usize = 0;
  for (; i + 16 <= n; i += 16) {
    const p = x + (i << 2);
    const a = v128.load(p), b = v128.load(p, 16), c = v128.load(p, 32), d = v128.load(p, 48);
    lo0 = f32x4.pmin(lo0, a); hi0 = f32x4.pmax(hi0, a);
    lo1 = f32x4.pmin(lo1, b); hi1 = f32x4.pmax(hi1, b);
    lo2 = f32x4.pmin(lo2, c); hi2 = f32x4.pmax(hi2, c);
    lo3 = f32x4.pmin(lo3, d); hi3 = f32x4.pmax(hi3, d);
    nan = v128.or(nan, v128.or(v128.or(f32x4.ne(a, a), f32x4.ne(b, b)), v128.or(f32x4.ne(c, c), f32x4.ne(d, d))));
  }
  const lo = f32x4.pmin(f32x4.pmin(lo0, lo1), f32x4.pmin(lo2, lo3));
  const hi = f32x4.pmax(f32x4.pmax(hi0, hi1), f32x4.pmax(hi2, hi3));
  let mn = min<f32>(min<f32>(f32x4.extract_lane(lo, 0), f32x4.extract_lane(lo, 1)),
                    min<f32>(f32x4.extract_lane(lo, 2), f32x4.extract_lane(lo, 3)));
  let mx = max<f32>(max<f32>(f32x4.extract_lane(hi, 0), f32x4.extract_lane(hi, 1)),
                    max<f32>(f32x4.extract_lane(hi, 2), f32x4.extract_lane(hi, 3)));
  let sawNaN = v128.any_true(nan);
  for (; i < n; i++) {
    const v = load<f32>(x + (i << 2));
    sawNaN |= v != v;
    mn = min<f32>(mn, v);
    mx = max<f32>(mx, v);
  }
  if (!first) {
    mn = min<f32>(mn, load<f32>(out));
    mx = max<f32>(mx, load<f32>(out, 4));
  }
  if (sawNaN) mn = mx = NaN;
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
