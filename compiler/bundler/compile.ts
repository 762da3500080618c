// `dyno compile`: DynO's offline half. For each useful cut, the device graph ends by quantising
// and packing what crosses (ai.dyno QuantizePack) and the cloud graph starts by unpacking it
// (ai.dyno UnpackDequantize); every (cut, bits) pair is profiled for accuracy on calibration data
// through the real kernels, so the scheduler only ever offers admissible ones.
//
// Bundle layout (all files next to manifest.json, each with its SHA-256 in the manifest):
//   weights.bin              every initializer of 1 KiB or more, once (shape-like inputs stay inline)
//   segment-NN.onnx          the standard-op segments between consecutive cuts (the executor runs these)
// A variant's self-describing graphs (ai.dyno nodes at its cut) are assembled from the segments
// on demand (compiler/bundler/variant-graphs.ts, `dyno export-variant`), not stored: docs/compile.md.
//
// Accuracy is the calibration metric's (runtime/quality, docs/metrics.md): top-1, agreement,
// CER, box F1, cosine or a user's, against labels when given, else against float32. A model
// whose batch dim is fixed (torch.onnx.export's default) is run one sample at a time; a
// symbolic batch runs BATCH samples per call. The results are the same either way (a test).
import { perSampleDims } from "../../runtime/common/manifest.js";
import { encodeOptions, runChain } from "../../runtime/exec/executor.js";
import { createHash } from "node:crypto";
import { cpus } from "node:os";
import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import ort from "onnxruntime-node";
import { DynoError, UnsupportedError, UsageError } from "../../runtime/common/errors.js";
import { ortReason } from "../onnx/ort-shapes.js";
import { byteSize, dtypeName } from "../ir/dtype.js";
import type { Dim, Model } from "../ir/graph.js";
import { DataType } from "../ir/dtype.js";
import { saveModelWithWeights, serializeModel, writeWeights } from "../onnx/export.js";
import { computeCosts, numel } from "../passes/costs.js";
import type { CandidateCut } from "../passes/find-cuts.js";
import { partition, partitionChain } from "../passes/partition.js";
import type { Analysis } from "../pipeline.js";
import { shapeLikeInitializers } from "../passes/shape-inputs.js";
import { DEFAULTS, decodeInto, encode, initKernels } from "../../kernels/index.js";
import { codecId, MANIFEST_FORMAT, MANIFEST_VERSION, parseManifest, type Bits, type Chain, type CodecSpec, type FileRef, type Manifest, type Profile, type TensorSpec, type Timing, type Variant } from "../../runtime/common/manifest.js";
import { openSession } from "../../runtime/node/session.js";
import { labelAt, type Calibration } from "./calibration.js";
import type { Metric, SampleOutputs } from "./quality/types.js";
import { addStats, asFloat32 } from "./quality/tensor.js";
import { defaultMetricSpec, loadMetric, metricDrop } from "./quality/index.js";
import { mean, quantile, timingOf } from "../../runtime/common/stats.js";
import { fromPixels, imageLayout, toPixels, type ImageFormat, type ImageLayout } from "../../runtime/common/image.js";
import { sharpImages } from "../../runtime/node/image.js";

export const DEFAULT_BITS = [2, 3, 4, 5, 6, 8, 16] as const;
/** The image baselines a practitioner would send: JPEG and WebP of the input, from rough to fine. */
export const DEFAULT_IMAGES: readonly { format: ImageFormat; qualities: readonly number[] }[] = [
  { format: "jpeg", qualities: [10, 25, 50, 75, 90] },
  { format: "webp", qualities: [10, 25, 50, 75, 90] },
];

export interface CompileOptions {
  out: string;
  calibration: Calibration;
  /** The accuracy metric's spec (docs/metrics.md; default: top1 when labelled with classes, else agreement); admissibility is judged in its unit. */
  metric?: string;
  bits?: readonly number[];
  maxAccuracyDrop?: number;
  /** "auto", or candidate cut indices (inner cuts; the input and output cuts are always added). */
  cuts?: "auto" | number[];
  /** Per-channel ranges along axis 1 for quantised codecs. */
  perChannel?: boolean;
  /** Timed runs per segment for the latency profile. */
  profileRuns?: number;
  /** More than two tiers (e.g. device, edge, cloud): profile chains of crossings together (manifest.tiers). */
  tiers?: string[];
  /**
   * The input as an image file, at these qualities (variants of the input cut; default
   * DEFAULT_IMAGES); an empty list for none. Offered only for an image input with a known
   * preprocess (runtime/common/image.ts imageLayout), and said so when not.
   */
  images?: readonly { format: ImageFormat; qualities: readonly number[] }[];
  dynoVersion: string;
  onProgress?: (done: number, total: number, label: string) => void;
  log?: (line: string) => void;
}

