// The device runtime: runs its part of the model, packs what crosses the cut, sends it, and lets
// the scheduler (a pure function, ./scheduler.ts) re-plan cut and bits after every inference
// from what it measured (./estimators.ts). When the cloud is unreachable or slow it finishes the
// inference itself — the device holds every segment — and probes the cloud with back-off until
// it answers again. Every infer() resolves once with a correct result or rejects with an error.
//
// The server's limits (client.limits: GET /v2/models/NAME) are read when the device connects and
// again when the cloud comes back or refuses a request. A request over --max-body is never sent:
// the planner does not offer a variant whose payload may exceed it, a pinned one runs
// device-only, and one whose actual request is over it (or that the server refuses anyway:
// too-large) finishes here from its payloads. A refusal is not an outage: the cloud stays up.
//
// Platform-free: the bundle, the inference backend, the WebSocket and the profile cache are
// given. runtime/node/device.ts gives Node's (a directory, onnxruntime-node, `ws`, ~/.cache/dyno),
// runtime/web/device.ts a browser's (a URL, onnxruntime-web, WebSocket, localStorage).
import { perSampleDims } from "../common/manifest.js";
import type { Bundle } from "../common/bundle.js";
import { DynoError } from "../common/errors.js";
import type { Manifest, Profile, Variant } from "../common/manifest.js";
import type { Backend, Tensor } from "../exec/backend.js";
import { observe, observationsOf, initEstimates, type Estimates } from "../plan/estimators.js";
import { backendLabel, Executor, measureProfile, profileKey } from "../exec/executor.js";
import { MAX_PROBE_PAD_BYTES, modelId, PREFIX_BYTES, type RequestHeader } from "../common/protocol.js";
import { chooseVariant, payloadBound, pinVariant, type Choice, type Objective, type PolicyName } from "../plan/scheduler.js";
import { connectCloud, type CloudClient, type ServerLimits, type SocketFactory } from "./client.js";
import { sleep } from "../common/clock.js";

/** Where a device keeps its measured profile between starts (by profileKey). */
export interface ProfileCache {
  get(key: string): Promise<Profile | null>;
  set(key: string, profile: Profile): Promise<void>;
}

export interface DeviceOptions {
  bundle: Bundle;
  backend: Backend;
  /** Opens the WebSocket to the cloud (default: the global WebSocket). */
  socket?: SocketFactory;
  /**
   * The cloud: a URL of `dyno serve` (http://host:port, or ws://), a client made with
   * connectCloud, or null for a device with no cloud (device-only).
   */
  cloud: string | CloudClient | null;
  token?: string;
  transport?: "ws" | "http";
  /** Per request; a slower answer counts as a cloud failure and the device finishes alone. */
  timeoutMs?: number;
  policy?: PolicyName;
  /** Run this variant every time (a manifest id, "device-only" or "cloud-only"): no scheduling. */
  variant?: string;
  objective?: Objective;
  slo?: { latencyMs?: number; throughputPerS?: number; maxAccuracyDrop?: number };
  /**
   * Keep the running variant unless the best predicts this fraction better (default 0.03). Lower
   * than the scheduler's own default (0.1): the device also asks two re-plans in a row to agree
   * before it leaves a variant, which is what holds noise off, and a switch costs nothing (every
   * segment session is open), so a wide band would only leave it up to 10% off the best.
   */
  hysteresis?: number;
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
  /** Inferences on the link or in the cloud at once in stream() (default 8). */
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
   * is far too high), and repeated (at most 3 times) while it was
   * too short to time. false: never probe (the estimate then moves only with large payloads).
   */
  bandwidthProbe?: false | { targetMs?: number; maxBytes?: number; maxAgeMs?: number };
}

export interface InferOptions {
  /** Run this variant (an id of the manifest, or "device-only" / "cloud-only"), not the scheduler's choice. */
  variant?: string;
}

