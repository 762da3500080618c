// Dequantisation, x = (q * step + offset) * mult, with the top code mapped to max exactly
// (the affine form can miss max by an ulp, and the round trip promises exact min and max).
// Normally mult = 1 and this is q * scale + min; for a range wider than float32 the caller halves
// step and offset and passes mult = 2, so no partial result overflows (x 2 is exact).

// Which loop runs is decided once per call: `plain` when mult = 1 and the top code already lands
// exactly on max (quantParams picks such a step when one is within 2 ulps, which is nearly
// always), so the select and the * mult drop out of the loop: 40% faster (bench/kernels).
@inline
function values4(q: v128, plain: bool, vScale: v128, vLo: v128, vMult: v128, vHi: v128, vTop: v128): v128 {
  // Codes are < 2^16, so the signed conversion (one instruction; the unsigned one is not) is exact.
  const y = f32x4.add(f32x4.mul(f32x4.convert_i32x4_s(q), vScale), vLo);
  if (plain) return y;
  return v128.bitselect(vHi, f32x4.mul(y, vMult), i32x4.eq(q, vTop));
}

@inline
function value1(q: u32, plain: bool, scale: f32, lo: f32, mult: f32, hi: f32, top: u32): f32 {
  const y = <f32>q * scale + lo;
  if (plain) return y;
  return q == top ? hi : y * mult;
}

@inline
function isPlain(scale: f32, lo: f32, mult: f32, hi: f32, top: u32): bool {
  return mult == 1 && <f32>top * scale + lo == hi;
}

@inline
function dequantizeU8Loop(codes: usize, n: usize, plain: bool, scale: f32, lo: f32, mult: f32, hi: f32, top: u32, out: usize): void {
  const vScale = f32x4.splat(scale), vLo = f32x4.splat(lo), vMult = f32x4.splat(mult), vHi = f32x4.splat(hi), vTop = i32x4.splat(top);
  let i: usize = 0;
  for (; i + 16 <= n; i += 16) {
    const v = v128.load(codes + i);
    const l = i16x8.extend_low_i8x16_u(v), h = i16x8.extend_high_i8x16_u(v);
    const p = out + (i << 2);
    v128.store(p, values4(i32x4.extend_low_i16x8_u(l), plain, vScale, vLo, vMult, vHi, vTop));
    v128.store(p, values4(i32x4.extend_high_i16x8_u(l), plain, vScale, vLo, vMult, vHi, vTop), 16);
    v128.store(p, values4(i32x4.extend_low_i16x8_u(h), plain, vScale, vLo, vMult, vHi, vTop), 32);
    v128.store(p, values4(i32x4.extend_high_i16x8_u(h), plain, vScale, vLo, vMult, vHi, vTop), 48);
  }
  for (; i < n; i++) store<f32>(out + (i << 2), value1(load<u8>(codes + i), plain, scale, lo, mult, hi, top));
}

@inline
function dequantizeU16Loop(codes: usize, n: usize, plain: bool, scale: f32, lo: f32, mult: f32, hi: f32, top: u32, out: usize): void {
  const vScale = f32x4.splat(scale), vLo = f32x4.splat(lo), vMult = f32x4.splat(mult), vHi = f32x4.splat(hi), vTop = i32x4.splat(top);
  let i: usize = 0;
  for (; i + 8 <= n; i += 8) {
    const v = v128.load(codes + (i << 1));
    const p = out + (i << 2);
    v128.store(p, values4(i32x4.extend_low_i16x8_u(v), plain, vScale, vLo, vMult, vHi, vTop));
    v128.store(p, values4(i32x4.extend_high_i16x8_u(v), plain, vScale, vLo, vMult, vHi, vTop), 16);
  }
  for (; i < n; i++) store<f32>(out + (i << 2), value1(load<u16>(codes + (i << 1)), plain, scale, lo, mult, hi, top));
}

@inline
function dequantizeU8Span(codes: usize, n: usize, scale: f32, lo: f32, mult: f32, hi: f32, top: u32, out: usize): void {
  if (isPlain(scale, lo, mult, hi, top)) dequantizeU8Loop(codes, n, true, scale, lo, mult, hi, top, out);
  else dequantizeU8Loop(codes, n, false, scale, lo, mult, hi, top, out);
}

@inline
function dequantizeU16Span(codes: usize, n: usize, scale: f32, lo: f32, mult: f32, hi: f32, top: u32, out: usize): void {
  if (isPlain(scale, lo, mult, hi, top)) dequantizeU16Loop(codes, n, true, scale, lo, mult, hi, top, out);
  else dequantizeU16Loop(codes, n, false, scale, lo, mult, hi, top, out);
}