export interface CompileResult {
  manifest: Manifest;
  seconds: number;
  bundleBytes: number;
  modelBytes: number;
}

/** Initializers smaller than this stay inline in each graph; larger ones live once in weights.bin. */
export const WEIGHTS_THRESHOLD = 1024;
/** Chains of crossings (--tiers) are profiled on the first this many calibration samples... */
const CHAIN_SAMPLES = 512;
/** ...for each cut's this many smallest admissible bit widths (and float32). */
const CHAIN_BITS = 2;
/** Samples per onnxruntime call when the batch dim is symbolic. */
const BATCH = 64;
/** Cuts whose packed size is measured to pick the candidates (auto mode): the first samples. */
const SELECTION_SAMPLES = 32;

/**
 * Compiles the analysed model into a bundle. A failure that is not already one of dyno's errors
 * (onnxruntime refusing a part, say) is reported with the stage it happened in, never as an
 * internal error.
 */
export async function compile(a: Analysis, modelPath: string, options: CompileOptions): Promise<CompileResult> {
  const where = { stage: "starting" };
  try {
    return await compileModel(a, modelPath, options, where);
  } catch (e) {
    if (e instanceof DynoError) throw e;
    throw new DynoError(`compile "${modelPath}" failed while ${where.stage}: ${ortReason(e)}`, { cause: e });
  }
}

