// Live estimates the scheduler plans with: link bandwidth and RTT, device and cloud time per
// segment, codec times and bytes per variant. Every updater is pure (state in, state out; no
// clocks, timers or sockets): the device client measures an inference and folds the numbers in.
//
//   estimates = initEstimates(manifest, { link: { bandwidthMbps: 15, rttMs: 50 } });
//   estimates = observe(estimates, { kind: "device", from: 0, to: 3, ms: 41 },
//                                  { kind: "transfer", bytes: 18_000, seconds: 0.061 },
//                                  { kind: "rtt", ms: 52 });
//
// Bandwidth: the harmonic mean of the last few throughput samples (robust to one lucky fast
// sample, quick to fall on a slow one, as video ABR estimators do), plus a step detector: when
// the two newest samples both sit a factor `changeFactor` above (or below) the rest of the
// window, the older samples are dropped, so a bandwidth step is tracked within two inferences.
// A transfer of a packet or less says nothing about bandwidth, so a device that sends little (or
// nothing: device-only) cannot see the link get wider. The estimate says when it needs a probe
// (`bandwidthStale`): before the first sample ("prior"), and after an RTT step ("link-change": the
// link is another one now). The device then sends a padded ping (client.probe) and folds it in
// with a "probe" observation, which replaces the window. An RTT sample off by `changeFactor` from
// the estimate marks the link `suspect` until the next sample confirms or clears it, and a
// transfer measured while it is suspect is not a bandwidth sample (its RTT share is unknown).
// Compute: one ratio per role (measured / profiled time, EWMA) scales every segment's profiled
// time, so a measurement of segments [0, 3) also moves the estimate of segment 5 (device load).
import type { Manifest, Profile } from "../common/manifest.js";

export interface LinkEstimate {
  /** Bits per second. */
  bandwidthBps: number;
  rttMs: number;
  /** Recent throughput samples (bits/s), oldest first, at most `window` of them. */
  recent: readonly number[];
  transfers: number;
  rtts: number;
  /** Link changes seen so far (an RTT step, a bandwidth step, a probe that replaced the window). */
  changes: number;
  /**
   * Confirmed link changes: a bandwidth step, a routine probe off by changeFactor, or an RTT step
   * whose probe found another link (bandwidth or RTT off by changeFactor from before the step).
   * An RTT step the probe does not confirm (a stall that delayed two pings) is a false alarm, and
   * what was measured on the link still holds: the planner's records follow this, not `changes`.
   */
  epoch: number;
  /** The estimate before an RTT step, for its probe to confirm or dismiss the change. */
  before?: { bandwidthBps: number; rttMs: number };
  /**
   * The RTT and bandwidth this link epoch was measured at (by its probe, or the step that began
   * it): an estimate that slides away from them by a step's size, sample by sample, is a link
   * change too (the samples of a change can straddle it, and no two of them be a step).
   */
  base?: { rttMs: number; bandwidthBps: number };
  /** What the latest confirmed change was, in words (for the planner's reasons). */
  change?: string;
  /**
   * A probe after an RTT step found the RTT back where it was and only the bandwidth off: a fast
   * link's probe is a few ms of serialisation, which a loaded machine can double. The next probe
   * (the estimate stays stale) confirms the bandwidth, or the link is the same one.
   */
  doubt?: number;
  /** The last RTT samples (ms), for the step detector; absent before the first. */
  recentRtt?: readonly number[];
  /**
   * Why the bandwidth estimate needs a probe, if it does: no sample yet, or the link changed since
   * (the estimators set these two); "aging": nothing timed the link for a while (the device says so
   * when it plans: it knows the time, these updaters do not).
   */
  bandwidthStale?: "prior" | "link-change" | "aging";
  /** The newest RTT sample is off by changeFactor from the estimate, not yet confirmed. */
  suspect?: boolean;
}

