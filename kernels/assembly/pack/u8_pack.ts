// Dense packing of b-bit codes (one per byte) into a little-endian bit stream: code i occupies
// stream bits [i*b, i*b + b), and stream bit k is bit (k & 7) of byte k >> 3. So for b = 4 the
// even element is the low nibble. 8-bit codes are the bytes themselves and 16-bit codes their
// little-endian u16s, so b = 8 and 16 are plain copies. Output length: ceil(n * b / 8).
// The SIMD forms cover the widths activations use most (1, 2, 4); the others go through the
// scalar bit accumulator.

/**
 * Any b in 1..8. Groups of 8 codes make exactly b bytes: they are gathered in a u64 and stored
 * with one 8-byte write while 8 bytes remain in the output (never past its end), 4-5x faster
 * than a byte at a time; the rest goes through the bit accumulator.
 */
export function u8_pack_ub__scalar(codes: usize, n: usize, bits: u32, out: usize): void {
  const total = (n * <usize>bits + 7) >> 3;
  const b = <u64>bits;
  let i: usize = 0;
  let o = out;
  for (; i + 8 <= n && o + 8 <= out + total; i += 8, o += bits) {
    const c = codes + i;
    const g = <u64>load<u8>(c) | (<u64>load<u8>(c, 1) << b) | (<u64>load<u8>(c, 2) << 2 * b) | (<u64>load<u8>(c, 3) << 3 * b)
      | (<u64>load<u8>(c, 4) << 4 * b) | (<u64>load<u8>(c, 5) << 5 * b) | (<u64>load<u8>(c, 6) << 6 * b) | (<u64>load<u8>(c, 7) << 7 * b);
    store<u64>(o, g);
  }
  let acc: u64 = 0;
  let filled: u32 = 0;
  for (; i < n; i++) {
    acc |= <u64>load<u8>(codes + i) << filled;
    filled += bits;
    if (filled >= 32) {
      store<u32>(o, <u32>acc);
      o += 4;
      acc >>= 32;
      filled -= 32;
    }
  }
  while (filled > 0) {
    store<u8>(o++, <u8>acc);
    acc >>= 8;
    filled = filled > 8 ? filled - 8 : 0;
  }
}

/** Any b in 1..8; reads only the ceil(n * b / 8) bytes of the stream. */
export function u8_unpack_ub__scalar(packed: usize, n: usize, bits: u32, codes: usize): void {
  const total = (n * <usize>bits + 7) >> 3;
  const b = <u64>bits;
  const mask: u64 = (<u64>1 << b) - 1;
  let i: usize = 0;
  let p = packed;
  for (; i + 8 <= n && p + 8 <= packed + total; i += 8, p += bits) {
    const g = load<u64>(p);
    const c = codes + i;
    store<u8>(c, <u8>(g & mask));
    store<u8>(c, <u8>((g >> b) & mask), 1);
    store<u8>(c, <u8>((g >> 2 * b) & mask), 2);
    store<u8>(c, <u8>((g >> 3 * b) & mask), 3);
    store<u8>(c, <u8>((g >> 4 * b) & mask), 4);
    store<u8>(c, <u8>((g >> 5 * b) & mask), 5);
    store<u8>(c, <u8>((g >> 6 * b) & mask), 6);
    store<u8>(c, <u8>((g >> 7 * b) & mask), 7);
  }
  let acc: u64 = 0;
  let filled: u32 = 0;
  for (; i < n; i++) {
    while (filled < bits) {
      acc |= <u64>load<u8>(p++) << filled;
      filled += 8;
    }
    store<u8>(codes + i, <u8>(acc & mask));
    acc >>= b;
    filled -= bits;
  }
}

// Seen as u16 lanes (c_even | c_odd << 8), v | v >> (8 - w) puts c_odd << w next to c_even in
// the low byte; masking the high byte and narrowing halves the lane count. Once for 4-bit codes,
// twice (w = 2, then 4) for 2-bit codes.
@inline
function mergePairs(a: v128, b: v128, w: i32): v128 {
  const lowByte = i16x8.splat(0x00ff);
  return i8x16.narrow_i16x8_u(
    v128.and(v128.or(a, i16x8.shr_u(a, 8 - w)), lowByte),
    v128.and(v128.or(b, i16x8.shr_u(b, 8 - w)), lowByte));
}

