// The shared kernel tester: every WASM kernel against its scalar TypeScript reference
// (kernels/reference.ts), bit for bit, on seeded inputs of every length from 1 to three SIMD tiles
// and some large ones, every bit width, and the edge families of test/kernels/harness.ts.
// DYNO_SEED=<n> replays a run; failures print the seed.
import { test } from "uvu";
import * as assert from "uvu/assert";
import {
  bitshuffleRef, bitunshuffleRef, dequantizeRef, f16ToF32Ref, f32ToF16Ref, minmaxRef, packRef,
  quantizeRef, quantParams, unpackRef,
} from "../kernels/reference.js";
import { ALL_BITS, Call, expectSame, FAMILIES, LENGTHS, makeInput, rng, SEED, wasm } from "./kernels/harness.js";

const k = await wasm();

/** pmin/pmax leave the sign of a zero bound to input order; encode stores +0 either way. */
const zeroSignless = (a: ArrayLike<number>) => Array.from(a, (v) => v + 0);

function codesFor(bits: number, n: number, r: () => number): Uint8Array | Uint16Array {
  const c = bits > 8 ? new Uint16Array(n) : new Uint8Array(n);
  const top = bits === 16 ? 65536 : 1 << bits;
  // Mix uniform codes with runs of zeros and of the top code: the shapes real activations give.
  for (let i = 0; i < n; i++) c[i] = r() < 0.3 ? 0 : r() < 0.1 ? top - 1 : Math.floor(r() * top);
  return c;
}

test("f32_minmax__simd128 matches the reference, and NaN/Inf reach the result", () => {
  const r = rng(SEED);
  for (const family of FAMILIES) {
    for (const n of LENGTHS) {
      const x = makeInput(family, n, r);
      const c = new Call();
      const X = c.put(x), R = c.out(8);
      k.f32_minmax__simd128(X, n, R);
      expectSame("f32_minmax__simd128", zeroSignless(c.f32(R, 2)), zeroSignless(minmaxRef(x)), `family=${family} n=${n}`);
    }
  }
  for (const n of [1, 5, 16, 17, 100]) {
    for (const bad of [NaN, Infinity, -Infinity]) {
      const x = makeInput("normal", n, r);
      x[Math.floor(r() * n)] = bad;
      const c = new Call();
      const X = c.put(x), R = c.out(8);
      k.f32_minmax__simd128(X, n, R);
      const [mn, mx] = c.f32(R, 2);
      assert.ok(!Number.isFinite(mn) || !Number.isFinite(mx), `n=${n} with ${bad}: got [${mn}, ${mx}] seed=${SEED}`);
    }
  }
});

test("f32_quantize_u8/u16__simd128 match the reference at every bit width", () => {
  const r = rng(SEED + 1);
  for (const bits of ALL_BITS) {
    for (const family of FAMILIES) {
      for (const n of LENGTHS) {
        const x = makeInput(family, n, r);
        // The range is the input's own, the kernels' precondition (quantizeRef checks it).
        const [mn, mx] = minmaxRef(x);
        const p = quantParams(mn, mx, bits);
        const c = new Call();
        const X = c.put(x), Q = c.out(bits > 8 ? 2 * n : n);
        const ctx = `bits=${bits} family=${family} n=${n}`;
        if (bits > 8) {
          k.f32_quantize_u16__simd128(X, n, p.pre, p.qlo, p.inv, Q);
          expectSame("f32_quantize_u16__simd128", c.u16(Q, n), quantizeRef(x, p), ctx);
        } else {
          k.f32_quantize_u8__simd128(X, n, p.pre, p.qlo, p.inv, Q);
          expectSame("f32_quantize_u8__simd128", c.u8(Q, n), quantizeRef(x, p), ctx);
        }
        if (bits === 4) {
          const P = c.out(Math.ceil(n / 2));
          k.f32_quantize_pack_u4__simd128(X, n, p.pre, p.qlo, p.inv, P);
          expectSame("f32_quantize_pack_u4__simd128", c.u8(P, Math.ceil(n / 2)), packRef(quantizeRef(x, p), 4), ctx);
        }
      }
    }
  }
});

