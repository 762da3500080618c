// Unpacking a cut's quantised codes with standard ONNX operators (a transform), so that a stock
// onnxruntime (Triton's onnxruntime backend, KServe) runs a cloud part with no dyno op:
//
//   dyno's cloud graph:      t__payload ─► ai.dyno.UnpackDequantize ─► t ─► ...
//   this pass's cloud graph: t__codes  (uint8 [B, R])    ─┐
//                            t__ranges (float32 [B, k, 2]) ├─► standard ops ─► t ─► ...
//                            bits      (uint8 [B, 1])     ─┘
//
// t__codes row b is sample b's part of the payload body (kernels/format.ts: dense little-endian
// bit stream, not bit-shuffled, before any lossless stage): R = P·bits/8 bytes for P values per
// sample, so P must be a multiple of 8 and every sample starts on a byte. t__ranges row b holds
// the header's (min, max) pairs: k = 1 per tensor, k = C per channel (axis 1). bits is the
// header's bit width (1..8 or 16; the first row's is used: one request, one width).
//
// Unpacking: 8 codes of b bits fill exactly b bytes, so a row is G = P/8 groups of b bytes, and
// code j of a group starts at bit j·b: it is
//     ((g[first_j] + 256·g[second_j]) / 2^shift_j) mod 2^b        (integer arithmetic)
// with first_j = (j·b) >> 3, shift_j = (j·b) & 7 and second_j the next byte when the code crosses
// into it. Those 8-entry tables are constants per bit width, picked by Gather on `bits`.
//
// Dequantising must give the bits the kernels give (kernels/reference.ts): quantParams computes
// in float64 and rounds to float32 once, then each value is
//     x = hi                                   if q = 2^b - 1
//     x = f32(f32(f32(q·step) + offset)·mult)  otherwise
// The graph computes the same parameters in DOUBLE (range, inv, step before its rounding, the
// overflow test of inv as a comparison with the first double that rounds to float32 infinity)
// and the nudge of step by up to 2 ulps towards the one whose top code lands on max (the next
// float32 up or down, found from a table of powers of two: ONNX has no bit cast), then the
// per-value arithmetic in FLOAT, one operation per rounding. q·step and the sums round once in
// float32 whether done in float32 or in float64 then rounded (53 >= 2·24 + 2), so FLOAT ops give
// exactly Math.fround's results.
//
// Only operators whose semantics have not changed since opset 9 (Cast, Gather, Reshape, Concat,
// Shape, Mul, Add, Sub, Div, Where, Greater, Less, Not, Or, And, Equal on integers, ArgMax) are
// used, so the model keeps its own opset (paddle2onnx exports are opset 9).
import { DynoError } from "../../runtime/common/errors.js";
import { DataType } from "../ir/dtype.js";
import { AttrType, Model, tensorTypeDesc, type Attribute, type Dim, type Graph } from "../ir/graph.js";
import { verifyOrThrow } from "../ir/order.js";
import { Tensor } from "../ir/tensor.js";

/** The input that carries the bit width. */
export const BITS_INPUT = "bits";
/** The inputs that carry cut tensor `t`'s codes and ranges. */
export const codesInput = (t: string) => `${t}__codes`;
export const rangesInput = (t: string) => `${t}__ranges`;

/** Bit widths the unpack serves (the kernels' quantised widths). */
export const UNPACK_BITS = [1, 2, 3, 4, 5, 6, 7, 8, 16] as const;

const F32_MAX = 3.4028234663852886e38;
/** The least double that rounds to float32 +Infinity: F32_MAX + half an ulp (a tie, rounded to even: up). */
const F32_OVERFLOW = 2 ** 128 - 2 ** 103;
const MIN_SUBNORMAL = 2 ** -149;
/** 2^-149 .. 2^128: every positive finite float32 lies in [POW2[i], POW2[i + 1]) for some i. */
const POW2 = Array.from({ length: 278 }, (_, i) => 2 ** (i - 149));

/** Why cut tensor `shape` cannot be unpacked by this pass, or null. */
export function unpackable(shape: readonly Dim[]): string | null {
  if (shape.length < 1) return "a scalar has no batch dimension";
  const rest = shape.slice(1);
  if (rest.some((d) => typeof d !== "number")) return `its shape [${shape.join(",")}] has a symbolic dimension after the first`;
  const p = (rest as number[]).reduce((a, b) => a * b, 1);
  if (p % 8 !== 0) return `${p} values per sample is not a multiple of 8 (samples would not start on a byte)`;
  return null;
}

