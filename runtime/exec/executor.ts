// The executor: runs a bundle's variants. onnxruntime sessions run the standard-op segments; the
// WASM kernels run the ai.dyno QuantizePack / UnpackDequantize steps (onnxruntime cannot load
// custom-op libraries in Node or browsers, so those ops are ours).
//
// Every variant is a split of the same segment chain: the device runs segments [0, k) of its
// cut and packs the cut tensors, the cloud unpacks them and runs [k, n). The segment sessions
// are created once and shared by all variants, so switching variants between two inferences
// creates no session, and memory holds the weights once.
//
// The engine is a Backend (./backend.ts): onnxruntime-node (runtime/node/backend.ts) or
// onnxruntime-web (runtime/web/backend.ts); nothing here imports either.
import type { Bundle } from "../common/bundle.js";
import { DynoError } from "../common/errors.js";
import { isImageCodec, type CodecSpec, type Cut, type Manifest, type Profile, type Variant } from "../common/manifest.js";
import { fromPixels, imageFormatOf, imageLayout, toPixels, type ImageLayout } from "../common/image.js";
import type { Payload } from "../common/protocol.js";
import { timingOf } from "../common/stats.js";
import { decodeWithShape, encode, initKernels, type EncodeOptions } from "../../kernels/index.js";
import type { Backend, InferenceSession, Tensor } from "./backend.js";

export type { Payload };

export type DeviceResult =
  | { kind: "split"; variant: Variant; payloads: Payload[]; segmentMs: number[]; encodeMs: number }
  | { kind: "local"; variant: Variant; outputs: Record<string, Tensor>; segmentMs: number[] };

export interface CloudResult {
  outputs: Record<string, Tensor>;
  segmentMs: number[];
  decodeMs: number;
}

export class PayloadError extends DynoError {
  override name = "PayloadError";
}

/** The kernels' options for a codec spec (the kernels call the lossless stage `codec`); an image codec is no kernel's. */
export function encodeOptions(c: CodecSpec): EncodeOptions {
  if (c.bits === "jpeg" || c.bits === "webp") throw new DynoError(`codec ${c.bits} is an image file, not a kernel codec (runtime/common/image.ts)`);
  return { bits: c.bits, perChannel: c.perChannel, shuffle: c.shuffle, codec: c.lossless };
}

export class Executor {
  private constructor(
    readonly bundle: Bundle,
    readonly backend: Backend,
    /** Intra-op threads per session. */
    readonly threads: number,
    private readonly sessions: (InferenceSession | null)[],
  ) {}

  /**
   * Opens sessions for `segments` (default: all) on `backend` with `threads` intra-op threads
   * each; `optimize: false` turns graph optimisations off (for bit-exact comparisons).
   */
  static async open(bundle: Bundle, options: { backend: Backend; segments?: number[]; threads?: number; optimize?: boolean }): Promise<Executor> {
    await initKernels();
    const m = bundle.manifest;
    const wanted = new Set(options.segments ?? m.segments.map((s) => s.index));
    const threads = options.threads ?? 1;
    const sessions: (InferenceSession | null)[] = [];
    for (const s of m.segments) {
      sessions.push(wanted.has(s.index) ? await options.backend.openSegment(bundle, s.graph, { threads, optimize: options.optimize ?? true }) : null);
    }
    return new Executor(bundle, options.backend, threads, sessions);
  }

  get manifest(): Manifest {
    return this.bundle.manifest;
  }

  get inputName(): string {
    return this.manifest.model.inputs[0]!.name;
  }

  cutOf(v: Variant): Cut {
    return this.manifest.cuts.find((c) => c.id === v.cut)!;
  }

  /** The device side of a variant on one input: its segments, then the packing kernels. */
  async device(variantId: string, input: Tensor): Promise<DeviceResult> {
    const v = this.bundle.variant(variantId);
    const cut = this.cutOf(v);
    const pool: Record<string, Tensor> = { [this.inputName]: input };
    const segmentMs = await this.runSegments(0, cut.deviceSegments, pool);
    if (cut.kind === "output") {
      const outputs = Object.fromEntries(this.manifest.model.outputs.map((o) => [o.name, pool[o.name]!]));
      return { kind: "local", variant: v, outputs, segmentMs };
    }
    const t0 = performance.now();
    const payloads = await this.encodeCut(v, pool);
    return { kind: "split", variant: v, payloads, segmentMs, encodeMs: performance.now() - t0 };
  }

