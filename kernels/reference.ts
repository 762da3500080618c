// Scalar TypeScript references for every WebAssembly kernel (kernels/assembly/). Each computes
// the same function with the same float32 roundings (Math.fround after every operation the kernel
// rounds), so the kernels must match them bit for bit; the tolerance of the quantised round trip
// sits next to quantParams below. Slow on purpose: clarity over speed.

const F32_MAX = 3.4028234663852886e38;

/** Everything quantisation and dequantisation need for one range, in float32. */
export interface QuantParams {
  lo: number;
  hi: number;
  /** Quantisation q = roundeven((x * pre - qlo) * inv), for x in [lo, hi]. */
  pre: number;
  qlo: number;
  inv: number;
  /** Dequantisation x = (q * step + offset) * mult, the top code giving hi exactly. */
  step: number;
  offset: number;
  /** 2 when max - min overflows float32 (then step and offset are halved), else 1. */
  mult: number;
  maxCode: number;
}

/**
 * Parameters for b-bit codes over [min, max] (finite, min <= max). Computed in float64 and
 * rounded once, so every side derives the same float32 values from the (min, max) in a payload.
 *
 * Round-trip bound: |x - dequant(quant(x))| <= (max - min) / maxCode / 2 + roundoffBound(params);
 * exact at min and max (and so at the zeros of a non-negative tensor, whose min is 0).
 */
export function quantParams(min: number, max: number, bits: number): QuantParams {
  const maxCode = bits === 16 ? 65535 : (1 << bits) - 1;
  const lo = min === 0 ? 0 : min; // -0 -> +0: a zero bound decodes to +0
  const range = max - lo; // float64: exact enough and never overflows for float32 inputs
  // x - min and q * step + min would overflow for ranges wider than float32: halving keeps every
  // partial result finite (the final * 2 of dequantisation is exact).
  const mult = range > F32_MAX ? 2 : 1;
  let inv = range > 0 ? Math.fround(maxCode / (range / mult)) : 0;
  // A range so small (float32 subnormals) that inv overflows is treated as constant.
  if (!Number.isFinite(inv)) inv = 0;
  let step = inv === 0 ? 0 : Math.fround(range / maxCode / mult);
  const offset = lo / mult;
  // Prefer a step (within 2 ulps) whose top code lands exactly on max: dequantisation then needs
  // no select for the top code (the kernels check the same equality and take a faster loop).
  if (mult === 1 && step > 0) {
    for (const d of [0, 1, -1, 2, -2]) {
      const s = nextF32(step, d);
      if (Math.fround(Math.fround(maxCode * s) + offset) === max) {
        step = s;
        break;
      }
    }
  }
  return { lo, hi: inv === 0 ? lo : max, pre: 1 / mult, qlo: lo / mult, inv, step, offset, mult, maxCode };
}

const bits32 = new Uint32Array(1);
const float32 = new Float32Array(bits32.buffer);

/** The positive float32 `ulps` steps away from positive `v`. */
function nextF32(v: number, ulps: number): number {
  float32[0] = v;
  bits32[0] += ulps;
  return float32[0];
}

/** Slack on top of scale / 2 from float32 roundings in quantise and dequantise. */
export function roundoffBound(p: QuantParams): number {
  const mag = Math.max(Math.abs(p.lo), Math.abs(p.hi));
  const degenerate = p.inv === 0 ? p.hi - p.lo + 1.5e-38 : 0; // constant or subnormal range
  return 8 * mag * 2 ** -24 + degenerate;
}