export interface LinkOptions {
  /** Throughput samples in the harmonic mean. */
  window: number;
  /** EWMA weight of a new RTT sample. */
  rttAlpha: number;
  /** A transfer of at most this many bytes is an RTT sample (its serialisation time is noise). */
  smallBytes: number;
  /** Step detector: two new samples this factor off the older ones replace the window. */
  changeFactor: number;
  /** A transfer whose serialisation takes less than this (ms) is too short to clear a stale estimate. */
  reliableMs: number;
  /** An RTT step is at least this many ms (as well as changeFactor): a busy server delays a ping by a few. */
  minStepMs: number;
  /** RTT samples in a row above the estimate that make a step up. */
  upSamples: number;
  /** A probe confirms a link change (a new epoch) when its bandwidth is this factor off the one before. */
  confirmFactor: number;
}

export const LINK_DEFAULTS: Readonly<LinkOptions> = Object.freeze({ window: 4, rttAlpha: 0.5, smallBytes: 1500, changeFactor: 1.5, reliableMs: 5, minStepMs: 10, upSamples: 2, confirmFactor: 2 });

/** A prior for the link before any sample: the 4G preset of the brief (§5) unless told. */
export function initLink(prior: { bandwidthMbps: number; rttMs: number } = { bandwidthMbps: 15, rttMs: 50 }): LinkEstimate {
  if (!(prior.bandwidthMbps > 0) || !(prior.rttMs >= 0)) throw new RangeError(`link prior needs bandwidthMbps > 0 and rttMs >= 0, got ${JSON.stringify(prior)}`);
  return { bandwidthBps: prior.bandwidthMbps * 1e6, rttMs: prior.rttMs, recent: [], transfers: 0, rtts: 0, changes: 0, epoch: 0, bandwidthStale: "prior" };
}

/**
 * A transfer: `bytes` sent upstream and `seconds` from the first byte sent to the (small) reply,
 * less the server's compute time, i.e. bytes * 8 / bandwidth + RTT. Or an RTT sample from a ping.
 * `serialMs`, when the sender knows it, is the transfer's own serialisation: what the sender
 * reconstructed of the link's queue (a pipelined request waits behind the bytes sent before it,
 * which is no part of its own time; device.ts), used instead of seconds - RTT; such a transfer
 * is no RTT sample (pings are).
 */
export type LinkSample = { bytes: number; seconds: number; serialMs?: number } | { rttMs: number } | LinkProbeSample;

/** A probe (client.probe): a fresh RTT, and `bytes` that took `serialMs` beyond it. */
export interface LinkProbeSample {
  probe: true;
  rttMs: number;
  bytes: number;
  serialMs: number;
}

function harmonic(xs: readonly number[]): number {
  let s = 0;
  for (const x of xs) s += 1 / x;
  return xs.length / s;
}

function ewma(old: number, sample: number, alpha: number, first: boolean): number {
  return first ? sample : old + alpha * (sample - old);
}

function updateRtt(s: LinkEstimate, ms: number, o: LinkOptions): LinkEstimate {
  if (!(ms >= 0 && Number.isFinite(ms))) return s;
  const recent = [...(s.recentRtt ?? []), ms].slice(-o.upSamples);
  // Step detector, as for bandwidth: samples in a row a factor `changeFactor` and at least
  // `minStepMs` above (or below) the estimate replace it. Down: two (a queue only adds delay, so
  // an RTT below the estimate is the path's). Up: `upSamples` (a busy link or server delays a
  // ping or two; a new path delays them all).
  const up = (x: number) => x > s.rttMs * o.changeFactor && x - s.rttMs >= o.minStepMs;
  const down = (x: number) => x * o.changeFactor < s.rttMs && s.rttMs - x >= o.minStepMs;
  const last = (n: number) => (recent.length >= n ? recent.slice(-n) : null);
  const ups = last(o.upSamples);
  const downs = last(2);
  const stepUp = s.rtts > 0 && !!ups && ups.every(up);
  const stepDown = s.rtts > 0 && !!downs && downs.every(down);
  const step = stepUp || stepDown;
  const rttMs = s.rtts === 0 ? ms : stepUp ? median(ups!) : stepDown ? (downs![0]! + downs![1]!) / 2 : up(ms) ? s.rttMs : ewma(s.rttMs, ms, o.rttAlpha, false);
  // ... or slid there: the estimate a step's size away from the epoch's own RTT.
  const base = s.base?.rttMs;
  const drift = !step && base !== undefined && s.bandwidthStale === undefined && (rttMs > base * o.changeFactor || rttMs * o.changeFactor < base) && Math.abs(rttMs - base) >= o.minStepMs;
  const changed = step || drift;
  const suspect = !changed && s.rtts > 0 && (up(ms) || down(ms));
  const before = changed && s.bandwidthStale === undefined ? { bandwidthBps: s.bandwidthBps, rttMs: drift ? base! : s.rttMs } : s.before;
  return {
    ...s, rttMs, rtts: s.rtts + 1, recentRtt: changed ? [] : recent, suspect, changes: s.changes + (changed ? 1 : 0),
    bandwidthStale: changed ? "link-change" : s.bandwidthStale, before, base: changed ? { rttMs, bandwidthBps: s.bandwidthBps } : s.base,
  };
}

