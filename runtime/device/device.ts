// The device runtime: runs its part of the model, packs what crosses the cut, sends it, and
// re-plans cut and bits before every inference (runtime/plan/planner.ts, a pure function) from
// what it measured (runtime/plan/estimators.ts, and each variant's prediction errors:
// runtime/plan/tracker.ts). When the cloud is unreachable or slow it finishes the inference itself
// — the device holds every segment — and probes the cloud with back-off until it answers again.
// Every infer() resolves once with a correct result or rejects with an error.
//
// Its parts, each a unit of its own:
// - the planner's state (what each variant measured, the running variant, trials);
// - the link monitor (./link-monitor.ts): RTT pings, bandwidth probes in the background;
// - the lane (./lane.ts): the device's processor, one piece of compute at a time, so an emulated
//   slow device never runs two inferences at once (a stream whose requests fall back included);
// - the stream's window: at most `pipelineDepth` inferences on the link or in the cloud, by
//   default what the server admits per client less one (for the pings), and the time between
//   dispatches, which is the throughput each variant really reached.
//
// The server's limits (client.limits: GET /v2/models/NAME) are read when the device connects and
// again when the cloud comes back or refuses a request. A request over --max-body is never sent:
// the planner does not offer a variant whose payload may exceed it, a pinned one runs
// device-only, and one whose actual request is over it (or that the server refuses anyway:
// too-large) finishes here from its payloads. A refusal is not an outage: the cloud stays up; nor
// is a busy server (overloaded): that request finishes here.
//
// Platform-free: the bundle, the inference backend, the WebSocket and the profile cache are
// given. runtime/node/device.ts gives Node's (a directory, onnxruntime-node, `ws`, ~/.cache/dyno),
// runtime/web/device.ts a browser's (a URL, onnxruntime-web, WebSocket, localStorage).
import { isImageCodec, perSampleDims } from "../common/manifest.js";
import type { Bundle } from "../common/bundle.js";
import { DynoError } from "../common/errors.js";
import type { Manifest, Profile, Variant } from "../common/manifest.js";
import type { Backend, Tensor } from "../exec/backend.js";
import { observe, observationsOf, initEstimates, withCloudProfile, type Estimates } from "../plan/estimators.js";
import { backendLabel, Executor, measureProfile, profileKey } from "../exec/executor.js";
import { modelId, PREFIX_BYTES, type RequestHeader } from "../common/protocol.js";
import { payloadBound, pinVariant, type Objective, type PolicyName } from "../plan/scheduler.js";
import { initPlanner, plan, type PlannedChoice, type PlannerOptions, type PlannerState } from "../plan/planner.js";
import { correct, recordInterval, recordRun } from "../plan/tracker.js";
import { connectCloud, type CloudClient, type Gzipper, type ServerLimits, type SocketFactory } from "./client.js";
import { Lane } from "./lane.js";
import { LinkMonitor, probeOptions, type ProbeOptions, type ProbeStats } from "./link-monitor.js";
import { sleepUntil } from "../common/clock.js";

export type { ProbeStats } from "./link-monitor.js";

/** Where a device keeps its measured profile between starts (by profileKey). */
export interface ProfileCache {
  get(key: string): Promise<Profile | null>;
  set(key: string, profile: Profile): Promise<void>;
}

/** Where a device's cloud is: URL(s) of `dyno serve`, a client, or none. */
export type Cloud = string | readonly string[] | CloudClient | null;

