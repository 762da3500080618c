// Several clouds behind one CloudClient: requests spread over the healthy ones, and a request
// that fails because its endpoint failed goes to the next one.
//
//   infer(r) ─> order(now): healthy endpoints, fewest in flight first (ties: round robin),
//               then the benched ones, soonest back first
//          try endpoint 1 ── ok ───────────────────────────> reply (succeeded: its backoff resets)
//               │ "connection" or "unavailable": down, refused, dropped, draining (503)
//               │     bench it: `benchMs`, doubling at each failure after it came back, at most `maxBenchMs`
//               │ "overloaded" from its server (429): busy, not down: no bench
//               v
//          try endpoint 2 ... each endpoint at most once; when all failed: the last failure
//                             ("overloaded" if any was busy: the cloud is up)
//          any other error (400, 401, 404/409 wrong bundle, 413, 500, 504, a bad reply) is the
//          request's own or may have run: it surfaces at once and is not sent elsewhere.
//
// Invariants: a request settles once (each attempt's promise is awaited before the next is made);
// a benched endpoint is still tried when every other one failed, so one endpoint down is never
// "all down" and a single endpoint behaves as a plain client. Nothing is queued here: the
// client's window (maxInFlight) counts the requests of all endpoints together.
//
// ping(), probe() and info() go to the primary: the healthy endpoint that answered most of the
// recent requests (a decayed count; another one must have a quarter more to take over, so that an
// even spread does not move it back and forth), failing over like a request. What the device's
// scheduler sees when the endpoints differ: RTT and bandwidth of the primary (the probes), cloud
// times and transfer times of whichever endpoint served each request (the server reports its own
// time; the rest of the wall time is the link), the cloud profile of the primary, and the limits
// as the smallest of every endpoint that answered (a request then fits on any of them).
import type { CloudClient, CloudError, CloudErrorKind, CloudReply, CloudRequest, LinkProbe, ServerInfo, ServerLimits } from "./client.js";

export interface BenchOptions {
  /** First bench after a failure, ms (default 250). */
  benchMs?: number;
  /** Doubling up to this, ms (default 8000). */
  maxBenchMs?: number;
}

/** The health and load of N endpoints: a pure state with the clock passed in. */
export class EndpointSet {
  readonly benchedUntil: number[];
  readonly backoffMs: number[];
  readonly inFlight: number[];
  /** Requests answered recently (decayed at each answer). */
  readonly served: number[];
  /** Calls that failed with the endpoint down, all told (each was then tried elsewhere, if there was anywhere left). */
  readonly failures: number[];
  private turn = 0;
  private primaryIndex = 0;
  private readonly benchMs: number;
  private readonly maxBenchMs: number;

  constructor(readonly size: number, o: BenchOptions = {}) {
    if (!(size >= 1)) throw new RangeError("an endpoint set needs at least one endpoint");
    this.benchedUntil = Array(size).fill(0);
    this.backoffMs = Array(size).fill(0);
    this.inFlight = Array(size).fill(0);
    this.served = Array(size).fill(0);
    this.failures = Array(size).fill(0);
    this.benchMs = o.benchMs ?? 250;
    this.maxBenchMs = Math.max(this.benchMs, o.maxBenchMs ?? 8000);
  }

  healthy(i: number, now: number): boolean {
    return now >= this.benchedUntil[i]!;
  }

  /** The order to try the endpoints in for the next request (and the round robin moves on). */
  order(now: number): number[] {
    const start = this.turn;
    this.turn = (this.turn + 1) % this.size;
    const rr = (i: number) => (i - start + this.size) % this.size;
    const all = [...Array(this.size).keys()];
    const up = all.filter((i) => this.healthy(i, now)).sort((a, b) => this.inFlight[a]! - this.inFlight[b]! || rr(a) - rr(b));
    const down = all.filter((i) => !this.healthy(i, now)).sort((a, b) => this.benchedUntil[a]! - this.benchedUntil[b]! || a - b);
    return [...up, ...down];
  }