/** Bytes of one sample's codes at `bits`. */
export function rowBytes(shape: readonly Dim[], bits: number): number {
  return ((shape.slice(1) as number[]).reduce((a, b) => a * b, 1) * bits) / 8;
}

/**
 * The cloud part with each cut input `t` replaced by t__codes, t__ranges and one `bits` input,
 * unpacked and dequantised with standard ops (the header above). Cut tensors are float32 inputs
 * of `cloud` with a static shape after the first (batch) dimension.
 */
export function insertStandardUnpack(cloud: Model, cut: readonly string[]): Model {
  const out = cloud.clone();
  const g = out.graph;
  for (const name of [BITS_INPUT, ...cut.flatMap((t) => [codesInput(t), rangesInput(t)])]) {
    if (g.has(name)) throw new DynoError(`standard-unpack: the model already has a value named "${name}"`);
  }
  const cutInputs = cut.map((t) => {
    const v = g.inputs.find((x) => x.name === t);
    if (!v) throw new DynoError(`standard-unpack: cut tensor "${t}" is not an input of the cloud part`);
    if (v.dtype !== DataType.FLOAT) throw new DynoError(`standard-unpack: cut tensor "${t}" is not float32`);
    const why = unpackable(v.shape ?? []);
    if (why) throw new DynoError(`standard-unpack: cut tensor "${t}": ${why}`);
    return v;
  });
  const batch = cutInputs[0]!.shape![0]!;
  const others = g.inputs.filter((v) => !cut.includes(v.name));
  g.inputs.length = 0;
  g.inputs.push(...others);
  const declare = (name: string, dtype: number, shape: Dim[]) => {
    const v = g.value(name);
    v.dtype = dtype;
    v.shape = shape;
    v.decl = { type: tensorTypeDesc(dtype, shape) };
    g.inputs.push(v);
  };
  declare(BITS_INPUT, DataType.UINT8, [batch, 1]);
  for (const v of cutInputs) {
    declare(codesInput(v.name), DataType.UINT8, [v.shape![0]!, `${v.name}__codes_bytes`]);
    declare(rangesInput(v.name), DataType.FLOAT, [v.shape![0]!, `${v.name}__ranges_count`, 2]);
  }

  // The unpack nodes go first, so the node list stays in topological order.
  const rest = [...g.nodes];
  for (const n of rest) g.removeNode(n);
  const e = new Emitter(g, "bits__unpack");
  const bits = e.bitsIndex();
  for (const v of cutInputs) emitUnpack(new Emitter(g, `${v.name}__unpack`), v.name, v.shape as [Dim, ...number[]], bits);
  for (const n of rest) g.copyNode(n);
  for (const v of cutInputs) {
    if (!g.outputs.includes(v)) g.valueInfo.push(v.name);
    v.decl = { type: tensorTypeDesc(DataType.FLOAT, v.shape) };
  }
  verifyOrThrow(g, "standard-unpack");
  return out;
}

/** Tables per bit width (index b), for the 8 codes of a group of b bytes. */
function groupTables() {
  const first: number[] = [], second: number[] = [], shift: number[] = [], top: number[] = [];
  for (let b = 0; b <= 16; b++) {
    for (let j = 0; j < 8; j++) {
      const start = j * b;
      const f = start >> 3;
      // The next byte, or the same one when the code ends inside its first byte (the last code
      // of a group may not read past the group).
      const s = (start + b - 1) >> 3 > f ? f + 1 : f;
      first.push(f), second.push(s), shift.push(2 ** (start & 7)), top.push(2 ** ((start & 7) + b));
    }
  }
  return { first, second, shift, top };
}

