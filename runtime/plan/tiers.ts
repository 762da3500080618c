// The three-tier planner (D3, docs/d3.md): a pure function from the bundle, per-tier segment
// times, the two links and the edge's tilings to the plan (the device's variant, the edge's
// forward variant, the grid) that minimises end-to-end latency, and the partial re-adjustment
// that moves only the boundary next to what changed.
//
//   latency = device [0, c1) + encode(v1) + bytes(v1) * 8 / bw(device-edge) + rtt(device-edge)
//           + decode(v1) + edge [c1, c2)  (the tiled span's time where a tiling applies; c2 = n
//                                          when the edge finishes)
//           + encode(v2) + bytes(v2) * 8 / bw(edge-cloud) + rtt(edge-cloud) + decode(v2)
//           + cloud [c2, n)
//
// Objectives: latency (ties: fewer backbone bytes), throughput (the tiers pipelined: the slowest
// of device, each link's serialisation, edge and cloud), or backbone bytes (ties: latency).
//
// Plans: v1 at any cut (the output cut: device-only, nothing crosses); v2 after c1 (the edge runs
// between), equal to v1 (the edge relays what the device sent), or none (the edge finishes). A
// pair is admissible when the manifest's chains (`compile --tiers`) say so; a pair they do not
// list (no chains at all, or widths the compiler did not pair), when both variants are (the
// compound error is then unprofiled, and the plan says so: `profiled: false`). Exhaustive:
// variants^2 x tilings evaluations, ~10^4 on a bundle of 100 variants, well under a millisecond
// each. Ties go to fewer backbone bytes.
import type { Cut, Manifest, Variant } from "../common/manifest.js";

export interface TierLink {
  bandwidthMbps: number;
  rttMs: number;
}

/** A tiling the edge holds: requests at or before cut `from` run the span to `to` in `spanMs` on its workers. */
export interface EdgeTiling {
  from: number;
  to: number;
  grid: string;
  workers: number;
  spanMs: number;
}

export interface TierSetting {
  /** Milliseconds per segment on each tier (index = the manifest's segment index). */
  segmentMs: { device: number[]; edge: number[]; cloud: number[] };
  /** Encode (at the sender) plus decode (at the receiver) milliseconds per variant id, per crossing; 0 when absent. */
  codecMs?: { deviceEdge?: Record<string, number>; edgeCloud?: Record<string, number> };
  links: { deviceEdge: TierLink; edgeCloud: TierLink };
  tilings?: EdgeTiling[];
}

export interface TierPlan {
  /** The device's variant (its cut is where the device stops). */
  device: string;
  /** The edge's forward variant; the device's own when the edge relays; null when the edge (or the device) finishes. */
  edge: string | null;
  /** The edge's tiling (grid and workers), when the plan uses one. */
  grid: string | null;
  tiling: EdgeTiling | null;
  latencyMs: number;
  /** Inferences per second with the tiers pipelined: 1 / the slowest stage (RTTs overlap). */
  throughputPerS: number;
  parts: { deviceMs: number; deviceEdgeMs: number; edgeMs: number; edgeCloudMs: number; cloudMs: number };
  deviceBytes: number;
  backboneBytes: number;
  /** The pair's compound accuracy was profiled (manifest.tiers), not assumed from each variant's own. */
  profiled: boolean;
}

/** What changed since the last plan: a link or a tier. */
export type TierChange = "device-edge" | "edge-cloud" | "device" | "edge" | "cloud";

export interface PlanResult {
  plan: TierPlan;
  /** Plans evaluated. */
  evaluated: number;
}

const sum = (xs: readonly number[], from: number, to: number) => {
  let s = 0;
  for (let i = from; i < to; i++) s += xs[i] ?? 0;
  return s;
};

/** Transfer time of `bytes` over a link. */
const linkMs = (l: TierLink, bytes: number) => (bytes * 8) / (l.bandwidthMbps * 1e3) + l.rttMs;