  /**
   * The cloud side: unpacks each payload, checks it against the cut tensor's declared shape and
   * the variant's codec, and runs the remaining segments.
   */
  async cloud(variantId: string, payloads: readonly Payload[]): Promise<CloudResult> {
    const v = this.bundle.variant(variantId);
    const cut = this.cutOf(v);
    if (cut.kind === "output") throw new PayloadError(`variant "${v.id}" is device-only: the cloud has nothing to run`);
    const t0 = performance.now();
    const pool = await this.decode(v, payloads);
    const decodeMs = performance.now() - t0;
    const segmentMs = await this.runSegments(cut.deviceSegments, this.manifest.segments.length, pool);
    const outputs = Object.fromEntries(this.manifest.model.outputs.map((o) => [o.name, pool[o.name]!]));
    return { outputs, segmentMs, decodeMs };
  }

  /** Unpacks a variant's payloads into its cut tensors, each checked against the declared shape. */
  async decode(v: Variant, payloads: readonly Payload[]): Promise<Record<string, Tensor>> {
    const cut = this.cutOf(v);
    const pool: Record<string, Tensor> = {};
    if (payloads.length !== cut.tensors.length) throw new PayloadError(`variant "${v.id}" expects ${cut.tensors.length} payload(s) (${cut.tensors.map((t) => t.name).join(", ")}), got ${payloads.length}`);
    if (isImageCodec(v.codec)) {
      const spec = cut.tensors[0]!;
      const p = payloads.find((x) => x.tensor === spec.name);
      if (!p) throw new PayloadError(`variant "${v.id}": no payload for the input "${spec.name}"`);
      const l = this.imageLayoutOf(v);
      if (imageFormatOf(p.bytes) !== v.codec.bits) throw new PayloadError(`payload for "${spec.name}" is not a ${v.codec.bits} file (variant "${v.id}")`);
      let x: Float32Array;
      try {
        x = fromPixels(await this.backend.image!.decode(p.bytes, l.channels), l);
      } catch (e) {
        throw new PayloadError(`payload for "${spec.name}": ${(e as Error).message}`);
      }
      pool[spec.name] = this.backend.tensor(x, spec.shape.map((d) => (typeof d === "number" ? d : 1)));
      return pool;
    }
    for (const spec of cut.tensors) {
      const p = payloads.find((x) => x.tensor === spec.name);
      if (!p) throw new PayloadError(`variant "${v.id}": no payload for cut tensor "${spec.name}"`);
      let decoded: { data: Float32Array; shape: number[] };
      try {
        decoded = decodeWithShape(p.bytes, { maxElements: maxElements(spec.shape) });
      } catch (e) {
        throw new PayloadError(`payload for "${spec.name}": ${(e as Error).message}`);
      }
      const want = spec.shape;
      const ok = decoded.shape.length === want.length && want.every((d, i) => (typeof d === "number" ? d === decoded.shape[i] : decoded.shape[i]! >= 1));
      if (!ok) throw new PayloadError(`payload for "${spec.name}" has shape [${decoded.shape.join(",")}], the cut tensor is [${want.join(",")}]`);
      pool[spec.name] = this.backend.tensor(decoded.data, decoded.shape);
    }
    return pool;
  }

  /** Packs a variant's cut tensors from `pool` (what device() sends). */
  async encodeCut(v: Variant, pool: Record<string, Tensor>): Promise<Payload[]> {
    if (isImageCodec(v.codec)) {
      const name = this.cutOf(v).tensors[0]!.name;
      const x = pool[name];
      if (!x) throw new DynoError(`no input "${name}" to send as an image`);
      const layout = this.imageLayoutOf(v);
      const bytes = await this.backend.image!.encode(toPixels(x.data as Float32Array, layout), v.codec.bits, v.codec.quality ?? 75);
      return [{ tensor: name, bytes }];
    }
    const opts = encodeOptions(v.codec);
    return this.cutOf(v).tensors.map((t) => {
      const x = pool[t.name];
      if (!x) throw new DynoError(`segment chain did not produce cut tensor "${t.name}"`);
      return { tensor: t.name, bytes: encode(x.data as Float32Array, x.dims as number[], opts) };
    });
  }

