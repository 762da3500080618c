// Bit-plane transpose of b-bit codes, the bit-shuffle of Bitshuffle (K. Masui et al., "A
// compression scheme for radio data in high performance computing", Astronomy and Computing 12,
// 2015), applied to the codes before the lossless stage (DynO §2): post-ReLU codes are mostly
// small, so their high planes are long zero runs that a byte compressor removes.
//
// Layout: with P = ceil(n / 8), plane j (j = 0 is the least significant bit) occupies bytes
// [j*P, (j+1)*P), and bit t of its byte m is bit j of code 8m + t (codes past n count as 0).
// Unlike Bitshuffle we transpose the whole tensor as one block: with 16-code SIMD tiles every
// plane is written as a sequential stream, so blocking for cache gains nothing here, and a
// single block keeps the format simple. The output is b * P bytes, as dense as packing.

@inline
function planeBytesOf(n: usize): usize {
  return (n + 7) >> 3;
}

// Tail of fewer than 16 codes starting at code i (a multiple of 16), gathered one bit at a time.
@inline
function shuffleTail(codes: usize, wide: bool, i: usize, n: usize, bits: u32, out: usize): void {
  const P = planeBytesOf(n);
  for (let m = i >> 3; m < P; m++) {
    for (let j: u32 = 0; j < bits; j++) {
      let byte: u32 = 0;
      for (let t: usize = 0; t < 8; t++) {
        const k = (m << 3) + t;
        if (k < n) {
          const c: u32 = wide ? <u32>load<u16>(codes + (k << 1)) : <u32>load<u8>(codes + k);
          byte |= ((c >> j) & 1) << <u32>t;
        }
      }
      store<u8>(out + <usize>j * P + m, byte);
    }
  }
}

@inline
function unshuffleTail(planes: usize, wide: bool, i: usize, n: usize, bits: u32, codes: usize): void {
  const P = planeBytesOf(n);
  for (let k = i; k < n; k++) {
    let c: u32 = 0;
    for (let j: u32 = 0; j < bits; j++) {
      c |= ((<u32>load<u8>(planes + <usize>j * P + (k >> 3)) >> <u32>(k & 7)) & 1) << j;
    }
    if (wide) store<u16>(codes + (k << 1), c); else store<u8>(codes + k, c);
  }
}

/** Codes of 1..8 bits, one per byte. */
export function u8_bitshuffle__simd128(codes: usize, n: usize, bits: u32, out: usize): void {
  const P = planeBytesOf(n);
  let i: usize = 0;
  const top = 8 - bits;
  for (; i + 16 <= n; i += 16) {
    // The top code bit moved to each lane's sign bit; bitmask gathers 16 of them in element
    // order; v + v (one instruction, unlike an 8-bit shift on x86) brings up the next bit.
    let v = i16x8.shl(v128.load(codes + i), top); // bits shifted across bytes are out of the code's range
    const o = out + (i >> 3);
    for (let j = <i32>bits - 1; j >= 0; j--) {
      store<u16>(o + <usize>j * P, i8x16.bitmask(v));
      v = i8x16.add(v, v);
    }
  }
  shuffleTail(codes, false, i, n, bits, out);
}

@inline
function spreadBits(planes: usize, P: usize, i: usize, first: u32, count: u32): v128 {
  const bit = v128(1, 2, 4, 8, 16, 32, 64, -128, 1, 2, 4, 8, 16, 32, 64, -128);
  let acc = i8x16.splat(0);
  for (let j: u32 = 0; j < count; j++) {
    // Lanes 0..7 test bits 0..7 of the plane's first byte, lanes 8..15 those of the second.
    const w = v128.load16_splat(planes + <usize>(first + j) * P + (i >> 3));
    const v = i8x16.shuffle(w, w, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    const planeBit: i32 = 1 << <i32>j;
    acc = v128.or(acc, v128.and(i8x16.eq(v128.and(v, bit), bit), i8x16.splat(<i8>planeBit)));
  }
  return acc;
}

export function u8_bitunshuffle__simd128(planes: usize, n: usize, bits: u32, codes: usize): void {
  const P = planeBytesOf(n);
  let i: usize = 0;
  for (; i + 16 <= n; i += 16) v128.store(codes + i, spreadBits(planes, P, i, 0, bits));
  unshuffleTail(planes, false, i, n, bits, codes);
}

/** 16-bit codes (little-endian u16): the low bytes give planes 0..7, the high bytes 8..15. */
export function u16_bitshuffle__simd128(codes: usize, n: usize, bits: u32, out: usize): void {
  const P = planeBytesOf(n);
  const lowBits = min<u32>(bits, 8);
  let i: usize = 0;
  for (; i + 16 <= n; i += 16) {
    const a = v128.load(codes + (i << 1)), b = v128.load(codes + (i << 1), 16);
    const lo = i8x16.shuffle(a, b, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const hi = i8x16.shuffle(a, b, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    const o = out + (i >> 3);
    let l = lo;
    for (let j = 7; j >= 0; j--) {
      if (<u32>j < lowBits) store<u16>(o + <usize>j * P, i8x16.bitmask(l));
      l = i8x16.add(l, l);
    }
    let h = i16x8.shl(hi, 16 - <i32>bits);
    for (let j = <i32>bits - 1; j >= 8; j--) {
      store<u16>(o + <usize>j * P, i8x16.bitmask(h));
      h = i8x16.add(h, h);
    }
  }
  shuffleTail(codes, true, i, n, bits, out);
}

export function u16_bitunshuffle__simd128(planes: usize, n: usize, bits: u32, codes: usize): void {
  const P = planeBytesOf(n);
  const lowBits = min<u32>(bits, 8);
  const highBits = bits > 8 ? bits - 8 : 0;
  let i: usize = 0;
  for (; i + 16 <= n; i += 16) {
    const lo = spreadBits(planes, P, i, 0, lowBits);
    const hi = spreadBits(planes, P, i, 8, highBits);
    v128.store(codes + (i << 1), i8x16.shuffle(lo, hi, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23));
    v128.store(codes + (i << 1), i8x16.shuffle(lo, hi, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31), 16);
  }
  unshuffleTail(planes, true, i, n, bits, codes);
}