/** What the device's bandwidth probes did: count, bytes and time spent (stated in run summaries). */
export interface ProbeStats {
  probes: number;
  bytes: number;
  ms: number;
}

export interface Inference {
  outputs: Record<string, { dims: number[]; data: Float32Array }>;
  /** Variant that ran ("device-only" when the device finished alone). */
  variant: string;
  kind: "split" | "device-only" | "cloud-only";
  /** The scheduler's choice (and reason) before this inference. */
  choice: Choice;
  /**
   * True when a planned offload ended on the device: the cloud failed or refused the request, or
   * the request would be over the server's limit. `fallback` says which.
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

export interface Device {
  readonly manifest: Manifest;
  infer(input: Float32Array, options?: InferOptions): Promise<Inference>;
  /** Pipelined: the device computes input i+1 while earlier inputs are in flight (up to `depth`). */
  stream(inputs: Iterable<Float32Array> | AsyncIterable<Float32Array>, onResult?: (r: Inference, index: number) => void, depth?: number): Promise<Inference[]>;
  readonly estimates: Estimates;
  readonly cloudUp: boolean;
  readonly probes: ProbeStats;
  /** The server's limits as last read (empty until read, or when it publishes none). */
  readonly limits: ServerLimits;
  /**
   * Another cloud (a URL or client; null: none): the next inferences go there. The estimates
   * stay and follow what the new link measures (a probe first); requests in flight on the old
   * connection finish on the device.
   */
  setCloud(cloud: string | CloudClient | null): void;
  close(): Promise<void>;
}