async function compileModel(a: Analysis, modelPath: string, options: CompileOptions, where: { stage: string }): Promise<CompileResult> {
  const t0 = performance.now();
  await initKernels();
  const log = options.log ?? (() => {});
  const bitsList = [...(options.bits ?? DEFAULT_BITS)];
  for (const b of bitsList) {
    if (!(Number.isInteger(b) && ((b >= 1 && b <= 8) || b === 16))) throw new UsageError(`--bits: ${b} is out of range (1..8 or 16)`);
  }
  const maxDrop = options.maxAccuracyDrop ?? 1;
  const model = a.model;
  const g = model.graph;
  const inputs = g.inputs.filter((v) => !g.isInitializer(v.name));
  if (inputs.length !== 1) throw new UnsupportedError(`compile supports models with one input; "${model.source}" has ${inputs.length}`);
  const input = inputs[0]!;
  if (input.dtype === undefined) throw new UnsupportedError(`input "${input.name}" of "${model.source}" has no type information (the exporter left it out): re-export with typed inputs`);
  if (input.dtype !== DataType.FLOAT) {
    throw new UnsupportedError(`input "${input.name}" of "${model.source}" is ${dtypeName(input.dtype ?? 0)}; compile feeds float32 calibration data (a model taking ${dtypeName(input.dtype ?? 0)} images needs a float32 front, e.g. a Cast, in the export)`);
  }
  const perSample = perSampleDims(input.shape ?? []);
  if (perSample.length === 0) throw new UnsupportedError(`input "${input.name}" of "${model.source}" is a scalar; compile needs a tensor input with a batch dim`);
  const dynamic = (input.shape ?? []).map((d, i) => ({ d, i })).filter(({ d, i }) => i > 0 && typeof d !== "number");
  if (dynamic.length) {
    const dims = dynamic.map(({ d, i }) => `dim ${i}${d ? ` ("${d}")` : ""}`).join(", ");
    throw new UsageError(`input "${input.name}" has dynamic ${dims}: compile profiles one fixed size; give it with --input-shape ${input.name}=${(input.shape ?? []).map((d, i) => (typeof d === "number" ? d : i === 0 ? 1 : "N")).join(",")}`);
  }
  if (perSample[0] !== 1) {
    throw new UsageError(`input "${input.name}" has a fixed batch of ${perSample[0]}; dyno runs one input per inference: export the model with batch 1 or a dynamic batch`);
  }
  const cal = options.calibration;
  if (cal.count === 0) throw new UsageError("the calibration data is empty");
  const run: RunShape = { inputName: input.name, perSample, batch: batchable(model, input.shape![0]!, a.cuts.cuts) ? BATCH : 1, outputs: g.outputs.map((v) => v.name) };
  const ctx = { inputDims: perSample, outputs: run.outputs, labelled: cal.labels !== null, baseDir: process.cwd() };
  const metric = await loadMetric(options.metric ?? defaultMetricSpec(ctx, cal.labels, g.outputs[0]?.shape), ctx);

  // 1. Candidate cuts: those whose tensors the kernels can pack (float32 activations).
  where.stage = "choosing cuts (the model run on calibration inputs)";
  const all = a.cuts.cuts;
  const unpackable = (c: CandidateCut) => c.tensors.find((t) => g.value(t).dtype !== DataType.FLOAT);
  const skipped = all.filter((c) => c.kind === "inner" && unpackable(c));
  if (skipped.length) log(`cuts ${skipped.map((c) => c.index).join(", ")} skipped: they carry non-float32 tensors (e.g. "${unpackable(skipped[0]!)}", ${dtypeName(g.value(unpackable(skipped[0]!)!).dtype ?? 0)}); dyno packs float32 activations`);
  const inner = all.filter((c) => c.kind === "inner" && !unpackable(c));
  let chosen: CandidateCut[];
  if (options.cuts && options.cuts !== "auto") {
    chosen = options.cuts.map((i) => {
      const c = all[i];
      if (!c) throw new UsageError(`--cuts: cut ${i} does not exist; "${model.source}" has cuts 0..${all.length - 1} (dyno inspect shows them)`);
      const bad = unpackable(c);
      if (bad && c.kind === "inner") throw new UsageError(`--cuts: cut ${i} carries "${bad}" (${dtypeName(g.value(bad).dtype ?? 0)}); dyno packs float32 activations only`);
      return c;
    }).filter((c) => c.kind === "inner");
  } else {
    chosen = await selectCuts(model, inner, cal, run);
  }
  chosen = [...new Set(chosen)].sort((x, y) => x.position - y.position);
  const cuts = [all[0]!, ...chosen, all[all.length - 1]!];
  log(`cuts: ${cuts.map((c) => c.index).join(", ")} (${chosen.length} inner of ${inner.length}${options.cuts && options.cuts !== "auto" ? ", from --cuts" : ", dominated ones dropped"})`);

  // 2. Segments and shared weights.
  where.stage = "writing the segments";
  rmSync(options.out, { recursive: true, force: true });
  mkdirSync(options.out, { recursive: true });
  const weightsPath = join(options.out, "weights.bin");
  // Weights of 1 KiB or more live once in weights.bin; smaller tensors and every shape-like input
  // (Reshape's shape, Slice's starts, ...) stay inline in each graph that reads them, because
  // onnxruntime needs those inline and a 1 KiB copy costs less than an external reference.
  const shapeLike = shapeLikeInitializers(g);
  const weights = writeWeights([...g.initializers.values()].filter((t) => !shapeLike.has(t.name)), weightsPath, WEIGHTS_THRESHOLD);
  const segmentModels = partitionChain(model, chosen.map((c) => c.tensors));
  const segments = segmentModels.map((s, i) => {
    const file = `segment-${String(i).padStart(2, "0")}.onnx`;
    saveModelWithWeights(s, join(options.out, file), weights);
    const costs = computeCosts(s);
    return {
      index: i,
      graph: fileRef(options.out, file),
      inputs: s.graph.inputs.filter((v) => !s.graph.isInitializer(v.name)).map((v) => v.name),
      outputs: s.graph.outputs.map((v) => v.name),
      macs: costs.totalMacs,
      parameterBytes: costs.totalParamBytes,
    };
  });
  const manifestCuts = cuts.map((c) => ({
    id: c.index,
    kind: c.kind,
    tensors: c.tensors.map((t) => tensorSpec(model, t)),
    bytes: c.bytes,
    deviceMacs: c.deviceMacs,
    cloudMacs: c.cloudMacs,
    deviceSegments: c.kind === "input" ? 0 : c.kind === "output" ? segments.length : chosen.indexOf(c) + 1,
  }));

  // 3. Precision profiling: every (cut, codec) on the calibration data, through the kernels.
  const codecs: CodecSpec[] = [
    ...bitsList.map((b) => ({ bits: b as Bits, perChannel: !!options.perChannel, shuffle: DEFAULTS[String(b)]!.shuffle, lossless: DEFAULTS[String(b)]!.codec })),
    // Float passthrough, uncompressed: the Neurosurgeon-style variants the benchmark compares with.
    { bits: "f16", perChannel: false, shuffle: false, lossless: "none" },
    { bits: "f32", perChannel: false, shuffle: false, lossless: "none" },
  ];
  where.stage = "running the float32 model on the calibration data";
  const reference = await referenceOutputs(model, cal, run, metric);
  const float32Value = metric.value(reference.stats, cal.count);
  const variants: Variant[] = [];
  const codecTimings: Record<string, { encode: Timing; decode: Timing }> = {};
  // The input as an image file: JPEG and WebP at a few qualities, when the input is an image
  // whose pixels the preprocess tells (else said, and left out).
  const layout = imageLayout({ model: { inputs: [{ shape: run.perSample }] } as Manifest["model"], preprocess: cal.preprocess });
  const imageSpecs: CodecSpec[] = (options.images ?? DEFAULT_IMAGES).flatMap((i) => i.qualities.map((q): CodecSpec => ({ bits: i.format, perChannel: false, shuffle: false, lossless: "none", quality: q })));
  if (imageSpecs.length > 0 && typeof layout === "string") log(`compile: no image variants (JPEG, WebP of the input): ${layout}`);
  const imageCount = typeof layout === "string" ? 0 : imageSpecs.length;
  const totalSteps = cuts.reduce((s, c) => s + (c.kind === "output" ? 1 : codecs.length + (c.kind === "input" ? imageCount : 0)), 0);
  let steps = 0;
  for (const cut of cuts) {
    if (cut.kind === "output") {
      // Device-only: the result is computed on the device; only the logits travel (float32).
      const id = variantId(cut.index, { bits: "f32", perChannel: false, shuffle: false, lossless: "none" });
      const bytes = cut.bytes;
      variants.push({
        id, cut: cut.index, codec: { bits: "f32", perChannel: false, shuffle: false, lossless: "none" },
        wire: { meanBytes: bytes, p95Bytes: bytes, maxBytes: bytes },
        accuracy: { value: round(float32Value, 4), drop: 0 },
        admissible: true,
      });
      options.onProgress?.(++steps, totalSteps, `cut ${cut.index} device-only`);
      continue;
    }
    const [device, cloud] = partition(model, cut.tensors);
    const deviceSession = cut.kind === "input" ? null : await openSession(serializeModel(device), { threads: cpus().length });
    const cloudSession = await openSession(serializeModel(cloud), { threads: cpus().length });
    const activations = await runDevice(deviceSession, cut.tensors, cal, run);
    where.stage = `profiling cut ${cut.index}`;
    for (const spec of codecs) {
      const id = variantId(cut.index, spec);
      const r = await profileVariant(cloudSession, cut.tensors, activations, spec, cal, run, metric, reference.refs);
      const value = metric.value(r.stats, cal.count);
      const drop = metricDrop(metric, float32Value, value);
      variants.push({
        id,
        cut: cut.index,
        codec: spec,
        wire: r.wire,
        accuracy: { value: round(value, 4), drop: round(drop, 4) },
        admissible: drop <= maxDrop + 1e-9,
      });
      codecTimings[id] = { encode: r.encode, decode: r.decode };
      options.onProgress?.(++steps, totalSteps, `cut ${cut.index} ${spec.bits}${typeof spec.bits === "number" ? "-bit" : ""}`);
    }
    if (cut.kind === "input" && imageSpecs.length > 0 && typeof layout !== "string") {
      for (const spec of imageSpecs) {
        const id = variantId(cut.index, spec);
        const r = await profileImage(cloudSession, cut.tensors[0]!, activations, layout, spec, cal, run, metric, reference.refs);
        const value = metric.value(r.stats, cal.count);
        const drop = metricDrop(metric, float32Value, value);
        variants.push({ id, cut: cut.index, codec: spec, wire: r.wire, accuracy: { value: round(value, 4), drop: round(drop, 4) }, admissible: drop <= maxDrop + 1e-9 });
        codecTimings[id] = { encode: r.encode, decode: r.decode };
        options.onProgress?.(++steps, totalSteps, `cut ${cut.index} ${spec.bits} q${spec.quality}`);
      }
    }
    await deviceSession?.release();
    await cloudSession.release();
  }

  // 4. Latency profiles of the segments on this machine (device and cloud roles alike here).
  where.stage = "timing the segments";
  const segmentTimes = await profileSegments(options.out, segments.map((s) => s.graph.file), cal, run, options.profileRuns ?? 10);
  const machine = { platform: process.platform, arch: process.arch, cpu: cpus()[0]?.model?.trim() ?? "unknown", cores: cpus().length };
  const measuredAt = new Date().toISOString();
  const profiles: Profile[] = [
    { role: "device", backend: "onnxruntime-node cpu (1 thread)", machine, measuredAt, segments: segmentTimes, codec: Object.fromEntries(Object.entries(codecTimings).map(([k, v]) => [k, v.encode])) },
    { role: "cloud", backend: "onnxruntime-node cpu (1 thread)", machine, measuredAt, segments: segmentTimes, codec: Object.fromEntries(Object.entries(codecTimings).map(([k, v]) => [k, v.decode])) },
  ];

  // 5. Three tiers or more: chains of crossings, profiled together (each adds its quantisation error).
  let tiers: Manifest["tiers"];
  if (options.tiers && options.tiers.length > 2) {
    if (options.tiers.length !== 3) throw new UsageError(`--tiers: ${options.tiers.length} tiers; dyno profiles chains of two crossings (three tiers, e.g. device,edge,cloud)`);
    where.stage = "profiling chains of two crossings";
    const t1 = performance.now();
    const { chains, samples } = await profileChains(options.out, segments.map((s) => s.graph.file), manifestCuts, variants, cal, run, metric, reference.refs, reference.samples, float32Value, maxDrop, log);
    tiers = { names: options.tiers, samples, chains };
    log(`tiers ${options.tiers.join(" > ")}: ${chains.length} chains of two crossings profiled on ${samples} samples in ${((performance.now() - t1) / 1000).toFixed(1)} s, ${chains.filter((c) => c.admissible).length} admissible`);
  }

  const manifest: Manifest = {
    format: MANIFEST_FORMAT,
    version: MANIFEST_VERSION,
    dyno: options.dynoVersion,
    model: {
      name: basename(modelPath).replace(/\.onnx$/, ""),
      sha256: sha256File(modelPath),
      inputs: [tensorSpec(model, input.name)],
      outputs: g.outputs.map((v) => tensorSpec(model, v.name)),
      totalMacs: a.costs.totalMacs,
      parameterBytes: a.costs.totalParamBytes,
      opsets: model.opsets.map((o) => ({ domain: o.domain, version: o.version })),
    },
    weights: fileRef(options.out, "weights.bin"),
    segments,
    cuts: manifestCuts,
    variants,
    profiles,
    calibration: {
      source: cal.source,
      samples: cal.count,
      labelled: cal.labels !== null,
      metric: { name: metric.name, spec: metric.spec, unit: metric.unit, higherIsBetter: metric.higherIsBetter },
      float32Value: round(float32Value, 4),
      maxAccuracyDrop: maxDrop,
    },
    preprocess: cal.preprocess,
    ...(tiers ? { tiers } : {}),
  };
  parseManifest(JSON.parse(JSON.stringify(manifest)), "manifest.json (as written)");
  writeFileSync(join(options.out, "manifest.json"), JSON.stringify(manifest, null, 1) + "\n");
  const bundleBytes = [manifest.weights, ...segments.map((s) => s.graph)].reduce((s, f) => s + f.bytes, 0) + statSync(join(options.out, "manifest.json")).size;
  return { manifest, seconds: (performance.now() - t0) / 1000, bundleBytes, modelBytes: statSync(modelPath).size };
}

