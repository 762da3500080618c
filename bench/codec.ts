// The lossless stage, chosen by measurement (issue #4 §3, DynO §2 step 3): real activations at
// every cut of every fixture model (models/*.onnx, cuts from compiler/passes/find-cuts.ts),
// encoded at bits 2/4/6/8, with and without bit-shuffle, under each codec (none, lz4, deflate,
// zstd). Records payload bytes and encode + decode time, and picks, per bit width, the
// (shuffle, codec) with the least total time at the 4G preset: bytes / 15 Mbit/s + encode +
// decode, summed over every cut, image and model (RTT is the same for every choice, so left out).
//
//   npm run bench -- codec [images=8] [models=all] [--doc]
//
// --doc also rewrites docs/codec.md from this run (tables, choice and the numbers in its prose);
// then copy the chosen defaults into kernels/codec.ts DEFAULTS if they changed.
//
// Activations come from onnxruntime-node after adding every cut tensor as a graph output.
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import * as ort from "onnxruntime-node";
import onnxProto from "onnx-proto";
import { CODECS, decodeInto, encode, initKernels, type Codec } from "../kernels/index.js";
import { loadModel } from "../compiler/onnx/import.js";
import { inferShapes } from "../compiler/passes/infer-shapes.js";
import { findCuts } from "../compiler/passes/find-cuts.js";

const DOC = process.argv.includes("--doc");
const args = process.argv.slice(2).filter((a) => a !== "--doc");
const IMAGES = Number(args[0] ?? 8);
const ONLY = args[1]?.split(",");
const LINK_BPS = 15e6; // 4G preset (brief §5)
const BITS = [2, 4, 6, 8] as const;
const root = new URL("../models", import.meta.url);

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

/**
 * Every cut's tensors, from the compiler's cut enumerator. Should that fail (the compiler is
 * being built alongside), fall back to single-tensor cuts at the outputs of the layers where
 * chains are usually cut, and say so.
 */
