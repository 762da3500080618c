// `dyno verify BUNDLE`: every variant against the float32 model. The reference is the segment
// chain run end to end (bit-identical to the model, see test/partition.test.ts). Float32
// variants must be exact; quantised ones must decode every cut value within half a quantisation
// step (the kernels' promise, docs/kernels.md); float16 within float16 rounding; the variant
// graphs assembled from the segments (what `dyno export-variant` writes) must compute what the
// executor computes; and the accuracy table must be reproduced, in the manifest's metric, on
// the calibration data through this runtime.
import { isImageCodec, perSampleDims } from "../../runtime/common/manifest.js";
import { openExecutor } from "../../runtime/node/executor.js";
import ort from "onnxruntime-node";
import type { NodeBundle } from "../../runtime/node/bundle.js";
import { labelAt, type Calibration } from "./calibration.js";
import { decodeWithShape } from "../../kernels/index.js";
import { Executor } from "../../runtime/exec/executor.js";
import type { Variant } from "../../runtime/common/manifest.js";
import { randomFloats } from "../../runtime/common/random.js";
import { maxAbsDiff } from "./feeds.js";
import { DynoGraphRunner } from "./graph-runner.js";
import { payloadName } from "../passes/insert-pack.js";
import type { Model } from "../ir/graph.js";
import { loadMetric } from "./quality/index.js";
import type { Metric, SampleOutputs } from "./quality/types.js";
import { addStats, asFloat32 } from "./quality/tensor.js";
import { bundleModel, variantGraphs } from "./variant-graphs.js";

export interface VariantCheck {
  id: string;
  /** The variant's own graphs (ai.dyno nodes included, assembled from the segments) give the executor's bytes and outputs. */
  graphsMatch: boolean | null;
  /** Largest |output - reference| on the seeded input. */
  outputDiff: number;
  /** Largest |decoded - original| at the cut, relative to the bound (<= 1 passes). */
  cutBoundRatio: number;
  /** The metric's value on the calibration data through this runtime (null: no data). */
  value: number | null;
  manifestValue: number;
  ok: boolean;
  problem?: string;
}

/** Accuracy reproduced within this much, in the metric's unit (one sample in 400 may flip on a tie). */
export const ACCURACY_TOLERANCE = 0.25;

export async function verifyBundle(bundle: NodeBundle, calibration: Calibration | null, seed = 1): Promise<VariantCheck[]> {
  const exec = await openExecutor(bundle);
  const m = bundle.manifest;
  const spec = m.model.inputs[0]!;
  const dims = perSampleDims(spec.shape);
  const x = new ort.Tensor("float32", randomFloats(dims.reduce((a, b) => a * b, 1), seed), dims);
  const reference = await runAll(exec, x);
  const mm = m.calibration.metric;
  const metric = calibration ? await loadMetric(mm.spec, { inputDims: dims, outputs: m.model.outputs.map((o) => o.name), labelled: calibration.labels !== null, baseDir: process.cwd() }) : null;
  // The accuracy table is reproduced with graph optimisations off, as compile measured it: a
  // fused kernel rounds differently, and on near-tied outputs (random weights) that flips samples.
  const plain = await openExecutor(bundle, { optimize: false });
  const references = calibration && metric ? await metricReferences(plain, calibration, metric) : null;
  const model = bundleModel(bundle);
  const checks: VariantCheck[] = [];
  for (const v of m.variants) {
    const out = await runVariant(exec, v, x);
    const outputDiff = Math.max(...m.model.outputs.map((o) => maxAbsDiff(reference.outputs[o.name]!, out.outputs[o.name]!)));
    // An image file is lossy by its encoder's own measure: no kernel bound applies (its accuracy does).
    const cutBoundRatio = out.payloads && !isImageCodec(v.codec) ? cutBound(v, out.payloads, reference.pool) : 0;
    const value = calibration && metric && references ? await metricValue(plain, v, calibration, metric, references) : null;
    const graphsMatch = await graphsAgree(bundle, model, plain, v, x);
    let problem: string | undefined;
    if (graphsMatch === false) problem = "its graphs (assembled from the segments, as dyno export-variant writes them) do not compute what the executor computes";
    else if (v.codec.bits === "f32" && outputDiff !== 0) problem = `float32 variant differs from the model by ${outputDiff}`;
    else if (cutBoundRatio > 1) problem = `decoded cut values exceed the kernel bound (x${cutBoundRatio.toFixed(3)})`;
    else if (value !== null && Math.abs(value - v.accuracy.value) > ACCURACY_TOLERANCE) {
      problem = `${mm.name} ${value.toFixed(2)} ${mm.unit} differs from the manifest's ${v.accuracy.value.toFixed(2)}`;
    }
    checks.push({ id: v.id, graphsMatch, outputDiff, cutBoundRatio, value, manifestValue: v.accuracy.value, ok: !problem, problem });
  }
  await exec.release();
  await plain.release();
  return checks;
}

async function runAll(exec: Executor, x: ort.Tensor) {
  const pool: Record<string, ort.Tensor> = { [exec.inputName]: x };
  await exec.runSegments(0, exec.manifest.segments.length, pool);
  return { pool, outputs: pool };
}