export interface DeviceOptions {
  bundle: Bundle;
  backend: Backend;
  /** Opens the WebSocket to the cloud (default: the global WebSocket). */
  socket?: SocketFactory;
  /**
   * The cloud: a URL of `dyno serve` (http://host:port, or ws://), several (a list, or commas:
   * requests spread over them and fail over, ./endpoints.ts), a client made with connectCloud,
   * or null for a device with no cloud (device-only).
   */
  cloud: Cloud;
  token?: string;
  transport?: "ws" | "http";
  /** The cloud's protocol: "dyno" (default, native) or "kserve" (KServe v2 REST, HTTP). */
  protocol?: "dyno" | "kserve";
  /** kserve: gzip request bodies when it pays (connectCloud `gzip`). */
  gzip?: boolean;
  /** Gzips a body (default: CompressionStream; Node: node:zlib). */
  gzipper?: Gzipper;
  /** Per request; a slower answer counts as a cloud failure and the device finishes alone. */
  timeoutMs?: number;
  policy?: PolicyName;
  /** Run this variant every time (a manifest id, "device-only" or "cloud-only"): no scheduling. */
  variant?: string;
  objective?: Objective;
  /** SLOs; `bestEffort` when no variant meets them: the best by the objective (default) or the closest to them. */
  slo?: { latencyMs?: number; throughputPerS?: number; maxAccuracyDrop?: number; bestEffort?: "objective" | "closest" };
  /** The planner's confidence bound and trial budget (runtime/plan/planner.ts PLANNER_DEFAULTS). */
  planner?: Partial<PlannerOptions>;
  /**
   * Device emulation: this machine is both device and cloud, so the device's compute is
   * this factor times its profiled time (see `emulate` below). Stated in outputs.
   */
  slowdown?: number;
  /** Prior link estimate before the first measurement. */
  link?: { bandwidthMbps: number; rttMs: number };
  /** First probe after a failure, doubling up to maxProbeMs. */
  probeMs?: number;
  maxProbeMs?: number;
  threads?: number;
  /**
   * Inferences on the link or in the cloud at once in stream(). Default: what the server admits
   * per client (--max-inflight-per-client) and the client allows, less one for pings and probes
   * (15 with the defaults): enough to cover a 3G round trip at a few ms per inference.
   */
  pipelineDepth?: number;
  /**
   * Profile this device's segments on first start (a few warm runs, kept in `cache` when given);
   * false plans from the bundle's profile alone.
   */
  profile?: false | { cache?: ProfileCache };
  /**
   * Bandwidth probes (padded pings, client.probe) when the estimate is stale: before the first
   * inference, after the RTT stepped, and when no transfer has timed the link for `maxAgeMs`
   * (default 10 000). A probe is sized to take `targetMs` (default 10) at the estimated bandwidth,
   * between 16 KiB and `maxBytes` (default 1 MiB; the first at most 64 KiB, in case the estimate
   * is far too high), and repeated (at most 3 times) while it was too short to time. While the
   * estimate is stale dyno runs device-only (stream) or waits for the probe (infer). false: never
   * probe (the estimate then moves only with large payloads, and the prior is planned with).
   */
  bandwidthProbe?: false | Partial<ProbeOptions>;
}

export interface InferOptions {
  /** Run this variant (an id of the manifest, or "device-only" / "cloud-only"), not the scheduler's choice. */
  variant?: string;
}

export interface Inference {
  outputs: Record<string, { dims: number[]; data: Float32Array }>;
  /** Variant that ran ("device-only" when the device finished alone). */
  variant: string;
  kind: "split" | "device-only" | "cloud-only";
  /** The planner's choice (and reason) before this inference. */
  choice: PlannedChoice;
  /**
   * True when a planned offload ended on the device: the cloud failed, was busy or refused the
   * request, or the request would be over the server's limit. `fallback` says which.
   */
  fellBack: boolean;
  fallback?: string;
  timings: {
    deviceSegmentMs: number[];
    deviceMs: number;
    encodeMs: number;
    bytes: number;
    transferMs: number;
    /** The cloud's compute (decode + segments), as the server reports it. */
    cloudMs: number;
    /** Time the request waited in the server's queue for the executor. */
    queueMs: number;
    rttMs: number;
    totalMs: number;
  };
}

/** What the planner did so far: plans, switches of variant, trials (deliberate exploration). */
export interface PlannerStats {
  plans: number;
  switches: number;
  trials: number;
  trialInferences: number;
}

export interface Device {
  readonly manifest: Manifest;
  infer(input: Float32Array, options?: InferOptions): Promise<Inference>;
  /**
   * Pipelined: the device computes input i+1 while earlier inputs are in flight (up to `depth`).
   * `variantOf(i)`, when given, pins input i to a variant (as infer's `variant`; undefined: the
   * planner's choice): a schedule of fixed variants, such as an oracle's over a link trace.
   */
  stream(inputs: Iterable<Float32Array> | AsyncIterable<Float32Array>, onResult?: (r: Inference, index: number) => void, depth?: number, variantOf?: (index: number) => string | undefined): Promise<Inference[]>;
  readonly estimates: Estimates;
  readonly cloudUp: boolean;
  readonly probes: ProbeStats;
  readonly planner: PlannerStats;
  /** The stream's window now (pipelineDepth, or what the server's limits allow). */
  readonly depth: number;
  /** The server's limits as last read (empty until read, or when it publishes none). */
  readonly limits: ServerLimits;
  /**
   * Another cloud (a URL or client; null: none): the next inferences go there. The estimates
   * stay and follow what the new link measures (a probe first); requests in flight on the old
   * connection finish on the device.
   */
  setCloud(cloud: Cloud): void;
  close(): Promise<void>;
}

