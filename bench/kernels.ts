// Kernel throughput: GB/s of float32 input (4 bytes per element, whatever the kernel reads) for
// every kernel and for encode/decode end to end, against memcpy of the same bytes
// (TypedArray.set), a plain TypeScript loop doing the same work, and onnxruntime-node's
// QuantizeLinear / DequantizeLinear / DynamicQuantizeLinear (uint8, one thread). Every ratio
// comes from this one run. Not a test: nothing here asserts.
//
//   npm run bench -- kernels [elements]     (default 1048576 = 4 MiB of float32)
import * as ort from "onnxruntime-node";
import onnxProto from "onnx-proto";
import { decodeInto, encode, initKernels } from "../kernels/index.js";
import { Arena } from "../kernels/wasm.js";
import { quantParams } from "../kernels/reference.js";
import { makeInput, rng } from "../test/kernels/inputs.js";

const n = Number(process.argv[2] ?? 1 << 20);
const BYTES = 4 * n;
const k = await initKernels();

/**
 * Best seconds per call over >= 0.4 s of calls, after warm-up: the minimum, because the
 * 2-core machine is shared (other builds, training) and interference only ever adds time.
 */
async function time(fn: () => unknown | Promise<unknown>): Promise<number> {
  for (let i = 0; i < 3; i++) await fn();
  const samples: number[] = [];
  const end = performance.now() + 400;
  while (performance.now() < end || samples.length < 5) {
    const t0 = performance.now();
    await fn();
    samples.push((performance.now() - t0) / 1000);
  }
  return Math.min(...samples);
}

// Post-ReLU-like activations: what the kernels see at a cut.
const x = makeInput("relu", n, rng(7));
const [mn, mx] = [0, x.reduce((a, b) => Math.max(a, b), 0)];
const p4 = quantParams(mn, mx, 4), p8 = quantParams(mn, mx, 8);

const a = new Arena(k);
a.reset();
const X = a.take(BYTES), C = a.take(2 * n), P = a.take(2 * n), Y = a.take(BYTES), R = a.take(64);
new Float32Array(k.memory.buffer, X, n).set(x);
k.f32_quantize_u8__simd128(X, n, p4.pre, p4.qlo, p4.inv, C);
k.u8_pack_u4__simd128(C, n, P);

type Row = { name: string; what: string; seconds: number };
const rows: Row[] = [];
async function row(name: string, what: string, fn: () => unknown | Promise<unknown>): Promise<void> {
  rows.push({ name, what, seconds: await time(fn) });
}

// Baselines.
const src = new Float32Array(x), dst = new Float32Array(n);
await row("memcpy", "Float32Array.set of the same bytes", () => dst.set(src));

