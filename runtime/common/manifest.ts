// The bundle manifest: one schema, shared by the compiler that writes it, the device runtime
// (Node and browsers) and the cloud server that read it. zod gives both the TypeScript types and
// the validation on load, so the two cannot drift apart.
import * as z from "zod";
import { DynoError } from "./errors.js";

export const MANIFEST_FORMAT = "dyno-bundle";
/** 2: variant graphs are assembled from the segments on demand (no per-variant files); accuracy in any metric. */
export const MANIFEST_VERSION = 2;

const Dim = z.union([z.number().int().nonnegative(), z.string(), z.null()]);

export const TensorSpec = z.object({
  name: z.string().min(1),
  dtype: z.string(),
  shape: z.array(Dim),
  /** Bytes per input at its own dtype (symbolic dims count 1). */
  bytes: z.number().nonnegative(),
});
export type TensorSpec = z.infer<typeof TensorSpec>;

/** A shape with its symbolic dims (a batch, any named dim) at 1: one sample, as devices send. */
export function perSampleDims(shape: readonly (number | string | null)[]): number[] {
  return shape.map((d) => (typeof d === "number" ? d : 1));
}

/**
 * A file of the bundle, relative to the manifest, with its size and SHA-256 (tamper check). A
 * plain name: letters, digits, "_", "-", "."; no separator, and no leading dot, so neither "." nor
 * ".." (the bundle's own folder or its parent) nor a hidden file.
 */