  /** Endpoint `i` failed (down, refused, dropped, draining): benched, for longer each time in a row. */
  failed(i: number, now: number): void {
    this.failures[i]!++;
    if (!this.healthy(i, now)) return; // already benched: the requests that were on it fail together
    this.backoffMs[i] = this.backoffMs[i] === 0 ? this.benchMs : Math.min(2 * this.backoffMs[i]!, this.maxBenchMs);
    this.benchedUntil[i] = now + this.backoffMs[i]!;
  }

  /** Endpoint `i` answered: healthy, its backoff back to the start. */
  succeeded(i: number): void {
    this.benchedUntil[i] = 0;
    this.backoffMs[i] = 0;
    for (let k = 0; k < this.size; k++) this.served[k]! *= SERVED_DECAY;
    this.served[i]! += 1;
  }

  /** The endpoint the probes go to (see the header), then the others as order() has them. */
  primaryOrder(now: number): number[] {
    const p = this.primary(now);
    const rest = [...Array(this.size).keys()].filter((i) => i !== p);
    const up = rest.filter((i) => this.healthy(i, now)).sort((a, b) => this.served[b]! - this.served[a]! || a - b);
    const down = rest.filter((i) => !this.healthy(i, now)).sort((a, b) => this.benchedUntil[a]! - this.benchedUntil[b]! || a - b);
    return [p, ...up, ...down];
  }

  /** The primary: kept while healthy unless another healthy endpoint served a quarter more. */
  primary(now: number): number {
    const healthy = [...Array(this.size).keys()].filter((i) => this.healthy(i, now));
    if (healthy.length === 0) return this.primaryIndex;
    const best = healthy.reduce((a, b) => (this.served[b]! > this.served[a]! ? b : a));
    const current = this.primaryIndex;
    if (!this.healthy(current, now) || this.served[best]! > PRIMARY_MARGIN * this.served[current]!) this.primaryIndex = best;
    return this.primaryIndex;
  }
}

const SERVED_DECAY = 0.98;
const PRIMARY_MARGIN = 1.25;

/** Failed because the endpoint did (not the request): send it to another one, and bench this one. */
export const isEndpointDown = (e: unknown) => ["connection", "unavailable"].includes((e as CloudError).kind);
/** The endpoint's server is busy (429): another one may not be. */
export const isEndpointBusy = (e: unknown) => (e as CloudError).kind === "overloaded";

/** What a client over several endpoints tells of each (for logs and tests). */
export interface EndpointHealth {
  url: string;
  /** Not benched now. */
  healthy: boolean;
  /** Benched for this long yet, ms (0 when healthy). */
  benchedMs: number;
  inFlight: number;
  /** Calls that failed with this endpoint down, all told. */
  failures: number;
  primary: boolean;
}

export type SpreadClient = CloudClient & { endpoints(): EndpointHealth[] };