/** The planner's view of a bundle, built once per bundle. */
export interface TierSpace {
  manifest: Manifest;
  /** Admissible variants, with their cut's segment index. */
  variants: { v: Variant; at: number; output: boolean }[];
  /** Admissible (v1, v2) pairs by "v1 v2" (both ids); null: no chains profiled, use both variants' own flags. */
  chains: Set<string> | null;
  /** Every pair the manifest profiled, admissible or not; a pair it did not profile is planned on both variants' own flags, marked unprofiled. */
  profiledPairs: Set<string> | null;
}

export function tierSpace(manifest: Manifest, options: { maxAccuracyDrop?: number } = {}): TierSpace {
  const cut = (v: Variant): Cut => manifest.cuts.find((c) => c.id === v.cut)!;
  const ok = (drop: number, admissible: boolean) => admissible && (options.maxAccuracyDrop === undefined || drop <= options.maxAccuracyDrop + 1e-9);
  const variants = manifest.variants.filter((v) => ok(v.accuracy.drop, v.admissible)).map((v) => ({ v, at: cut(v).deviceSegments, output: cut(v).kind === "output" }));
  const chains = manifest.tiers ? new Set(manifest.tiers.chains.filter((c) => ok(c.accuracy.drop, c.admissible)).map((c) => c.variants.join(" "))) : null;
  const profiledPairs = manifest.tiers ? new Set(manifest.tiers.chains.map((c) => c.variants.join(" "))) : null;
  return { manifest, variants, chains, profiledPairs };
}

function evaluate(space: TierSpace, s: TierSetting, a: TierSpace["variants"][number], b: TierSpace["variants"][number] | null, tiling: EdgeTiling | null): TierPlan {
  const n = space.manifest.segments.length;
  const deviceMs = sum(s.segmentMs.device, 0, a.at) + (a.output ? 0 : s.codecMs?.deviceEdge?.[a.v.id] ?? 0);
  const deviceBytes = a.output ? 0 : a.v.wire.meanBytes;
  if (a.output) return { device: a.v.id, edge: null, grid: null, tiling: null, latencyMs: deviceMs, throughputPerS: 1000 / Math.max(deviceMs, 1e-6), parts: { deviceMs, deviceEdgeMs: 0, edgeMs: 0, edgeCloudMs: 0, cloudMs: 0 }, deviceBytes: 0, backboneBytes: 0, profiled: true };
  const deviceEdgeMs = linkMs(s.links.deviceEdge, deviceBytes);
  const end = b ? b.at : n;
  let edgeMs: number;
  if (tiling) {
    const from = space.manifest.cuts.find((c) => c.id === tiling.from)!.deviceSegments;
    edgeMs = sum(s.segmentMs.edge, a.at, from) + tiling.spanMs;
  } else edgeMs = sum(s.segmentMs.edge, a.at, end);
  if (b && b.v.id !== a.v.id) edgeMs += s.codecMs?.edgeCloud?.[b.v.id] ?? 0;
  const backboneBytes = b ? b.v.wire.meanBytes : 0;
  const edgeCloudMs = b ? linkMs(s.links.edgeCloud, backboneBytes) : 0;
  const cloudMs = b ? sum(s.segmentMs.cloud, b.at, n) : 0;
  const relay = !!b && b.v.id === a.v.id;
  return {
    device: a.v.id,
    edge: b ? b.v.id : null,
    grid: tiling ? `${tiling.grid} on ${tiling.workers}` : null,
    tiling,
    latencyMs: deviceMs + deviceEdgeMs + edgeMs + edgeCloudMs + cloudMs,
    throughputPerS: 1000 / Math.max(deviceMs, deviceEdgeMs - s.links.deviceEdge.rttMs, edgeMs, b ? edgeCloudMs - s.links.edgeCloud.rttMs : 0, cloudMs, 1e-6),
    parts: { deviceMs, deviceEdgeMs, edgeMs, edgeCloudMs, cloudMs },
    deviceBytes,
    backboneBytes,
    profiled: relay || !b || (space.profiledPairs?.has(`${a.v.id} ${b.v.id}`) ?? false),
  };
}

/** A profiled pair must have passed; one the manifest did not profile is taken on its variants' own flags. */
const admissiblePair = (space: TierSpace, key: string) => !space.chains || !space.profiledPairs!.has(key) || space.chains.has(key);