const plainPacked = new Uint8Array(n >> 1), plainOut = new Float32Array(n);
await row("plain TS quantise+pack 4-bit", "Math.round loop, min/max pass included", () => {
  let lo = Infinity, hi = -Infinity;
  for (let i = 0; i < n; i++) {
    const v = src[i];
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  const inv = 15 / (hi - lo);
  for (let i = 0; i < n; i += 2) {
    const q0 = Math.min(15, Math.max(0, Math.round((src[i] - lo) * inv)));
    const q1 = Math.min(15, Math.max(0, Math.round((src[i + 1] - lo) * inv)));
    plainPacked[i >> 1] = q0 | (q1 << 4);
  }
});
await row("plain TS unpack+dequantise 4-bit", "loop over nibbles", () => {
  const s = (mx - mn) / 15;
  for (let i = 0; i < n; i += 2) {
    const b = plainPacked[i >> 1];
    plainOut[i] = (b & 15) * s + mn;
    plainOut[i + 1] = (b >> 4) * s + mn;
  }
});

// onnxruntime-node, one thread, uint8.
function model(nodes: object[], inputs: [string, number][], outputs: [string, number][], inits: object[]): Uint8Array {
  const { onnx } = onnxProto;
  const vi = ([name, elemType]: [string, number]) => ({ name, type: { tensorType: { elemType, shape: { dim: [{ dimValue: n }] } } } });
  const m = onnx.ModelProto.fromObject({
    irVersion: 8,
    opsetImport: [{ domain: "", version: 13 }],
    graph: { name: "q", node: nodes, input: inputs.map(vi), output: outputs.map(vi), initializer: inits },
  });
  return onnx.ModelProto.encode(m).finish();
}
const FLOAT = 1, UINT8 = 2;
const scaleInit = { name: "s", dataType: FLOAT, floatData: [p8.step] };
const zpInit = { name: "z", dataType: UINT8, int32Data: [0] };
const opts: ort.InferenceSession.SessionOptions = { intraOpNumThreads: 1, interOpNumThreads: 1, executionMode: "sequential", graphOptimizationLevel: "all" };
const qSess = await ort.InferenceSession.create(model([{ opType: "QuantizeLinear", input: ["x", "s", "z"], output: ["q"] }], [["x", FLOAT]], [["q", UINT8]], [scaleInit, zpInit]), opts);
const dSess = await ort.InferenceSession.create(model([{ opType: "DequantizeLinear", input: ["q", "s", "z"], output: ["y"] }], [["q", UINT8]], [["y", FLOAT]], [scaleInit, zpInit]), opts);
const dqSess = await ort.InferenceSession.create(model([{ opType: "DynamicQuantizeLinear", input: ["x"], output: ["q", "s", "z"] }], [["x", FLOAT]], [["q", UINT8], ["s", FLOAT], ["z", UINT8]], []), opts);
const xT = new ort.Tensor("float32", src, [n]);
const qT = (await qSess.run({ x: xT })).q as ort.Tensor;
await row("ort QuantizeLinear u8", "onnxruntime-node, 1 thread, scale given", () => qSess.run({ x: xT }));
await row("ort DequantizeLinear u8", "onnxruntime-node, 1 thread", () => dSess.run({ q: qT }));
await row("ort DynamicQuantizeLinear u8", "onnxruntime-node, 1 thread, range from the tensor", () => dqSess.run({ x: xT }));

// WASM kernels on data already in WASM memory.
await row("f32_minmax__simd128", "", () => k.f32_minmax__simd128(X, n, R));
await row("f32_quantize_u8__simd128 (8-bit)", "codes, one per byte; min = 0", () => k.f32_quantize_u8__simd128(X, n, p8.pre, p8.qlo, p8.inv, C));
const signed = quantParams(-1, mx, 8); // the same data under a range with min < 0: the subtracting loop
await row("f32_quantize_u8__simd128 (min < 0)", "range [-1, max]", () => k.f32_quantize_u8__simd128(X, n, signed.pre, signed.qlo, signed.inv, C));
await row("f32_quantize_u16__simd128", "", () => k.f32_quantize_u16__simd128(X, n, p8.pre, p8.qlo, p8.inv, C));
await row("u8_pack_u4__simd128", "n codes in", () => k.u8_pack_u4__simd128(C, n, P));
await row("u8_pack_u2__simd128", "", () => k.u8_pack_u2__simd128(C, n, P));
await row("u8_pack_u1__simd128", "", () => k.u8_pack_u1__simd128(C, n, P));
await row("u8_pack_ub__scalar (6-bit)", "", () => k.u8_pack_ub__scalar(C, n, 6, P));
await row("u8_bitshuffle__simd128 (4-bit)", "", () => k.u8_bitshuffle__simd128(C, n, 4, P));
await row("u8_bitshuffle__simd128 (8-bit)", "", () => k.u8_bitshuffle__simd128(C, n, 8, P));
await row("u8_bitunshuffle__simd128 (4-bit)", "", () => k.u8_bitunshuffle__simd128(P, n, 4, C));
await row("u8_unpack_u4__simd128", "", () => k.u8_unpack_u4__simd128(P, n, C));
await row("u8_unpack_ub__scalar (6-bit)", "", () => k.u8_unpack_ub__scalar(P, n, 6, C));
await row("u8_dequantize_f32__simd128", "", () => k.u8_dequantize_f32__simd128(C, n, p8.step, p8.offset, p8.mult, p8.hi, 255, Y));
await row("minmax + quantize_u8 + pack_u4 (unfused)", "", () => {
  k.f32_minmax__simd128(X, n, R);
  k.f32_quantize_u8__simd128(X, n, p4.pre, p4.qlo, p4.inv, C);
  k.u8_pack_u4__simd128(C, n, P);
});
await row("minmax + f32_quantize_pack_u4__simd128", "fused quantise+pack", () => {
  k.f32_minmax__simd128(X, n, R);
  k.f32_quantize_pack_u4__simd128(X, n, p4.pre, p4.qlo, p4.inv, P);
});
await row("unpack_u4 + dequantize (unfused)", "", () => {
  k.u8_unpack_u4__simd128(P, n, C);
  k.u8_dequantize_f32__simd128(C, n, p4.step, p4.offset, p4.mult, p4.hi, 15, Y);
});
await row("u4_unpack_dequantize_f32__simd128", "fused unpack+dequantise", () => k.u4_unpack_dequantize_f32__simd128(P, n, p4.step, p4.offset, p4.mult, p4.hi, Y));
await row("f32_to_f16__simd128", "", () => k.f32_to_f16__simd128(X, n, P));
await row("f16_to_f32__simd128", "", () => k.f16_to_f32__simd128(P, n, Y));

// End to end: JS Float32Array in, payload out (and back), header and copies included.
const shape = [n];
for (const [bits, shuffle, codec] of [[4, false, "none"], [4, true, "none"], [6, false, "none"], [8, false, "none"], [4, false, "lz4"], [4, false, "zstd"], [8, false, "zstd"]] as const) {
  const b = encode(src, shape, { bits, shuffle, codec });
  await row(`encode ${bits}-bit shuffle=${shuffle} ${codec}`, `${b.length} bytes`, () => encode(src, shape, { bits, shuffle, codec }));
  await row(`decode ${bits}-bit shuffle=${shuffle} ${codec}`, "decodeInto a reused tensor", () => decodeInto(b, dst));
}
// Per-channel ranges along axis 1: 256 channels of 32x32, batch 4.
const chShape = [4, 256, 32, 32].map((d, i) => (i === 0 ? n / (256 * 32 * 32) : d));
if (chShape[0] >= 1 && Number.isInteger(chShape[0])) {
  const b = encode(src, chShape, { bits: 4, perChannel: true, codec: "none" });
  await row("encode 4-bit per-channel none", `shape [${chShape}]`, () => encode(src, chShape, { bits: 4, perChannel: true, codec: "none" }));
  await row("decode 4-bit per-channel none", "decodeInto a reused tensor", () => decodeInto(b, dst));
}

const base = (name: string) => rows.find((r) => r.name === name)!.seconds;
const memcpy = base("memcpy");
const gbs = (s: number) => BYTES / s / 1e9;
console.log(`\nbench/kernels: ${n} float32 elements (${(BYTES / 2 ** 20).toFixed(1)} MiB), post-ReLU-like input, Node ${process.version}, onnxruntime-node ${ort.env.versions?.common ?? ""}`);
console.log(`GB/s counts float32 input bytes (4 per element) for every row, so rows compare as throughput per element; times are the best of >= 0.4 s of calls. Load average now: ${(await import("node:os")).loadavg()[0].toFixed(1)} on ${(await import("node:os")).cpus().length} cores.\n`);
const cols = ["kernel", "GB/s", "x memcpy", "x plain TS", "x ORT", "ms", "note"];
const lines: string[][] = [];
for (const r of rows) {
  const enc = /quantis|quantize|pack|encode|minmax|f32_to/i.test(r.name) && !/dequant|unpack|decode/i.test(r.name);
  const plain = base(enc ? "plain TS quantise+pack 4-bit" : "plain TS unpack+dequantise 4-bit");
  const ortBase = base(enc ? "ort QuantizeLinear u8" : "ort DequantizeLinear u8");
  lines.push([r.name, gbs(r.seconds).toFixed(2), (memcpy / r.seconds).toFixed(2), (plain / r.seconds).toFixed(2), (ortBase / r.seconds).toFixed(2), (r.seconds * 1e3).toFixed(3), r.what]);
}
const w = cols.map((c, i) => Math.max(c.length, ...lines.map((l) => l[i].length)));
const fmt = (l: string[]) => "| " + l.map((c, i) => (i === 0 || i === 6 ? c.padEnd(w[i]) : c.padStart(w[i]))).join(" | ") + " |";
console.log(fmt(cols));
console.log("|" + w.map((x, i) => (i === 0 || i === 6 ? "-" : "") + "-".repeat(x) + (i === 0 || i === 6 ? "" : ":") + "-").join("|").replace(/--:-/g, "-:-") + "|");
for (const l of lines) console.log(fmt(l));
console.log(`\n"x plain TS" and "x ORT" compare encode-side rows with the quantise+pack loop / QuantizeLinear, decode-side rows with unpack+dequantise / DequantizeLinear.`);
