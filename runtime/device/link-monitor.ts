// The device's watch on its link: RTT pings, bandwidth probes, and who is on the link now.
//
//   every inference ──► ping() ──► an RTT sample (at most one ping out, MIN_PING_GAP_MS apart;
//                                  a suspect sample is checked by another one its own length
//                                  later, so a step is confirmed within about three RTTs, and a
//                                  stall of the device or server does not fake one)
//   before a plan ────► maybeProbe() ──► a probe in the background when due: the estimate is
//                                        stale (no sample yet, the RTT stepped), or nothing
//                                        timed the link for maxAgeMs
//   a request ────────► enter() ... leave(): a probe waits until nobody is on the link (a
//                                            probe beside a payload would time both)
//
// A probe never holds an inference up: while the bandwidth is stale the planner runs what does
// not rest on it (device-only, runtime/plan/planner.ts), which leaves the link quiet for the
// probe. A probe is a plain ping and a padded one (client.probe); its padding is sized to take
// targetMs at the estimated bandwidth, between 16 KiB and maxBytes (the first at most 64 KiB, in
// case the estimate is far too high, and 16 KiB after a link change, when it says nothing), and
// repeated (at most 3 rounds) while it was too short to time.
import type { CloudClient } from "./client.js";
import { MAX_PROBE_PAD_BYTES, PREFIX_BYTES } from "../common/protocol.js";
import { probeBps, type Estimates, type Observation } from "../plan/estimators.js";

/** The smallest probe padding. */
export const MIN_PROBE_BYTES = 16 * 1024;

/** A ping behind an estimated queue longer than this share of the RTT is no RTT sample. */
export const MAX_PING_WAIT = 0.2;

/** A suspect RTT sample is checked by a ping at least this much later: longer than a GC pause of the device or the server. */
export const CONFIRM_GAP_MS = 100;

/** Pings start at least this far apart. */
export const MIN_PING_GAP_MS = 25;

export interface ProbeOptions {
  targetMs: number;
  maxBytes: number;
  maxAgeMs: number;
}

/** What the device's bandwidth probes did: count, bytes and time spent (stated in run summaries). */
export interface ProbeStats {
  probes: number;
  bytes: number;
  ms: number;
}

/** What the monitor needs of its device. */
export interface LinkHost {
  cloud(): CloudClient | null;
  cloudUp(): boolean;
  estimates(): Estimates;
  observe(...o: Observation[]): void;
  /** The server's --max-body, when known. */
  maxBody(): number | undefined;
  /** A probe was refused as too large: read the limits again. */
  refused(): void;
  /** A probe failed (not refused): the cloud may be down. */
  failed(error: unknown): void;
  closed(): boolean;
}

export class LinkMonitor {
  readonly stats: ProbeStats = { probes: 0, bytes: 0, ms: 0 };
  private pinging = false;
  private pingedAt = -Infinity;
  private suspectProbedAt = -Infinity;
  /** The ping out now, settled once its sample is observed. */
  private pingDone: Promise<void> | null = null;
  private pings = 0;
  private probing: Promise<void> | null = null;
  private active = false;
  private onLink = 0;
  private quiet: (() => void)[] = [];
  private timedAt = -Infinity;
  private timedCount = 0;
  /** When the uplink will have sent what this device gave it, at the estimated bandwidth. */
  private uplinkBusy = -Infinity;

  constructor(
    private readonly host: LinkHost,
    /** null: never probe (the estimate then moves only with large payloads). */
    readonly probe: ProbeOptions | null,
  ) {}

  /** A request of `bytes` goes on the link now: it keeps the uplink busy bytes * 8 / bandwidth longer. */
  sent(bytes: number): void {
    const now = performance.now();
    this.uplinkBusy = Math.max(now, this.uplinkBusy) + (bytes * 8 * 1000) / this.host.estimates().link.bandwidthBps;
  }

  /** Requests on the link or in the cloud now. */
  get busy(): number {
    return this.onLink;
  }

  enter(): void {
    this.onLink++;
  }

  leave(): void {
    if (--this.onLink === 0) for (const f of this.quiet.splice(0)) f();
  }

  /** Frees every probe waiting for a quiet link (the device closes). */
  release(): void {
    for (const f of this.quiet.splice(0)) f();
  }

  /** The cloud changed: its first exchange may open a connection again. */
  reset(): void {
    this.pings = 0;
  }

