// The executor's backend on onnxruntime-web: segment graphs and the weights file as bytes (the
// weights handed to each session as its external data), the WASM execution provider, or WebGPU
// when the page asks for it and the browser has an adapter (WASM runs what WebGPU does not).
//
// onnxruntime-web's own .wasm is self-hosted next to this bundle (dist/browser/ort/), never
// fetched from a CDN: ort.env.wasm.wasmPaths points there. The WASM-only build (14 MB of .wasm)
// loads unless WebGPU is asked for; the WebGPU build is a separate chunk loaded on demand.
import type * as OrtWeb from "onnxruntime-web";
import type { Bundle } from "../common/bundle.js";
import type { FileRef } from "../common/manifest.js";
import type { Backend, InferenceSession, SegmentOptions, Tensor } from "../exec/backend.js";

export interface WebBackendOptions {
  /** "webgpu": use it when the browser has an adapter, else WASM (the backend's name says which). */
  executionProvider?: "wasm" | "webgpu";
  /** The folder of onnxruntime-web's .wasm files (default: ./ort/ next to this module). */
  wasmDir?: string;
  /** WASM threads (default 1: the Node device runs 1 intra-op thread too). */
  threads?: number;
}

/** Whether this browser offers a WebGPU adapter. */
export async function hasWebGpu(): Promise<boolean> {
  const gpu = (globalThis.navigator as { gpu?: { requestAdapter(): Promise<unknown> } } | undefined)?.gpu;
  if (!gpu) return false;
  try {
    return (await gpu.requestAdapter()) !== null;
  } catch {
    return false;
  }
}

export async function webBackend(options: WebBackendOptions = {}): Promise<Backend> {
  const gpu = options.executionProvider === "webgpu" && (await hasWebGpu());
  const ort = (gpu ? await import("onnxruntime-web/webgpu") : await import("onnxruntime-web/wasm")) as typeof OrtWeb;
  // Only the .wasm is fetched: its JavaScript glue is in the bundle (a string prefix here would
  // fetch the glue too).
  const dir = options.wasmDir ?? new URL("./ort/", import.meta.url).href;
  ort.env.wasm.wasmPaths = { wasm: new URL(gpu ? "ort-wasm-simd-threaded.asyncify.wasm" : "ort-wasm-simd-threaded.wasm", dir.endsWith("/") ? dir : `${dir}/`).href };
  ort.env.wasm.numThreads = options.threads ?? 1;
  ort.env.logLevel = "error";
  const weights = new Map<Bundle, Promise<Uint8Array>>();
  const cores = (globalThis.navigator as { hardwareConcurrency?: number } | undefined)?.hardwareConcurrency ?? 1;
  const agent = (globalThis.navigator as { userAgent?: string } | undefined)?.userAgent ?? "unknown";
  return {
    name: `onnxruntime-web ${gpu ? "webgpu" : "wasm"}`,
    tensor: (data: Float32Array, dims: readonly number[]): Tensor => new ort.Tensor("float32", data, dims) as unknown as Tensor,
    async openSegment(bundle: Bundle, graph: FileRef, o: SegmentOptions): Promise<InferenceSession> {
      if (!weights.has(bundle)) weights.set(bundle, bundle.read(bundle.manifest.weights));
      const w = bundle.manifest.weights;
      const session = await ort.InferenceSession.create(await bundle.read(graph), {
        executionProviders: gpu ? ["webgpu", "wasm"] : ["wasm"],
        graphOptimizationLevel: o.optimize ? "all" : "disabled",
        externalData: [{ path: w.file, data: await weights.get(bundle)! }],
        logSeverityLevel: 3,
      });
      return session as unknown as InferenceSession;
    },
    machine: () => ({ platform: "browser", arch: "wasm", cpu: agent.slice(0, 120), cores }),
  };
}
