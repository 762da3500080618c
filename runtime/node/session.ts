// onnxruntime-node sessions for whole models, parts and segment chains.
import ort from "onnxruntime-node";
import { ModelError } from "../common/errors.js";
import { DataType, dtypeName } from "../../compiler/ir/dtype.js";
import type { Model } from "../../compiler/ir/graph.js";
import { randomFloats } from "../common/random.js";

export interface SessionOptions {
  /** onnxruntime graph optimisations; off for exact comparisons (fusions reorder float math). */
  optimize?: boolean;
  threads?: number;
}

/** Sessions created so far in this process (tests check that a variant switch creates none). */
export let sessionsOpened = 0;

// onnxruntime's process-wide logger (read once, at the first session of each thread) writes
// coloured multi-line reports to stderr before the exception reaches us; fatal only, like each
// session's own logger below, so a failure reaches the user as one `dyno:` line.
ort.env.logLevel = "fatal";

/**
 * onnxruntime's exception text without its C++ provenance: "Exception during initialization:
 * /onnxruntime_src/...cc:79 onnxruntime::Initializer::Initializer(...) [ONNXRuntimeError] : 1 :
 * FAIL : tensorprotoutils.cc:1763 GetExtDataFromTensorProto External initializer: ..." becomes
 * "External initializer: ...". First line only.
 */
export function ortMessage(e: unknown): string {
  const first = String((e as Error)?.message ?? e).split("\n")[0]!;
  const tail = first.replace(/^.*\[ONNXRuntimeError\] : \d+ : \w+ : /, "").replace(/^Exception during initialization: /, "");
  return tail.replace(/^\/?[\w/.-]+\.(?:cc|h|cpp):\d+ (?:[\w:~]+(?:\([^)]*\))? )?/, "").trim() || first;
}

export async function openSession(model: string | Uint8Array, options: SessionOptions = {}): Promise<ort.InferenceSession> {
  const opts: ort.InferenceSession.SessionOptions = {
    graphOptimizationLevel: options.optimize ? "all" : "disabled",
    intraOpNumThreads: options.threads ?? 1,
    interOpNumThreads: 1,
    // Fatal only: failures reach the user as one `dyno:` line from the exception, not as ORT log lines.
    logSeverityLevel: 4,
  };
  try {
    sessionsOpened++;
    return typeof model === "string" ? await ort.InferenceSession.create(model, opts) : await ort.InferenceSession.create(model, opts);
  } catch (e) {
    const what = typeof model === "string" ? `"${model}"` : "model";
    throw new ModelError(`onnxruntime cannot load ${what}: ${ortMessage(e)}`);
  }
}

export type Feeds = Record<string, ort.Tensor>;

/** Seeded float32 inputs for the model's graph inputs; symbolic dims take `symbolValue`. */
export function randomFeeds(model: Model, seed: number, symbolValue = 1): Feeds {
  const g = model.graph;
  const feeds: Feeds = {};
  g.inputs.forEach((v, i) => {
    if (g.isInitializer(v.name)) return;
    if (v.dtype !== DataType.FLOAT) throw new ModelError(`input "${v.name}" is ${dtypeName(v.dtype ?? 0)}; random inputs are float32 only (give --input)`);
    if (!v.shape) throw new ModelError(`input "${v.name}" has no shape: give it with --input-shape`);
    const dims = v.shape.map((d) => (typeof d === "number" ? d : symbolValue));
    feeds[v.name] = new ort.Tensor("float32", randomFloats(dims.reduce((a, b) => a * b, 1), seed + i), dims);
  });
  return feeds;
}

/**
 * Runs sessions in order, each reading its inputs from the model inputs and earlier outputs;
 * returns every tensor produced, by name.
 */
export async function runChain(sessions: readonly ort.InferenceSession[], feeds: Feeds): Promise<Feeds> {
  const pool: Feeds = { ...feeds };
  for (const [i, s] of sessions.entries()) {
    const input: Feeds = {};
    for (const name of s.inputNames) {
      const t = pool[name];
      if (!t) throw new ModelError(`segment ${i} needs tensor "${name}", which no earlier segment produced`);
      input[name] = t;
    }
    Object.assign(pool, await s.run(input));
  }
  return pool;
}

/** Largest |a - b| over two tensors of equal size (Infinity when sizes differ or NaN appears). */
export function maxAbsDiff(a: ort.Tensor, b: ort.Tensor): number {
  const x = a.data as ArrayLike<number>;
  const y = b.data as ArrayLike<number>;
  if (x.length !== y.length) return Infinity;
  let m = 0;
  for (let i = 0; i < x.length; i++) {
    const d = Math.abs(Number(x[i]) - Number(y[i]));
    if (!(d <= m)) m = Number.isNaN(d) ? (Number.isNaN(Number(x[i])) && Number.isNaN(Number(y[i])) ? m : Infinity) : d;
  }
  return m;
}
