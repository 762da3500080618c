// encode/decode end to end: the same bytes as the reference pipeline, the round-trip bound,
// exactness at zeros/min/max, float passthrough, and rejection of malformed payloads.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { decode, decodeInto, decodeWithShape, encode, initKernels, CODECS, type Bits } from "../kernels/index.js";
import * as api from "../kernels/index.js";
import { minmaxRef, quantParams, roundoffBound } from "../kernels/reference.js";
import { encodeRef } from "./kernels/encode-ref.js";
import { ALL_BITS, FAMILIES, makeInput, rng, SEED, type Family } from "./kernels/harness.js";

const k = await initKernels();

const SHAPES: number[][] = [[1], [7], [2, 3], [1, 16, 5, 5], [2, 8, 3, 7], [1, 3, 33], [1, 64, 7, 7], [0, 4], [1, 24, 1500]];

function maxErrorCheck(x: Float32Array, y: Float32Array, ranges: [number, number][], chan: (i: number) => number, bits: number, ctx: string): void {
  const params = ranges.map(([a, b]) => quantParams(a, b, bits));
  for (let i = 0; i < x.length; i++) {
    const p = params[chan(i)];
    const err = Math.abs(x[i] - y[i]);
    const bound = (p.hi - p.lo) / p.maxCode / 2 + roundoffBound(p);
    if (!(err <= bound)) assert.unreachable(`|x - y| = ${err} > ${bound} at [${i}] (x=${x[i]}, y=${y[i]}) ${ctx} seed=${SEED}`);
    if (x[i] === p.lo || x[i] === p.hi) {
      if (!Object.is(y[i], x[i] === 0 ? 0 : x[i]) && !(x[i] === 0 && y[i] === 0)) {
        assert.unreachable(`not exact at a range end: x=${x[i]} y=${y[i]} [${i}] ${ctx} seed=${SEED}`);
      }
    }
    if (p.lo >= 0 && x[i] === 0 && y[i] !== 0) assert.unreachable(`zero of a non-negative tensor decoded to ${y[i]} ${ctx} seed=${SEED}`);
  }
}

test("encode gives the reference pipeline's bytes; decode round-trips within scale/2, exact at zeros, min and max", () => {
  const r = rng(SEED + 10);
  let cases = 0;
  for (const shape of SHAPES) {
    const n = shape.reduce((a, b) => a * b, 1);
    for (const family of FAMILIES) {
      if (n > 10000 && family !== "relu") continue;
      const x = makeInput(family as Family, n, r);
      for (const bits of ALL_BITS) {
        for (const shuffle of [false, true]) {
          for (const perChannel of shape.length >= 2 ? [false, true] : [false]) {
            const codec = CODECS[(cases++ + bits) % CODECS.length];
            const ctx = `shape=[${shape}] family=${family} bits=${bits} shuffle=${shuffle} perChannel=${perChannel} codec=${codec}`;
            const bytes = encode(x, shape, { bits, shuffle, perChannel, codec });
            const want = encodeRef(x, shape, bits, shuffle, perChannel, codec);
            assert.equal(bytes, want, `payload differs from the reference: ${ctx} seed=${SEED}`);
            const { data: y, shape: s } = decodeWithShape(bytes);
            assert.equal(s, shape);
            if (n === 0) continue;
            let ranges: [number, number][];
            let chan: (i: number) => number;
            if (perChannel) {
              const C = shape[1], inner = n / shape[0] / C;
              ranges = [];
              for (let c = 0; c < C; c++) {
                const slab: number[] = [];
                for (let o = 0; o < shape[0]; o++) slab.push(...x.subarray((o * C + c) * inner, (o * C + c + 1) * inner));
                ranges.push(minmaxRef(new Float32Array(slab)));
              }
              chan = (i) => Math.floor(i / inner) % C;
            } else {
              ranges = [minmaxRef(x)];
              chan = () => 0;
            }
            maxErrorCheck(x, y, ranges, chan, bits, ctx);
          }
        }
      }
    }
  }
});

test("float32 and float16 passthrough", () => {
  const r = rng(SEED + 11);
  const x = makeInput("normal", 1000, r);
  x[3] = NaN; x[4] = Infinity; x[5] = -0; x[6] = 1e-42; x[7] = 70000;
  for (const codec of CODECS) {
    for (const bits of [32, "f32"] as Bits[]) {
      const b = encode(x, [10, 100], { bits, codec });
      assert.equal(b, encodeRef(x, [10, 100], "f32", false, false, codec));
      const y = decode(b);
      assert.equal(new Uint8Array(y.buffer), new Uint8Array(x.buffer), "float32 must be bit exact");
    }
    const h = encode(x, [10, 100], { bits: "f16", codec });
    assert.equal(h, encodeRef(x, [10, 100], "f16", false, false, codec));
    const y = decode(h);
    assert.ok(Number.isNaN(y[3]) && y[4] === Infinity && Object.is(y[5], -0) && y[6] === 0 && y[7] === Infinity);
    for (let i = 8; i < x.length; i++) assert.ok(Math.abs(x[i] - y[i]) <= Math.abs(x[i]) * 2 ** -11 + 2 ** -25, `f16 at ${i}`);
  }
});

