// The lossless stage, chosen by measurement (issue #4 §3, DynO §2 step 3): real activations at
// every cut of every fixture model (models/*.onnx, cuts from compiler/passes/find-cuts.ts),
// encoded at bits 2/4/6/8, with and without bit-shuffle, under each codec (none, lz4, deflate,
// zstd). Records payload bytes and encode + decode time, and picks, per bit width, the
// (shuffle, codec) with the least total time at the 4G preset: bytes / 15 Mbit/s + encode +
// decode, summed over every cut, image and model (RTT is the same for every choice, so left out).
//
//   npm run bench -- codec [images=8] [models=all]
//
// Activations come from onnxruntime-node after adding every cut tensor as a graph output.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import * as ort from "onnxruntime-node";
import onnxProto from "onnx-proto";
import { CODECS, decodeInto, encode, initKernels, type Codec } from "../kernels/index.js";
import { loadModel } from "../compiler/onnx/import.js";
import { inferShapes } from "../compiler/passes/infer-shapes.js";
import { findCuts } from "../compiler/passes/find-cuts.js";

const IMAGES = Number(process.argv[2] ?? 8);
const ONLY = process.argv[3]?.split(",");
const LINK_BPS = 15e6; // 4G preset (brief §5)
const BITS = [2, 4, 6, 8] as const;
const root = new URL("../models/", import.meta.url);

await initKernels();

interface Fixture { name: string; file: string; input: string; inputShape: number[] }
function fixtures(): { models: Fixture[]; mean: number; std: number; scale: number } {
  const meta = new URL("fixtures.json", root);
  if (existsSync(meta)) {
    const j = JSON.parse(readFileSync(meta, "utf8"));
    const pre = j.dataset?.preprocess ?? {};
    return { models: j.models, mean: pre.mean?.[0] ?? 0, std: pre.std?.[0] ?? 1, scale: pre.scale ?? 1 / 255 };
  }
  // No fixtures.json yet: every .onnx in models/, the fixture preprocessing of make_fixtures.py.
  const files = readdirSync(root).filter((f) => f.endsWith(".onnx"));
  return { models: files.map((f) => ({ name: f.slice(0, -5), file: f, input: "input", inputShape: [1, 1, 64, 64] })), mean: 0.286, std: 0.353, scale: 1 / 255 };
}

/** The first `count` images of models/fmnist-test.bin (DYNOIMG1), preprocessed as the fixtures expect. */
function images(count: number, shape: number[], mean: number, std: number, scale: number): Float32Array[] {
  const raw = readFileSync(new URL("fmnist-test.bin", root));
  if (raw.subarray(0, 8).toString("latin1") !== "DYNOIMG1") throw new Error("models/fmnist-test.bin: not DYNOIMG1");
  const v = new DataView(raw.buffer, raw.byteOffset);
  const [n, c, h, w] = [0, 1, 2, 3].map((i) => v.getUint32(8 + 4 * i, true));
  const size = c * h * w;
  if (size !== shape.reduce((a, b) => a * b, 1)) throw new Error(`fmnist-test.bin images are ${c}x${h}x${w}, the model wants [${shape}]`);
  const px = raw.subarray(24 + n);
  return Array.from({ length: Math.min(count, n) }, (_, i) =>
    Float32Array.from(px.subarray(i * size, (i + 1) * size), (p) => (p * scale - mean) / std));
}

/** Every cut's tensors, from the compiler's cut enumerator. */
function cutsOf(path: string): string[][] {
  const model = inferShapes(loadModel(path)).model;
  return findCuts(model).cuts.map((c) => c.tensors);
}

/** The model with `names` added as graph outputs, for onnxruntime-node to return them. */
function withOutputs(bytes: Uint8Array, names: string[]): Uint8Array {
  const { onnx } = onnxProto;
  const m = onnx.ModelProto.decode(bytes);
  const have = new Set(m.graph!.output!.map((o) => o.name));
  for (const name of names) {
    if (!have.has(name)) m.graph!.output!.push(onnx.ValueInfoProto.create({ name, type: { tensorType: { elemType: 1 } } }));
  }
  return onnx.ModelProto.encode(m).finish();
}

interface Sample { model: string; cut: number; tensors: { data: Float32Array; shape: number[] }[] }

const fx = fixtures();
const samples: Sample[] = [];
for (const f of fx.models) {
  if (ONLY && !ONLY.includes(f.name)) continue;
  const path = new URL(f.file, root);
  if (!existsSync(path)) {
    console.log(`skip ${f.name}: ${f.file} not present`);
    continue;
  }
  const cuts = cutsOf(path.pathname);
  const names = [...new Set(cuts.flat())];
  const sess = await ort.InferenceSession.create(withOutputs(readFileSync(path), names), { intraOpNumThreads: 1, logSeverityLevel: 3 });
  const acts = new Map<string, { data: Float32Array; shape: number[] }[]>();
  for (const img of images(IMAGES, f.inputShape, fx.mean, fx.std, fx.scale)) {
    const out = await sess.run({ [f.input]: new ort.Tensor("float32", img, f.inputShape) });
    for (const name of names) {
      const t = name === f.input ? { data: img, dims: f.inputShape } : (out[name] as ort.Tensor);
      if (!acts.has(name)) acts.set(name, []);
      acts.get(name)!.push({ data: new Float32Array(t.data as Float32Array), shape: [...t.dims] });
    }
  }
  for (let i = 0; i < IMAGES; i++) {
    cuts.forEach((tensors, cut) => samples.push({ model: f.name, cut, tensors: tensors.map((t) => acts.get(t)![i]).filter(Boolean) }));
  }
  console.log(`${f.name}: ${cuts.length} cuts, ${names.length} tensors, ${IMAGES} images`);
}
if (samples.length === 0) {
  console.log("bench/codec: no fixture models in models/ yet (models/*.onnx); nothing measured");
  process.exit(0);
}

