// Seeded inputs for the kernel tests, free of Node APIs so the browser determinism test
// generates the very same tensors inside Chromium.

export { rng } from "../../runtime/common/random.js";

export function gaussian(r: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
}

export const FAMILIES = ["normal", "relu", "zeros", "constant", "negative", "huge", "tiny", "offset"] as const;
export type Family = (typeof FAMILIES)[number];

/** n finite float32 values of one family (the edge cases the issue names, plus two common shapes). */
export function makeInput(family: Family, n: number, r: () => number): Float32Array {
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    switch (family) {
      case "normal": x[i] = gaussian(r) * 3 + 0.5; break;
      case "relu": x[i] = Math.max(0, gaussian(r) * 2 - 0.5); break; // post-ReLU: many exact zeros
      case "zeros": x[i] = 0; break;
      case "constant": x[i] = 1.7; break;
      case "negative": x[i] = -(Math.abs(gaussian(r)) + 0.25); break;
      case "huge": x[i] = (r() * 2 - 1) * 3.4e38; break; // max - min overflows float32
      case "tiny": x[i] = r() * 1e-40; break; // subnormals: a range whose 1/scale overflows
      case "offset": x[i] = 1000 + r(); break; // range far from zero: precision of x - min
    }
  }
  if (family === "huge" && n >= 2) (x[0] = -3.4028234663852886e38), (x[1] = 3.4028234663852886e38);
  return x;
}

export const ALL_BITS = [1, 2, 3, 4, 5, 6, 7, 8, 16] as const;

/** Every length from 1 to three of the widest SIMD tile (64 codes, u2 pack) plus large odd ones. */
export const LENGTHS = [...Array.from({ length: 192 }, (_, i) => i + 1), 1000, 4099, 65537];