test("u8/u16_dequantize_f32__simd128 and the fused 4-bit unpack+dequantise match the reference", () => {
  const r = rng(SEED + 2);
  for (const bits of ALL_BITS) {
    for (const family of FAMILIES) {
      for (const n of LENGTHS) {
        const x = makeInput(family, Math.min(n, 64), r);
        const [mn, mx] = minmaxRef(x);
        const p = quantParams(mn, mx, bits);
        const codes = codesFor(bits, n, r);
        const c = new Call();
        const Q = c.put(codes), Y = c.out(4 * n);
        const ctx = `bits=${bits} family=${family} n=${n}`;
        if (bits > 8) k.u16_dequantize_f32__simd128(Q, n, p.step, p.offset, p.mult, p.hi, p.maxCode, Y);
        else k.u8_dequantize_f32__simd128(Q, n, p.step, p.offset, p.mult, p.hi, p.maxCode, Y);
        expectSame("u*_dequantize_f32__simd128", c.f32(Y, n), dequantizeRef(codes, p), ctx);
        // A step whose top code misses max: the loop with the select (quantParams avoids it when it can).
        const off = { ...p, step: Math.fround(p.step * (1 + 2 ** -20)) };
        const Y2 = c.out(4 * n);
        if (bits > 8) k.u16_dequantize_f32__simd128(Q, n, off.step, off.offset, off.mult, off.hi, off.maxCode, Y2);
        else k.u8_dequantize_f32__simd128(Q, n, off.step, off.offset, off.mult, off.hi, off.maxCode, Y2);
        expectSame("u*_dequantize_f32__simd128 (select)", c.f32(Y2, n), dequantizeRef(codes, off), ctx);
        if (bits === 4) {
          const packed = packRef(codes, 4);
          const P = c.put(packed), Z = c.out(4 * n);
          k.u4_unpack_dequantize_f32__simd128(P, n, p.step, p.offset, p.mult, p.hi, Z);
          expectSame("u4_unpack_dequantize_f32__simd128", c.f32(Z, n), dequantizeRef(codes, p), ctx);
          k.u4_unpack_dequantize_f32__simd128(P, n, off.step, off.offset, off.mult, off.hi, Z);
          expectSame("u4_unpack_dequantize_f32__simd128 (select)", c.f32(Z, n), dequantizeRef(codes, off), ctx);
        }
      }
    }
  }
});

test("per-channel quantise/dequantise (axis 1) match the per-slab reference", () => {
  const r = rng(SEED + 3);
  for (const bits of [2, 4, 8, 16]) {
    for (const [outer, C, inner] of [[1, 1, 1], [1, 3, 17], [2, 5, 33], [3, 2, 1], [1, 64, 49], [2, 16, 0]]) {
      const n = outer * C * inner;
      const x = makeInput(r() < 0.5 ? "relu" : "normal", n, r);
      if (n > 0) for (let i = 0; i < inner; i++) x[i] = 2.5; // channel 0 of batch 0: constant
      const c = new Call();
      const X = c.put(x), R = c.out(8 * C);
      if (n > 0) {
        k.f32_minmax_channels__simd128(X, outer, C, inner, R);
        const got = c.f32(R, 2 * C);
        for (let ch = 0; ch < C; ch++) {
          const slab = new Float32Array(outer * inner);
          for (let o = 0; o < outer; o++) slab.set(x.subarray((o * C + ch) * inner, (o * C + ch + 1) * inner), o * inner);
          expectSame("f32_minmax_channels__simd128", zeroSignless(got.subarray(2 * ch, 2 * ch + 2)), zeroSignless(minmaxRef(slab)), `channel=${ch}`);
        }
      }
      const ranges = n > 0 ? c.f32(R, 2 * C) : new Float32Array(2 * C);
      const params = new Float32Array(4 * C), dparams = new Float32Array(4 * C);
      const want = bits > 8 ? new Uint16Array(n) : new Uint8Array(n);
      const wantY = new Float32Array(n);
      for (let ch = 0; ch < C; ch++) {
        const p = quantParams(ranges[2 * ch], ranges[2 * ch + 1], bits);
        params.set([p.pre, p.qlo, p.inv, 0], 4 * ch);
        dparams.set([p.step, p.offset, p.mult, p.hi], 4 * ch);
        for (let o = 0; o < outer; o++) {
          const at = (o * C + ch) * inner;
          const q = quantizeRef(x.subarray(at, at + inner), p);
          want.set(q, at);
          wantY.set(dequantizeRef(q, p), at);
        }
      }
      const P = c.put(params), DP = c.put(dparams), Q = c.out(bits > 8 ? 2 * n : n), Y = c.out(4 * n);
      const maxCode = bits === 16 ? 65535 : (1 << bits) - 1;
      const ctx = `bits=${bits} shape=[${outer},${C},${inner}]`;
      if (bits > 8) {
        k.f32_quantize_u16_channels__simd128(X, outer, C, inner, P, Q);
        expectSame("f32_quantize_u16_channels__simd128", c.u16(Q, n), want, ctx);
        k.u16_dequantize_f32_channels__simd128(Q, outer, C, inner, DP, maxCode, Y);
      } else {
        k.f32_quantize_u8_channels__simd128(X, outer, C, inner, P, Q);
        expectSame("f32_quantize_u8_channels__simd128", c.u8(Q, n), want, ctx);
        k.u8_dequantize_f32_channels__simd128(Q, outer, C, inner, DP, maxCode, Y);
      }
      expectSame("u*_dequantize_f32_channels__simd128", c.f32(Y, n), wantY, ctx);
    }
  }
});

