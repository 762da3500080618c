// Uniform affine quantisation, q = roundeven(clamp(x * inv + bias, 0, maxCode)), with
// inv = maxCode / (max - min) and bias = -(min * inv) chosen by the caller from the tensor's own
// range (DynO §2). The form x * inv + bias (not (x - min) * inv) keeps huge ranges finite: max - min
// may overflow float32 but inv and x * inv never do. x = min gives exactly 0 because
// bias = -(min * inv) cancels the same rounded product; so a post-ReLU tensor (min = 0) keeps its
// zeros as code 0. No fused multiply-add: the TypeScript reference must round the same way.

// For 0 <= y <= 2^22, y + 1.5 * 2^23 has an ulp of 1, so the float add itself rounds y to the
// nearest integer, ties to even (wasm's only rounding mode), and leaves it in the low mantissa
// bits: two cheap instructions instead of nearest + an unsigned float->int conversion, which V8
// expands to a long sequence on x86. pmax/pmin are single instructions; y is never NaN here
// (finite x, finite inv and bias).
const ROUNDER: f32 = 12582912.0; // 1.5 * 2^23
const ROUNDER_BITS: i32 = 0x4b400000;

@inline
function codes4(v: v128, vInv: v128, vBias: v128, vMax: v128): v128 {
  const y = f32x4.pmin(f32x4.pmax(f32x4.add(f32x4.mul(v, vInv), vBias), f32x4.splat(0)), vMax);
  return i32x4.sub(f32x4.add(y, f32x4.splat(ROUNDER)), i32x4.splat(ROUNDER_BITS));
}

@inline
function code1(v: f32, inv: f32, bias: f32, maxCode: f32): u32 {
  return <u32>nearest<f32>(min<f32>(max<f32>(v * inv + bias, 0), maxCode));
}

@inline
function quantizeU8Span(x: usize, n: usize, inv: f32, bias: f32, maxCode: f32, out: usize): void {
  const vInv = f32x4.splat(inv), vBias = f32x4.splat(bias), vMax = f32x4.splat(maxCode);
  let i: usize = 0;
  for (; i + 16 <= n; i += 16) {
    const p = x + (i << 2);
    const a = codes4(v128.load(p), vInv, vBias, vMax);
    const b = codes4(v128.load(p, 16), vInv, vBias, vMax);
    const c = codes4(v128.load(p, 32), vInv, vBias, vMax);
    const d = codes4(v128.load(p, 48), vInv, vBias, vMax);
    // Codes are <= 255, so the saturating narrows are plain truncations here.
    v128.store(out + i, i8x16.narrow_i16x8_u(i16x8.narrow_i32x4_u(a, b), i16x8.narrow_i32x4_u(c, d)));
  }
  for (; i < n; i++) store<u8>(out + i, code1(load<f32>(x + (i << 2)), inv, bias, maxCode));
}

@inline
function quantizeU16Span(x: usize, n: usize, inv: f32, bias: f32, maxCode: f32, out: usize): void {
  const vInv = f32x4.splat(inv), vBias = f32x4.splat(bias), vMax = f32x4.splat(maxCode);
  let i: usize = 0;
  for (; i + 8 <= n; i += 8) {
    const p = x + (i << 2);
    const a = codes4(v128.load(p), vInv, vBias, vMax);
    const b = codes4(v128.load(p, 16), vInv, vBias, vMax);
    v128.store(out + (i << 1), i16x8.narrow_i32x4_u(a, b));
  }
  for (; i < n; i++) store<u16>(out + (i << 1), code1(load<f32>(x + (i << 2)), inv, bias, maxCode));
}

/** Codes of 1..8 bits, one per byte. */
export function f32_quantize_u8__simd128(x: usize, n: usize, inv: f32, bias: f32, maxCode: f32, out: usize): void {
  quantizeU8Span(x, n, inv, bias, maxCode, out);
}

/** 16-bit codes, little-endian u16. */
export function f32_quantize_u16__simd128(x: usize, n: usize, inv: f32, bias: f32, maxCode: f32, out: usize): void {
  quantizeU16Span(x, n, inv, bias, maxCode, out);
}

/** Per-channel (axis 1) form; params holds [inv_c, bias_c] per channel. */
export function f32_quantize_u8_channels__simd128(x: usize, outer: usize, channels: usize, inner: usize, params: usize, maxCode: f32, out: usize): void {
  for (let o: usize = 0; o < outer; o++) {
    for (let c: usize = 0; c < channels; c++) {
      const k = o * channels + c;
      quantizeU8Span(x + (k * inner << 2), inner, load<f32>(params + (c << 3)), load<f32>(params + (c << 3), 4), maxCode, out + k * inner);
    }
  }
}

export function f32_quantize_u16_channels__simd128(x: usize, outer: usize, channels: usize, inner: usize, params: usize, maxCode: f32, out: usize): void {
  for (let o: usize = 0; o < outer; o++) {
    for (let c: usize = 0; c < channels; c++) {
      const k = o * channels + c;
      quantizeU16Span(x + (k * inner << 2), inner, load<f32>(params + (c << 3)), load<f32>(params + (c << 3), 4), maxCode, out + (k * inner << 1));
    }
  }
}

/**
 * Fused quantise + 4-bit pack: two codes per byte, the even element in the low nibble (the same
 * layout as u8_pack_u4__simd128), without writing the code bytes in between.
 */
export function f32_quantize_pack_u4__simd128(x: usize, n: usize, inv: f32, bias: f32, out: usize): void {
  const vInv = f32x4.splat(inv), vBias = f32x4.splat(bias), vMax = f32x4.splat(15);
  const lowByte = i16x8.splat(0x00ff);
  let i: usize = 0;
  for (; i + 32 <= n; i += 32) {
    const p = x + (i << 2);
    const lo = i8x16.narrow_i16x8_u(
      i16x8.narrow_i32x4_u(codes4(v128.load(p), vInv, vBias, vMax), codes4(v128.load(p, 16), vInv, vBias, vMax)),
      i16x8.narrow_i32x4_u(codes4(v128.load(p, 32), vInv, vBias, vMax), codes4(v128.load(p, 48), vInv, vBias, vMax)));
    const hi = i8x16.narrow_i16x8_u(
      i16x8.narrow_i32x4_u(codes4(v128.load(p, 64), vInv, vBias, vMax), codes4(v128.load(p, 80), vInv, vBias, vMax)),
      i16x8.narrow_i32x4_u(codes4(v128.load(p, 96), vInv, vBias, vMax), codes4(v128.load(p, 112), vInv, vBias, vMax)));
    // Seen as u16 lanes (c_even | c_odd << 8), v | v >> 4 puts c_odd << 4 next to c_even in the low byte.
    const a = v128.and(v128.or(lo, i16x8.shr_u(lo, 4)), lowByte);
    const b = v128.and(v128.or(hi, i16x8.shr_u(hi, 4)), lowByte);
    v128.store(out + (i >> 1), i8x16.narrow_i16x8_u(a, b));
  }
  for (; i < n; i += 2) {
    const c0 = code1(load<f32>(x + (i << 2)), inv, bias, 15);
    const c1 = i + 1 < n ? code1(load<f32>(x + (i << 2), 4), inv, bias, 15) : 0;
    store<u8>(out + (i >> 1), c0 | (c1 << 4));
  }
}
