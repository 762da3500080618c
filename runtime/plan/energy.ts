// The device power model the scheduler's energy objective uses. Deliberately simple and stated:
// energy = compute time x compute watts + bytes x radio joules per byte + time on air x radio watts.
// Defaults are orders of magnitude for a phone on LTE; pass measured values for a real device.

export interface PowerModel {
  /** Device power while running its segments and the encoder (W). */
  deviceWatts: number;
  /** Radio energy per byte sent, the throughput-proportional part of the radio power (J/B). */
  radioJoulesPerByte: number;
  /** Radio power while the payload is on the air, the part that does not depend on the rate (W). */
  radioWatts: number;
}

/**
 * Defaults. deviceWatts: a phone-class CPU cluster under sustained load (2 W, order of magnitude).
 * Radio: Huang et al., "A Close Examination of Performance and Power Characteristics of 4G LTE
 * Networks" (MobiSys 2012) model the LTE uplink as P = alpha_u * throughput + beta with
 * alpha_u ~ 438 mW per Mbit/s and beta ~ 1.29 W *(reconstructed: values as we read the paper's
 * power-model table)*: 438e-3 W / 1e6 bit/s = 0.438 uJ/bit = 3.5 uJ/B, and beta while sending.
 * Tail energy (the radio staying in its high-power state after a transfer) is left out.
 */
export const DEFAULT_POWER: Readonly<PowerModel> = Object.freeze({
  deviceWatts: 2,
  radioJoulesPerByte: 3.5e-6,
  radioWatts: 1.29,
});

export function powerModel(overrides: Partial<PowerModel> = {}): PowerModel {
  const p = { ...DEFAULT_POWER, ...overrides };
  for (const [k, v] of Object.entries(p)) {
    if (!(Number.isFinite(v) && v >= 0)) throw new RangeError(`power model: ${k} must be a non-negative number, got ${v}`);
  }
  return p;
}

/** Device joules for one inference: `deviceMs` of compute, `bytes` sent taking `airMs` on the air. */
export function deviceJoules(p: PowerModel, deviceMs: number, bytes: number, airMs: number): number {
  return (deviceMs / 1000) * p.deviceWatts + bytes * p.radioJoulesPerByte + (airMs / 1000) * p.radioWatts;
}
