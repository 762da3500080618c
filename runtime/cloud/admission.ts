// Admission: how many requests `dyno serve` holds at once, counted three ways.
//
//   server   --max-inflight               every admitted request
//   client   --max-inflight-per-client    one WebSocket connection (HTTP: one remote address)
//   address  --max-inflight-per-address   one remote address over all its connections
//
// The address count is what stops one host from opening more connections to take every slot
// (4 connections x 16 used to hold all 64). It is separate from the per-client count, and larger
// by default, because devices behind one NAT share an address, and because a device that
// reconnects after a drop still holds the slots of its old connection's runs until they finish.
//
// A request is counted from its arrival until its run has really finished: admit() returns the
// release, which is idempotent. Keys are forgotten when their count is back to 0, so the maps hold
// only clients with requests in flight.
import { ProtocolError } from "../common/protocol.js";

export interface AdmissionLimits {
  total: number;
  perClient: number;
  perAddress: number;
}

export class Admission {
  private count = 0;
  private readonly clients = new Map<string, number>();
  private readonly addresses = new Map<string, number>();

  constructor(readonly limits: AdmissionLimits) {}

  /** Requests admitted and not yet released. */
  get inflight(): number {
    return this.count;
  }

  /** Client and address keys currently tracked (those with requests in flight). */
  get keys(): number {
    return this.clients.size + this.addresses.size;
  }

  /** Admits request `id` of `client` from `address`, or throws `overloaded` naming the limit hit. */
  admit(client: string, address: string, id: number): () => void {
    const { total, perClient, perAddress } = this.limits;
    const c = this.clients.get(client) ?? 0;
    const a = this.addresses.get(address) ?? 0;
    if (this.count >= total) throw new ProtocolError("overloaded", `server has ${this.count} requests in flight (limit ${total}); retry later`, id);
    if (c >= perClient) throw new ProtocolError("overloaded", `this client has ${c} requests in flight (limit ${perClient} per client); retry later`, id);
    if (a >= perAddress) throw new ProtocolError("overloaded", `address ${address} has ${a} requests in flight over its connections (limit ${perAddress} per address); retry later`, id);
    this.count++;
    this.clients.set(client, c + 1);
    this.addresses.set(address, a + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.count--;
      decrement(this.clients, client);
      decrement(this.addresses, address);
    };
  }
}

function decrement(map: Map<string, number>, key: string): void {
  const n = (map.get(key) ?? 1) - 1;
  if (n <= 0) map.delete(key);
  else map.set(key, n);
}