  /** The image in the model's input, for an image codec; an error when the input is none, or this backend has no image codec. */
  imageLayoutOf(v: Variant): ImageLayout {
    if (!this.backend.image) throw new PayloadError(`variant "${v.id}" sends the input as ${v.codec.bits}, and ${this.backend.name} has no image codec`);
    const l = imageLayout(this.manifest);
    if (typeof l === "string") throw new PayloadError(`variant "${v.id}" sends the input as ${v.codec.bits}, but ${l}`);
    return l;
  }

  /** Runs segments [from, to) in order over `pool`; returns each one's milliseconds. */
  async runSegments(from: number, to: number, pool: Record<string, Tensor>): Promise<number[]> {
    const sessions = this.sessions.slice(from, to).map((s, k) => {
      if (!s) throw new DynoError(`segment ${from + k} is not loaded in this executor`);
      return s;
    });
    return runChain(sessions, pool, from);
  }

  /** The tensors segment `s` reads (model inputs and earlier segments' outputs). */
  segmentInputs(s: number): readonly string[] {
    const session = this.sessions[s];
    if (!session) throw new DynoError(`segment ${s} is not loaded in this executor`);
    return session.inputNames;
  }

  async release(): Promise<void> {
    for (const s of this.sessions) await s?.release();
  }
}

/** A payload may not decode to more elements than its tensor has (symbolic batch up to 64). */
function maxElements(shape: (number | string | null)[]): number {
  return shape.reduce<number>((a, d) => a * (typeof d === "number" ? d : 64), 1);
}

/** The profile cache key of a bundle on a backend and machine (see measureProfile). */
export function profileKey(exec: Executor): string {
  const m = exec.manifest;
  const machine = exec.backend.machine();
  const files = `${m.weights.sha256.slice(0, 16)}-${m.segments.map((s) => s.graph.sha256.slice(0, 6)).join("")}`.slice(0, 64);
  return `${files}-${machine.platform}-${machine.arch}`;
}

/** The backend's name in profiles: "onnxruntime-node cpu (1 thread)". */
export function backendLabel(exec: Executor): string {
  return `${exec.backend.name} (${exec.threads} thread${exec.threads === 1 ? "" : "s"})`;
}

/**
 * This device's profile: a few warm runs of every segment on its backend (the first run is a
 * warm-up), replacing the bundle's device profile for this device. Callers cache it
 * (runtime/node/profile-cache.ts on Node, localStorage in a browser).
 */
export async function measureProfile(exec: Executor, input: Tensor, options: { runs?: number } = {}): Promise<Profile> {
  const m = exec.manifest;
  const runs = options.runs ?? 5;
  const times: number[][] = m.segments.map(() => []);
  for (let r = -1; r < runs; r++) {
    const pool: Record<string, Tensor> = { [exec.inputName]: input };
    const ms = await exec.runSegments(0, m.segments.length, pool);
    if (r >= 0) ms.forEach((t, i) => times[i]!.push(t));
  }
  return {
    role: "device",
    backend: backendLabel(exec),
    machine: exec.backend.machine(),
    measuredAt: new Date().toISOString(),
    segments: times.map(timingOf),
    codec: m.profiles.find((p) => p.role === "device")?.codec ?? {},
  };
}

/**
 * The one segment-chain runner: sessions in order, each reading its inputs from `pool` (the
 * model inputs and earlier outputs) and adding its outputs to it; each one's milliseconds.
 * `first` numbers the segments in messages.
 */
export async function runChain(sessions: readonly InferenceSession[], pool: Record<string, Tensor>, first = 0): Promise<number[]> {
  const ms: number[] = [];
  for (const [k, s] of sessions.entries()) {
    const feeds: Record<string, Tensor> = {};
    for (const name of s.inputNames) {
      const t = pool[name];
      if (!t) throw new DynoError(`segment ${first + k} needs "${name}", which no earlier segment produced`);
      feeds[name] = t;
    }
    const t0 = performance.now();
    Object.assign(pool, await s.run(feeds));
    ms.push(performance.now() - t0);
  }
  return ms;
}
