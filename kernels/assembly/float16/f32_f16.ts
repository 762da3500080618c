// float32 <-> IEEE 754 binary16 for the float16 passthrough codec: round to nearest, ties to
// even; overflow goes to +-Inf; NaN becomes the quiet NaN 0x7e00 with its sign (float32 -> half)
// and keeps its payload (half -> float32). Branch-free integer/float tricks in the manner of
// F. Giesen's "float_to_half_fast3_rtne" / "half_to_float" (public domain), written for SIMD:
// every lane takes all paths and a bitselect keeps the right one.

// float32 -> half
const ABS_MASK: u32 = 0x7fffffff;
const F16_OVERFLOW: i32 = 0x47800000; // 65536.0: this and above is Inf (65520..65535 round up to it)
const F32_INF: i32 = 0x7f800000;
const F16_MIN_NORMAL: i32 = 0x38800000; // 2^-14: below it the half is subnormal
const DENORM_MAGIC: i32 = 0x3f000000; // 0.5f: its ulp is 2^-24, the half subnormal step
const REBIAS_ROUND: i32 = 0xc8000fff; // (15 - 127) << 23 plus 0xfff: exponent rebias and the round-half bit

@inline
function halfOf4(v: v128): v128 {
  const sign = v128.and(v, i32x4.splat(0x80000000));
  const a = v128.xor(v, sign);
  const special = v128.bitselect(i32x4.splat(0x7e00), i32x4.splat(0x7c00), i32x4.gt_s(a, i32x4.splat(F32_INF)));
  // Adding 0.5f rounds |x| to a multiple of 2^-24 (ties to even) and leaves it in the low bits.
  const subnormal = i32x4.sub(f32x4.add(a, f32x4.splat(0.5)), i32x4.splat(DENORM_MAGIC));
  // Rebias the exponent, add just under half an ulp plus the mantissa's odd bit (ties to even),
  // then drop 13 bits: a carry out of the mantissa correctly bumps the exponent, up to Inf.
  const odd = v128.and(i32x4.shr_u(a, 13), i32x4.splat(1));
  const normal = i32x4.shr_u(i32x4.add(i32x4.add(a, i32x4.splat(REBIAS_ROUND)), odd), 13);
  let r = v128.bitselect(subnormal, normal, i32x4.lt_s(a, i32x4.splat(F16_MIN_NORMAL)));
  r = v128.bitselect(special, r, i32x4.ge_s(a, i32x4.splat(F16_OVERFLOW)));
  return v128.or(r, i32x4.shr_u(sign, 16));
}

@inline
function halfOf1(b: u32): u32 {
  const sign = b & 0x80000000;
  const a = <i32>(b & ABS_MASK);
  let r: u32;
  if (a >= F16_OVERFLOW) r = a > F32_INF ? 0x7e00 : 0x7c00;
  else if (a < F16_MIN_NORMAL) r = reinterpret<u32>(reinterpret<f32>(a) + 0.5) - <u32>DENORM_MAGIC;
  else r = (<u32>a + <u32>REBIAS_ROUND + ((<u32>a >> 13) & 1)) >> 13;
  return r | (sign >> 16);
}

export function f32_to_f16__simd128(x: usize, n: usize, out: usize): void {
  let i: usize = 0;
  for (; i + 8 <= n; i += 8) {
    const p = x + (i << 2);
    // Results are <= 0xfe00, so the unsigned-saturating narrow keeps them as they are.
    v128.store(out + (i << 1), i16x8.narrow_i32x4_u(halfOf4(v128.load(p)), halfOf4(v128.load(p, 16))));
  }
  for (; i < n; i++) store<u16>(out + (i << 1), halfOf1(load<u32>(x + (i << 2))));
}

// half -> float32
const EXP_SHIFTED: i32 = 0x0f800000; // 0x7c00 << 13
const REBIAS: i32 = 0x38000000; // (127 - 15) << 23
const MAGIC_2_14: i32 = 0x38800000; // 2^-14 as float32 bits

@inline
function floatOf4(h: v128): v128 {
  let o = i32x4.shl(v128.and(h, i32x4.splat(0x7fff)), 13);
  const exp = v128.and(o, i32x4.splat(EXP_SHIFTED));
  o = i32x4.add(o, i32x4.splat(REBIAS));
  // Inf/NaN: rebias once more to reach exponent 255 (the payload stays in the mantissa).
  const infNan = i32x4.add(o, i32x4.splat(REBIAS));
  // Zero/subnormal: as a normal with exponent -14, minus 2^-14 (exact).
  const sub = f32x4.sub(i32x4.add(o, i32x4.splat(1 << 23)), i32x4.splat(MAGIC_2_14));
  o = v128.bitselect(infNan, o, i32x4.eq(exp, i32x4.splat(EXP_SHIFTED)));
  o = v128.bitselect(sub, o, i32x4.eq(exp, i32x4.splat(0)));
  return v128.or(o, i32x4.shl(v128.and(h, i32x4.splat(0x8000)), 16));
}

@inline
function floatOf1(h: u32): u32 {
  let o = (h & 0x7fff) << 13;
  const exp = o & <u32>EXP_SHIFTED;
  o += <u32>REBIAS;
  if (exp == <u32>EXP_SHIFTED) o += <u32>REBIAS;
  else if (exp == 0) o = reinterpret<u32>(reinterpret<f32>(o + (1 << 23)) - reinterpret<f32>(MAGIC_2_14));
  return o | ((h & 0x8000) << 16);
}

export function f16_to_f32__simd128(h16: usize, n: usize, out: usize): void {
  let i: usize = 0;
  for (; i + 8 <= n; i += 8) {
    const v = v128.load(h16 + (i << 1));
    const p = out + (i << 2);
    v128.store(p, floatOf4(i32x4.extend_low_i16x8_u(v)));
    v128.store(p, floatOf4(i32x4.extend_high_i16x8_u(v)), 16);
  }
  for (; i < n; i++) store<u32>(out + (i << 2), floatOf1(load<u16>(h16 + (i << 1))));
}