function median(xs: readonly number[]): number {
  const a = [...xs].sort((x, y) => x - y);
  const h = a.length >> 1;
  return a.length % 2 ? a[h]! : (a[h - 1]! + a[h]!) / 2;
}

/** Bits/s of a probe; a serialisation time under 50 µs (noise) counts as 50 µs. */
export function probeBps(p: { bytes: number; serialMs: number }): number {
  return (p.bytes * 8 * 1000) / Math.max(p.serialMs, 0.05);
}

function updateProbe(state: LinkEstimate, p: LinkProbeSample, o: LinkOptions): LinkEstimate {
  if (!(p.bytes > 0 && Number.isFinite(p.serialMs) && p.rttMs >= 0 && Number.isFinite(p.rttMs))) return state;
  const far = (a: number, b: number, f: number) => a > b * f || a * f < b;
  const bps = probeBps(p);
  // A routine probe that finds another bandwidth: another link, whose RTT the probe measured too.
  const routineMoved = state.bandwidthStale === undefined && far(bps, state.base?.bandwidthBps ?? state.bandwidthBps, o.confirmFactor);
  // A probe runs on a quiet link: when the estimate is stale, or the link moved, its RTT replaces
  // the old one outright (the pings that found the step were taken behind a queue estimated at
  // the old link's rate; after a bandwidth step, pings would find the RTT's step later, and make
  // it a second link change).
  const s = (state.bandwidthStale !== undefined || routineMoved) && state.rtts > 0
    ? { ...state, rttMs: p.rttMs, rtts: state.rtts + 1, recentRtt: [], suspect: false }
    : updateRtt(state, p.rttMs, o);
  // A probe answers a stale estimate outright; a routine one replaces the window only when it
  // disagrees with it by changeFactor (the link changed without its RTT moving).
  const off = far(bps, s.bandwidthBps, o.changeFactor);
  const reset = s.bandwidthStale !== undefined || off;
  const recent = reset ? [bps] : [...s.recent, bps].slice(-o.window);
  // The epoch moves when the link is another one: a routine probe off the estimate, or a probe
  // after an RTT step that finds the bandwidth or the RTT off what they were before it.
  // (A probe of a fast link is noisy, ±40% at 100 Mbit/s: its bandwidth must be confirmFactor off.)
  // The link before the step: the one the step left behind, or, when this probe's own RTT made
  // the step (a suspect sample confirmed), the estimate it came in on.
  const stepped = state.bandwidthStale !== "link-change" && s.bandwidthStale === "link-change";
  const b = stepped ? { bandwidthBps: state.bandwidthBps, rttMs: state.rttMs } : state.before;
  const afterStep = state.bandwidthStale === "link-change" || stepped;
  const rttMoved = !!b && far(p.rttMs, b.rttMs, o.changeFactor) && Math.abs(p.rttMs - b.rttMs) >= o.minStepMs;
  const bwMoved = !!b && far(bps, b.bandwidthBps, o.confirmFactor);
  // The bandwidth alone off, with the RTT back where it was: one more probe before it counts
  // (unless this probe is that one: it must find the bandwidth off the same way).
  if (afterStep && b && bwMoved && !rttMoved && state.doubt === undefined) {
    return { ...s, bandwidthStale: "link-change", before: b, doubt: bps };
  }
  // (Past the return above, a bandwidth alone off has the first probe's doubt to agree with.)
  const confirmed = afterStep
    ? !b || rttMoved || (bwMoved && state.doubt !== undefined && far(state.doubt, b.bandwidthBps, o.confirmFactor) && (state.doubt > b.bandwidthBps) === (bps > b.bandwidthBps))
    : routineMoved;
  // The prober sizes and repeats probes until one is long enough to time (client side); each
  // one answers the staleness.
  const mbps = (x: number) => (x / 1e6).toFixed(x >= 1e7 ? 0 : 1);
  const change = !confirmed ? s.change
    : b ? `RTT ${b.rttMs.toFixed(0)} -> ${p.rttMs.toFixed(0)} ms, ${mbps(b.bandwidthBps)} -> ${mbps(bps)} Mbit/s (a probe after the RTT stepped)`
    : `${mbps(state.bandwidthBps)} -> ${mbps(bps)} Mbit/s (a probe)`;
  const bandwidthBps = harmonic(recent);
  // A probe (re)sets the epoch's reference when the link was stale or moved, and keeps it otherwise.
  const base = !state.base || state.bandwidthStale !== undefined || confirmed ? { rttMs: s.rttMs, bandwidthBps } : state.base;
  return { ...s, recent, bandwidthBps, transfers: s.transfers + 1, changes: s.changes + (reset ? 1 : 0), epoch: s.epoch + (confirmed ? 1 : 0), change, bandwidthStale: undefined, before: undefined, base, doubt: undefined };
}