test("encode rejects NaN/Inf, bad shapes and bad options with a clear error", () => {
  for (const bad of [NaN, Infinity, -Infinity]) {
    const x = new Float32Array(40).fill(1);
    x[33] = bad;
    assert.throws(() => encode(x, [40], { bits: 4 }), /NaN or Inf/);
    assert.throws(() => encode(x, [2, 20], { bits: 8, perChannel: true }), /NaN or Inf \(channel 13\)/);
  }
  const x = new Float32Array(6);
  assert.throws(() => encode(x, [4], { bits: 4 }), /shape \[4\] has 4 elements, the tensor 6/);
  assert.throws(() => encode(x, [6], { bits: 9 as Bits }), /unsupported bits 9/);
  assert.throws(() => encode(x, [6], { bits: 4, perChannel: true }), /rank >= 2/);
  assert.throws(() => encode(x, [6], { bits: 4, codec: "brotli" as never }), /unknown codec "brotli"/);
});

test("decode rejects every truncation and every forged length; random corruption never escapes as a non-payload error", () => {
  const r = rng(SEED + 12);
  const x = makeInput("relu", 2 * 8 * 9, r);
  for (const codec of CODECS) {
    for (const [bits, shuffle, perChannel] of [[4, false, false], [2, true, true], [8, true, false], [16, false, true], ["f16", false, false]] as [Bits, boolean, boolean][]) {
      const b = encode(x, [2, 8, 9], { bits, shuffle, perChannel, codec });
      for (let len = 0; len < b.length; len++) assert.throws(() => decode(b.subarray(0, len)), /^payload: /);
      assert.throws(() => decode(new Uint8Array([...b, 0])), /trailing bytes/);
      for (let t = 0; t < 300; t++) {
        const c = b.slice();
        const flips = 1 + Math.floor(r() * 3);
        for (let f = 0; f < flips; f++) c[Math.floor(r() * c.length)] ^= 1 << Math.floor(r() * 8);
        try {
          const y = decode(c);
          assert.ok(y instanceof Float32Array);
        } catch (e) {
          assert.match((e as Error).message, /^payload: /, `codec=${codec} bits=${bits}: ${(e as Error).message} seed=${SEED}`);
        }
      }
    }
  }
  // A forged shape asking for 2^32 elements from a few bytes: rejected before any allocation.
  const small = encode(new Float32Array(4), [4], { bits: 4, codec: "zstd" });
  const forged = small.slice();
  new DataView(forged.buffer).setUint32(8, 0xffffffff, true);
  assert.throws(() => decode(forged), /more than the cap/);
  // A zstd/lz4 body that claims far more raw bytes than its format could expand to.
  const big = encode(new Float32Array(1 << 20), [1 << 20], { bits: 8, codec: "lz4", shuffle: false });
  assert.throws(() => decode(big, { maxElements: 1000 }), /more than the cap/);
  const h = new Uint8Array([0x44, 0x59, 1, 0, 8, 0, 1, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 128, 63, 0, 0, 0, 1, 4, 0, 0, 0, 0, 0, 0, 0]);
  assert.throws(() => decode(h), /cannot hold/);
  assert.throws(() => decode(new Uint8Array([0x44, 0x59, 2, 0, 8, 0, 0, 0])), /unsupported version 2/);
  assert.throws(() => decode(new Uint8Array([0x50, 0x4b, 3, 4, 0, 0, 0, 0])), /bad magic/);
});

test("steady state: the WASM memory stops growing and a million calls leak nothing", () => {
  const r = rng(SEED + 13);
  const x = makeInput("relu", 64, r);
  const x2 = makeInput("relu", 1 << 16, r);
  encode(x2, [1 << 16], { bits: 8, codec: "none" });
  decode(encode(x2, [1 << 16], { bits: 16, shuffle: true, codec: "none" }));
  const pages = k.memory.buffer.byteLength;
  const y = new Float32Array(64);
  const t0 = performance.now();
  let calls = 0;
  for (; calls < 1_000_000; calls += 2) {
    const b = encode(x, [64], { bits: 4, shuffle: false, codec: "none" });
    decodeInto(b, y);
    if (performance.now() - t0 > 2000) break; // a slow machine runs fewer; the bound is still checked
  }
  assert.is(k.memory.buffer.byteLength, pages, `WASM memory grew after ${calls} calls`);
  assert.equal(y, decode(encode(x, [64], { bits: 4, shuffle: false, codec: "none" })));
  assert.throws(() => decodeInto(encode(x, [64], { bits: 4 }), new Float32Array(63)), /payload has 64 elements/);
  console.log(`  steady state: ${calls} encode/decode calls, WASM memory constant at ${pages / 65536} pages`);
});

test("public API", () => {
  assert.equal(Object.keys(api).sort(), ["CODECS", "DEFAULTS", "PAYLOAD_VERSION", "decode", "decodeInto", "decodeWithShape", "encode", "initKernels", "initZstd", "readHeader"]);
});

test.run();