export function u8_dequantize_f32__simd128(codes: usize, n: usize, scale: f32, lo: f32, mult: f32, hi: f32, top: u32, out: usize): void {
  dequantizeU8Span(codes, n, scale, lo, mult, hi, top, out);
}

export function u16_dequantize_f32__simd128(codes: usize, n: usize, scale: f32, lo: f32, mult: f32, hi: f32, top: u32, out: usize): void {
  dequantizeU16Span(codes, n, scale, lo, mult, hi, top, out);
}

/** Per-channel (axis 1) form; params holds [step_c, offset_c, mult_c, max_c] per channel. */
export function u8_dequantize_f32_channels__simd128(codes: usize, outer: usize, channels: usize, inner: usize, params: usize, top: u32, out: usize): void {
  for (let o: usize = 0; o < outer; o++) {
    for (let c: usize = 0; c < channels; c++) {
      const k = o * channels + c, p = params + (c << 4);
      dequantizeU8Span(codes + k * inner, inner, load<f32>(p), load<f32>(p, 4), load<f32>(p, 8), load<f32>(p, 12), top, out + (k * inner << 2));
    }
  }
}

export function u16_dequantize_f32_channels__simd128(codes: usize, outer: usize, channels: usize, inner: usize, params: usize, top: u32, out: usize): void {
  for (let o: usize = 0; o < outer; o++) {
    for (let c: usize = 0; c < channels; c++) {
      const k = o * channels + c, p = params + (c << 4);
      dequantizeU16Span(codes + (k * inner << 1), inner, load<f32>(p), load<f32>(p, 4), load<f32>(p, 8), load<f32>(p, 12), top, out + (k * inner << 2));
    }
  }
}

@inline
function unpackDequantizeU4(packed: usize, n: usize, plain: bool, scale: f32, lo: f32, mult: f32, hi: f32, out: usize): void {
  const vScale = f32x4.splat(scale), vLo = f32x4.splat(lo), vMult = f32x4.splat(mult), vHi = f32x4.splat(hi), vTop = i32x4.splat(15);
  const nibble = i8x16.splat(0x0f);
  let i: usize = 0;
  for (; i + 32 <= n; i += 32) {
    const v = v128.load(packed + (i >> 1));
    const even = v128.and(v, nibble), odd = v128.and(i16x8.shr_u(v, 4), nibble);
    const a = i8x16.shuffle(even, odd, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const b = i8x16.shuffle(even, odd, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    const al = i16x8.extend_low_i8x16_u(a), ah = i16x8.extend_high_i8x16_u(a);
    const bl = i16x8.extend_low_i8x16_u(b), bh = i16x8.extend_high_i8x16_u(b);
    const p = out + (i << 2);
    v128.store(p, values4(i32x4.extend_low_i16x8_u(al), plain, vScale, vLo, vMult, vHi, vTop));
    v128.store(p, values4(i32x4.extend_high_i16x8_u(al), plain, vScale, vLo, vMult, vHi, vTop), 16);
    v128.store(p, values4(i32x4.extend_low_i16x8_u(ah), plain, vScale, vLo, vMult, vHi, vTop), 32);
    v128.store(p, values4(i32x4.extend_high_i16x8_u(ah), plain, vScale, vLo, vMult, vHi, vTop), 48);
    v128.store(p, values4(i32x4.extend_low_i16x8_u(bl), plain, vScale, vLo, vMult, vHi, vTop), 64);
    v128.store(p, values4(i32x4.extend_high_i16x8_u(bl), plain, vScale, vLo, vMult, vHi, vTop), 80);
    v128.store(p, values4(i32x4.extend_low_i16x8_u(bh), plain, vScale, vLo, vMult, vHi, vTop), 96);
    v128.store(p, values4(i32x4.extend_high_i16x8_u(bh), plain, vScale, vLo, vMult, vHi, vTop), 112);
  }
  for (; i < n; i++) {
    const q: u32 = (<u32>load<u8>(packed + (i >> 1)) >> (<u32>(i & 1) << 2)) & 15;
    store<f32>(out + (i << 2), value1(q, plain, scale, lo, mult, hi, 15));
  }
}

/** Fused 4-bit unpack + dequantise (inverse of f32_quantize_pack_u4__simd128). */
export function u4_unpack_dequantize_f32__simd128(packed: usize, n: usize, scale: f32, lo: f32, mult: f32, hi: f32, out: usize): void {
  if (isPlain(scale, lo, mult, hi, 15)) unpackDequantizeU4(packed, n, true, scale, lo, mult, hi, out);
  else unpackDequantizeU4(packed, n, false, scale, lo, mult, hi, out);
}
