// The cloud's own profile: how long each cloud segment takes here, on this server's machine and
// under its real load, published in the model metadata (`dyno.profile`) for devices to plan with.
//
// A bundle's profiles were measured on the compile machine. Its cloud profile is a guess about a
// machine the compiler never saw, and a device that plans with it mispredicts every cloud stage
// until its ratio catches up. So the server times the whole segment chain at start-up (a warm-up,
// then `runs` runs in one worker, before it takes requests), and then every request's segments as
// they run (an EWMA per segment, weight ALPHA). A segment's published time is the live one once
// it has LIVE_MIN samples, else the start-up one. The decode times stay the bundle's (they need a
// payload per variant).
import type { Manifest, Profile, Timing } from "../common/manifest.js";
import type { Machine } from "../exec/backend.js";
import { timingOf } from "../common/stats.js";

/** Weight of a request's run in a segment's live time. */
export const ALPHA = 0.05;
/** Samples after which a segment's live time replaces its start-up time. */
export const LIVE_MIN = 20;

export class CloudProfile {
  private readonly live: { ms: number; n: number }[];

  constructor(
    private readonly manifest: Manifest,
    /** Start-up runs: ms per run per segment (none: the bundle's cloud profile is the start). */
    private readonly startup: Timing[] | null,
    private readonly backend: string,
    private readonly machine: Machine,
  ) {
    this.live = manifest.segments.map(() => ({ ms: 0, n: 0 }));
  }

  /** From the start-up runs a worker timed (runs x segments). */
  static fromRuns(manifest: Manifest, runs: number[][], backend: string, machine: Machine): CloudProfile {
    const segments = manifest.segments.map((_, i) => timingOf(runs.map((r) => r[i]!)));
    return new CloudProfile(manifest, segments, backend, machine);
  }

  /** A request ran segments [from, from + ms.length) in these times. */
  observe(from: number, ms: readonly number[]): void {
    ms.forEach((t, k) => {
      const s = this.live[from + k];
      if (!s || !(t >= 0) || !Number.isFinite(t)) return;
      s.ms = s.n === 0 ? t : s.ms + ALPHA * (t - s.ms);
      s.n++;
    });
  }

  /** The profile to publish now (null when neither start-up runs nor live samples exist). */
  snapshot(): Profile | null {
    if (!this.startup && this.live.every((s) => s.n < LIVE_MIN)) return null;
    const bundled = this.manifest.profiles.find((p) => p.role === "cloud") ?? this.manifest.profiles.find((p) => p.role === "device");
    const segments = this.live.map((s, i): Timing => {
      if (s.n >= LIVE_MIN) return { meanMs: s.ms, p95Ms: s.ms, runs: s.n };
      return this.startup?.[i] ?? bundled?.segments[i] ?? { meanMs: 0, p95Ms: 0, runs: 1 };
    });
    return { role: "cloud", backend: this.backend, machine: this.machine, measuredAt: new Date().toISOString(), segments, codec: bundled?.codec ?? {} };
  }
}
