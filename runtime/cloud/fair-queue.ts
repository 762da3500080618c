// A queue that is fair across clients (round robin over clients, FIFO within one): `take` returns
// the oldest item of the client served longest ago, a client never served first. The cloud's
// worker pool queues runs in it, so one client holding all its in-flight slots (one that never
// reads its replies, say) delays another client's run by at most one of its own, not by all of
// them (docs/security.md).
export class FairQueue<T extends { client: string }> {
  private readonly items: T[] = [];
  /** Per client with items queued or just served, the turn it was last served at. */
  private readonly served = new Map<string, number>();
  private turn = 0;

  get length(): number {
    return this.items.length;
  }

  push(item: T): void {
    this.items.push(item);
  }

  /** The next item in fair order, of those `pred` accepts (all by default). */
  take(pred: (item: T) => boolean = () => true): T | undefined {
    const item = this.order(pred, 1)[0];
    if (item === undefined) return undefined;
    this.items.splice(this.items.indexOf(item), 1);
    this.served.set(item.client, this.turn++);
    // Forget clients with nothing queued: the map stays about as small as the queue.
    if (this.served.size > 2 * this.items.length + 8) {
      const queued = new Set(this.items.map((x) => x.client));
      for (const c of this.served.keys()) if (!queued.has(c) && c !== item.client) this.served.delete(c);
    }
    return item;
  }

  /**
   * Up to `limit` items `pred` accepts, in the order successive take()s would return them; the
   * queue is unchanged. The cloud's batcher looks ahead with it, then takes what it batches.
   */
  order(pred: (item: T) => boolean, limit = Infinity): T[] {
    const served = new Map<string, number>();
    const last = (c: string) => served.get(c) ?? this.served.get(c) ?? -1;
    const left = this.items.filter(pred);
    const out: T[] = [];
    for (let turn = 0; left.length > 0 && out.length < limit; turn++) {
      let best = 0;
      for (let i = 1; i < left.length; i++) if (last(left[i]!.client) < last(left[best]!.client)) best = i;
      const item = left.splice(best, 1)[0]!;
      served.set(item.client, this.turn + turn);
      out.push(item);
    }
    return out;
  }

  /** Removes a queued item (cancelled); false when it is not queued. */
  remove(item: T): boolean {
    const i = this.items.indexOf(item);
    if (i < 0) return false;
    this.items.splice(i, 1);
    return true;
  }

  /** Empties the queue, returning what was in it. */
  drain(): T[] {
    return this.items.splice(0);
  }
}