export async function createDevice(options: DeviceOptions): Promise<Device> {
  const bundle = options.bundle;
  if (options.variant !== undefined) checkVariant(bundle.manifest, options.variant);
  const exec = await Executor.open(bundle, { backend: options.backend, threads: options.threads ?? 1 });
  const tensor = (data: Float32Array): Tensor => options.backend.tensor(data, dims);
  const m = bundle.manifest;
  const dims = perSampleDims(m.model.inputs[0]!.shape);
  const inputSize = dims.reduce((a, b) => a * b, 1);
  const slowdown = options.slowdown ?? 1;
  const policy = {
    name: options.policy ?? "dyno",
    objective: options.objective ?? "latency",
    maxAccuracyDrop: options.slo?.maxAccuracyDrop,
    latencySloMs: options.slo?.latencyMs,
    throughputSloPerS: options.slo?.throughputPerS,
    hysteresis: options.hysteresis ?? 0.03,
    pipelineDepth: Math.max(1, options.pipelineDepth ?? 8),
  } as const;
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
    planning = { ...m, profiles: [mine, ...m.profiles.filter((p) => p.role !== "device")] };
  }
  let estimates = initEstimates(planning, { link: options.link });
  // An emulated slow device starts from the bundle's device profile stretched by its factor;
  // measurements correct the estimate from the first inference on.
  // The stretched profile counts as one sample, so a first outlier (a cold run) cannot replace it.
  if (slowdown !== 1) estimates = { ...estimates, device: { ...estimates.device, ratio: slowdown, samples: 1 } };
  let previous: Choice | null = null;
  let pendingSwitch = false;
  let planChanges = 0;
  const clientOf = (c: string | CloudClient | null) =>
    typeof c === "string" ? connectCloud({ url: c, model: m.model.sha256, token: options.token, transport: options.transport, timeoutMs: options.timeoutMs ?? 5000, socket: options.socket }) : c;
  let cloud: CloudClient | null = clientOf(options.cloud);
  let cloudUp = cloud !== null;
  const firstProbeMs = options.probeMs ?? 250;
  let probeDelay = firstProbeMs;
  let probeTimer: ReturnType<typeof setTimeout> | null = null;
  let closed = false;

  let limits: ServerLimits = {};
  /**
   * Reads the server's limits; false when the server cannot be reached. A server that answers
   * without them (or with an error a request would also get) leaves them as they were.
   */
  const readLimits = async (): Promise<boolean> => {
    try {
      limits = await cloud!.limits(m.model.name);
    } catch (e) {
      if (isCloudFailure(e)) return false;
    }
    return true;
  };
  let refreshing: Promise<boolean> | null = null;
  const refreshLimits = () => void (refreshing ??= readLimits().finally(() => (refreshing = null)));
  // The largest header a request frame adds to its payloads: what --max-body leaves for them.
  const overheadBytes = Math.max(...m.variants.map((v) => frameOverhead(m, v)));
  const maxPayload = () => (limits.maxBody === undefined ? undefined : limits.maxBody - overheadBytes);
  const planPolicy = () => ({ ...policy, maxRequestBytes: maxPayload() });

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

  let pinging = false;
  let pings = 0;
  /**
   * One RTT sample from a ping in the background (at most one outstanding). A sample off from
   * the estimate (the link may have changed) is checked at once by another ping, so that a step
   * is confirmed, and a bandwidth probe due, before the next plan rather than an inference later.
   */
  const linkProbe = (): void => {
    if (pinging || !cloud || closed) return;
    pinging = true;
    // The first ping may open the connection (handshake, TLS): not an RTT sample.
    const first = pings++ === 0;
    cloud.ping().then(
      (ms) => {
        pinging = false;
        if (first) return;
        estimates = observe(estimates, { kind: "rtt", ms });
        if (estimates.link.suspect && cloudUp) linkProbe();
      },
      () => void (pinging = false),
    );
  };

  // Bandwidth probes (see DeviceOptions.bandwidthProbe).
  const probeOptions = options.bandwidthProbe === false ? null : { targetMs: 10, maxBytes: MAX_PROBE_PAD_BYTES, maxAgeMs: 10_000, ...options.bandwidthProbe };
  const probeStats: ProbeStats = { probes: 0, bytes: 0, ms: 0 };
  let timedAt = -Infinity;
  let probedAt = -Infinity;
  let timedCount = 0;
  /** Inferences on the link or in the cloud now, and who waits for the link to be quiet. */
  let onLink = 0;
  const quiet: (() => void)[] = [];
  const leaveLink = () => {
    if (--onLink === 0) for (const f of quiet.splice(0)) f();
  };
  const probeDue = (): boolean => {
    if (!probeOptions || !cloud || !cloudUp || policy.name === "device-only") return false;
    const l = estimates.link;
    const now = performance.now();
    if (l.transfers !== timedCount) ((timedCount = l.transfers), (timedAt = now));
    // An RTT sample off the estimate may be a link change: probing checks it at once (the probe
    // starts with a ping), at most once a second, so that RTT noise costs little.
    const suspect = l.suspect === true && now - probedAt > 1000;
    return l.bandwidthStale !== undefined || suspect || now - timedAt > probeOptions.maxAgeMs;
  };
  /** Probes until one is long enough to time (at most 3), with the link to itself. */
  const probeBandwidth = async (): Promise<void> => {
    const o = probeOptions!;
    // Alone on the link: a probe beside a payload would time both (and delay the payload).
    while (onLink > 0) await new Promise<void>((r) => quiet.push(r));
    const t0 = performance.now();
    try {
      // The first exchange may open the connection: not a sample.
      if (pings++ === 0) await cloud!.ping();
      // A probe is a message too: at most the server's --max-body.
      const maxBytes = Math.min(o.maxBytes, limits.maxBody === undefined ? Infinity : limits.maxBody - PREFIX_BYTES);
      for (let round = 0; round < 3; round++) {
        // The first round is at most 64 KiB: the estimate being probed may be far too high.
        const size = Math.round(Math.min(round === 0 ? 64 * 1024 : maxBytes, maxBytes, Math.max(16 * 1024, (estimates.link.bandwidthBps * o.targetMs) / 8000)));
        const r = await cloud!.probe(size);
        probeStats.probes++;
        probeStats.bytes += r.bytes;
        estimates = observe(estimates, { kind: "probe", rttMs: r.rttMs, bytes: r.bytes, serialMs: r.serialMs });
        if (r.serialMs >= o.targetMs / 2 || size >= maxBytes) break;
      }
    } catch (e) {
      if (isRefusal(e)) refreshLimits();
      else if (!isCloudFailure(e)) throw e;
      else markDown();
    } finally {
      probeStats.ms += performance.now() - t0;
      timedCount = estimates.link.transfers;
      timedAt = probedAt = performance.now();
    }
  };

  /**
   * Emulated slow device: a step takes `slowdown` x its time in this device's profile (the
   * profile measured at start, else the bundle's), or its measured time if that is longer. Taken
   * from the profile rather than stretched from each run, so this machine's noise is not
   * multiplied by the factor: the emulated device is as steady as a real one.
   */
  const deviceProfile = planning.profiles.find((p) => p.role === "device" && p.segments.length === m.segments.length);
  const profiledMs = (from: number, to: number) => deviceProfile!.segments.slice(from, to).reduce((a, t) => a + t.meanMs, 0);
  const emulate = async (measuredMs: number, profileMs: number | undefined) => {
    if (slowdown === 1) return measuredMs;
    const target = Math.max(measuredMs, slowdown * (profileMs ?? measuredMs));
    if (target > measuredMs) await sleep(target - measuredMs);
    return target;
  };
  const codecProfileMs = (id: string) => deviceProfile?.codec[id]?.meanMs;

  const deviceOnlyId = m.variants.find((v) => m.cuts.find((c) => c.id === v.cut)?.kind === "output")!.id;
  // Warm-up, unmeasured: a session's first run (allocations) and a codec's first call are many
  // times slower than the device is. Measured, the first sample would set the compute ratio (and
  // a codec's time) for good, and the scheduler would never try device-only again to correct it.
  {
    const zero = tensor(new Float32Array(inputSize));
    for (let i = 0; i < 3; i++) await exec.device(deviceOnlyId, zero);
    const inputCut = m.cuts.find((c) => c.kind === "input");
    for (const v of m.variants) if (inputCut && v.cut === inputCut.id) await exec.device(v.id, zero);
  }

  /** Phase 1 (device compute): plan, run the device part, pack. */
  async function prepare(input: Float32Array, pin?: string) {
    if (closed) throw new DynoError("device is closed");
    if (input.length !== inputSize) throw new DynoError(`input has ${input.length} values, model input "${m.model.inputs[0]!.name}" [${dims.join(",")}] needs ${inputSize}`);
    // The synthesised names map to the bundle's own variants; an unknown id throws before any work.
    if (pin !== undefined) checkVariant(m, pin);
    const pinned = pin === "device-only" ? deviceOnlyId : pin === "cloud-only" ? cloudOnlyId(m) : pin;
    const t0 = performance.now();
    if (connecting) await connecting;
    connecting = null;
    // A stale bandwidth estimate (first inference, the link changed, or not timed for a while)
    // is measured before planning, so the plan does not rest on it.
    if (probeDue()) await probeBandwidth();
    // A plan right after the link estimate was reset (a detected step, a probe) rests on fresh
    // measurements: its switch needs no confirmation.
    const fresh = estimates.link.changes !== planChanges;
    planChanges = estimates.link.changes;
    let choice: Choice;
    const plan = planPolicy();
    if (pinned !== undefined) choice = pinVariant(m, estimates, pinned, plan);
    else {
      const proposed = chooseVariant(m, estimates, cloudUp ? plan : { ...plan, name: "device-only" }, previous);
      // Beyond the scheduler's hysteresis, leaving a variant must be proposed by two re-plans in
      // a row: a variant only looks better for one inference when noise moved one estimate.
      choice = proposed;
      if (previous && proposed.id !== previous.id && cloudUp && !fresh) {
        if (!pendingSwitch) {
          pendingSwitch = true;
          const stay = chooseVariant(m, estimates, { ...plan, hysteresis: 0.99 }, previous);
          if (stay.id === previous.id) choice = stay;
        } else pendingSwitch = false;
      } else pendingSwitch = false;
      previous = choice;
    }
    let id = choice.variant === "device-only" || choice.variant === "cloud-only" ? (choice.variant === "device-only" ? deviceOnlyId : cloudOnlyId(m)) : choice.id;
    // Over the server's limit (pinned; the planner offers none): nothing to send it, so the
    // whole model runs here, which is the cheaper way to finish on the device.
    let fallback: string | undefined;
    const limit = maxPayload();
    if (cloud && limit !== undefined && id !== deviceOnlyId && payloadBound(m, estimates, id) > limit) {
      fallback = `a request for ${id} carries up to ${Math.round(payloadBound(m, estimates, id))} B of payload, over the server's limit of ${limits.maxBody} bytes (--max-body) less ${overheadBytes} B of header: ran device-only`;
      choice = { ...choice, reason: `${choice.reason}; ${fallback}` };
      id = deviceOnlyId;
    }
    // An RTT sample per inference from a ping alongside (no model work, a few bytes): device-only
    // sends nothing, so without it the device would never notice the link getting better, and a
    // split's transfer alone cannot tell a longer RTT from a narrower link.
    if (cloud && cloudUp) linkProbe();
    const x = tensor(input);
    const d = await exec.device(id, x);
    const computeMs = d.segmentMs.reduce((a, b) => a + b, 0);
    const deviceSegments = m.cuts.find((c) => c.id === d.variant.cut)!.deviceSegments;
    const deviceMs = await emulate(computeMs, deviceProfile ? profiledMs(0, deviceSegments) : undefined);
    const encodeMs = d.kind === "split" ? await emulate(d.encodeMs, codecProfileMs(id)) : 0;
    return { t0, choice, id, d, deviceMs, encodeMs, x, fallback };
  }

  /** Phase 2 (link + cloud): send and await, or finish locally when the cloud fails. */
  async function finish(p: Awaited<ReturnType<typeof prepare>>): Promise<Inference> {
    const { t0, choice, id, d, deviceMs, encodeMs } = p;
    let fallback = p.fallback;
    const cut = m.cuts.find((c) => c.id === m.variants.find((v) => v.id === id)!.cut)!;
    const kind = cut.kind === "output" ? "device-only" : cut.kind === "input" ? "cloud-only" : "split";
    const base = { deviceSegmentMs: d.segmentMs, deviceMs, encodeMs, bytes: 0, transferMs: 0, cloudMs: 0, queueMs: 0, rttMs: 0 };
    if (d.kind === "local") {
      estimates = observe(estimates, ...observationsOf({ variant: id, deviceSegments: cut.deviceSegments, segments: m.segments.length, deviceMs }));
      return { outputs: plain(d.outputs), variant: id, kind: "device-only", choice, fellBack: fallback !== undefined, fallback, timings: { ...base, totalMs: performance.now() - t0 } };
    }
    const bytes = d.payloads.reduce((s, q) => s + q.bytes.length, 0);
    if (cloud && cloudUp) {
      onLink++;
      const via = cloud;
      try {
        const a = await via.infer({ variant: d.variant, payloads: d.payloads });
        // The server reports its own time; the rest of the wall time is the link (transfer + RTT).
        const transferMs = Math.max(0, a.wallMs - a.timing.totalMs);
        const rttMs = estimates.link.rttMs;
        estimates = observe(
          estimates,
          ...observationsOf({
            variant: id, deviceSegments: cut.deviceSegments, segments: m.segments.length, deviceMs, encodeMs,
            bytes: a.bytesSent, transferSeconds: transferMs / 1000, decodeMs: a.timing.decodeMs, cloudMs: a.timing.cloudMs,
          }),
        );
        const outputs = Object.fromEntries(a.outputs.map((o) => [o.name, { dims: o.dims, data: o.data }]));
        return { outputs, variant: id, kind, choice, fellBack: false, timings: { ...base, bytes: a.bytesSent, transferMs, cloudMs: a.timing.cloudMs, queueMs: a.timing.queueMs, rttMs, totalMs: performance.now() - t0 } };
      } catch (e) {
        const why = `${(e as { kind?: string }).kind}: ${(e as Error).message}`;
        if (isRefusal(e)) {
          // The server (or the client, knowing its limit) refused this one request: learn its
          // size, so that the planner leaves the variant when it keeps being too large, and
          // re-read the limits in case they changed. The cloud is fine.
          estimates = observe(estimates, { kind: "bytes", variant: id, bytes: bytes + overheadBytes });
          refreshLimits();
          fallback = `refused, ${why}`;
        } else if (isCloudFailure(e)) {
          // A connection setCloud replaced says nothing of the new one.
          if (via === cloud) markDown();
          fallback = via === cloud ? `cloud failure, ${why}` : `the cloud changed while in flight, ${why}`;
        } else throw e;
      } finally {
        leaveLink();
      }
    }
    fallback ??= cloud ? "the cloud is down" : "no cloud";
    // The cloud is down, failed or refused: finish here from the same payloads — same numbers.
    const c = await exec.cloud(id, d.payloads);
    const localMs = await emulate(c.segmentMs.reduce((a, b) => a + b, 0) + c.decodeMs, deviceProfile ? profiledMs(cut.deviceSegments, m.segments.length) : undefined);
    return { outputs: plain(c.outputs), variant: id, kind: "device-only", choice, fellBack: true, fallback, timings: { ...base, bytes, deviceMs: deviceMs + localMs, totalMs: performance.now() - t0 } };
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
      return { ...probeStats };
    },
    get limits() {
      return { ...limits };
    },
    async infer(input, inferOptions) {
      return finish(await prepare(input, inferOptions?.variant ?? options.variant));
    },
    async stream(inputs, onResult, depth = options.pipelineDepth ?? 8) {
      // The device computes input i+1 while up to `depth` earlier inputs are on the link or in
      // the cloud, so throughput is bounded by the slowest stage, not by the round trip.
      const results: Inference[] = [];
      const inFlight = new Set<Promise<void>>();
      let failure: unknown = null;
      let i = 0;
      for await (const input of inputs as AsyncIterable<Float32Array>) {
        if (failure) break;
        const prepared = await prepare(input, options.variant);
        while (inFlight.size >= Math.max(1, depth)) await Promise.race(inFlight);
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
      connecting = connect();
      // Requests still on the old connection fail over to the device (a connection error).
      void old?.close().catch(() => {});
    },
    async close() {
      closed = true;
      if (probeTimer) clearTimeout(probeTimer);
      for (const f of quiet.splice(0)) f();
      await cloud?.close();
      cloud = null;
      await exec.release();
    },
  };
  return device;
}

/** A variant a caller pins must be the bundle's (or "device-only" / "cloud-only"). */
function checkVariant(m: Manifest, id: string): void {
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
      bits: v.codec.bits, perChannel: v.codec.perChannel, shuffle: v.codec.shuffle, codec: v.codec.lossless,
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
 * Errors after which the device finishes the inference itself: the cloud is unreachable, slow,
 * busy or broken. A request the cloud rejects as malformed is a bug here, and is reported.
 */
function isCloudFailure(e: unknown): boolean {
  const kind = (e as { kind?: string }).kind;
  return kind !== undefined && ["connection", "timeout", "overloaded", "unavailable", "internal", "protocol"].includes(kind);
}

/** A request over the server's limits (refused there, or here before sending): finished on the device. */
function isRefusal(e: unknown): boolean {
  return (e as { kind?: string }).kind === "too-large";
}