/** An emulated step that starts within this of the previous one's end continues the device's own clock. */
const BACK_TO_BACK_MS = 0.5;
/** How far the device's clock may run behind this process's (late wake-ups it can make up). */
const MAX_CATCH_UP_MS = 5;

/** The client's own cap on requests in flight (connectCloud's maxInFlight default). */
const CLIENT_MAX_IN_FLIGHT = 16;

export async function createDevice(options: DeviceOptions): Promise<Device> {
  const bundle = options.bundle;
  if (options.variant !== undefined) checkVariant(bundle.manifest, options.variant, options.backend);
  const exec = await Executor.open(bundle, { backend: options.backend, threads: options.threads ?? 1 });
  const tensor = (data: Float32Array): Tensor => options.backend.tensor(data, dims);
  const m = bundle.manifest;
  const dims = perSampleDims(m.model.inputs[0]!.shape);
  const inputSize = dims.reduce((a, b) => a * b, 1);
  const slowdown = options.slowdown ?? 1;
  // The variants this device can run: a backend without an image codec (a browser's, so far)
  // cannot send the input as a JPEG or WebP file.
  const offered: Manifest = options.backend.image ? m : { ...m, variants: m.variants.filter((v) => !isImageCodec(v.codec)) };
  // Device-side profile on first start (cached per bundle and machine): this device's own
  // per-segment times replace the bundle's device profile in the estimates.
  let planning = m;
  if (options.profile !== false) {
    const cache = options.profile?.cache;
    const key = profileKey(exec);
    const cached = await cache?.get(key).catch(() => null);
    const fits = (p: Profile | null | undefined): p is Profile => !!p && p.backend === backendLabel(exec) && p.segments.length === m.segments.length && p.machine.cpu === exec.backend.machine().cpu;
    const mine = fits(cached) ? cached : await measureProfile(exec, tensor(new Float32Array(inputSize)));
    if (mine !== cached) await cache?.set(key, mine).catch(() => {});
    // Segment times are this device's; codec times stay the bundle's (the codec table of a profile
    // cached before a recompile added variants, the image codecs, say, lacks them: they planned at 0 ms).
    const bundled = m.profiles.find((p) => p.role === "device")?.codec ?? {};
    planning = { ...m, profiles: [{ ...mine, codec: { ...mine.codec, ...bundled } }, ...m.profiles.filter((p) => p.role !== "device")] };
  }
  let estimates = initEstimates(planning, { link: options.link });
  // An emulated slow device starts from the bundle's device profile stretched by its factor;
  // measurements correct the estimate from the first inference on.
  // The stretched profile counts as one sample, so a first outlier (a cold run) cannot replace it.
  if (slowdown !== 1) estimates = { ...estimates, device: { ...estimates.device, ratio: slowdown, samples: 1 } };
  let planner: PlannerState = initPlanner(estimates.link.epoch);
  const clientOf = (c: Cloud): CloudClient | null =>
    typeof c === "string" || Array.isArray(c)
      ? connectCloud({
        url: c, model: m.model.sha256, token: options.token, transport: options.transport, timeoutMs: options.timeoutMs ?? 5000, socket: options.socket,
        protocol: options.protocol, manifest: m, gzip: options.gzip, gzipper: options.gzipper,
      })
      : (c as CloudClient | null);
  let cloud: CloudClient | null = clientOf(options.cloud);
  let cloudUp = cloud !== null;
  const firstProbeMs = options.probeMs ?? 250;
  let probeDelay = firstProbeMs;
  let probeTimer: ReturnType<typeof setTimeout> | null = null;
  let closed = false;

  let limits: ServerLimits = {};
  /**
   * Reads the server's limits and profile; false when the server cannot be reached. A server
   * that answers without them (or with an error a request would also get) leaves them as they were.
   */
  const readLimits = async (): Promise<boolean> => {
    try {
      const info = await cloud!.info(m.model.name);
      limits = info.limits;
      // The cloud's own per-segment times, measured where it runs, replace the bundle's.
      if (info.profile) estimates = withCloudProfile(estimates, info.profile);
    } catch (e) {
      if (isCloudFailure(e) || isBusy(e)) return false;
    }
    return true;
  };
  let refreshing: Promise<boolean> | null = null;
  const refreshLimits = () => void (refreshing ??= readLimits().finally(() => (refreshing = null)));
  // The largest header a request frame adds to its payloads: what --max-body leaves for them.
  const overheadBytes = Math.max(...m.variants.map((v) => frameOverhead(m, v)));
  const maxPayload = () => (limits.maxBody === undefined ? undefined : limits.maxBody - overheadBytes);
  /** The stream's window: given, or what the server admits per client and the client allows, less one for pings. */
  const depthNow = () => Math.max(1, options.pipelineDepth ?? Math.min(CLIENT_MAX_IN_FLIGHT, limits.maxInflightPerClient ?? CLIENT_MAX_IN_FLIGHT) - 1);
  const policyNow = () => ({
    name: options.policy ?? "dyno",
    objective: options.objective ?? "latency",
    maxAccuracyDrop: options.slo?.maxAccuracyDrop,
    latencySloMs: options.slo?.latencyMs,
    throughputSloPerS: options.slo?.throughputPerS,
    bestEffort: options.slo?.bestEffort,
    pipelineDepth: depthNow(),
    maxRequestBytes: maxPayload(),
  } as const);
  // Trials and what counts as measured: a stream's interval samples start once its pipeline holds
  // the variant alone (two windows after a switch), each a block of a window's dispatches, so a
  // trial is four windows (two to refill, two samples), and worth it for a predicted gain of 10%
  // (a stream's blocks are noisier than one inference's latency); a latency sample is one inference.
  const plannerOptions = (): Partial<PlannerOptions> => (options.objective ?? "latency") === "throughput"
    ? { minSamples: 1.5, trialLength: 4 * depthNow(), trialGain: 0.1, ...options.planner }
    // One at a time: a trial's 3 inferences are all the device gets to judge it by, and going back
    // to an incumbent this link never measured would take 3 more to learn what it is: the trial's
    // variant stays when it measured better than the incumbent's estimate at all.
    : { minSamples: 3, trialLength: 3, zTrialEnd: 0, ...options.planner };

  const scheduleProbe = () => {
    if (probeTimer || closed || !cloud) return;
    probeTimer = setTimeout(async () => {
      probeTimer = null;
      try {
        const rtt = await cloud!.ping();
        estimates = observe(estimates, { kind: "rtt", ms: rtt });
        // Back, perhaps restarted with other limits: read them before the next plan.
        if (!(await readLimits())) throw new DynoError("the cloud answered a ping but not its model metadata");
        cloudUp = true;
        probeDelay = firstProbeMs;
      } catch {
        probeDelay = Math.min(probeDelay * 2, options.maxProbeMs ?? 4000);
        scheduleProbe();
      }
    }, probeDelay);
    probeTimer.unref?.();
  };
  const markDown = () => {
    cloudUp = false;
    scheduleProbe();
  };
  /** Connecting: the limits are read before the first plan (the first request waits for them). */
  const connect = () => (cloud ? readLimits().then((up) => void (up || markDown())) : null);
  let connecting: Promise<void> | null = connect();
  /** A ping checking the link after an inference far slower on it than predicted. */
  let checking: Promise<void> | null = null;

  const links = new LinkMonitor({
    cloud: () => cloud,
    cloudUp: () => cloudUp,
    estimates: () => estimates,
    observe: (...o) => void (estimates = observe(estimates, ...o)),
    maxBody: () => limits.maxBody,
    refused: refreshLimits,
    failed: (e) => {
      if (isCloudFailure(e)) markDown();
    },
    closed: () => closed,
  }, (options.policy ?? "dyno") === "device-only" ? null : probeOptions(options.bandwidthProbe));
  const lane = new Lane();

  /**
   * Emulated slow device: a step takes `slowdown` x its time in this device's profile (the
   * profile measured at start, else the bundle's), or its measured time if that is longer. Taken
   * from the profile rather than stretched from each run, so this machine's noise is not
   * multiplied by the factor: the emulated device is as steady as a real one.
   *
   * The device keeps its own clock. A step that starts right after the previous one ended (the
   * device busy back to back) starts where that one ended on the device's clock, not when this
   * process's event loop got round to waking it: the wake-up comes up to a few tenths of a ms late
   * when the loop is busy with the link proxy and the server, and those late wake-ups, paid on
   * every step, made the emulated device 10-30% slower than its profile at a thousand steps a
   * second. A device that waited (for a slot, for an input) starts afresh.
   */
  const deviceProfile = planning.profiles.find((p) => p.role === "device" && p.segments.length === m.segments.length);
  const profiledMs = (from: number, to: number) => deviceProfile!.segments.slice(from, to).reduce((a, t) => a + t.meanMs, 0);
  const clock = { virtualEnd: -Infinity, actualEnd: -Infinity };
  const emulate = async (measuredMs: number, profileMs: number | undefined, startedAt: number) => {
    if (slowdown === 1) return measuredMs;
    const target = Math.max(measuredMs, slowdown * (profileMs ?? measuredMs));
    const backToBack = startedAt - clock.actualEnd < BACK_TO_BACK_MS;
    const start = backToBack ? Math.max(clock.virtualEnd, startedAt - MAX_CATCH_UP_MS) : startedAt;
    clock.virtualEnd = start + target;
    if (clock.virtualEnd > performance.now()) await sleepUntil(clock.virtualEnd);
    clock.actualEnd = performance.now();
    return target;
  };
  const codecProfileMs = (id: string) => deviceProfile?.codec[id]?.meanMs;

  const deviceOnlyId = m.variants.find((v) => m.cuts.find((c) => c.id === v.cut)?.kind === "output")!.id;
  // Warm-up, unmeasured: a session's first run (allocations) and a codec's first call are many
  // times slower than the device is. Measured, the first sample would set the compute ratio (and
  // a codec's time) for good.
  {
    const zero = tensor(new Float32Array(inputSize));
    for (let i = 0; i < 3; i++) await exec.device(deviceOnlyId, zero);
    const inputCut = m.cuts.find((c) => c.kind === "input");
    for (const v of offered.variants) if (inputCut && v.cut === inputCut.id) await exec.device(v.id, zero);
  }

  /** The next plan: pinned, or the planner's (device-only while the cloud is down). */
  const planNext = (pinned: string | undefined): PlannedChoice => {
    const policy = policyNow();
    if (pinned !== undefined) {
      const c = pinVariant(offered, estimates, pinned, policy);
      return { ...c, predicted: correct(planner.tracker, c.predicted, policy), decision: "fixed" };
    }
    // Without probes the prior is all there is to plan with: it is not "stale". With them, an
    // estimate nothing timed for a while is (a stream keeps the link busy: it must drain for a probe).
    const stale = links.why();
    const est = stale === estimates.link.bandwidthStale ? estimates : { ...estimates, link: { ...estimates.link, bandwidthStale: stale } };
    const r = plan(offered, est, cloudUp ? policy : { ...policy, name: "device-only" }, planner, plannerOptions());
    planner = r.state;
    return r.choice;
  };

  /** Phase 1 (device compute): plan, run the device part, pack. `streaming`: never wait for a probe. */
  async function prepare(input: Float32Array, pin: string | undefined, streaming: boolean) {
    if (closed) throw new DynoError("device is closed");
    if (input.length !== inputSize) throw new DynoError(`input has ${input.length} values, model input "${m.model.inputs[0]!.name}" [${dims.join(",")}] needs ${inputSize}`);
    // The synthesised names map to the bundle's own variants; an unknown id throws before any work.
    if (pin !== undefined) checkVariant(m, pin, options.backend);
    const pinned = pin === "device-only" ? deviceOnlyId : pin === "cloud-only" ? cloudOnlyId(m) : pin;
    if (connecting) await connecting;
    connecting = null;
    // (bounded: a cloud that hangs is the request's timeout to find, not this wait's)
    if (checking && !streaming) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([checking, new Promise<void>((r) => (timer = setTimeout(r, 1000)))]);
      clearTimeout(timer);
    }
    checking = null;
    // A stale bandwidth estimate (first inference, the link changed, or not timed for a while) is
    // measured in the background; one inference at a time waits for it, whatever made it stale
    // (a stream runs device-only meanwhile: the planner does not plan with a stale estimate).
    const probing = pinned === undefined ? links.maybeProbe() ?? (streaming ? null : links.checkSuspect()) : null;
    if (probing && !streaming && (links.why() !== undefined || estimates.link.suspect)) await probing;
    // The inference's own time starts here: connecting and probing are the link's business.
    const t0 = performance.now();
    let choice = planNext(pinned);
    let id = choice.variant === "device-only" || choice.variant === "cloud-only" ? (choice.variant === "device-only" ? deviceOnlyId : cloudOnlyId(m)) : choice.id;
    // Over the server's limit (pinned; the planner offers none): nothing to send it, so the
    // whole model runs here, which is the cheaper way to finish on the device.
    let fallback: string | undefined;
    const limit = maxPayload();
    if (cloud && limit !== undefined && id !== deviceOnlyId && payloadBound(offered, estimates, id) > limit) {
      fallback = `a request for ${id} carries up to ${Math.round(payloadBound(offered, estimates, id))} B of payload, over the server's limit of ${limits.maxBody} bytes (--max-body) less ${overheadBytes} B of header: ran device-only`;
      choice = { ...choice, reason: `${choice.reason}; ${fallback}` };
      id = deviceOnlyId;
    }
    // An RTT sample per inference from a ping alongside (no model work, a few bytes): device-only
    // sends nothing, so without it the device would never notice the link getting better, and a
    // split's transfer alone cannot tell a longer RTT from a narrower link.
    void links.ping();
    const x = tensor(input);
    const cut = m.cuts.find((c) => c.id === m.variants.find((v) => v.id === id)!.cut)!;
    const { d, deviceMs, encodeMs } = await lane.run(async () => {
      const t1 = performance.now();
      const d = await exec.device(id, x);
      const computeMs = d.segmentMs.reduce((a, b) => a + b, 0);
      const deviceMs = await emulate(computeMs, deviceProfile ? profiledMs(0, cut.deviceSegments) : undefined, t1);
      const encodeMs = d.kind === "split" ? await emulate(d.encodeMs, codecProfileMs(id), performance.now() - d.encodeMs) : 0;
      return { d, deviceMs, encodeMs };
    });
    return { t0, choice, id, d, deviceMs, encodeMs, x, fallback };
  }

  /** What the tracker learns from one inference: each stage against the choice's prediction. */
  const learn = (choice: PlannedChoice, id: string, measured: { deviceMs: number; linkMs?: number; cloudMs?: number; latencyMs?: number }, alone: boolean) => {
    if (choice.id !== id && !(choice.variant === "device-only" && id === deviceOnlyId) && !(choice.variant === "cloud-only" && id === cloudOnlyId(m))) return;
    planner = {
      ...planner,
      tracker: recordRun(planner.tracker, {
        id: choice.id, sends: choice.predicted.kind !== "device-only", predicted: choice.predicted.model,
        // Latency and the link's share are only what the model predicts when nothing else was in
        // flight with it (a stream's queueing is the interval's business).
        predictedLatencyMs: alone ? choice.predicted.stageLatencyMs : undefined,
        deviceMs: measured.deviceMs, linkMs: alone ? measured.linkMs : undefined, cloudMs: measured.cloudMs, latencyMs: alone ? measured.latencyMs : undefined,
      }),
    };
  };

  /** Phase 2 (link + cloud): send and await, or finish locally when the cloud fails. */
  async function finish(p: Awaited<ReturnType<typeof prepare>>): Promise<Inference> {
    const { t0, choice, id, d, deviceMs, encodeMs } = p;
    let fallback = p.fallback;
    const cut = m.cuts.find((c) => c.id === m.variants.find((v) => v.id === id)!.cut)!;
    const kind = cut.kind === "output" ? "device-only" : cut.kind === "input" ? "cloud-only" : "split";
    const base = { deviceSegmentMs: d.segmentMs, deviceMs, encodeMs, bytes: 0, transferMs: 0, cloudMs: 0, queueMs: 0, rttMs: 0 };
    if (d.kind === "local") {
      estimates = observe(estimates, ...observationsOf({ variant: id, deviceSegments: cut.deviceSegments, segments: m.segments.length, deviceMs }));
      const totalMs = performance.now() - t0;
      if (fallback === undefined) learn(choice, id, { deviceMs, latencyMs: totalMs }, links.busy === 0);
      return { outputs: plain(d.outputs), variant: id, kind: "device-only", choice, fellBack: fallback !== undefined, fallback, timings: { ...base, totalMs } };
    }
    const bytes = d.payloads.reduce((s, q) => s + q.bytes.length, 0);
    if (cloud && cloudUp) {
      const alone = links.busy === 0;
      links.enter();
      const via = cloud;
      const sentInEpoch = estimates.link.changes;
      links.sent(bytes);
      try {
        const a = await via.infer({ variant: d.variant, payloads: d.payloads, ...(isImageCodec(d.variant.codec) ? { shapes: { [m.model.inputs[0]!.name]: dims } } : {}) });
        // The server reports its own time; the rest of the wall time is the link (transfer + RTT).
        const transferMs = Math.max(0, a.wallMs - a.timing.totalMs);
        const rttMs = estimates.link.rttMs;
        // A transfer times the link only when it had the link to itself (a pipelined one waited
        // behind the others, and its own share of the wall time is unknown: reconstructing it
        // needs the bandwidth it is meant to measure), and when the link is still the one it was
        // sent on: serialisation = link time - RTT.
        const serialMs = alone && sentInEpoch === estimates.link.changes ? transferMs - rttMs : undefined;
        estimates = observe(
          estimates,
          ...observationsOf({
            variant: id, deviceSegments: cut.deviceSegments, segments: m.segments.length, deviceMs, encodeMs,
            bytes: a.bytesSent, ...(serialMs !== undefined ? { transferSeconds: transferMs / 1000, serialMs } : {}), decodeMs: a.timing.decodeMs, cloudMs: a.timing.cloudMs,
          }),
        );
        const totalMs = performance.now() - t0;
        learn(choice, id, { deviceMs: deviceMs + encodeMs, linkMs: transferMs, cloudMs: a.timing.cloudMs, latencyMs: totalMs }, alone);
        // Alone on the link and far slower than the link was predicted to be: the link may have
        // changed under it; a ping now checks its RTT rather than at the next inference.
        const expected = choice.predicted.model.linkMs;
        // One inference at a time plans the next only once this ping is back: planned on the old
        // RTT, the next one trialled a variant the new link made 50% slower (the adapt test, 4G).
        if (alone && choice.id === id && transferMs > Math.max(2 * expected, expected + estimates.linkOptions.minStepMs)) checking = links.ping(true);
        const outputs = Object.fromEntries(a.outputs.map((o) => [o.name, { dims: o.dims, data: o.data }]));
        return { outputs, variant: id, kind, choice, fellBack: false, timings: { ...base, bytes: a.bytesSent, transferMs, cloudMs: a.timing.cloudMs, queueMs: a.timing.queueMs, rttMs, totalMs } };
      } catch (e) {
        const why = `${(e as { kind?: string }).kind}: ${(e as Error).message}`;
        if (isRefusal(e)) {
          // The server (or the client, knowing its limit) refused this one request: learn its
          // size, so that the planner leaves the variant when it keeps being too large, and
          // re-read the limits in case they changed. The cloud is fine.
          estimates = observe(estimates, { kind: "bytes", variant: id, bytes: bytes + overheadBytes });
          refreshLimits();
          fallback = `refused, ${why}`;
        } else if (isBusy(e)) {
          // Back-pressure (the server's or the client's own window), not an outage.
          fallback = `the cloud is busy, ${why}`;
        } else if (isCloudFailure(e)) {
          // A connection setCloud replaced says nothing of the new one.
          if (via === cloud) markDown();
          fallback = via === cloud ? `cloud failure, ${why}` : `the cloud changed while in flight, ${why}`;
        } else throw e;
      } finally {
        links.leave();
      }
    }
    fallback ??= cloud ? "the cloud is down" : "no cloud";
    // The cloud is down, failed or refused: finish here from the same payloads — same numbers —
    // on the device's one processor, after whatever it is computing now.
    const localMs = await lane.run(async () => {
      const t1 = performance.now();
      const c = await exec.cloud(id, d.payloads);
      return { outputs: c.outputs, ms: await emulate(c.segmentMs.reduce((a, b) => a + b, 0) + c.decodeMs, deviceProfile ? profiledMs(cut.deviceSegments, m.segments.length) : undefined, t1) };
    });
    return { outputs: plain(localMs.outputs), variant: id, kind: "device-only", choice, fellBack: true, fallback, timings: { ...base, bytes, deviceMs: deviceMs + localMs.ms, totalMs: performance.now() - t0 } };
  }

  const device: Device = {
    manifest: m,
    get estimates() {
      return estimates;
    },
    get cloudUp() {
      return cloudUp;
    },
    get probes() {
      return { ...links.stats };
    },
    get planner() {
      return { plans: planner.plans, switches: planner.switches, trials: planner.trials, trialInferences: planner.trialInferences };
    },
    get depth() {
      return depthNow();
    },
    get limits() {
      return { ...limits };
    },
    async infer(input, inferOptions) {
      return finish(await prepare(input, inferOptions?.variant ?? options.variant, false));
    },
    async stream(inputs, onResult, depth, variantOf) {
      // The device computes input i+1 while up to `depth` earlier inputs are on the link or in
      // the cloud, so throughput is bounded by the slowest stage, not by the round trip.
      const results: Inference[] = [];
      const inFlight = new Set<Promise<void>>();
      let failure: unknown = null;
      let i = 0;
      // The time between dispatches is the throughput a variant really reaches, once the pipeline
      // holds nothing else: a variant's first window of dispatches waits on the one before it, and
      // its second on the first (queued behind the old one's at the link and the server). It is
      // measured in blocks of a window's dispatches (a window-limited stream dispatches in bursts).
      let last: { at: number; choice: PlannedChoice; run: number } | null = null;
      let block = { id: "", ms: 0, n: 0, predicted: 0 };
      for await (const input of inputs as AsyncIterable<Float32Array>) {
        if (failure) break;
        const window = Math.max(1, depth ?? depthNow());
        const at = performance.now();
        if (last) {
          const c = last.choice;
          const sends = c.predicted.kind !== "device-only";
          if (last.run > (sends ? 2 * window : 1) && !links.running) {
            if (block.id !== c.id) block = { id: c.id, ms: 0, n: 0, predicted: 0 };
            block.ms += at - last.at;
            block.predicted += c.predicted.stageIntervalMs;
            if (++block.n >= (sends ? window : 4)) {
              planner = { ...planner, tracker: recordInterval(planner.tracker, c.id, sends, block.ms / block.n, block.predicted / block.n) };
              block = { id: c.id, ms: 0, n: 0, predicted: 0 };
            }
          } else block = { id: "", ms: 0, n: 0, predicted: 0 };
        }
        const prepared = await prepare(input, variantOf?.(i) ?? options.variant, true);
        while (inFlight.size >= window) await Promise.race(inFlight);
        const run: number = last && last.choice.id === prepared.choice.id ? last.run + 1 : 1;
        last = { at, choice: prepared.choice, run };
        const index = i++;
        const p: Promise<void> = finish(prepared).then(
          (r) => {
            results[index] = r;
            onResult?.(r, index);
          },
          (e) => void (failure ??= e),
        ).finally(() => inFlight.delete(p));
        inFlight.add(p);
      }
      await Promise.all(inFlight);
      if (failure) throw failure;
      return results;
    },
    setCloud(next) {
      if (closed) throw new DynoError("device is closed");
      const old = cloud;
      cloud = clientOf(next);
      cloudUp = cloud !== null;
      limits = {};
      if (probeTimer) clearTimeout(probeTimer);
      probeTimer = null;
      probeDelay = firstProbeMs;
      links.reset();
      connecting = connect();
      // Requests still on the old connection fail over to the device (a connection error).
      void old?.close().catch(() => {});
    },
    async close() {
      closed = true;
      if (probeTimer) clearTimeout(probeTimer);
      links.release();
      await cloud?.close();
      cloud = null;
      await exec.release();
    },
  };
  return device;
}

