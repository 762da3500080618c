// WebSocket heartbeats: which peers are gone. A peer that vanished without a FIN (a laptop lid,
// a NAT that dropped its mapping) holds its socket forever, and a peer that never reads holds its
// replies in our buffer. Every --heartbeat-ms the server pings each socket; a socket whose last
// `maxMissed` pings went unanswered is terminated at the next tick. Any pong clears the count
// (pings carry no payload: a late pong for an old ping is as good as a new one).
//
// A socket the server has paused for back-pressure cannot read its peer's pongs either, so a peer
// that does not read its replies for `maxMissed` intervals is cut too: the intended outcome.

export type Beat = "ping" | "terminate";

export class Heartbeat {
  private missed = 0;

  constructor(private readonly maxMissed = 2) {}

  /** The interval ended: ping again, or terminate after `maxMissed` unanswered pings. */
  tick(): Beat {
    if (this.missed >= this.maxMissed) return "terminate";
    this.missed++;
    return "ping";
  }

  pong(): void {
    this.missed = 0;
  }
}