function emitUnpack(e: Emitter, t: string, shape: [Dim, ...number[]], bits: BitsIndex): void {
  const p = shape.slice(1).reduce((a, b) => (a as number) * (b as number), 1) as number;
  const rank = shape.length;
  // codes [B, R] -> [B, G, b]: Reshape's element count check is the length check (R = G·b).
  const groupShape = e.node("Concat", [e.int64("group_dims", [0, p / 8]), bits.asShape], { axis: 0 });
  const groups = e.node("Cast", [e.node("Reshape", [codesInput(t), groupShape])], { to: DataType.INT64 });
  const tables = groupTables();
  const pick = (name: string, values: number[]) => e.node("Gather", [e.int64(name, values, [17, 8]), bits.index], { axis: 0 });
  const lo = e.node("Gather", [groups, pick("first", tables.first)], { axis: 2 });
  const hi = e.node("Gather", [groups, pick("second", tables.second)], { axis: 2 });
  const word = e.node("Add", [lo, e.node("Mul", [hi, e.int64("byte", [256], [])])]);
  const shifted = e.node("Div", [word, pick("shift", tables.shift)]);
  const above = e.node("Mul", [e.node("Div", [word, pick("top", tables.top)]), bits.codes]);
  const codes = e.node("Reshape", [e.node("Sub", [shifted, above]), e.int64("shape", [0, ...shape.slice(1) as number[]])]);

  const q = quantParams(e, rangesInput(t), bits, rank);
  const value = e.node("Mul", [e.node("Add", [e.node("Mul", [e.node("Cast", [codes], { to: DataType.FLOAT }), q.step]), q.offset]), q.mult]);
  e.node("Where", [e.node("Equal", [codes, bits.maxCode]), q.hi, value], {}, t);
}

interface BitsIndex {
  /** The bit width as a scalar int64 index into the per-width tables (an error for a width the kernels lack). */
  index: string;
  /** [b] int64, for a shape. */
  asShape: string;
  /** 2^b (int64 scalar) and 2^b - 1 (int64 and double scalars). */
  codes: string;
  maxCode: string;
  maxCodeD: string;
}

/**
 * quantParams (kernels/reference.ts) over t__ranges [B, k, 2], as [B, k, 1, ...] float32 tensors
 * that broadcast over the cut tensor [B, C, ...].
 */
function quantParams(e: Emitter, ranges: string, bits: BitsIndex, rank: number) {
  const f64 = (x: string) => e.node("Cast", [x], { to: DataType.DOUBLE });
  const f32 = (x: string) => e.node("Cast", [x], { to: DataType.FLOAT });
  const eqF = (a: string, b: string) => e.node("Not", [e.node("Or", [e.node("Less", [a, b]), e.node("Greater", [a, b])])]);
  const min = e.node("Gather", [ranges, e.int64("at0", [0], [])], { axis: 2 });
  const max = e.node("Gather", [ranges, e.int64("at1", [1], [])], { axis: 2 });
  const zero = e.float("zero", 0);
  const lo = e.node("Where", [eqF(min, zero), zero, min]); // -0 -> +0
  const range = e.node("Sub", [f64(max), f64(lo)]);
  const big = e.node("Greater", [range, e.double("f32_max", F32_MAX)]);
  const multD = e.node("Where", [big, e.double("two", 2), e.double("one", 1)]);
  const invD = e.node("Div", [bits.maxCodeD, e.node("Div", [range, multD])]);
  const constant = e.node("Or", [e.node("Not", [e.node("Greater", [range, e.double("zero_d", 0)])]), e.node("Not", [e.node("Less", [invD, e.double("f32_overflow", F32_OVERFLOW)])])]);
  const step0 = e.node("Where", [constant, zero, f32(e.node("Div", [e.node("Div", [range, bits.maxCodeD]), multD]))]);
  const offset = f32(e.node("Div", [f64(lo), multD]));

  // The step within 2 ulps whose top code lands exactly on max, tried in the order 0, +1, -1, +2, -2.
  const s0 = f64(step0);
  const up1 = nextUp(e, s0), down1 = nextDown(e, s0);
  const up2 = nextUp(e, up1), down2 = nextDown(e, down1);
  const maxCodeF = f32(bits.maxCodeD);
  const lands = (s: string) => eqF(e.node("Add", [e.node("Mul", [maxCodeF, s]), offset]), max);
  const candidates = [s0, up1, down1, up2, down2].map(f32);
  let chosen = step0;
  for (const c of [...candidates].reverse()) chosen = e.node("Where", [lands(c), c, chosen]);
  const nudge = e.node("And", [e.node("Not", [big]), e.node("Greater", [step0, zero])]);
  const step = e.node("Where", [nudge, chosen, step0]);
  const hi = e.node("Where", [constant, lo, max]);

  // [B, k] -> [B, k, 1, ...] against the cut tensor's rank (k = 1 or C broadcasts over axis 1).
  const target = e.int64("params_shape", rank === 1 ? [0] : [0, -1, ...Array(rank - 2).fill(1)]);
  const shaped = (x: string) => e.node("Reshape", [x, target]);
  return { step: shaped(step), offset: shaped(offset), mult: shaped(f32(multD)), hi: shaped(hi) };
}

