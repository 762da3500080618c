// One worker thread of the cloud pool (runtime/cloud/worker-pool.ts has the protocol and the why):
// opens the bundle's sessions, then runs one request at a time. onnxruntime-node runs inference
// synchronously on the calling thread, which is why this is a thread of its own: while it runs,
// the server's main thread keeps answering health checks, timers and other clients.
import { openExecutor } from "../node/executor.js";
import { sep } from "node:path";
import { parentPort, workerData } from "node:worker_threads";
import type ort from "onnxruntime-node";
import { openBundle, type NodeBundle } from "../node/bundle.js";
import { Executor, PayloadError } from "../exec/executor.js";
import type { OutputTensor } from "../common/protocol.js";
import type { FromWorker, ToWorker, WorkerInit } from "./worker-pool.js";

const port = parentPort!;
const init = workerData as WorkerInit;
const send = (m: FromWorker, transfer: ArrayBuffer[] = []) => port.postMessage(m, transfer);

let bundle: NodeBundle | null = null;
try {
  // The main thread has checked every file's SHA-256; sizes are checked again here.
  bundle = openBundle(init.dir, { checksums: false });
  const executor = await openExecutor(bundle, { threads: init.threads });
  const outputNames = executor.manifest.model.outputs.map((o) => o.name);
  port.on("message", (m: ToWorker) => void run(executor, outputNames, m));
  send({ type: "ready" });
} catch (e) {
  // The pool terminates this worker when it reads the failure. A segment graph that does not load
  // may be at fault, or the weights file every segment reads its initializers from: both are named,
  // relative to the bundle.
  let message = (e as Error)?.message ?? String(e);
  if (bundle) {
    message = `bundle "${init.dir}": cannot open the cloud sessions (weights "${bundle.manifest.weights.file}"): ${message.replaceAll(`${bundle.dir}${sep}`, "")}`;
  }
  send({ type: "open-failed", name: (e as Error)?.name ?? "Error", message });
}

async function run(executor: Executor, outputNames: string[], m: ToWorker): Promise<void> {
  try {
    const all = new Uint8Array(m.buffer);
    const payloads = m.tensors.map((t) => ({ tensor: t.name, bytes: all.subarray(t.offset, t.offset + t.length) }));
    const r = await executor.cloud(m.variant, payloads);
    const outputs = outputNames.map((name) => toOutput(name, r.outputs[name]));
    send({ type: "done", id: m.id, outputs, decodeMs: r.decodeMs, segmentMs: r.segmentMs.reduce((a, b) => a + b, 0) }, outputs.map((o) => o.data.buffer as ArrayBuffer));
  } catch (e) {
    send({ type: "run-failed", id: m.id, payload: e instanceof PayloadError, message: (e as Error)?.message ?? String(e) });
  }
}

/** An output as float32 in a buffer of its own (transferred to the main thread, not copied). */
function toOutput(name: string, t: ort.Tensor | undefined): OutputTensor {
  if (!t) throw new Error(`the cloud segments did not produce model output "${name}"`);
  const data = t.data instanceof Float32Array ? t.data.slice() : Float32Array.from(t.data as ArrayLike<number | bigint>, Number);
  return { name, dims: [...t.dims], data };
}