export function updateLink(state: LinkEstimate, sample: LinkSample, options: Partial<LinkOptions> = {}): LinkEstimate {
  const o = { ...LINK_DEFAULTS, ...options };
  if ("probe" in sample) return updateProbe(state, sample, o);
  if ("rttMs" in sample) return updateRtt(state, sample.rttMs, o);
  const { bytes, seconds } = sample;
  if (!(bytes >= 0 && seconds > 0 && Number.isFinite(seconds))) return state;
  const ms = seconds * 1000;
  let s = state;
  let serialMs: number;
  // Whether a transfer can time the link is judged by what it should take at the estimate, never
  // by what it measured: keeping only the measured ones long enough would keep the samples that
  // noise lengthened, and bias the estimate low.
  const expectedMs = (bytes * 8 * 1000) / s.bandwidthBps;
  if (sample.serialMs !== undefined) {
    // Reconstructed by the sender: a sample when long enough to time and the RTT it rests on is
    // not in doubt; and not after a link change, which only a probe (on a quiet link) answers.
    // A transfer far slower than the estimate is no noise, even if the estimate said it would be
    // too short to time: the link got narrower (a large payload running into a slow link).
    const collapsed = sample.serialMs >= 4 * Math.max(expectedMs, o.reliableMs);
    if (!Number.isFinite(sample.serialMs) || (expectedMs < o.reliableMs && !collapsed) || s.suspect || bytes <= o.smallBytes || s.bandwidthStale === "link-change") return s;
    serialMs = Math.max(sample.serialMs, expectedMs / 10);
  } else {
    if (bytes <= o.smallBytes) return updateRtt(state, ms, o);
    // A whole transfer faster than the RTT estimate: the RTT went down; it is at most `ms`.
    if (ms < s.rttMs) s = updateRtt(s, ms, o);
    // The RTT is in doubt: this transfer's split into RTT and serialisation is unknown, so it is
    // no bandwidth sample.
    if (s.suspect) return s;
    // Serialisation time: what the RTT does not explain, never less than a tenth of the transfer.
    serialMs = Math.max(ms - s.rttMs, ms * 0.1);
  }
  const bps = (bytes * 8 * 1000) / serialMs;
  // After a link change the older samples describe another link.
  let changes = s.changes;
  let epoch = s.epoch;
  let change = s.change;
  let recent = [...s.recent, bps].slice(-o.window);
  const mbps = (x: number) => (x / 1e6).toFixed(x >= 1e7 ? 0 : 1);
  if (s.bandwidthStale === "link-change") (recent = [bps]), changes++, epoch++, (change = `${mbps(s.bandwidthBps)} -> ${mbps(bps)} Mbit/s (a transfer after the RTT stepped)`);
  else {
    // Samples reconstructed from a pipelined stream are noisier: three in a row make a step.
    const k = sample.serialMs !== undefined ? 3 : 2;
    if (recent.length > k) {
      const older = harmonic(recent.slice(0, -k));
      const newest = recent.slice(-k);
      const up = newest.every((x) => x > older * o.changeFactor);
      const down = newest.every((x) => x * o.changeFactor < older);
      if (up || down) (change = `${mbps(older)} -> ${mbps(harmonic(newest))} Mbit/s (${k} transfers in a row)`), (recent = newest), changes++, epoch++;
    }
  }
  // A transfer too short to time (serialisation under reliableMs) leaves the estimate stale.
  const timed = serialMs >= o.reliableMs && expectedMs >= o.reliableMs;
  const bandwidthBps = harmonic(recent);
  // An estimate slid confirmFactor from the epoch's own bandwidth is another link too.
  let base = s.base;
  if (epoch !== s.epoch) base = { rttMs: s.rttMs, bandwidthBps };
  else if (base && recent.length >= 3 && (bandwidthBps > base.bandwidthBps * o.confirmFactor || bandwidthBps * o.confirmFactor < base.bandwidthBps)) {
    change = `${mbps(base.bandwidthBps)} -> ${mbps(bandwidthBps)} Mbit/s (transfers, over a while)`;
    epoch++;
    changes++;
    base = { rttMs: s.rttMs, bandwidthBps };
  }
  return { ...s, recent, bandwidthBps, transfers: s.transfers + 1, changes, epoch, change, bandwidthStale: timed ? undefined : s.bandwidthStale, before: timed ? undefined : s.before, base };
}

