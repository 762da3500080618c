// Uniform affine quantisation with the range taken from the tensor itself (DynO §2):
//   q = roundeven((x * pre - qlo) * inv)
// The caller (kernels/reference.ts quantParams) passes qlo = min and inv = maxCode / (max - min)
// with pre = 1; only when max - min overflows float32 does it pass pre = 0.5, qlo = min / 2 and
// inv = maxCode / ((max - min) / 2), so no partial result overflows. Subtracting first keeps
// the precision of offset data (x - min is exact for x within a factor 2 of min); x = min gives
// exactly code 0, so a post-ReLU tensor (min = 0) keeps its zeros. No fused multiply-add: the
// TypeScript reference rounds after each operation the same way.
//
// Precondition: every x lies in the [min, max] the parameters were made from, as it does when the
// range is the tensor's own (encode). Then 0 <= x - min (rounding is monotonic) and
// (x - min) * inv <= maxCode * (1 + 4 * 2^-24) < maxCode + 0.5, so no clamp is needed: dropping
// the two clamps made quantisation 25% faster (bench/kernels). Outside the range the codes are
// unspecified (never out-of-bounds memory: the narrows saturate).

// For 0 <= y <= 2^22, y + 1.5 * 2^23 has an ulp of 1, so the float add itself rounds y to the
// nearest integer, ties to even (wasm's only rounding mode), and leaves it in the low mantissa
// bits: two cheap instructions instead of nearest + an unsigned float->int conversion, which V8
// expands to a long sequence on x86.
const ROUNDER: f32 = 12582912.0; // 1.5 * 2^23
const ROUNDER_BITS: i32 = 0x4b400000;

@inline
function codes4(v: v128, halve: bool, zeroLo: bool, vLo: v128, vInv: v128): v128 {
  const w = halve ? f32x4.mul(v, f32x4.splat(0.5)) : v;
  // x - 0 is x exactly, so post-ReLU tensors (min = 0) skip the subtraction: 15% faster.
  const y = f32x4.mul(zeroLo ? w : f32x4.sub(w, vLo), vInv);
  return i32x4.sub(f32x4.add(y, f32x4.splat(ROUNDER)), i32x4.splat(ROUNDER_BITS));
}

@inline
function code1(v: f32, halve: bool, lo: f32, inv: f32): u32 {
  const w = halve ? v * 0.5 : v;
  return <u32>nearest<f32>((w - lo) * inv);
}

// `halve` is a constant at every call site, so each caller gets a loop without the branch.
@inline
function quantizeU8Span(x: usize, n: usize, halve: bool, zeroLo: bool, lo: f32, inv: f32, out: usize): void {
  const vLo = f32x4.splat(lo), vInv = f32x4.splat(inv);
  let i: usize = 0;
  for (; i + 16 <= n; i += 16) {
    const p = x + (i << 2);
    const a = codes4(v128.load(p), halve, zeroLo, vLo, vInv);
    const b = codes4(v128.load(p, 16), halve, zeroLo, vLo, vInv);
    const c = codes4(v128.load(p, 32), halve, zeroLo, vLo, vInv);
    const d = codes4(v128.load(p, 48), halve, zeroLo, vLo, vInv);
    // Codes are <= 255, so the saturating narrows are plain truncations here.
    v128.store(out + i, i8x16.narrow_i16x8_u(i16x8.narrow_i32x4_u(a, b), i16x8.narrow_i32x4_u(c, d)));
  }
  for (; i < n; i++) store<u8>(out + i, code1(load<f32>(x + (i << 2)), halve, lo, inv));
}

@inline
function quantizeU16Span(x: usize, n: usize, halve: bool, zeroLo: bool, lo: f32, inv: f32, out: usize): void {
  const vLo = f32x4.splat(lo), vInv = f32x4.splat(inv);
  let i: usize = 0;
  for (; i + 8 <= n; i += 8) {
    const p = x + (i << 2);
    const a = codes4(v128.load(p), halve, zeroLo, vLo, vInv);
    const b = codes4(v128.load(p, 16), halve, zeroLo, vLo, vInv);
    v128.store(out + (i << 1), i16x8.narrow_i32x4_u(a, b));
  }
  for (; i < n; i++) store<u16>(out + (i << 1), code1(load<f32>(x + (i << 2)), halve, lo, inv));
}