async function runVariant(exec: Executor, v: Variant, x: ort.Tensor) {
  const d = await exec.device(v.id, x);
  if (d.kind === "local") return { outputs: d.outputs, payloads: null };
  const c = await exec.cloud(v.id, d.payloads);
  return { outputs: c.outputs, payloads: d.payloads };
}

/** max over cut values of |decoded - original| / bound, bound = scale/2 (quantised) or f16 rounding. */
function cutBound(v: Variant, payloads: { tensor: string; bytes: Uint8Array }[], pool: Record<string, ort.Tensor>): number {
  let worst = 0;
  for (const p of payloads) {
    const original = pool[p.tensor]!.data as Float32Array;
    const { data, shape } = decodeWithShape(p.bytes);
    const bits = v.codec.bits;
    if (bits === "jpeg" || bits === "webp") continue;
    if (bits === "f32") {
      for (let i = 0; i < data.length; i++) if (data[i] !== original[i]) return Infinity;
      continue;
    }
    if (bits === "f16") {
      for (let i = 0; i < data.length; i++) {
        const bound = Math.max(Math.abs(original[i]!) * 2 ** -11, 2 ** -25);
        worst = Math.max(worst, Math.abs(data[i]! - original[i]!) / bound);
      }
      continue;
    }
    const channels = v.codec.perChannel ? shape[1]! : 1;
    const inner = v.codec.perChannel ? shape.slice(2).reduce((a, b) => a * b, 1) : data.length;
    const levels = 2 ** bits - 1;
    const ranges: [number, number][] = Array.from({ length: channels }, () => [Infinity, -Infinity]);
    for (let i = 0; i < data.length; i++) {
      const c = v.codec.perChannel ? Math.floor(i / inner) % channels : 0;
      const r = ranges[c]!;
      r[0] = Math.min(r[0], original[i]!);
      r[1] = Math.max(r[1], original[i]!);
    }
    for (let i = 0; i < data.length; i++) {
      const c = v.codec.perChannel ? Math.floor(i / inner) % channels : 0;
      const [lo, hi] = ranges[c]!;
      // Half a step, plus float32 rounding of the dequantised value.
      const bound = (hi - lo) / levels / 2 + Math.max(Math.abs(lo), Math.abs(hi)) * 2 ** -22 + 1e-30;
      worst = Math.max(worst, Math.abs(data[i]! - original[i]!) / bound);
    }
  }
  return worst;
}

function sampleInput(exec: Executor, cal: Calibration, i: number): ort.Tensor {
  const dims = perSampleDims(exec.manifest.model.inputs[0]!.shape);
  return new ort.Tensor("float32", cal.batch(i, 1), dims);
}

function sampleOutputs(exec: Executor, r: Record<string, ort.Tensor>): SampleOutputs {
  const out: SampleOutputs = {};
  for (const o of exec.manifest.model.outputs) {
    const t = r[o.name]!;
    out[o.name] = { data: asFloat32(t.data), dims: t.dims };
  }
  return out;
}

/** The metric's reference of the float32 chain's outputs, per calibration sample. */
async function metricReferences(exec: Executor, cal: Calibration, metric: Metric): Promise<unknown[]> {
  const refs: unknown[] = [];
  for (let i = 0; i < cal.count; i++) refs.push(metric.reference(sampleOutputs(exec, (await runAll(exec, sampleInput(exec, cal, i))).outputs), labelAt(cal, i)));
  return refs;
}

/** The metric over the calibration data, one inference per sample through the runtime path (device part, kernels, cloud part). */
async function metricValue(exec: Executor, v: Variant, cal: Calibration, metric: Metric, refs: unknown[]): Promise<number> {
  const sum: number[] = [];
  for (let i = 0; i < cal.count; i++) {
    const stats = metric.stats(sampleOutputs(exec, (await runVariant(exec, v, sampleInput(exec, cal, i))).outputs), refs[i], labelAt(cal, i));
    addStats(sum, stats);
  }
  return metric.value(sum, cal.count);
}

/**
 * Runs the variant's device and cloud graphs (assembled from the segments) with the ai.dyno graph
 * runner and the executor on the same input, both without graph optimisations: payload bytes and
 * outputs must be equal.
 */
async function graphsAgree(bundle: NodeBundle, model: Model, exec: Executor, v: Variant, x: ort.Tensor): Promise<boolean | null> {
  const graphs = variantGraphs(bundle, v, model);
  if (!graphs.device || !graphs.cloud) return null;
  const device = await DynoGraphRunner.open(graphs.device, { optimize: false });
  const cloud = await DynoGraphRunner.open(graphs.cloud, { optimize: false });
  try {
    const d = await exec.device(v.id, x);
    if (d.kind !== "split") return false;
    const packed = await device.run({ [exec.inputName]: x });
    for (const p of d.payloads) {
      const mine = packed[payloadName(p.tensor)];
      if (!mine || Buffer.compare(Buffer.from(mine.data as Uint8Array), Buffer.from(p.bytes)) !== 0) return false;
    }
    const want = (await exec.cloud(v.id, d.payloads)).outputs;
    const got = await cloud.run(packed);
    return Object.keys(want).every((name) => got[name] !== undefined && maxAbsDiff(want[name]!, got[name]!) === 0);
  } finally {
    await device.release();
    await cloud.release();
  }
}