export function u8_pack_u4__simd128(codes: usize, n: usize, out: usize): void {
  let i: usize = 0;
  for (; i + 32 <= n; i += 32) {
    v128.store(out + (i >> 1), mergePairs(v128.load(codes + i), v128.load(codes + i, 16), 4));
  }
  u8_pack_ub__scalar(codes + i, n - i, 4, out + (i >> 1));
}

export function u8_pack_u2__simd128(codes: usize, n: usize, out: usize): void {
  let i: usize = 0;
  for (; i + 64 <= n; i += 64) {
    const p = codes + i;
    const ab = mergePairs(v128.load(p), v128.load(p, 16), 2);
    const cd = mergePairs(v128.load(p, 32), v128.load(p, 48), 2);
    v128.store(out + (i >> 2), mergePairs(ab, cd, 4));
  }
  u8_pack_ub__scalar(codes + i, n - i, 2, out + (i >> 2));
}

export function u8_pack_u1__simd128(codes: usize, n: usize, out: usize): void {
  let i: usize = 0;
  // The code bit moved to each lane's sign bit; bitmask gathers 16 of them in element order.
  for (; i + 16 <= n; i += 16) store<u16>(out + (i >> 3), i8x16.bitmask(i16x8.shl(v128.load(codes + i), 7)));
  u8_pack_ub__scalar(codes + i, n - i, 1, out + (i >> 3));
}

export function u8_unpack_u4__simd128(packed: usize, n: usize, codes: usize): void {
  const nibble = i8x16.splat(0x0f);
  let i: usize = 0;
  for (; i + 32 <= n; i += 32) {
    const v = v128.load(packed + (i >> 1));
    // i16x8 shift + mask: x86 has no 8-bit lane shifts, so i8x16.shr_u costs several instructions.
    const even = v128.and(v, nibble), odd = v128.and(i16x8.shr_u(v, 4), nibble);
    v128.store(codes + i, i8x16.shuffle(even, odd, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23));
    v128.store(codes + i, i8x16.shuffle(even, odd, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31), 16);
  }
  u8_unpack_ub__scalar(packed + (i >> 1), n - i, 4, codes + i);
}

export function u8_unpack_u2__simd128(packed: usize, n: usize, codes: usize): void {
  const nibble = i8x16.splat(0x0f), crumb = i8x16.splat(0x03);
  let i: usize = 0;
  for (; i + 64 <= n; i += 64) {
    const v = v128.load(packed + (i >> 2));
    // Split bytes into nibbles (pairs of codes), then nibbles into codes, interleaving each time.
    const e = v128.and(v, nibble), o = v128.and(i16x8.shr_u(v, 4), nibble);
    const n0 = i8x16.shuffle(e, o, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const n1 = i8x16.shuffle(e, o, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    const e0 = v128.and(n0, crumb), o0 = v128.and(i16x8.shr_u(n0, 2), crumb);
    const e1 = v128.and(n1, crumb), o1 = v128.and(i16x8.shr_u(n1, 2), crumb);
    const p = codes + i;
    v128.store(p, i8x16.shuffle(e0, o0, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23));
    v128.store(p, i8x16.shuffle(e0, o0, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31), 16);
    v128.store(p, i8x16.shuffle(e1, o1, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23), 32);
    v128.store(p, i8x16.shuffle(e1, o1, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31), 48);
  }
  u8_unpack_ub__scalar(packed + (i >> 2), n - i, 2, codes + i);
}

export function u8_unpack_u1__simd128(packed: usize, n: usize, codes: usize): void {
  // Lanes 0..7 test bits 0..7 of the first byte, lanes 8..15 those of the second.
  const bit = v128(1, 2, 4, 8, 16, 32, 64, -128, 1, 2, 4, 8, 16, 32, 64, -128);
  const one = i8x16.splat(1);
  let i: usize = 0;
  for (; i + 16 <= n; i += 16) {
    const w = v128.load16_splat(packed + (i >> 3));
    const v = i8x16.shuffle(w, w, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    v128.store(codes + i, v128.and(i8x16.eq(v128.and(v, bit), bit), one));
  }
  u8_unpack_ub__scalar(packed + (i >> 3), n - i, 1, codes + i);
}