export const FileRef = z.object({
  file: z.string().regex(/^(?!\.)[\w.-]+$/, "a plain file name inside the bundle (no path, no leading dot)"),
  bytes: z.number().int().nonnegative(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
});
export type FileRef = z.infer<typeof FileRef>;

/** A standard-op segment of the model between two consecutive cuts (weights in weights.bin). */
export const Segment = z.object({
  index: z.number().int().nonnegative(),
  graph: FileRef,
  inputs: z.array(z.string()),
  outputs: z.array(z.string()),
  macs: z.number().nonnegative(),
  parameterBytes: z.number().nonnegative(),
});
export type Segment = z.infer<typeof Segment>;

export const Cut = z.object({
  /** Index of the cut among the model's candidate cuts (`dyno inspect`). */
  id: z.number().int().nonnegative(),
  kind: z.enum(["input", "inner", "output"]),
  tensors: z.array(TensorSpec),
  /** float32 bytes crossing per input. */
  bytes: z.number().nonnegative(),
  deviceMacs: z.number().nonnegative(),
  cloudMacs: z.number().nonnegative(),
  /** Segments [0, deviceSegments) run on the device, the rest on the cloud. */
  deviceSegments: z.number().int().nonnegative(),
});
export type Cut = z.infer<typeof Cut>;

/**
 * How many bits a value travels in, or how: float passthrough ("f16", "f32"), or, for an image
 * input only, the whole input as an image file ("jpeg", "webp" at the codec's `quality`; the
 * pixels the manifest's preprocess came from, runtime/common/image.ts).
 */
export const Bits = z.union([z.literal(1), z.literal(2), z.literal(3), z.literal(4), z.literal(5), z.literal(6), z.literal(7), z.literal(8), z.literal(16), z.literal("f16"), z.literal("f32"), z.literal("jpeg"), z.literal("webp")]);
export type Bits = z.infer<typeof Bits>;

/** How a cut's tensors travel: quantise(b) + pack [+ bit-shuffle] + lossless, float passthrough, or an image file. */
export const CodecSpec = z.object({
  bits: Bits,
  perChannel: z.boolean(),
  shuffle: z.boolean(),
  lossless: z.enum(["none", "lz4", "deflate", "zstd"]),
  /** The encoder's quality (1-100) of an image codec ("jpeg", "webp"). */
  quality: z.number().int().min(1).max(100).optional(),
});
export type CodecSpec = z.infer<typeof CodecSpec>;

/** An image codec: the input sent as a JPEG or WebP file. */
export function isImageCodec(c: Pick<CodecSpec, "bits">): c is Pick<CodecSpec, "bits"> & { bits: "jpeg" | "webp" } {
  return c.bits === "jpeg" || c.bits === "webp";
}

/** A codec's part of a variant id: "b4-zstd", "b6-pc-shuf-lz4", "f16-none", "f32-none", "jpeg-q25". */
export function codecId(c: CodecSpec): string {
  if (isImageCodec(c)) return `${c.bits}-q${c.quality ?? 75}`;
  const bits = typeof c.bits === "number" ? `b${c.bits}` : c.bits;
  return `${bits}${c.perChannel ? "-pc" : ""}${c.shuffle ? "-shuf" : ""}-${c.lossless}`;
}

export const Variant = z.object({
  /** Stable id, e.g. "c12-b4-zstd": cut id, bits, lossless stage. */
  id: z.string().regex(/^[\w.-]+$/),
  cut: z.number().int().nonnegative(),
  codec: CodecSpec,
  /** Measured over the calibration data: payload bytes per input on the wire. */
  wire: z.object({ meanBytes: z.number().nonnegative(), p95Bytes: z.number().nonnegative(), maxBytes: z.number().nonnegative() }),
  accuracy: z.object({
    /** The calibration metric's value for this variant, in the metric's unit (calibration.metric). */
    value: z.number(),
    /** How much worse than float32, in the metric's unit (positive = worse, whichever way the metric points). */
    drop: z.number(),
  }),
  /** Within the compile's --max-accuracy-drop: the scheduler offers only admissible variants. */
  admissible: z.boolean(),
});
export type Variant = z.infer<typeof Variant>;

export const Timing = z.object({ meanMs: z.number().nonnegative(), p95Ms: z.number().nonnegative(), runs: z.number().int().positive() });
export type Timing = z.infer<typeof Timing>;

/** Per-segment latency measured on one backend and machine. */
export const Profile = z.object({
  role: z.enum(["device", "cloud"]),
  backend: z.string(),
  machine: z.object({ platform: z.string(), arch: z.string(), cpu: z.string(), cores: z.number().int().positive() }),
  measuredAt: z.string(),
  segments: z.array(Timing),
  /** Encode (device) or decode (cloud) time per variant id. */
  codec: z.record(z.string(), Timing),
});
export type Profile = z.infer<typeof Profile>;

/** Crossings in a row (device -> edge at the first variant's cut, edge -> cloud at the next), profiled together. */
export const Chain = z.object({
  variants: z.array(z.string()).min(2),
  accuracy: z.object({ value: z.number(), drop: z.number() }),
  admissible: z.boolean(),
});
export type Chain = z.infer<typeof Chain>;

export const Manifest = z.object({
  format: z.literal(MANIFEST_FORMAT),
  version: z.literal(MANIFEST_VERSION),
  dyno: z.string(),
  model: z.object({
    name: z.string(),
    sha256: z.string().regex(/^[0-9a-f]{64}$/),
    inputs: z.array(TensorSpec),
    outputs: z.array(TensorSpec),
    totalMacs: z.number().nonnegative(),
    parameterBytes: z.number().nonnegative(),
    opsets: z.array(z.object({ domain: z.string(), version: z.number().int() })),
  }),
  /** Every initializer of the model, once; segments and variant graphs reference it. */
  weights: FileRef,
  segments: z.array(Segment),
  cuts: z.array(Cut),
  variants: z.array(Variant),
  profiles: z.array(Profile),
  calibration: z.object({
    source: z.string(),
    samples: z.number().int().nonnegative(),
    labelled: z.boolean(),
    /** The accuracy metric every variant was profiled with (docs/metrics.md); `spec` makes it again. */
    metric: z.object({ name: z.string(), spec: z.string(), unit: z.string(), higherIsBetter: z.boolean() }),
    /** The float32 model's value of the metric on the calibration data (against labels, or itself: perfect). */
    float32Value: z.number(),
    /** Admissible variants drop at most this much, in the metric's unit. */
    maxAccuracyDrop: z.number().nonnegative(),
  }),
  /**
   * Input preprocessing of the calibration images, when known: x = (pixel * scale - mean[c]) / std[c]
   * per model channel c, laid out as `layout`, channels in `channelOrder`, resized by `resize`.
   * Old manifests lack the last three: layout is then inferred from the input dims.
   */
  preprocess: z.object({
    scale: z.number(),
    mean: z.array(z.number()),
    std: z.array(z.number()),
    layout: z.enum(["nchw", "nhwc"]).optional(),
    channelOrder: z.enum(["rgb", "bgr"]).default("rgb"),
    resize: z.enum(["stretch", "pad"]).default("stretch"),
  }).nullable(),
  /**
   * More than two tiers (`dyno compile --tiers device,edge,cloud`): the tiers in order, and the
   * chains of crossings profiled together for accuracy (each quantisation adds its error to the
   * last). A chain lists one variant per crossing, in order; absent on a two-tier bundle.
   */
  tiers: z.object({ names: z.array(z.string()).min(3), /** Calibration samples the chains were profiled on (the first ones). */ samples: z.number().int().positive(), chains: z.array(Chain) }).optional(),
});
export type Manifest = z.infer<typeof Manifest>;

/** A bundle manifest that is not one, is of another version, or fails the schema. */
export class ManifestError extends DynoError {
  override name = "ManifestError";
}

/** Validates a parsed manifest; errors name the file, the field path and what is wrong. */
export function parseManifest(json: unknown, source = "manifest.json"): Manifest {
  const head = json as { format?: unknown; version?: unknown } | null;
  if (!head || typeof head !== "object" || head.format !== MANIFEST_FORMAT) {
    throw new ManifestError(`"${source}" is not a dyno bundle manifest (format is ${JSON.stringify(head?.format)}, expected "${MANIFEST_FORMAT}")`);
  }
  if (head.version !== MANIFEST_VERSION) {
    const newer = typeof head.version === "number" && head.version > MANIFEST_VERSION;
    throw new ManifestError(`"${source}" has manifest version ${JSON.stringify(head.version)}; this dyno reads version ${MANIFEST_VERSION}${newer ? " (upgrade dyno)" : " (compile it again with this dyno)"}`);
  }
  const r = Manifest.safeParse(json);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    throw new ManifestError(`"${source}": ${issue.path.join(".") || "(root)"}: ${issue.message}${r.error.issues.length > 1 ? ` (and ${r.error.issues.length - 1} more)` : ""}`);
  }
  const m = r.data;
  const cutIds = new Set(m.cuts.map((c) => c.id));
  for (const v of m.variants) {
    if (!cutIds.has(v.cut)) throw new ManifestError(`"${source}": variant ${v.id} refers to cut ${v.cut}, which the manifest does not list`);
  }
  for (const c of m.cuts) {
    if (c.deviceSegments > m.segments.length) throw new ManifestError(`"${source}": cut ${c.id} runs ${c.deviceSegments} segments on the device; the bundle has ${m.segments.length}`);
  }
  if (m.tiers) {
    const byId = new Map(m.variants.map((v) => [v.id, v]));
    const segmentsOf = (id: number) => m.cuts.find((c) => c.id === id)!.deviceSegments;
    for (const ch of m.tiers.chains) {
      if (ch.variants.length !== m.tiers.names.length - 1) throw new ManifestError(`"${source}": chain ${ch.variants.join(" > ")} has ${ch.variants.length} crossings; ${m.tiers.names.length} tiers have ${m.tiers.names.length - 1}`);
      const vs = ch.variants.map((id) => byId.get(id));
      const missing = ch.variants.find((_, i) => !vs[i]);
      if (missing) throw new ManifestError(`"${source}": chain ${ch.variants.join(" > ")} names variant ${missing}, which the manifest does not list`);
      for (let i = 1; i < vs.length; i++) {
        if (segmentsOf(vs[i]!.cut) <= segmentsOf(vs[i - 1]!.cut)) throw new ManifestError(`"${source}": chain ${ch.variants.join(" > ")}: cut ${vs[i]!.cut} is not after cut ${vs[i - 1]!.cut}`);
      }
    }
  }
  return m;
}