/**
 * Every chain (v1, v2) of two crossings: v1 packs cut c1 (device -> edge), the segments from c1 to
 * c2 run on what v1's codec decoded, v2 packs c2 (edge -> cloud), the rest runs on what v2
 * decoded. Candidates are the admissible variants at the input and inner cuts, one per bit width
 * (the lossless stage does not change values). Per calibration batch the float run is done once,
 * each v1 once, each (v1, v2) once: cuts^2 x bits^2 tails in all.
 */
async function profileChains(dir: string, files: string[], cuts: Manifest["cuts"], variants: Variant[], cal: Calibration, run: RunShape, metric: Metric, refs: unknown[], reference: number[][], float32Value: number, maxDrop: number, log: (line: string) => void): Promise<{ chains: Chain[]; samples: number }> {
  const sessions = [];
  for (const f of files) sessions.push(await openSession(join(dir, f), { threads: cpus().length }));
  const cutOf = (v: Variant) => cuts.find((c) => c.id === v.cut)!;
  // Per cut: its CHAIN_BITS smallest admissible bit widths, and float32 (the Neurosurgeon-style crossing).
  const candidates = cuts.filter((c) => c.kind !== "output").flatMap((c) => {
    const here = variants.filter((v) => v.cut === c.id && v.admissible);
    const quantised = here.filter((v) => typeof v.codec.bits === "number").sort((x, y) => (x.codec.bits as number) - (y.codec.bits as number)).slice(0, CHAIN_BITS);
    return [...quantised, ...here.filter((v) => v.codec.bits === "f32")];
  });
  const pairs = candidates.flatMap((v1) => candidates.filter((v2) => cutOf(v2).kind === "inner" && cutOf(v2).deviceSegments > cutOf(v1).deviceSegments).map((v2) => [v1, v2] as const));
  const stats = new Map<string, number[]>();
  /** Each sample of a batch's cut tensors through the codec and back (the range is per input). */
  const roundTrip = (pool: Record<string, ort.Tensor>, v: Variant, n: number): Record<string, ort.Tensor> => {
    const out: Record<string, ort.Tensor> = {};
    const opts = encodeOptions(v.codec);
    for (const t of cutOf(v).tensors) {
      const x = pool[t.name]!;
      const data = x.data as Float32Array;
      const per = data.length / n;
      const sample = n === 1 ? (x.dims as number[]) : [1, ...(x.dims as number[]).slice(1)];
      const decoded = new Float32Array(data.length);
      for (let i = 0; i < n; i++) decodeInto(encode(data.subarray(i * per, (i + 1) * per), sample, opts), decoded.subarray(i * per, (i + 1) * per));
      out[t.name] = new ort.Tensor("float32", decoded, x.dims as number[]);
    }
    return out;
  };
  const count = Math.min(cal.count, CHAIN_SAMPLES);
  const firsts = new Set(pairs.map((p) => p[0]));
  const t0 = performance.now();
  let told = t0;
  let done = 0;
  const steps = Math.ceil(count / run.batch) * firsts.size;
  log(`tiers: profiling ${pairs.length} chains of two crossings on ${count} samples`);
  for (const [start, n] of batches(count, run)) {
    const x = inputTensor(cal.batch(start, n), run.perSample, n);
    const float: Record<string, ort.Tensor> = { [run.inputName]: x };
    await runChain(sessions, float);
    for (const v1 of firsts) {
      if (performance.now() - told > 15_000) {
        told = performance.now();
        const s = (told - t0) / 1000;
        log(`tiers: ${done}/${steps} (device variant, batch) steps, ${s.toFixed(0)} s elapsed, ~${((s / Math.max(1, done)) * (steps - done)).toFixed(0)} s left`);
      }
      done++;
      const mid: Record<string, ort.Tensor> = roundTrip(float, v1, n);
      const last = Math.max(...pairs.filter((p) => p[0] === v1).map((p) => cutOf(p[1]).deviceSegments));
      await runChain(sessions.slice(cutOf(v1).deviceSegments, last), mid, cutOf(v1).deviceSegments);
      for (const [, v2] of pairs.filter((p) => p[0] === v1)) {
        const tail = roundTrip(mid, v2, n);
        await runChain(sessions.slice(cutOf(v2).deviceSegments), tail, cutOf(v2).deviceSegments);
        const key = `${v1.id} ${v2.id}`;
        let st = stats.get(key);
        if (!st) stats.set(key, (st = []));
        for (let i = 0; i < n; i++) addStats(st, metric.stats(sampleOutputs(tail, run.outputs, i, n), refs[start + i], labelAt(cal, start + i)));
      }
    }
  }
  for (const s of sessions) await s.release();
  // The float32 model's value on the same samples (the whole set's, when they are all of it).
  const float32OnSamples = count === cal.count ? float32Value : metric.value(reference.slice(0, count).reduce((st, x) => (addStats(st, x), st), [] as number[]), count);
  const chains = pairs.map(([v1, v2]) => {
    const value = metric.value(stats.get(`${v1.id} ${v2.id}`)!, count);
    const drop = metricDrop(metric, float32OnSamples, value);
    return { variants: [v1.id, v2.id], accuracy: { value: round(value, 4), drop: round(drop, 4) }, admissible: drop <= maxDrop + 1e-9 };
  });
  return { chains, samples: count };
}