function cutsOf(path: string, input: string): string[][] {
  try {
    return findCuts(inferShapes(loadModel(path)).model).cuts.map((c) => c.tensors);
  } catch (e) {
    const CUT_OPS = new Set(["Relu", "Clip", "Add", "Concat", "MaxPool", "AveragePool", "GlobalAveragePool", "Flatten"]);
    const m = onnxProto.onnx.ModelProto.decode(readFileSync(path));
    const outs = m.graph!.node!.filter((n) => CUT_OPS.has(n.opType!)).flatMap((n) => n.output!);
    console.log(`${path}: find-cuts failed (${(e as Error).message}); using ${outs.length} activation outputs as cuts`);
    return [[input], ...outs.map((o) => [o])];
  }
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
const cutCounts: string[] = [];
const samples: Sample[] = [];
for (const f of fx.models) {
  if (ONLY && !ONLY.includes(f.name)) continue;
  const path = new URL(f.file, root);
  if (!existsSync(path)) {
    console.log(`skip ${f.name}: ${f.file} not present`);
    continue;
  }
  const cuts = cutsOf(path.pathname, f.input);
  cutCounts.push(`${f.name} ${cuts.length}`);
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
const models = [...new Set(samples.map((s) => s.model))];
const best = new Map<string, Result>();
for (const r of results) if (!best.has(r.bits) || total(r) < total(best.get(r.bits)!)) best.set(r.bits, r);
const ms = (v: number, d = 1) => (v * 1e3).toFixed(d);
const mainTable = [
  "| bits | shuffle | codec | bytes | ratio vs float32 | encode ms | decode ms | 3G total ms | 4G total ms | 5G total ms | best at 4G |",
  "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
  ...results.map((r) => `| ${r.bits} | ${r.shuffle ? "yes" : "no"} | ${r.codec} | ${r.bytes} | ${(rawFloatBytes / r.bytes).toFixed(1)}x | ${ms(r.enc)} | ${ms(r.dec)} | ${ms(total3G(r), 0)} | ${ms(total(r))} | ${ms(total5G(r))} | ${best.get(r.bits) === r ? "**default**" : ""} |`),
].join("\n");
const get = (bits: number | string, codec: Codec, shuffle: boolean) => results.find((r) => r.bits === String(bits) && r.codec === codec && r.shuffle === shuffle)!;
const nnRatio = (bits: number, codec: Codec, sh: boolean) => nonNegFloatBytes / get(bits, codec, sh).bytesNonNeg;
const nnTable = [
  "| bits | codec | no shuffle | shuffle |",
  "|---|---|---:|---:|",
  ...BITS.flatMap((bits) => CODECS.map((codec) => `| ${bits} | ${codec} | ${nnRatio(bits, codec, false).toFixed(1)}x | ${nnRatio(bits, codec, true).toFixed(1)}x |`)),
].join("\n");
const bestAt = (f: (r: Result) => number) => {
  const b = new Map<string, Result>();
  for (const r of results) if (!b.has(r.bits) || f(r) < f(b.get(r.bits)!)) b.set(r.bits, r);
  return [...b].map(([bits, r]) => `${bits}: ${r.codec}${r.shuffle ? "+shuffle" : ""}`).join(", ");
};
console.log(`\nbench/codec: ${samples.length} (cut, image) samples, ${tensors} tensors, ${(rawFloatBytes / 2 ** 20).toFixed(2)} MiB of float32; models: ${models.join(", ")}`);
console.log(`time at 4G = bytes / 15 Mbit/s + encode + decode, summed over all samples (per sample: divide by ${samples.length})\n`);
console.log(mainTable);
console.log(`\nnon-negative (post-ReLU) tensors only: ${(nonNegFloatBytes / 2 ** 20).toFixed(2)} MiB of float32; ratio vs float32`);
console.log(nnTable);
console.log("\nchosen defaults (least 4G total per bit width):");
for (const [bits, r] of best) console.log(`  ${bits}: { codec: "${r.codec}", shuffle: ${r.shuffle} }`);
console.log(`best at 3G: ${bestAt(total3G)}`);
console.log(`best at 5G: ${bestAt(total5G)}`);
if (DOC) {
  writeFileSync(new URL("../docs/codec.md", import.meta.url), codecDoc());
  console.log("wrote docs/codec.md");
}

function codecDoc(): string {
  const f32 = total(get("f32", "none", false));
  const label = (b: string) => (b === "f16" ? "float16" : b === "f32" ? "float32" : b);
  const choice = [...best].map(([b, r]) => `| ${label(b)} | ${r.codec} | ${/^\d/.test(b) ? (r.shuffle ? "on" : "off") : "—"} | ${ms(total(r) / samples.length, 2)} ms | ${(f32 / total(r)).toFixed(1)}x |`);
  const range = (xs: number[], f: (v: number) => string) => `${f(Math.min(...xs))}–${f(Math.max(...xs))}`;
  const pct = (v: number) => `${Math.round(v * 100)}%`;
  const x2 = (v: number) => `${v.toFixed(2)}x`;
  const ratio = (a: Result, b: Result) => a.bytes / b.bytes;
  const zd = BITS.map((b) => ratio(get(b, "zstd", false), get(b, "deflate", false)));
  const zt = BITS.map((b) => (get(b, "zstd", false).enc + get(b, "zstd", false).dec) / (get(b, "deflate", false).enc + get(b, "deflate", false).dec));
  const zl = BITS.map((b) => ratio(get(b, "lz4", false), get(b, "zstd", false)));
  const shNN = BITS.map((b) => nnRatio(b, "zstd", false) / nnRatio(b, "zstd", true) - 1);
  const shAll = BITS.map((b) => ratio(get(b, "zstd", true), get(b, "zstd", false)) - 1);
  const packGain = BITS.map((b) => ratio(get(b, "none", false), get(b, "zstd", false)));
  const z4 = get(4, "zstd", false);
  return `# The lossless stage: which compressor, chosen by measurement

DynO (design brief §2) ends its data packing with "a fast byte compressor (LZ4-class)"; which one
was ours to choose. \`bench/codec.ts\` measures the candidates on real activations and
\`kernels/codec.ts\` \`DEFAULTS\` holds the choice. This file is written by:

    npm run bench -- codec ${IMAGES} --doc

## Candidates (all run unchanged in browsers and Node)

| codec | library | format | level |
|---|---|---|---|
| none | — | raw packed codes | — |
| lz4 | \`lz4js\` (pure JavaScript) | LZ4 block (lengths in our header) | — |
| deflate | \`fflate\` (pure JavaScript) | raw DEFLATE, RFC 1951 | 1 |
| zstd | \`@bokuweb/zstd-wasm\` (zstd compiled to WebAssembly) | zstd frame, RFC 8878 | 1 |

Each with and without the bit-plane transpose (bit-shuffle: the Bitshuffle transpose of Masui et
al. 2015, over the whole tensor as one block), at ${BITS.join(", ")} bits, plus the float16 and float32
passthroughs. Levels: a side run (resnet and vgg, 4 images) found zstd level 3 no smaller than
level 1 on these tensors and level 9 only 3% smaller at 2-4x the encode time (worse at 4G), and
deflate level 6 1% smaller than level 1 at twice the time: level 1 for both.

## Method

- Models: every fixture in \`models/fixtures.json\` present on disk when this ran: **${models.join(", ")}**.
  Re-run the command above when more fixtures land.
- Cuts: every cut that \`compiler/passes/find-cuts.ts\` enumerates (${cutCounts.join(", ")}): the input,
  every inner cut (single tensors and the multi-tensor cuts across skip connections) and the logits.
- Activations: onnxruntime-node runs each model with every cut tensor added as a graph output, on
  the first ${IMAGES} images of \`models/fmnist-test.bin\` (preprocessed as the fixtures expect):
  ${samples.length} (cut, image) samples, ${tensors} tensors, ${(rawFloatBytes / 2 ** 20).toFixed(2)} MiB of float32, of which
  ${(nonNegFloatBytes / 2 ** 20).toFixed(2)} MiB are non-negative (post-ReLU); the rest are signed (convolution outputs before their
  activation, the normalised input, logits).
- Each tensor is encoded and decoded with its own per-tensor range; best of 3 timings.
- Choice: least total time at the 4G preset, **bytes / 15 Mbit/s + encode + decode**, summed over
  all samples (RTT is the same for every option, so it cannot change the choice). 3G (2 Mbit/s)
  and 5G (100 Mbit/s) totals are shown for reference.

## Results (one run; times summed over the ${samples.length} samples)

${mainTable}

Non-negative (post-ReLU) tensors alone, compression ratio vs float32:

${nnTable}

## Choice

| bits | default codec | bit-shuffle | 4G total per sample | less time than float32 uncompressed |
|---|---|---|---:|---:|
${choice.join("\n")}

Best at 3G: ${bestAt(total3G)}. Best at 5G: ${bestAt(total5G)}.

The unmeasured widths (1, 3, 5, 7, 16) follow their neighbours. Every codec and the shuffle stay
selectable per call (\`encode(x, shape, { bits, codec, shuffle })\`); baselines that must send plain
float32 (Neurosurgeon, DADS) pass \`codec: "none"\`.

What the numbers say:
- zstd against the others (no shuffle, ${BITS.join("/")} bits): ${range(zd, x2)} the bytes of deflate in
  ${range(zt, pct)} of deflate's time, and LZ4 sends ${range(zl, x2)} the bytes of zstd. The bytes
  dominate: at 4G one sample's 4-bit zstd payload costs ${ms((z4.bytes / samples.length) * 8 / LINK_BPS, 2)} ms on the wire and
  ${ms((z4.enc + z4.dec) / samples.length, 3)} ms in zstd (encode + decode).
- Bit-shuffle against dense packing under zstd: ${range(shNN, pct)} more bytes on post-ReLU tensors and
  ${range(shAll, pct)} over all tensors. It does help LZ4 on post-ReLU tensors at 2 bits
  (${nnRatio(2, "lz4", true).toFixed(1)}x vs ${nnRatio(2, "lz4", false).toFixed(1)}x), which is what Bitshuffle was designed for: a byte matcher without
  entropy coding. zstd and deflate entropy-code the bytes, and dense packing of small codes
  already gives skewed byte statistics (a zero code is a zero nibble); the transpose spreads each
  element over \`b\` bytes. The kernel stays (exact, fast, selectable); the defaults say whether it is on.
- Compression on top of packing is worth ${packGain[0].toFixed(1)}x at ${BITS[0]} bits and ${range(packGain.slice(1), (v) => v.toFixed(1))}x at
  ${BITS.slice(1).join("/")} bits; the sparsity of post-ReLU tensors is where it comes from
  (${nnRatio(4, "zstd", false).toFixed(1)}x vs float32 at 4 bits on them, ${(rawFloatBytes / z4.bytes).toFixed(1)}x over all tensors).
`;
}
