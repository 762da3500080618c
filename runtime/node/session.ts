// onnxruntime-node sessions (the offline tools' feeds and chains are compiler/bundler/feeds.ts).
import ort from "onnxruntime-node";
import { ModelError } from "../common/errors.js";

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