/** What the planner minimises: end-to-end latency, or the pipeline's slowest stage, or backbone bytes (then latency). */
export type TierObjective = "latency" | "throughput" | "backbone-bytes";

const score = (p: TierPlan, o: TierObjective): [number, number] =>
  o === "latency" ? [p.latencyMs, p.backboneBytes] : o === "throughput" ? [1 / p.throughputPerS, p.latencyMs] : [p.backboneBytes, p.latencyMs];

const betterFor = (o: TierObjective) => (x: TierPlan, y: TierPlan | null) => {
  if (!y) return true;
  const [a1, a2] = score(x, o);
  const [b1, b2] = score(y, o);
  return a1 < b1 - 1e-9 * Math.max(1, Math.abs(b1)) || (Math.abs(a1 - b1) <= 1e-9 * Math.max(1, Math.abs(b1)) && a2 < b2);
};

/**
 * The best plan, exhaustively; `fixed` pins the device's variant or the edge's (partial
 * re-adjustment searches the other). Throws when nothing is admissible under the pins.
 */
export function planTiers(space: TierSpace, s: TierSetting, fixed: { device?: string; edge?: string | null } = {}, objective: TierObjective = "latency"): PlanResult {
  const better = betterFor(objective);
  let best: TierPlan | null = null;
  let evaluated = 0;
  const outputCut = space.manifest.cuts.find((c) => c.kind === "output")?.id;
  const firsts = fixed.device === undefined ? space.variants : space.variants.filter((x) => x.v.id === fixed.device);
  for (const a of firsts) {
    if (a.output) {
      if (fixed.edge !== undefined && fixed.edge !== null) continue;
      evaluated++;
      const p = evaluate(space, s, a, null, null);
      if (better(p, best)) best = p;
      continue;
    }
    const seconds: (TierSpace["variants"][number] | null)[] = [null];
    for (const b of space.variants) {
      if (b.output) continue;
      if (b.v.id === a.v.id) seconds.push(b);
      else if (b.at > a.at && admissiblePair(space, `${a.v.id} ${b.v.id}`)) seconds.push(b);
    }
    for (const b of seconds) {
      if (fixed.edge !== undefined && (b ? b.v.id : null) !== fixed.edge) continue;
      const options: (EdgeTiling | null)[] = [null];
      for (const t of s.tilings ?? []) {
        const from = space.manifest.cuts.find((c) => c.id === t.from)?.deviceSegments;
        const ends = b ? b.v.id !== a.v.id && t.to === b.v.cut : t.to === outputCut;
        if (ends && from !== undefined && from >= a.at) options.push(t);
      }
      for (const t of options) {
        evaluated++;
        const p = evaluate(space, s, a, b, t);
        if (better(p, best)) best = p;
      }
    }
  }
  if (!best) throw new Error(`no admissible three-tier plan${fixed.device ? ` with the device at ${fixed.device}` : ""}${fixed.edge !== undefined ? ` and the edge at ${fixed.edge ?? "the output"}` : ""}`);
  return { plan: best, evaluated };
}

/**
 * D3's partial re-adjustment: after a change, move only the boundary next to it. A change of the
 * device-edge link or of the device re-plans the device's variant with the edge's kept; a change
 * of the edge-cloud link or of the cloud re-plans the edge's with the device's kept (the tier
 * owning that boundary decides, with what it measures itself). A change of the edge, which both
 * boundaries touch, re-plans both. Falls back to a full plan when the kept half no longer admits
 * any plan.
 */
export function readjust(space: TierSpace, s: TierSetting, previous: TierPlan, changed: TierChange, objective: TierObjective = "latency"): PlanResult {
  const plan = (fixed: { device?: string; edge?: string | null } = {}) => planTiers(space, s, fixed, objective);
  if (changed === "edge") return plan();
  const device = space.variants.find((x) => x.v.id === previous.device);
  const relay = previous.edge !== null && previous.edge === previous.device;
  try {
    if (changed === "device-edge" || changed === "device") {
      // The edge keeps its forward variant (a relay keeps relaying: the device picks again).
      if (relay || (device?.output ?? false)) return plan();
      return plan({ edge: previous.edge });
    }
    return plan({ device: previous.device });
  } catch {
    return plan();
  }
}