interface Result { bits: string; shuffle: boolean; codec: Codec; bytes: number; enc: number; dec: number; bytesNonNeg: number }
const results: Result[] = [];
// Post-ReLU-like tensors (min >= 0) separately: bit-shuffle is meant for them (DynO §2).
const nonNeg = new Map(samples.flatMap((s) => s.tensors).map((t) => [t, t.data.every((v) => v >= 0)] as const));
const nonNegFloatBytes = samples.flatMap((s) => s.tensors).filter((t) => nonNeg.get(t)).reduce((a, t) => a + 4 * t.data.length, 0);
const rawFloatBytes = samples.reduce((a, s) => a + s.tensors.reduce((b, t) => b + 4 * t.data.length, 0), 0);

function measure(bits: number | "f16" | "f32", shuffle: boolean, codec: Codec): Result {
  let bytes = 0, enc = 0, dec = 0, bytesNonNeg = 0;
  for (const s of samples) {
    for (const t of s.tensors) {
      const out = new Float32Array(t.data.length);
      let e = Infinity, d = Infinity, size = 0;
      for (let rep = 0; rep < 3; rep++) { // best of 3: small tensors, noisy machine
        const t0 = performance.now();
        const b = encode(t.data, t.shape, { bits: bits as never, shuffle, codec });
        const t1 = performance.now();
        decodeInto(b, out);
        const t2 = performance.now();
        e = Math.min(e, t1 - t0);
        d = Math.min(d, t2 - t1);
        size = b.length;
      }
      bytes += size;
      if (nonNeg.get(t)) bytesNonNeg += size;
      enc += e / 1e3;
      dec += d / 1e3;
    }
  }
  return { bits: String(bits), shuffle, codec, bytes, enc, dec, bytesNonNeg };
}

for (const codec of CODECS) {
  results.push(measure("f32", false, codec));
  results.push(measure("f16", false, codec));
  for (const bits of BITS) for (const shuffle of [false, true]) results.push(measure(bits, shuffle, codec));
}

const at = (bps: number) => (r: Result) => (r.bytes * 8) / bps + r.enc + r.dec;
const total = at(LINK_BPS);
const total3G = at(2e6), total5G = at(100e6);
const tensors = samples.reduce((a, s) => a + s.tensors.length, 0);
console.log(`\nbench/codec: ${samples.length} (cut, image) samples, ${tensors} tensors, ${(rawFloatBytes / 2 ** 20).toFixed(2)} MiB of float32; models: ${[...new Set(samples.map((s) => s.model))].join(", ")}`);
console.log(`time at 4G = bytes / 15 Mbit/s + encode + decode, summed over all samples (per sample: divide by ${samples.length})\n`);
console.log("| bits | shuffle | codec | bytes | ratio vs float32 | encode ms | decode ms | 3G total ms | 4G total ms | 5G total ms | best at 4G |");
console.log("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|");
const best = new Map<string, Result>();
for (const r of results) if (!best.has(r.bits) || total(r) < total(best.get(r.bits)!)) best.set(r.bits, r);
for (const r of results) {
  console.log(`| ${r.bits} | ${r.shuffle ? "yes" : "no"} | ${r.codec} | ${r.bytes} | ${(rawFloatBytes / r.bytes).toFixed(1)}x | ${(r.enc * 1e3).toFixed(1)} | ${(r.dec * 1e3).toFixed(1)} | ${(total3G(r) * 1e3).toFixed(0)} | ${(total(r) * 1e3).toFixed(1)} | ${(total5G(r) * 1e3).toFixed(1)} | ${best.get(r.bits) === r ? "**default**" : ""} |`);
}
console.log(`\nnon-negative (post-ReLU) tensors only: ${(nonNegFloatBytes / 2 ** 20).toFixed(2)} MiB of float32; ratio vs float32`);
console.log("| bits | codec | no shuffle | shuffle |");
console.log("|---|---|---:|---:|");
for (const bits of BITS) {
  for (const codec of CODECS) {
    const get = (sh: boolean) => results.find((r) => r.bits === String(bits) && r.codec === codec && r.shuffle === sh)!;
    console.log(`| ${bits} | ${codec} | ${(nonNegFloatBytes / get(false).bytesNonNeg).toFixed(1)}x | ${(nonNegFloatBytes / get(true).bytesNonNeg).toFixed(1)}x |`);
  }
}
console.log("\nchosen defaults (least 4G total per bit width):");
for (const [bits, r] of best) console.log(`  ${bits}: { codec: "${r.codec}", shuffle: ${r.shuffle} }`);
for (const [name, f] of [["3G", total3G], ["5G", total5G]] as const) {
  const b = new Map<string, Result>();
  for (const r of results) if (!b.has(r.bits) || f(r) < f(b.get(r.bits)!)) b.set(r.bits, r);
  console.log(`best at ${name}: ${[...b].map(([bits, r]) => `${bits}: ${r.codec}${r.shuffle ? "+shuffle" : ""}`).join(", ")}`);
}