/** Where a role's per-segment baseline comes from. */
export type BaseSource = { kind: "profile"; backend: string; machine: string; measuredAt?: string; published?: boolean } | { kind: "macs"; macsPerSecond: number };

export interface RoleEstimate {
  role: "device" | "cloud";
  /** Profiled (or MAC-derived) ms per segment, before correction. */
  baseMs: readonly number[];
  /** prefixMs[i] = sum of baseMs[0, i); length segments + 1. */
  prefixMs: readonly number[];
  source: BaseSource;
  /** Measured / profiled time, EWMA over every compute sample of this role. */
  ratio: number;
  samples: number;
  /** Profiled encode (device) or decode (cloud) ms per variant id. */
  codecBaseMs: Readonly<Record<string, number>>;
  /** Measured codec ms per variant id (EWMA); replaces the profiled value once present. */
  codecMs: Readonly<Record<string, number>>;
}

export interface Estimates {
  link: LinkEstimate;
  device: RoleEstimate;
  cloud: RoleEstimate;
  /** Measured payload bytes per variant id (EWMA); unmeasured variants use the manifest's wire.meanBytes. */
  bytes: Readonly<Record<string, number>>;
  /** EWMA weight of a new compute, codec or bytes sample. */
  alpha: number;
  linkOptions: LinkOptions;
}

/** Nominal rates for a role without a profile in the manifest (stated in docs/scheduler.md). */
export const NOMINAL_MACS_PER_SECOND = { device: 1e9, cloud: 2e10 } as const;

export interface EstimateOptions {
  link?: { bandwidthMbps: number; rttMs: number };
  /** Prefer the profile of this backend (e.g. "onnxruntime-web/wasm") for its role. */
  deviceBackend?: string;
  cloudBackend?: string;
  alpha?: number;
  linkOptions?: Partial<LinkOptions>;
}

function pickProfile(m: Manifest, role: "device" | "cloud", backend?: string): Profile | undefined {
  const mine = m.profiles.filter((p) => p.role === role && p.segments.length === m.segments.length);
  return mine.find((p) => p.backend === backend) ?? mine[0];
}

function roleFromManifest(m: Manifest, role: "device" | "cloud", backend?: string): RoleEstimate {
  return roleOf(m.segments.map((s) => s.macs), role, pickProfile(m, role, backend));
}