function round(x: number, digits: number): number {
  const k = 10 ** digits;
  return Math.round(x * k) / k;
}

export function variantId(cut: number, spec: CodecSpec): string {
  return `c${cut}-${codecId(spec)}`;
}

function tensorSpec(model: Model, name: string): TensorSpec {
  const v = model.graph.value(name);
  return { name, dtype: dtypeName(v.dtype ?? 0), shape: v.shape ?? [], bytes: byteSize(v.dtype ?? 1, numel(v.shape)) };
}

export function sha256File(path: string): string {
  return createHash("sha256").update(readFileSync(path)).digest("hex");
}

function fileRef(dir: string, file: string): FileRef {
  const path = join(dir, file);
  return { file, bytes: statSync(path).size, sha256: sha256File(path) };
}

/** How the model is fed: its input, the per-sample dims (batch 1) and samples per call. */
interface RunShape {
  inputName: string;
  perSample: number[];
  batch: number;
  outputs: string[];
}

/**
 * Whether calibration may run many samples per call: the input's batch dim is symbolic and every
 * candidate cut tensor and output carries that same symbol first. A model that reduces over the
 * batch (a scalar feeding an If, say) or whose batch is fixed runs one sample at a time.
 */
function batchable(model: Model, batchDim: Dim, cuts: readonly CandidateCut[]): boolean {
  if (typeof batchDim !== "string") return false;
  const g = model.graph;
  const names = new Set([...cuts.flatMap((c) => c.tensors), ...g.outputs.map((v) => v.name)]);
  return [...names].every((n) => g.value(n).shape?.[0] === batchDim);
}