/** Round half to even (Math.round rounds half up). */
export function roundEven(y: number): number {
  const r = Math.round(y);
  return r - y === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

export function minmaxRef(x: Float32Array): [number, number] {
  let mn = Infinity;
  let mx = -Infinity;
  for (let i = 0; i < x.length; i++) {
    const v = x[i];
    if (v !== v) return [NaN, NaN];
    // Same order of -0/+0 as f32.min/f32.max: -0 < +0.
    if (v < mn || (v === 0 && mn === 0 && Object.is(v, -0))) mn = v;
    if (v > mx || (v === 0 && mx === 0 && Object.is(mx, -0))) mx = v;
  }
  return [mn, mx];
}

export function quantizeRef(x: Float32Array, p: QuantParams): Uint8Array | Uint16Array {
  const out = p.maxCode > 255 ? new Uint16Array(x.length) : new Uint8Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = quantizeOne(x[i], p);
  return out;
}

/** The kernels' precondition, checked here: v is inside the range p was made from. */
export function quantizeOne(v: number, p: QuantParams): number {
  const y = Math.fround(Math.fround(Math.fround(v * p.pre) - p.qlo) * p.inv);
  if (!(y >= 0 && y < p.maxCode + 0.5)) throw new Error(`quantizeRef: ${v} is outside the range (code ${y})`);
  return roundEven(y);
}

export function dequantizeRef(codes: Uint8Array | Uint16Array, p: QuantParams): Float32Array {
  const out = new Float32Array(codes.length);
  for (let i = 0; i < codes.length; i++) {
    const q = codes[i];
    out[i] = q === p.maxCode ? p.hi : Math.fround(Math.fround(Math.fround(q * p.step) + p.offset) * p.mult);
  }
  return out;
}

/** Little-endian bit stream, code i at bits [i*b, i*b+b): see kernels/assembly/pack/u8_pack.ts. */
export function packRef(codes: Uint8Array | Uint16Array, bits: number): Uint8Array {
  const out = new Uint8Array(Math.ceil((codes.length * bits) / 8));
  for (let i = 0; i < codes.length; i++) {
    for (let j = 0; j < bits; j++) {
      if ((codes[i] >> j) & 1) {
        const k = i * bits + j;
        out[k >> 3] |= 1 << (k & 7);
      }
    }
  }
  return out;
}

export function unpackRef(packed: Uint8Array, n: number, bits: number): Uint8Array | Uint16Array {
  const out = bits > 8 ? new Uint16Array(n) : new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    let c = 0;
    for (let j = 0; j < bits; j++) {
      const k = i * bits + j;
      c |= ((packed[k >> 3] >> (k & 7)) & 1) << j;
    }
    out[i] = c;
  }
  return out;
}

/** Bit planes of P = ceil(n/8) bytes: see kernels/assembly/shuffle/bitshuffle.ts. */
export function bitshuffleRef(codes: Uint8Array | Uint16Array, bits: number): Uint8Array {
  const P = (codes.length + 7) >> 3;
  const out = new Uint8Array(bits * P);
  for (let i = 0; i < codes.length; i++) {
    for (let j = 0; j < bits; j++) {
      if ((codes[i] >> j) & 1) out[j * P + (i >> 3)] |= 1 << (i & 7);
    }
  }
  return out;
}

export function bitunshuffleRef(planes: Uint8Array, n: number, bits: number): Uint8Array | Uint16Array {
  const P = (n + 7) >> 3;
  const out = bits > 8 ? new Uint16Array(n) : new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    let c = 0;
    for (let j = 0; j < bits; j++) c |= ((planes[j * P + (i >> 3)] >> (i & 7)) & 1) << j;
    out[i] = c;
  }
  return out;
}

/**
 * float32 -> binary16 bits, round to nearest even, written from the IEEE definition; NaN becomes
 * the quiet NaN 0x7e00 with its sign.
 */
export function f32ToF16Ref(x: Float32Array): Uint16Array {
  const out = new Uint16Array(x.length);
  const xb = new Uint32Array(x.buffer, x.byteOffset, x.length);
  for (let i = 0; i < x.length; i++) {
    const v = x[i];
    const sign = xb[i] >>> 31 ? 0x8000 : 0; // from the bits: also the sign of a NaN
    const a = Math.abs(v);
    if (v !== v) out[i] = sign | 0x7e00;
    else if (a >= 65520) out[i] = sign | 0x7c00; // 65520 = max half + half an ulp: ties go to Inf
    else if (a < 2 ** -14) out[i] = sign | roundEven(a * 2 ** 24); // subnormal: units of 2^-24
    else {
      const e = Math.floor(Math.log2(a));
      const exp = a >= 2 ** (e + 1) ? e + 1 : a < 2 ** e ? e - 1 : e; // guard log2 rounding
      const m = roundEven((a / 2 ** exp - 1) * 1024); // may reach 1024: carries into the exponent
      out[i] = sign | (((exp + 15) << 10) + m);
    }
  }
  return out;
}

export function f16ToF32Ref(h: Uint16Array): Float32Array {
  const out = new Float32Array(h.length);
  const ob = new Uint32Array(out.buffer);
  for (let i = 0; i < h.length; i++) {
    const sign = h[i] & 0x8000 ? -1 : 1;
    const exp = (h[i] >> 10) & 0x1f;
    const mant = h[i] & 0x3ff;
    if (exp === 0) out[i] = sign * mant * 2 ** -24;
    else if (exp === 31) {
      if (mant === 0) out[i] = sign * Infinity;
      else ob[i] = ((h[i] & 0x8000) << 16) | 0x7f800000 | (mant << 13); // NaN: write the bits
    } else out[i] = sign * (1 + mant / 1024) * 2 ** (exp - 15);
  }
  return out;
}