  /**
   * One RTT sample from a ping in the background (at most one outstanding, MIN_PING_GAP_MS apart
   * unless `now`). A sample off from the estimate (the link may have changed) is checked by
   * another ping.
   */
  /** Sends a ping unless one is out; resolves once its sample (if any) is in the estimates. */
  ping(now_: boolean = false): Promise<void> {
    const cloud = this.host.cloud();
    if (this.pinging) return this.pingDone ?? Promise.resolve();
    if (!cloud || this.host.closed() || !this.host.cloudUp()) return Promise.resolve();
    // Spaced: the samples that confirm an RTT step must not all fall in one stall of the device
    // or the server (a GC pause delays every ping sent during it).
    const now = performance.now();
    if (!now_ && now - this.pingedAt < MIN_PING_GAP_MS) return Promise.resolve();
    this.pingedAt = now;
    this.pinging = true;
    // The first ping may open the connection (handshake, TLS): not an RTT sample.
    const first = this.pings++ === 0;
    // A ping waits behind the bytes this device put on the link before it: that wait is the
    // queue's, not the RTT's (else a pipelined stream would see its own queue as a link change).
    // The wait is estimated at the estimated bandwidth; a long one is no sample at all (a wrong
    // bandwidth would make it a wrong RTT).
    const wait = Math.max(0, this.uplinkBusy - performance.now());
    const trusted = wait <= MAX_PING_WAIT * this.host.estimates().link.rttMs;
    // A stream's pings share the device's event loop and the link with its requests: on a loaded
    // machine two in a row came back late every few seconds. Their step takes one sample more.
    const busy = this.onLink > 0;
    return (this.pingDone = cloud.ping().then(
      (ms) => {
        this.pinging = false;
        // While a probe runs it measures the RTT on a quiet link; a ping now was taken behind a
        // queue estimated at the old link's rate.
        if (first || !trusted || this.probing) return;
        this.host.observe({ kind: "rtt", ms: Math.max(0, ms - wait), busy });
        // A sample off the estimate is checked by another ping, one sample's length later: a
        // stall of the device or the server (a GC pause) delays pings sent during it, and is over
        // by then; a new path delays the next one too. A device with nothing on the link (one
        // inference at a time) has no queue of its own to stall behind: it checks sooner.
        const gap = this.onLink > 0 ? Math.max(CONFIRM_GAP_MS, ms) : MIN_PING_GAP_MS;
        if (this.host.estimates().link.suspect) setTimeout(() => void this.ping(true), gap).unref?.();
      },
      () => void (this.pinging = false),
    ));
  }

  /** A probe is due: the estimate is stale, or nothing timed the link for maxAgeMs. */
  due(): boolean {
    return this.why() !== undefined;
  }

  /**
   * Why the bandwidth estimate cannot be planned with now: never measured ("prior"), the RTT
   * stepped ("link-change"), or nothing timed the link for maxAgeMs ("aging": a stream that keeps
   * its window full never leaves the link quiet for a probe, so the planner lets it drain).
   */
  why(): "prior" | "link-change" | "aging" | undefined {
    if (!this.probe || !this.host.cloud() || !this.host.cloudUp()) return undefined;
    const l = this.host.estimates().link;
    const now = performance.now();
    if (l.transfers !== this.timedCount) ((this.timedCount = l.transfers), (this.timedAt = now));
    return l.bandwidthStale ?? (now - this.timedAt > this.probe.maxAgeMs ? "aging" : undefined);
  }

  /**
   * A device running one inference at a time probes at once when an RTT sample is suspect (at
   * most once a second): its probe starts with a ping on the quiet link, which confirms or clears
   * the step before the next plan, an inference earlier than a second ping would.
   */
  checkSuspect(): Promise<void> | null {
    if (!this.probe || this.probing || this.onLink > 0 || !this.host.estimates().link.suspect || performance.now() - this.suspectProbedAt < 1000) return this.probing;
    if (!this.host.cloud() || !this.host.cloudUp()) return null;
    this.suspectProbedAt = performance.now();
    this.probing = this.run().finally(() => (this.probing = null));
    return this.probing;
  }

  /** Starts a probe in the background when one is due and none runs; resolves when it is done. */
  maybeProbe(): Promise<void> | null {
    if (this.probing || !this.due()) return this.probing;
    this.probing = this.run().finally(() => (this.probing = null));
    return this.probing;
  }

  /** A probe is on the link now (not waiting for it to be quiet). */
  get running(): boolean {
    return this.active;
  }

  private async run(): Promise<void> {
    const o = this.probe!;
    while (this.onLink > 0 && !this.host.closed()) await new Promise<void>((r) => this.quiet.push(r));
    const cloud = this.host.cloud();
    if (!cloud || this.host.closed() || !this.host.cloudUp()) return;
    const t0 = performance.now();
    this.active = true;
    try {
      // The first exchange may open the connection: not a sample.
      if (this.pings++ === 0) await cloud.ping();
      // A probe is a message too: at most the server's --max-body.
      const limit = this.host.maxBody();
      const maxBytes = Math.min(o.maxBytes, limit === undefined ? Infinity : limit - PREFIX_BYTES);
      // After a link change the old estimate says nothing: the first round is the smallest (16
      // KiB: 65 ms at 2 Mbit/s), and the next ones are sized from what it measured.
      // Only the last round is the measurement: a round too short to time only sizes the next.
      const changed = this.host.estimates().link.bandwidthStale === "link-change";
      let bps = this.host.estimates().link.bandwidthBps;
      for (let round = 0; round < 3; round++) {
        const first = round === 0 ? (changed ? MIN_PROBE_BYTES : 64 * 1024) : maxBytes;
        const size = Math.round(Math.min(first, maxBytes, Math.max(MIN_PROBE_BYTES, (bps * o.targetMs) / 8000)));
        const r = await cloud.probe(size);
        this.stats.probes++;
        this.stats.bytes += r.bytes;
        bps = probeBps(r);
        if (r.serialMs >= o.targetMs / 2 || size >= maxBytes || round === 2) {
          this.host.observe({ kind: "probe", rttMs: r.rttMs, bytes: r.bytes, serialMs: r.serialMs });
          break;
        }
      }
    } catch (e) {
      const kind = (e as { kind?: string }).kind;
      if (kind === "too-large") this.host.refused();
      else this.host.failed(e);
    } finally {
      this.active = false;
      this.stats.ms += performance.now() - t0;
      this.timedCount = this.host.estimates().link.transfers;
      this.timedAt = performance.now();
    }
  }
}

/** The defaults of DeviceOptions.bandwidthProbe. */
export function probeOptions(o: false | Partial<ProbeOptions> | undefined): ProbeOptions | null {
  return o === false ? null : { targetMs: 10, maxBytes: MAX_PROBE_PAD_BYTES, maxAgeMs: 10_000, ...o };
}