/** Calls of at most `run.batch` samples covering [0, count): [start, n] pairs. */
function* batches(count: number, run: RunShape): Generator<[number, number]> {
  for (let start = 0; start < count; start += run.batch) yield [start, Math.min(run.batch, count - start)];
}

/** n samples of the model input as one batch tensor. */
function inputTensor(data: Float32Array, perSample: number[], n: number): ort.Tensor {
  return new ort.Tensor("float32", data, [n, ...perSample.slice(1)]);
}

/** Sample i of a batch's outputs, as float32 with batch dim 1 (what a metric scores). */
function sampleOutputs(r: Record<string, ort.Tensor>, names: string[], i: number, n: number): SampleOutputs {
  const out: SampleOutputs = {};
  for (const name of names) {
    const t = r[name]!;
    const dims = t.dims as number[];
    const per = dims.slice(1).reduce((a, b) => a * b, 1);
    const all = asFloat32(t.data);
    if (n === 1) {
      out[name] = { data: all, dims };
      continue;
    }
    out[name] = { data: all.subarray(i * per, (i + 1) * per), dims: [1, ...dims.slice(1)] };
  }
  return out;
}

/** The float32 model on every calibration sample: the metric's per-sample references and its summed stats. */
async function referenceOutputs(model: Model, cal: Calibration, run: RunShape, metric: Metric): Promise<{ refs: unknown[]; stats: number[]; samples: number[][] }> {
  const s = await openSession(serializeModel(model), { threads: cpus().length });
  const refs: unknown[] = [];
  const stats: number[] = [];
  const samples: number[][] = [];
  for (const [start, n] of batches(cal.count, run)) {
    const r = await s.run({ [run.inputName]: inputTensor(cal.batch(start, n), run.perSample, n) });
    for (let i = 0; i < n; i++) {
      const outputs = sampleOutputs(r, run.outputs, i, n);
      const ref = metric.reference(outputs, labelAt(cal, start + i));
      refs.push(ref);
      const st = metric.stats(outputs, ref, labelAt(cal, start + i));
      samples.push(st);
      addStats(stats, st);
    }
  }
  await s.release();
  return { refs, stats, samples };
}