test("pack/unpack kernels (scalar any-width and SIMD 1/2/4-bit) match the reference", () => {
  const r = rng(SEED + 4);
  const simd: Record<number, [string, string]> = {
    1: ["u8_pack_u1__simd128", "u8_unpack_u1__simd128"],
    2: ["u8_pack_u2__simd128", "u8_unpack_u2__simd128"],
    4: ["u8_pack_u4__simd128", "u8_unpack_u4__simd128"],
  };
  for (const bits of [1, 2, 3, 4, 5, 6, 7, 8]) {
    for (const n of LENGTHS) {
      const codes = codesFor(bits, n, r) as Uint8Array;
      const bytes = Math.ceil((n * bits) / 8);
      const want = packRef(codes, bits);
      const ctx = `bits=${bits} n=${n}`;
      const variants: [string, (c: number, o: number) => void, (p: number, o: number) => void][] = [
        ["u8_pack_ub__scalar", (q, o) => k.u8_pack_ub__scalar(q, n, bits, o), (p, o) => k.u8_unpack_ub__scalar(p, n, bits, o)],
      ];
      if (simd[bits]) {
        const [pk, up] = simd[bits];
        const kk = k as unknown as Record<string, (a: number, b: number, c: number) => void>;
        variants.push([pk, (q, o) => kk[pk](q, n, o), (p, o) => kk[up](p, n, o)]);
      }
      for (const [name, packFn, unpackFn] of variants) {
        const c = new Call();
        const Q = c.put(codes), P = c.out(bytes);
        packFn(Q, P);
        expectSame(name, c.u8(P, bytes), want, ctx);
        const U = c.out(n);
        unpackFn(c.put(want), U);
        expectSame(name.replace("pack", "unpack"), c.u8(U, n), unpackRef(want, n, bits), ctx);
      }
    }
  }
});

test("bit-shuffle / unshuffle (u8 and u16 codes) match the reference", () => {
  const r = rng(SEED + 5);
  for (const bits of ALL_BITS) {
    for (const n of LENGTHS) {
      const codes = codesFor(bits, n, r);
      const bytes = bits * Math.ceil(n / 8);
      const want = bitshuffleRef(codes, bits);
      const ctx = `bits=${bits} n=${n}`;
      const c = new Call();
      const Q = c.put(codes), S = c.out(bytes), U = c.out(codes.byteLength);
      if (bits > 8) k.u16_bitshuffle__simd128(Q, n, bits, S);
      else k.u8_bitshuffle__simd128(Q, n, bits, S);
      expectSame("bitshuffle", c.u8(S, bytes), want, ctx);
      if (bits > 8) k.u16_bitunshuffle__simd128(S, n, bits, U);
      else k.u8_bitunshuffle__simd128(S, n, bits, U);
      const got = bits > 8 ? c.u16(U, n) : c.u8(U, n);
      expectSame("bitunshuffle", got, bitunshuffleRef(want, n, bits), ctx);
      expectSame("bitunshuffle(bitshuffle)", got, codes, ctx);
    }
  }
});

test("float16 conversions match the reference: every half value, and float32 of every class", () => {
  const all = new Uint16Array(65536).map((_, i) => i);
  const c = new Call();
  const H = c.put(all), F = c.out(4 * 65536);
  k.f16_to_f32__simd128(H, 65536, F);
  const f = c.f32(F, 65536);
  const want = f16ToF32Ref(all);
  const fb = new Uint32Array(f.buffer), wb = new Uint32Array(want.buffer);
  expectSame("f16_to_f32__simd128 (bits)", fb, wb, "");
  // float32 -> float16: every half (must round-trip), midpoints between halves (ties to even),
  // random bit patterns, and overflow/underflow edges.
  const r = rng(SEED + 6);
  const xs: number[] = [...f];
  for (let i = 0; i < 65535; i++) if (Number.isFinite(f[i]) && Number.isFinite(f[i + 1]) && (i & 0x7c00) !== 0x7c00) xs.push((f[i] + f[i + 1]) / 2);
  const bitsRand = new Uint32Array(20000).map(() => Math.floor(r() * 2 ** 32));
  xs.push(...new Float32Array(bitsRand.buffer), 65504, 65519.99, 65520, 1e10, -1e10, 2 ** -25, 2 ** -26, 3 * 2 ** -26, 1e-30);
  const x = new Float32Array(xs);
  const c2 = new Call();
  const X = c2.put(x), O = c2.out(2 * x.length);
  k.f32_to_f16__simd128(X, x.length, O);
  expectSame("f32_to_f16__simd128", c2.u16(O, x.length), f32ToF16Ref(x), "");
});

test.run();