/** One CloudClient over several; `urls[i]` names `clients[i]` in replies and errors. */
export function spreadOver(urls: readonly string[], clients: readonly CloudClient[], o: BenchOptions & { maxInFlight: number; makeError(kind: CloudErrorKind, message: string): CloudError }): SpreadClient {
  const set = new EndpointSet(clients.length, o);
  const now = () => performance.now();
  let closed = false;

  /** Runs `call` on the endpoints in `order` until one answers or fails for a reason of its own. */
  async function attempt<T>(order: number[], call: (c: CloudClient) => Promise<T>, what: string, counted: boolean): Promise<{ value: T; at: number }> {
    const failures: string[] = [];
    let busy: CloudError | null = null;
    let last: unknown;
    for (const i of order) {
      if (counted) set.inFlight[i]!++;
      try {
        const value = await call(clients[i]!);
        set.succeeded(i);
        return { value, at: i };
      } catch (e) {
        const down = isEndpointDown(e);
        if (closed || !(down || isEndpointBusy(e))) throw e;
        if (down) set.failed(i, now());
        else busy = e as CloudError;
        last = e;
        failures.push(`${urls[i]}: ${(e as CloudError).kind}: ${(e as Error).message}`);
      } finally {
        if (counted) set.inFlight[i]!--;
      }
    }
    if (order.length === 1) throw last;
    throw o.makeError(busy ? "overloaded" : (last as CloudError).kind, `${what}: all ${order.length} cloud endpoints failed (${failures.join("; ")})`);
  }

  const guard = () => {
    if (closed) throw o.makeError("connection", "cloud client is closed");
  };
  const inFlight = () => set.inFlight.reduce((a, b) => a + b, 0);

  return {
    async infer(request: CloudRequest): Promise<CloudReply> {
      guard();
      if (inFlight() >= o.maxInFlight) throw o.makeError("overloaded", `client: ${inFlight()} requests already in flight (maxInFlight ${o.maxInFlight})`);
      const { value, at } = await attempt(set.order(now()), (c) => c.infer(request), `request for ${request.variant.id}`, true);
      return { ...value, endpoint: urls[at]! };
    },
    async ping() {
      guard();
      return (await attempt(set.primaryOrder(now()), (c) => c.ping(), "ping", false)).value;
    },
    async probe(padBytes: number): Promise<LinkProbe> {
      guard();
      return (await attempt(set.primaryOrder(now()), (c) => c.probe(padBytes), "probe", false)).value;
    },
    async limits(name: string): Promise<ServerLimits> {
      return (await this.info(name)).limits;
    },
    /**
     * Every endpoint not benched is asked (each client then refuses a message over its own
     * server's --max-body); the primary's answer, with the smallest limits of all that answered.
     * An endpoint that answers with an error of its own (another bundle, a wrong token) fails the call.
     */
    async info(name: string): Promise<ServerInfo> {
      guard();
      const order = set.primaryOrder(now());
      const asked = order.filter((i) => set.healthy(i, now()));
      const answers = await Promise.allSettled(asked.map((i) => clients[i]!.info(name)));
      answers.forEach((a, k) => {
        if (a.status === "rejected" && isEndpointDown(a.reason)) set.failed(asked[k]!, now());
      });
      const own = answers.find((a) => a.status === "rejected" && !isEndpointDown(a.reason) && !isEndpointBusy(a.reason));
      if (own) throw (own as PromiseRejectedResult).reason;
      const got = answers.flatMap((a) => (a.status === "fulfilled" ? [a.value] : []));
      if (got.length > 0) return { ...got[0]!, limits: smallest(got.map((g) => g.limits)) };
      // None of the healthy ones answered: the benched ones, one at a time, as a request would.
      const rest = order.filter((i) => !asked.includes(i));
      if (rest.length > 0) return (await attempt(rest, (c) => c.info(name), "model metadata", false)).value;
      const why = answers.map((a, k) => `${urls[asked[k]!]}: ${((a as PromiseRejectedResult).reason as Error).message}`);
      if (why.length === 1) throw (answers[0] as PromiseRejectedResult).reason;
      throw o.makeError(((answers[0] as PromiseRejectedResult).reason as CloudError).kind, `model metadata: all ${why.length} cloud endpoints failed (${why.join("; ")})`);
    },
    endpoints() {
      const t = now();
      const primary = set.primary(t);
      return urls.map((url, i) => ({ url, healthy: set.healthy(i, t), benchedMs: Math.max(0, set.benchedUntil[i]! - t), inFlight: set.inFlight[i]!, failures: set.failures[i]!, primary: i === primary }));
    },
    async close() {
      closed = true;
      await Promise.all(clients.map((c) => c.close()));
    },
    get inFlight() {
      return inFlight();
    },
  };
}

/** Each limit the smallest any endpoint published (absent when none did). */
function smallest(all: ServerLimits[]): ServerLimits {
  const out: ServerLimits = {};
  for (const l of all) {
    for (const [k, v] of Object.entries(l) as [keyof ServerLimits, number][]) out[k] = Math.min(out[k] ?? Infinity, v);
  }
  return out;
}