/** Cut tensors for every calibration sample: per tensor, one Float32Array of all samples. */
async function runDevice(session: ort.InferenceSession | null, tensors: string[], cal: Calibration, run: RunShape): Promise<Map<string, { data: Float32Array; sample: number[] }>> {
  const out = new Map<string, { data: Float32Array; sample: number[] }>();
  for (const [start, n] of batches(cal.count, run)) {
    const x = inputTensor(cal.batch(start, n), run.perSample, n);
    const r = session ? await session.run({ [run.inputName]: x }, tensors) : { [run.inputName]: x };
    for (const t of tensors) {
      const v = r[t]!;
      const dims = v.dims as number[];
      // One sample per call: its dims as they are (a scalar stays a scalar); else batch first.
      const sample = run.batch === 1 ? dims : [1, ...dims.slice(1)];
      const per = sample.reduce((a, b) => a * b, 1);
      let slot = out.get(t);
      if (!slot) out.set(t, (slot = { data: new Float32Array(per * cal.count), sample }));
      slot.data.set(v.data as Float32Array, start * per);
    }
  }
  return out;
}

interface VariantProfile {
  /** The metric's stats summed over the samples. */
  stats: number[];
  wire: { meanBytes: number; p95Bytes: number; maxBytes: number };
  encode: Timing;
  decode: Timing;
}

/** Encodes each sample's cut tensors with the real kernels, decodes, finishes on the cloud part. */
async function profileVariant(cloud: ort.InferenceSession, tensors: string[], acts: Map<string, { data: Float32Array; sample: number[] }>, spec: CodecSpec, cal: Calibration, run: RunShape, metric: Metric, refs: unknown[]): Promise<VariantProfile> {
  const count = cal.count;
  const bytes = new Float64Array(count);
  const enc = new Float64Array(count);
  const dec = new Float64Array(count);
  const stats: number[] = [];
  const opts = encodeOptions(spec);
  for (const [start, n] of batches(count, run)) {
    const feeds: Record<string, ort.Tensor> = {};
    for (const t of tensors) {
      const a = acts.get(t)!;
      const per = a.data.length / count;
      const decoded = new Float32Array(per * n);
      for (let i = 0; i < n; i++) {
        const k = start + i;
        const x = a.data.subarray(k * per, (k + 1) * per);
        const t0 = performance.now();
        const payload = encode(x, a.sample, opts);
        const t1 = performance.now();
        decodeInto(payload, decoded.subarray(i * per, (i + 1) * per));
        const t2 = performance.now();
        bytes[k] += payload.length;
        enc[k] += t1 - t0;
        dec[k] += t2 - t1;
      }
      feeds[t] = new ort.Tensor("float32", decoded, n === 1 ? a.sample : [n, ...a.sample.slice(1)]);
    }
    const r = await cloud.run(feeds);
    for (let i = 0; i < n; i++) addStats(stats, metric.stats(sampleOutputs(r, run.outputs, i, n), refs[start + i], labelAt(cal, start + i)));
  }
  return { stats, wire: wireStats(bytes), encode: timingOf(enc), decode: timingOf(dec) };
}

/**
 * The input as an image file: each sample's pixels (the preprocess undone) encoded at the spec's
 * quality with the runtime's own codec (sharp), decoded and preprocessed again, then the model.
 */