/** A variant a caller pins must be the bundle's (or "device-only" / "cloud-only"). */
function checkVariant(m: Manifest, id: string, backend: Backend): void {
  const v = m.variants.find((x) => x.id === id);
  if (v && isImageCodec(v.codec) && !backend.image) throw new DynoError(`variant "${id}" sends the input as a ${v.codec.bits} file, and ${backend.name} has no image codec`);
  if (id === "device-only" || id === "cloud-only" || m.variants.some((v) => v.id === id)) return;
  const ids = m.variants.map((v) => v.id);
  throw new DynoError(`unknown variant "${id}" (the bundle has ${ids.length} variants: ${ids.slice(0, 6).join(", ")}${ids.length > 6 ? ", ..." : ""}; or device-only, cloud-only)`);
}

/**
 * The most a request frame for `v` adds to its payloads: the prefix and the JSON header with
 * every number at its widest (lengths, checksums and symbolic dimensions up to 2^32 - 1).
 */
function frameOverhead(m: Manifest, v: Variant): number {
  const widest = 0xffffffff;
  const cut = m.cuts.find((c) => c.id === v.cut)!;
  const header: RequestHeader = {
    variant: v.id,
    model: modelId(m),
    tensors: cut.tensors.map((t) => ({
      name: t.name, bytes: widest, crc32: widest, shape: t.shape.map((d) => (typeof d === "number" ? d : widest)),
      bits: v.codec.bits, perChannel: v.codec.perChannel, shuffle: v.codec.shuffle, codec: v.codec.lossless, ...(isImageCodec(v.codec) ? { quality: 100 } : {}),
    })),
  };
  return PREFIX_BYTES + new TextEncoder().encode(JSON.stringify(header)).length;
}

