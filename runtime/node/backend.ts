// The executor's backend on onnxruntime-node: segment graphs opened from the bundle's directory
// (onnxruntime reads the external weights next to them), CPU execution provider.
import { cpus } from "node:os";
import ort from "onnxruntime-node";
import type { Bundle } from "../common/bundle.js";
import { DynoError } from "../common/errors.js";
import type { FileRef } from "../common/manifest.js";
import type { Backend, InferenceSession, SegmentOptions, Tensor } from "../exec/backend.js";
import type { NodeBundle } from "./bundle.js";
import { openSession } from "./session.js";
import { sharpImages } from "./image.js";

export const nodeBackend: Backend = {
  name: "onnxruntime-node cpu",
  tensor: (data: Float32Array, dims: readonly number[]): Tensor => new ort.Tensor("float32", data, dims),
  async openSegment(bundle: Bundle, graph: FileRef, o: SegmentOptions): Promise<InferenceSession> {
    const path = (bundle as Partial<NodeBundle>).path;
    if (!path) throw new DynoError(`bundle "${bundle.label}" is not a directory: onnxruntime-node opens segment graphs from files (runtime/node/bundle.ts openBundle)`);
    return openSession(path(graph), { threads: o.threads, optimize: o.optimize });
  },
  machine: () => ({ platform: process.platform, arch: process.arch, cpu: cpus()[0]?.model?.trim() ?? "unknown", cores: cpus().length }),
  image: sharpImages,
};