async function profileImage(cloud: ort.InferenceSession, tensor: string, acts: Map<string, { data: Float32Array; sample: number[] }>, layout: ImageLayout, spec: CodecSpec, cal: Calibration, run: RunShape, metric: Metric, refs: unknown[]): Promise<VariantProfile> {
  const count = cal.count;
  const bytes = new Float64Array(count);
  const enc = new Float64Array(count);
  const dec = new Float64Array(count);
  const stats: number[] = [];
  const a = acts.get(tensor)!;
  const per = a.data.length / count;
  for (const [start, n] of batches(count, run)) {
    const decoded = new Float32Array(per * n);
    for (let i = 0; i < n; i++) {
      const k = start + i;
      const t0 = performance.now();
      const file = await sharpImages.encode(toPixels(a.data.subarray(k * per, (k + 1) * per), layout), spec.bits as ImageFormat, spec.quality ?? 75);
      const t1 = performance.now();
      decoded.set(fromPixels(await sharpImages.decode(file, layout.channels), layout), i * per);
      const t2 = performance.now();
      bytes[k] = file.length;
      enc[k] = t1 - t0;
      dec[k] = t2 - t1;
    }
    const r = await cloud.run({ [tensor]: new ort.Tensor("float32", decoded, n === 1 ? a.sample : [n, ...a.sample.slice(1)]) });
    for (let i = 0; i < n; i++) addStats(stats, metric.stats(sampleOutputs(r, run.outputs, i, n), refs[start + i], labelAt(cal, start + i)));
  }
  return { stats, wire: wireStats(bytes), encode: timingOf(enc), decode: timingOf(dec) };
}

/** Payload bytes per input: mean (0.1 B), p95, max. */
function wireStats(bytes: Float64Array): { meanBytes: number; p95Bytes: number; maxBytes: number } {
  const sorted = Float64Array.from(bytes).sort();
  return { meanBytes: Math.round(mean(bytes) * 10) / 10, p95Bytes: quantile(sorted, 0.95), maxBytes: quantile(sorted, 1) };
}

/**
 * Auto mode: inner cuts not dominated in (8-bit packed bytes, device MACs), measured on the first
 * calibration samples. Packed size, not float32 size, because what crosses is packed: a
 * post-ReLU tensor compresses far better than the pre-activation tensor of the same size.
 */
async function selectCuts(model: Model, inner: CandidateCut[], cal: Calibration, run: RunShape): Promise<CandidateCut[]> {
  if (inner.length === 0) return [];
  const names = [...new Set(inner.flatMap((c) => c.tensors))];
  const probe = model.clone();
  // A cut may carry the model input itself (a skip around the first op): it is fed, not fetched,
  // and its declaration stays (clearing an output's type would clear the input's too).
  const fetched = names.filter((name) => name !== run.inputName);
  for (const name of fetched) if (!probe.graph.outputs.some((v) => v.name === name)) probe.graph.outputs.push(probe.graph.value(name));
  for (const v of probe.graph.outputs) if (v.name !== run.inputName) v.decl = { ...(v.decl ?? {}), type: undefined };
  const s = await openSession(serializeModel(probe), { threads: cpus().length });
  const count = Math.min(SELECTION_SAMPLES, cal.count);
  const packed = new Map<string, number>(names.map((name) => [name, 0]));
  for (const [start, n] of batches(count, run)) {
    const x = inputTensor(cal.batch(start, n), run.perSample, n);
    const r = { ...(await s.run({ [run.inputName]: x }, fetched)), [run.inputName]: x };
    for (const name of names) {
      const t = r[name]!;
      const sample = run.batch === 1 ? (t.dims as number[]) : [1, ...(t.dims.slice(1) as number[])];
      const per = sample.reduce((a, b) => a * b, 1);
      let total = 0;
      for (let i = 0; i < n; i++) total += encode((t.data as Float32Array).subarray(i * per, (i + 1) * per), sample, { bits: 8 }).length;
      packed.set(name, packed.get(name)! + total / count);
    }
  }
  await s.release();
  const size = (c: CandidateCut) => c.tensors.reduce((s2, t) => s2 + packed.get(t)!, 0);
  return inner.filter((c) => !inner.some((o) => o !== c && size(o) <= size(c) && o.deviceMacs <= c.deviceMacs && (size(o) < size(c) || o.deviceMacs < c.deviceMacs)));
}

/** Mean and p95 per segment, run in chain order on calibration samples, one thread. */
async function profileSegments(dir: string, files: string[], cal: Calibration, run: RunShape, runs: number): Promise<Timing[]> {
  const sessions: ort.InferenceSession[] = [];
  for (const f of files) sessions.push(await openSession(join(dir, f), { threads: 1, optimize: true }));
  const times: number[][] = files.map(() => []);
  for (let r = -2; r < runs; r++) {
    const k = ((r + 2) * 7) % cal.count;
    const pool: Record<string, ort.Tensor> = { [run.inputName]: inputTensor(cal.batch(k, 1), run.perSample, 1) };
    for (const [i, s] of sessions.entries()) {
      const feeds = Object.fromEntries(s.inputNames.map((n) => [n, pool[n]!]));
      const t0 = performance.now();
      Object.assign(pool, await s.run(feeds));
      if (r >= 0) times[i]!.push(performance.now() - t0);
    }
  }
  for (const s of sessions) await s.release();
  return times.map(timingOf);
}