/** A role's baseline from a profile, else from the segments' MACs at the role's nominal rate. */
function roleOf(macs: readonly number[], role: "device" | "cloud", p: Profile | undefined): RoleEstimate {
  const baseMs = p ? p.segments.map((t) => t.meanMs) : macs.map((x) => (x / NOMINAL_MACS_PER_SECOND[role]) * 1000);
  const prefixMs = [0];
  for (const t of baseMs) prefixMs.push(prefixMs[prefixMs.length - 1]! + t);
  const codecBaseMs: Record<string, number> = {};
  if (p) for (const [id, t] of Object.entries(p.codec)) codecBaseMs[id] = t.meanMs;
  const source: BaseSource = p
    ? { kind: "profile", backend: p.backend, machine: `${p.machine.cpu} (${p.machine.platform}/${p.machine.arch})`, measuredAt: p.measuredAt }
    : { kind: "macs", macsPerSecond: NOMINAL_MACS_PER_SECOND[role] };
  return { role, baseMs, prefixMs, source, ratio: 1, samples: 0, codecBaseMs, codecMs: {} };
}

export function initEstimates(manifest: Manifest, options: EstimateOptions = {}): Estimates {
  const alpha = options.alpha ?? 0.5;
  if (!(alpha > 0 && alpha <= 1)) throw new RangeError(`estimator alpha must be in (0, 1], got ${alpha}`);
  return {
    link: initLink(options.link),
    device: roleFromManifest(manifest, "device", options.deviceBackend),
    cloud: roleFromManifest(manifest, "cloud", options.cloudBackend),
    bytes: {},
    alpha,
    linkOptions: { ...LINK_DEFAULTS, ...options.linkOptions },
  };
}

/**
 * The cloud's own profile (published by the server, measured where it runs) as the cloud's
 * baseline, when it covers every segment. The ratio starts again from 1: it was the correction
 * of the old baseline. The same profile again (same measuredAt) changes nothing.
 */
export function withCloudProfile(e: Estimates, profile: Profile): Estimates {
  if (profile.role !== "cloud" || profile.segments.length !== e.cloud.baseMs.length) return e;
  const src = e.cloud.source;
  if (src.kind === "profile" && src.published && src.measuredAt === profile.measuredAt && src.backend === profile.backend) return e;
  const role = roleOf([], "cloud", profile);
  return { ...e, cloud: { ...role, source: { ...(role.source as Extract<BaseSource, { kind: "profile" }>), published: true }, codecMs: e.cloud.codecMs } };
}

/** Profiled ms of segments [from, to) of a role, before correction. */
export function baseRangeMs(r: RoleEstimate, from: number, to: number): number {
  return r.prefixMs[to]! - r.prefixMs[from]!;
}

/** Estimated ms of segments [from, to) of a role, now. */
export function rangeMs(r: RoleEstimate, from: number, to: number): number {
  return baseRangeMs(r, from, to) * r.ratio;
}

/** Estimated encode (device) or decode (cloud) ms of a variant; 0 when neither profiled nor measured. */
export function codecMs(r: RoleEstimate, variantId: string): number {
  const measured = r.codecMs[variantId];
  if (measured !== undefined) return measured;
  const base = r.codecBaseMs[variantId];
  return base === undefined ? 0 : base * r.ratio;
}

/** Folds `ms` measured for segments [from, to) into the role's ratio. */
export function updateCompute(r: RoleEstimate, sample: { from: number; to: number; ms: number }, alpha: number): RoleEstimate {
  const { from, to, ms } = sample;
  if (!(to > from && from >= 0 && to < r.prefixMs.length && ms >= 0 && Number.isFinite(ms))) return r;
  const base = baseRangeMs(r, from, to);
  if (!(base > 0)) return r;
  // A sample counts as at most twice the current ratio: a slow outlier (a descheduled run, a GC
  // pause) would otherwise stick, since a role the scheduler then stops using is not measured
  // again. Noise only slows a run down, so a fast sample counts in full; a real slow-down is still
  // tracked, at most doubling the sample's weight per inference.
  const x = r.samples === 0 ? ms / base : Math.min(ms / base, r.ratio * 2);
  return { ...r, ratio: ewma(r.ratio, x, alpha, r.samples === 0), samples: r.samples + 1 };
}