@inline
function quantizeSpan(x: usize, n: usize, wide: bool, pre: f32, lo: f32, inv: f32, out: usize): void {
  if (wide) {
    if (pre != 1) quantizeU16Span(x, n, true, false, lo, inv, out);
    else if (lo == 0) quantizeU16Span(x, n, false, true, lo, inv, out);
    else quantizeU16Span(x, n, false, false, lo, inv, out);
  } else {
    if (pre != 1) quantizeU8Span(x, n, true, false, lo, inv, out);
    else if (lo == 0) quantizeU8Span(x, n, false, true, lo, inv, out);
    else quantizeU8Span(x, n, false, false, lo, inv, out);
  }
}

/** Codes of 1..8 bits, one per byte. */
export function f32_quantize_u8__simd128(x: usize, n: usize, pre: f32, lo: f32, inv: f32, out: usize): void {
  quantizeSpan(x, n, false, pre, lo, inv, out);
}

/** 16-bit codes, little-endian u16. */
export function f32_quantize_u16__simd128(x: usize, n: usize, pre: f32, lo: f32, inv: f32, out: usize): void {
  quantizeSpan(x, n, true, pre, lo, inv, out);
}

// Per-channel (axis 1) forms over a tensor viewed as [outer, channels, inner]; params holds
// [pre_c, qlo_c, inv_c, unused] per channel (16 bytes).
@inline
function quantizeChannels(x: usize, outer: usize, channels: usize, inner: usize, params: usize, out: usize, wide: bool): void {
  for (let o: usize = 0; o < outer; o++) {
    for (let c: usize = 0; c < channels; c++) {
      const k = o * channels + c, p = params + (c << 4);
      quantizeSpan(x + (k * inner << 2), inner, wide, load<f32>(p), load<f32>(p, 4), load<f32>(p, 8), out + (wide ? k * inner << 1 : k * inner));
    }
  }
}

export function f32_quantize_u8_channels__simd128(x: usize, outer: usize, channels: usize, inner: usize, params: usize, out: usize): void {
  quantizeChannels(x, outer, channels, inner, params, out, false);
}

export function f32_quantize_u16_channels__simd128(x: usize, outer: usize, channels: usize, inner: usize, params: usize, out: usize): void {
  quantizeChannels(x, outer, channels, inner, params, out, true);
}

@inline
function quantizePackU4(x: usize, n: usize, halve: bool, zeroLo: bool, lo: f32, inv: f32, out: usize): void {
  const vLo = f32x4.splat(lo), vInv = f32x4.splat(inv);
  const lowByte = i16x8.splat(0x00ff);
  let i: usize = 0;
  for (; i + 32 <= n; i += 32) {
    const p = x + (i << 2);
    const a = i8x16.narrow_i16x8_u(
      i16x8.narrow_i32x4_u(codes4(v128.load(p), halve, zeroLo, vLo, vInv), codes4(v128.load(p, 16), halve, zeroLo, vLo, vInv)),
      i16x8.narrow_i32x4_u(codes4(v128.load(p, 32), halve, zeroLo, vLo, vInv), codes4(v128.load(p, 48), halve, zeroLo, vLo, vInv)));
    const b = i8x16.narrow_i16x8_u(
      i16x8.narrow_i32x4_u(codes4(v128.load(p, 64), halve, zeroLo, vLo, vInv), codes4(v128.load(p, 80), halve, zeroLo, vLo, vInv)),
      i16x8.narrow_i32x4_u(codes4(v128.load(p, 96), halve, zeroLo, vLo, vInv), codes4(v128.load(p, 112), halve, zeroLo, vLo, vInv)));
    // Seen as u16 lanes (c_even | c_odd << 8), v | v >> 4 puts c_odd << 4 next to c_even in the low byte.
    v128.store(out + (i >> 1), i8x16.narrow_i16x8_u(
      v128.and(v128.or(a, i16x8.shr_u(a, 4)), lowByte),
      v128.and(v128.or(b, i16x8.shr_u(b, 4)), lowByte)));
  }
  for (; i < n; i += 2) {
    const c0 = code1(load<f32>(x + (i << 2)), halve, lo, inv);
    const c1 = i + 1 < n ? code1(load<f32>(x + (i << 2), 4), halve, lo, inv) : 0;
    store<u8>(out + (i >> 1), c0 | (c1 << 4));
  }
}

/**
 * Fused quantise + 4-bit pack: two codes per byte, the even element in the low nibble (the same
 * layout as u8_pack_u4__simd128), without writing the code bytes in between.
 */
export function f32_quantize_pack_u4__simd128(x: usize, n: usize, pre: f32, lo: f32, inv: f32, out: usize): void {
  if (pre != 1) quantizePackU4(x, n, true, false, lo, inv, out);
  else if (lo == 0) quantizePackU4(x, n, false, true, lo, inv, out);
  else quantizePackU4(x, n, false, false, lo, inv, out);
}
