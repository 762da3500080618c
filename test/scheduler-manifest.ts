// Small valid manifests built inline for the scheduler and estimator tests and the re-plan bench:
// segment times, cuts and variants by hand, validated by runtime/common/manifest.ts's parseManifest.
import { parseManifest, type Bits, type Manifest } from "../runtime/common/manifest.js";

const SHA = "0".repeat(64);
const file = (name: string) => ({ file: name, bytes: 1, sha256: SHA });
const machine = { platform: "linux", arch: "x64", cpu: "test", cores: 1 };

export interface VariantSpec {
  /** Segments run on the device: 0 is the input cut, `segments` the output cut. */
  k: number;
  bits: Bits;
  lossless?: "none" | "lz4" | "deflate" | "zstd";
  bytes: number;
  drop?: number;
  admissible?: boolean;
  encodeMs?: number;
  decodeMs?: number;
  id?: string;
}

export interface ManifestSpec {
  deviceMs: number[];
  cloudMs: number[] | null;
  /** float32 bytes crossing each cut k = 0..segments (k = 0 is the input). */
  cutBytes: number[];
  variants: VariantSpec[];
  /** Leave the device profile out (MAC-based fallback). */
  noDeviceProfile?: boolean;
}

export function variantId(v: VariantSpec): string {
  if (v.id) return v.id;
  const bits = typeof v.bits === "number" ? `b${v.bits}` : v.bits;
  return `c${v.k}-${bits}${v.lossless && v.lossless !== "none" ? `-${v.lossless}` : ""}`;
}

export function makeManifest(spec: ManifestSpec): Manifest {
  const n = spec.deviceMs.length;
  if (spec.cutBytes.length !== n + 1) throw new Error(`cutBytes needs ${n + 1} entries`);
  const tensor = (name: string, bytes: number) => ({ name, dtype: "float32", shape: [1, Math.ceil(bytes / 4)], bytes });
  const cuts = spec.cutBytes.map((bytes, k) => ({
    id: k, kind: k === 0 ? "input" : k === n ? "output" : "inner", tensors: [tensor(`t${k}`, bytes)], bytes,
    deviceMacs: k * 1e6, cloudMacs: (n - k) * 1e6, deviceSegments: k,
  }));
  const variants = spec.variants.map((v) => ({
    id: variantId(v), cut: v.k,
    codec: { bits: v.bits, perChannel: false, shuffle: false, lossless: v.lossless ?? "none" },
    wire: { meanBytes: v.bytes, p95Bytes: v.bytes, maxBytes: v.bytes },
    accuracy: { value: 100 - (v.drop ?? 0), drop: v.drop ?? 0 },
    admissible: v.admissible ?? true,
  }));
  const timing = (ms: number) => ({ meanMs: ms, p95Ms: ms, runs: 10 });
  const codec = (pick: (v: VariantSpec) => number | undefined) =>
    Object.fromEntries(spec.variants.filter((v) => pick(v) !== undefined).map((v) => [variantId(v), timing(pick(v)!)]));
  const profiles = [];
  if (!spec.noDeviceProfile) profiles.push({ role: "device", backend: "test-device", machine, measuredAt: "2026-01-01T00:00:00Z", segments: spec.deviceMs.map(timing), codec: codec((v) => v.encodeMs) });
  if (spec.cloudMs) profiles.push({ role: "cloud", backend: "test-cloud", machine, measuredAt: "2026-01-01T00:00:00Z", segments: spec.cloudMs.map(timing), codec: codec((v) => v.decodeMs) });
  return parseManifest({
    format: "dyno-bundle", version: 2, dyno: "0.1.0",
    model: { name: "synthetic", sha256: SHA, inputs: [tensor("input", spec.cutBytes[0]!)], outputs: [tensor("output", spec.cutBytes[n]!)], totalMacs: n * 1e6, parameterBytes: 0, opsets: [{ domain: "", version: 17 }] },
    weights: file("weights.bin"),
    segments: spec.deviceMs.map((_, i) => ({ index: i, graph: file(`segment${i}.onnx`), inputs: [`t${i}`], outputs: [`t${i + 1}`], macs: 1e6 * (i + 1), parameterBytes: 0 })),
    cuts, variants, profiles,
    calibration: { source: "synthetic", samples: 0, labelled: false, metric: { name: "agreement", spec: "agreement", unit: "% agreement", higherIsBetter: true }, float32Value: 100, maxAccuracyDrop: 3 },
    preprocess: null,
  }, "synthetic manifest");
}

/**
 * The test model: 4 segments, a heavy last segment on the device (so device-only is slow), an
 * input cut of 150 KB and inner cuts shrinking to 25 KB, each offered as float32 and 8/4/2-bit zstd.
 * Hand-worked latencies at 1 Mbit/s, 100 ms RTT: c2-b2 178.7 ms (best), c3-b2 189.7, c3-b4 195.3,
 * device-only 220; at 1 Gbit/s, 1 ms: cloud-only float32 24.2 ms (best).
 */
export function testManifest(options: { ends?: boolean } = {}): Manifest {
  const q = (k: number, bits: 8 | 4 | 2, bytes: number, drop: number, admissible = true): VariantSpec =>
    ({ k, bits, lossless: "zstd", bytes, drop, admissible, encodeMs: 0.5, decodeMs: 0.2 });
  const ends = options.ends ?? true;
  return makeManifest({
    deviceMs: [10, 30, 30, 150],
    cloudMs: [1, 3, 3, 15],
    cutBytes: [150528, 401408, 100352, 25088, 4000],
    variants: [
      ...(ends ? [{ k: 0, bits: "f32", bytes: 150528 } as VariantSpec, { k: 0, bits: 8, lossless: "zstd", bytes: 60000, drop: 0.1, encodeMs: 2, decodeMs: 0.5 } as VariantSpec] : []),
      { k: 1, bits: "f32", bytes: 401408 }, q(1, 8, 60000, 0.2), q(1, 4, 25000, 1.0), q(1, 2, 9000, 6, false),
      { k: 2, bits: "f32", bytes: 100352 }, q(2, 8, 15000, 0.1), q(2, 4, 6000, 0.5), q(2, 2, 2500, 2.5),
      { k: 3, bits: "f32", bytes: 25088 }, q(3, 8, 3000, 0.1), q(3, 4, 1200, 0.4), q(3, 2, 500, 1.8),
      ...(ends ? [{ k: 4, bits: "f32", bytes: 4000 } as VariantSpec] : []),
    ],
  });
}