function cloudOnlyId(m: Manifest): string {
  const input = m.cuts.find((c) => c.kind === "input")!;
  const vs = m.variants.filter((v) => v.cut === input.id);
  return (vs.find((v) => v.codec.bits === "f32") ?? vs[0]!).id;
}

function plain(outputs: Record<string, Tensor>): Record<string, { dims: number[]; data: Float32Array }> {
  return Object.fromEntries(Object.entries(outputs).map(([k, t]) => [k, { dims: [...t.dims] as number[], data: t.data as Float32Array }]));
}

/**
 * Errors after which the device marks the cloud down and finishes the inference itself: the
 * cloud is unreachable, slow or broken. A request the cloud rejects as malformed is a bug here,
 * and is reported.
 */
function isCloudFailure(e: unknown): boolean {
  const kind = (e as { kind?: string }).kind;
  return kind !== undefined && ["connection", "timeout", "unavailable", "internal", "protocol"].includes(kind);
}

/** Back-pressure: the server (or the client's own window) has enough in flight. That request finishes here; the cloud is up. */
function isBusy(e: unknown): boolean {
  return (e as { kind?: string }).kind === "overloaded";
}

/** A request over the server's limits (refused there, or here before sending): finished on the device. */
function isRefusal(e: unknown): boolean {
  return (e as { kind?: string }).kind === "too-large";
}
