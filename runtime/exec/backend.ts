// What the executor needs from an inference engine, so one executor runs on onnxruntime-node
// (runtime/node/backend.ts) and onnxruntime-web (runtime/web/backend.ts). Both packages expose
// onnxruntime-common's InferenceSession and Tensor; this layer imports only their types.
import type { InferenceSession, Tensor } from "onnxruntime-common";
import type { Bundle } from "../common/bundle.js";
import type { FileRef } from "../common/manifest.js";
import type { ImageCodec } from "../common/image.js";

export type { InferenceSession, Tensor };

export interface SegmentOptions {
  /** Intra-op threads (onnxruntime-node; onnxruntime-web sets its own from the page). */
  threads: number;
  /** Graph optimisations; off for exact comparisons (fusions reorder float math). */
  optimize: boolean;
}

/** The machine a profile was measured on. */
export interface Machine {
  platform: string;
  arch: string;
  cpu: string;
  cores: number;
}

export interface Backend {
  /** Names the engine in profiles: "onnxruntime-node cpu", "onnxruntime-web wasm", ... */
  readonly name: string;
  tensor(data: Float32Array, dims: readonly number[]): Tensor;
  /** A session for one segment graph of the bundle (its weights are the bundle's weights file). */
  openSegment(bundle: Bundle, graph: FileRef, options: SegmentOptions): Promise<InferenceSession>;
  machine(): Machine;
  /** Encodes and decodes image files (the jpeg and webp codecs of the input); absent: those variants are not offered. */
  readonly image?: ImageCodec;
}