export function updateCodec(r: RoleEstimate, variantId: string, ms: number, alpha: number): RoleEstimate {
  if (!(ms >= 0 && Number.isFinite(ms))) return r;
  const old = r.codecMs[variantId];
  return { ...r, codecMs: { ...r.codecMs, [variantId]: ewma(old ?? 0, ms, alpha, old === undefined) } };
}

/** One measurement the device client (or the server, reporting back) made. */
export type Observation =
  | { kind: "transfer"; bytes: number; seconds: number; serialMs?: number }
  /** `busy`: taken while this device had requests on the link (a stream): a step then takes one sample more. */
  | { kind: "rtt"; ms: number; busy?: boolean }
  | { kind: "probe"; rttMs: number; bytes: number; serialMs: number }
  | { kind: "device" | "cloud"; from: number; to: number; ms: number }
  | { kind: "encode" | "decode"; variant: string; ms: number }
  | { kind: "bytes"; variant: string; bytes: number };

function observeOne(e: Estimates, o: Observation): Estimates {
  switch (o.kind) {
    case "transfer": return { ...e, link: updateLink(e.link, o, e.linkOptions) };
    case "rtt": return { ...e, link: updateLink(e.link, { rttMs: o.ms }, o.busy ? { ...e.linkOptions, upSamples: e.linkOptions.upSamples + 1 } : e.linkOptions) };
    case "probe": return { ...e, link: updateLink(e.link, { probe: true, rttMs: o.rttMs, bytes: o.bytes, serialMs: o.serialMs }, e.linkOptions) };
    case "device": return { ...e, device: updateCompute(e.device, o, e.alpha) };
    case "cloud": return { ...e, cloud: updateCompute(e.cloud, o, e.alpha) };
    case "encode": return { ...e, device: updateCodec(e.device, o.variant, o.ms, e.alpha) };
    case "decode": return { ...e, cloud: updateCodec(e.cloud, o.variant, o.ms, e.alpha) };
    case "bytes": {
      if (!(o.bytes >= 0 && Number.isFinite(o.bytes))) return e;
      const old = e.bytes[o.variant];
      return { ...e, bytes: { ...e.bytes, [o.variant]: ewma(old ?? 0, o.bytes, e.alpha, old === undefined) } };
    }
  }
}

/** Folds observations into the estimates, in order. Malformed samples (NaN, negative) are ignored. */
export function observe(e: Estimates, ...observations: Observation[]): Estimates {
  let s = e;
  for (const o of observations) s = observeOne(s, o);
  return s;
}

/** Everything one split inference measured; fields the client did not measure are left out. */
export interface InferenceRecord {
  variant: string;
  /** Segments [0, deviceSegments) ran on the device, the rest in the cloud. */
  deviceSegments: number;
  segments: number;
  deviceMs?: number;
  encodeMs?: number;
  bytes?: number;
  transferSeconds?: number;
  /** The transfer's own serialisation, as the sender reconstructed the link's queue (see LinkSample). */
  serialMs?: number;
  rttMs?: number;
  decodeMs?: number;
  cloudMs?: number;
}

/** The observations of one inference, for `observe(estimates, ...observationsOf(record))`. */
export function observationsOf(r: InferenceRecord): Observation[] {
  const out: Observation[] = [];
  if (r.deviceMs !== undefined) out.push({ kind: "device", from: 0, to: r.deviceSegments, ms: r.deviceMs });
  if (r.encodeMs !== undefined) out.push({ kind: "encode", variant: r.variant, ms: r.encodeMs });
  if (r.bytes !== undefined) out.push({ kind: "bytes", variant: r.variant, bytes: r.bytes });
  if (r.rttMs !== undefined) out.push({ kind: "rtt", ms: r.rttMs });
  if (r.bytes !== undefined && r.transferSeconds !== undefined) out.push({ kind: "transfer", bytes: r.bytes, seconds: r.transferSeconds, ...(r.serialMs !== undefined ? { serialMs: r.serialMs } : {}) });
  if (r.decodeMs !== undefined) out.push({ kind: "decode", variant: r.variant, ms: r.decodeMs });
  if (r.cloudMs !== undefined) out.push({ kind: "cloud", from: r.deviceSegments, to: r.segments, ms: r.cloudMs });
  return out;
}
