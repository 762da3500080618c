// float32 <-> IEEE 754 binary16 for the float16 passthrough codec: round to nearest, ties to
// even; overflow goes to +-Inf, NaN stays NaN (quiet, top mantissa bits kept). Scalar: this codec
// serves the float baselines (Neurosurgeon-style variants), not the hot quantised path.

@inline
function roundShift(m: u32, s: u32): u32 {
  const q = m >> s;
  const rem = m & ((1 << s) - 1);
  const half: u32 = 1 << (s - 1);
  return rem > half || (rem == half && (q & 1) != 0) ? q + 1 : q;
}

export function f32_to_f16__scalar(x: usize, n: usize, out: usize): void {
  for (let i: usize = 0; i < n; i++) {
    const b = load<u32>(x + (i << 2));
    const sign = (b >> 16) & 0x8000;
    const exp = (b >> 23) & 0xff;
    const mant = b & 0x7fffff;
    let h: u32;
    if (exp == 255) {
      h = sign | 0x7c00 | (mant != 0 ? 0x200 | (mant >> 13) : 0);
    } else {
      const e = <i32>exp - 112;
      if (e >= 31) h = sign | 0x7c00;
      else if (e <= 0) h = e < -10 ? sign : sign | roundShift(mant | 0x800000, <u32>(14 - e));
      // A carry out of the mantissa bumps the exponent, which is the right result (up to Inf).
      else h = sign | roundShift((<u32>e << 23) | mant, 13);
    }
    store<u16>(out + (i << 1), h);
  }
}

export function f16_to_f32__scalar(h16: usize, n: usize, out: usize): void {
  for (let i: usize = 0; i < n; i++) {
    const h = <u32>load<u16>(h16 + (i << 1));
    const sign = (h & 0x8000) << 16;
    const exp = (h >> 10) & 0x1f;
    const mant = h & 0x3ff;
    let b: u32;
    if (exp == 0) b = sign | reinterpret<u32>(<f32>mant * 5.9604644775390625e-8);
    else if (exp == 31) b = sign | 0x7f800000 | (mant << 13);
    else b = sign | ((exp + 112) << 23) | (mant << 13);
    store<u32>(out + (i << 2), b);
  }
}
