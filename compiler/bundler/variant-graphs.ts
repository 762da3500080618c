// A variant's self-describing graphs (ai.dyno QuantizePack / UnpackDequantize at its cut,
// docs/ops.md), assembled from the bundle's segment chain on demand: the bundle stores every
// segment once instead of two graphs per variant, which kept bundles at 1.6x the model with
// ~170 variants (docs/compile.md). `dyno export-variant` writes them; `dyno verify` runs them.
import { loadModel } from "../onnx/import.js";
import type { Model } from "../ir/graph.js";
import { insertQuantizePack, insertUnpackDequantize } from "../passes/insert-pack.js";
import { joinSegments } from "../passes/join-segments.js";
import { partition } from "../passes/partition.js";
import type { NodeBundle } from "../../runtime/node/bundle.js";
import { isImageCodec, type CodecSpec, type Variant } from "../../runtime/common/manifest.js";

export interface VariantGraphs {
  /** Model input -> packed payloads (null for device-only: nothing crosses; and for an image codec: a JPEG or WebP is no ONNX op). */
  device: Model | null;
  /** Packed payloads -> model outputs (null for device-only and image codecs). */
  cloud: Model | null;
}

/** The whole model, joined from the bundle's segments (weights stay in weights.bin until read). */
export function bundleModel(bundle: NodeBundle): Model {
  return joinSegments(bundle.manifest.segments.map((s) => loadModel(bundle.path(s.graph))));
}

/** The variant's device and cloud graphs; `model` (bundleModel) may be passed in to join once. */
export function variantGraphs(bundle: NodeBundle, v: Variant, model: Model = bundleModel(bundle)): VariantGraphs {
  const cut = bundle.manifest.cuts.find((c) => c.id === v.cut)!;
  if (cut.kind === "output" || isImageCodec(v.codec)) return { device: null, cloud: null };
  const names = cut.tensors.map((t) => t.name);
  const [device, cloud] = partition(model, names);
  return { device: insertQuantizePack(device, names, v.codec), cloud: insertUnpackDequantize(cloud, names, v.codec) };
}
