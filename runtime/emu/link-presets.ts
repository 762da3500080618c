// Link presets from public measurements, as the design brief states them (§5): 3G about
// 2 Mbit/s and 100 ms RTT, 4G about 15 Mbit/s and 50 ms, 5G/Wi-Fi about 100 Mbit/s and 10 ms.
// A preset is a trace with one step; "wifi-3g-4g" is the demo trace (20 s each, ~1 minute).

export interface LinkStep {
  /** Seconds from the start of the trace. */
  at: number;
  bandwidthMbps: number;
  rttMs: number;
  /** Extra one-way delay, uniform in [0, jitterMs], never reordering. */
  jitterMs?: number;
  /** A label for outputs, e.g. "3g". */
  name?: string;
}

export interface LinkTrace {
  name: string;
  steps: LinkStep[];
}

const step = (name: string, bandwidthMbps: number, rttMs: number, at = 0): LinkStep => ({ at, bandwidthMbps, rttMs, jitterMs: 0, name });

export const PRESETS: Readonly<Record<string, LinkTrace>> = Object.freeze({
  "3g": { name: "3g", steps: [step("3g", 2, 100)] },
  "4g": { name: "4g", steps: [step("4g", 15, 50)] },
  "5g": { name: "5g", steps: [step("5g", 100, 10)] },
  "wifi": { name: "wifi", steps: [step("wifi", 100, 10)] },
  "wifi-3g-4g": { name: "wifi-3g-4g", steps: [step("wifi", 100, 10, 0), step("3g", 2, 100, 20), step("4g", 15, 50, 40)] },
});