/** The float32 after positive float32 `s` (a double holding it; 0 gives the least subnormal). */
function nextUp(e: Emitter, s: string): string {
  return e.node("Add", [s, ulpOf(e, s).ulp]);
}

/** The float32 before positive float32 `s` (s > 0). */
function nextDown(e: Emitter, s: string): string {
  const { ulp, binade } = ulpOf(e, s);
  // At a power of two the float32s below are twice as dense (down to the subnormals' spacing).
  const half = clampSubnormal(e, e.node("Mul", [binade, e.double("two_m24", 2 ** -24)]));
  const atPower = e.node("Not", [e.node("Greater", [s, binade])]);
  return e.node("Sub", [s, e.node("Where", [atPower, half, ulp])]);
}

/** The spacing of float32s at positive `s` and the power of two that starts its binade. */
function ulpOf(e: Emitter, s: string): { ulp: string; binade: string } {
  const pow2 = e.double("pow2", POW2, [POW2.length]);
  // The first power of two above s, by ArgMax over (pow2 > s) (the first maximum wins).
  const above = e.node("Greater", [pow2, e.node("Reshape", [s, e.int64("col", [0, 0, 1])])]);
  const first = e.node("ArgMax", [e.node("Cast", [above], { to: DataType.FLOAT })], { axis: 2, keepdims: 0 });
  const index = e.node("Sub", [first, e.int64("one_i", [1], [])]);
  const safe = e.node("Where", [e.node("Less", [index, e.int64("zero_i", [0], [])]), e.int64("zero_i", [0], []), index]);
  const binade = e.node("Gather", [pow2, safe], { axis: 0 });
  return { ulp: clampSubnormal(e, e.node("Mul", [binade, e.double("two_m23", 2 ** -23)])), binade };
}

/** max(x, 2^-149): below the normal range float32s are evenly spaced. */
function clampSubnormal(e: Emitter, x: string): string {
  const m = e.double("min_subnormal", MIN_SUBNORMAL);
  return e.node("Where", [e.node("Less", [x, m]), m, x]);
}

/** Emits nodes and constants under one name prefix; each constant once. */
class Emitter {
  private count = 0;
  constructor(readonly g: Graph, readonly prefix: string) {}

  node(op: string, inputs: string[], attrs: Record<string, number> = {}, output?: string): string {
    const name = output ?? `${this.prefix}/${op}_${this.count++}`;
    const attributes: Attribute[] = Object.entries(attrs).map(([k, i]) => ({ name: k, type: AttrType.INT, i }));
    this.g.addNode(op, inputs, [name], { name: `${this.prefix}/${op}_${this.count++}`, attributes });
    return name;
  }

  private constant(name: string, make: (full: string) => Tensor): string {
    const full = `${this.prefix}/${name}`;
    if (!this.g.isInitializer(full)) this.g.addInitializer(make(full));
    return full;
  }

  int64(name: string, values: number[], dims: number[] = [values.length]): string {
    return this.constant(name, (n) => Tensor.fromInt64(n, dims, values));
  }

  double(name: string, values: number | number[], dims: number[] = []): string {
    const data = Float64Array.from(typeof values === "number" ? [values] : values);
    return this.constant(name, (n) => Tensor.fromBytes(n, DataType.DOUBLE, dims, new Uint8Array(data.buffer)));
  }

  float(name: string, value: number): string {
    return this.constant(name, (n) => Tensor.fromFloat32(n, [], Float32Array.of(value)));
  }

  /** The `bits` input as table indices; a width outside UNPACK_BITS indexes past a table (an onnxruntime error). */
  bitsIndex(): BitsIndex {
    const raw = this.node("Cast", [this.node("Gather", [this.node("Gather", [BITS_INPUT, this.int64("row0", [0], [])], { axis: 0 }), this.int64("col0", [0], [])], { axis: 0 })], { to: DataType.INT64 });
    const valid = Array.from({ length: 17 }, (_, b) => ((UNPACK_BITS as readonly number[]).includes(b) ? b : 1000));
    const index = this.node("Gather", [this.int64("valid", valid), raw], { axis: 0 });
    const codes = this.node("Gather", [this.int64("codes", Array.from({ length: 17 }, (_, b) => 2 ** b)), index], { axis: 0 });
    const maxCode = this.node("Sub", [codes, this.int64("one", [1], [])]);
    return {
      index,
      asShape: this.node("Reshape", [index, this.int64("vector", [1])]),
      codes,
      maxCode,
      maxCodeD: this.node("Cast", [maxCode], { to: DataType.DOUBLE }),
    };
  }
}
