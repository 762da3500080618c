// Lossless spatial tiling (a transform): D3's vertical separation, DeepThings' fused tile
// partitioning generalised to padding, dilation, groups, asymmetric pads, pooling and DAGs.
//
//   run input  ┌───────────┬───────────┐        run output ┌─────┬─────┐
//   (halo'd)   │ tile 0 ┆··│··┆ tile 1 │  conv ... conv    │  0  │  1  │
//              │        ┆  │  ┆        │  ───────────────► ├─────┼─────┤
//              │   ·····┼··│··┼·····   │                   │  2  │  3  │
//              └───────────┴───────────┘                   └─────┴─────┘
//
// The last op's output is split into a grid. Walking backwards, each op maps the rows and
// columns a tile needs of its output to the rows and columns it needs of its input: for a conv
// with stride s, kernel k, dilation d and begin pad p, output rows [o1, o2] need input rows
// [o1*s - p, o2*s - p + d*(k-1)], clipped to the input. A clipped side lies on the image border
// and keeps (that much of) the op's zero padding; an inner side gets none. Where several
// consumers read a tensor (a residual's skip, a concat's branches) the tile computes the union
// of what they need and each consumer slices its own part. Every output value is then computed
// from exactly the inputs and padding the untiled op uses: the method approximates nothing.
//
// Only spatially local ops tile (ONNX's NCHW, 2-D): Conv, pooling with explicit windows,
// BatchNormalization, element-wise arithmetic and activations, channel Concat/Split, constant
// Pad, Resize with integer scales. Global pooling, Gemm/MatMul, Reshape, Transpose, Softmax
// across space and the like are not: `findTileableRun` stops there and says where and why.
import { GraphError, UnsupportedError } from "../../runtime/common/errors.js";
import { DataType } from "../ir/dtype.js";
import { AttrType, Graph, Model, tensorTypeDesc, type Attribute, type Node, type Value } from "../ir/graph.js";
import { topoSort, verifyOrThrow } from "../ir/order.js";
import { Tensor } from "../ir/tensor.js";
import { regionText, type Region } from "../../runtime/common/tiles.js";
import { computeCosts, numel } from "./costs.js";
import { findCuts } from "./find-cuts.js";
import { partitionChain } from "./partition.js";
import { staticValues } from "./static-values.js";

export interface Grid {
  rows: number;
  cols: number;
}

export function parseGrid(spec: string): Grid {
  const m = /^(\d+)x(\d+)$/.exec(spec.trim());
  if (!m || Number(m[1]) < 1 || Number(m[2]) < 1) throw new UnsupportedError(`grid "${spec}" is not ROWSxCOLS (e.g. 2x2)`);
  return { rows: Number(m[1]), cols: Number(m[2]) };
}

export const gridName = (g: Grid): string => `${g.rows}x${g.cols}`;

/** A tile's input or output: the tensor's name and the region of the untiled tensor it covers. */
export interface TileIo {
  name: string;
  region: Region;
}

export interface Tile {
  row: number;
  col: number;
  /** A standalone model: the run's ops on this tile's regions (names as in the run). */
  model: Model;
  inputs: TileIo[];
  outputs: TileIo[];
  macs: number;
}

export interface TiledRun {
  grid: Grid;
  tiles: Tile[];
  /** MACs of the untiled run, and of all tiles together (halo recomputation included). */
  macs: number;
  tiledMacs: number;
  /** float32 bytes of the run's inputs, untiled and summed over the tiles (halos counted per tile). */
  inputBytes: number;
  tiledInputBytes: number;
}

/** Halo overhead as fractions of the untiled run: recomputed MACs, extra input bytes. */
export function haloOverhead(t: TiledRun): { macs: number; inputBytes: number } {
  return { macs: t.macs ? t.tiledMacs / t.macs - 1 : 0, inputBytes: t.inputBytes ? t.tiledInputBytes / t.inputBytes - 1 : 0 };
}

export { type Region };

const area = (r: Region) => Math.max(0, r.h1 - r.h0) * Math.max(0, r.w1 - r.w0);
const union = (a: Region | undefined, b: Region): Region => (a ? { h0: Math.min(a.h0, b.h0), h1: Math.max(a.h1, b.h1), w0: Math.min(a.w0, b.w0), w1: Math.max(a.w1, b.w1) } : { ...b });
const same = (a: Region, b: Region) => a.h0 === b.h0 && a.h1 === b.h1 && a.w0 === b.w0 && a.w1 === b.w1;

// ---------------------------------------------------------------------------------------------
// Which ops are local, and how each maps an output region to its input regions.

/** One spatial axis of a windowed op: begin/end pad, stride, dilated kernel extent. */
interface Window {
  k: number;
  s: number;
  d: number;
  pb: number;
  pe: number;
  ceil: boolean;
}

/** The per-input regions an op reads for an output region, and the op as the tile runs it. */
interface Mapping {
  /** Per input slot: the region read (null: read whole, e.g. weights or a broadcast operand). */
  reads: (Region | null)[];
  /** Rebuilds the node for a tile: attributes and any new constant inputs; returns what it computes. */
  emit(t: Graph, node: Node, inputs: string[], prefix: string): { attributes: Attribute[]; inputs: string[]; computed: Region };
}

type Rule = (node: Node, out: Region, ctx: RuleContext) => Mapping;

interface RuleContext {
  hw(v: Value): [number, number];
  isSpatial(v: Value | null): boolean;
  constInts(v: Value | null | undefined): number[] | undefined;
  constFloats(v: Value | null | undefined): number[] | undefined;
}

const ELEMENTWISE = new Set([
  "Relu", "LeakyRelu", "PRelu", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "Clip", "Elu", "Selu", "Celu", "Softplus", "Softsign", "Gelu", "Erf",
  "Exp", "Log", "Abs", "Neg", "Sqrt", "Reciprocal", "Floor", "Ceil", "Round", "Sign", "Cast", "Identity", "Dropout", "Mish", "ThresholdedRelu",
  "Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "BatchNormalization", "LRN", "Not", "Equal", "Greater", "Less", "Where",
]);

/** Why an op is not spatially local, or null when it is (its rule then exists). */
export function nonLocalReason(node: Node, ctx: Pick<RuleContext, "hw" | "isSpatial" | "constInts" | "constFloats"> & { opset: number }): string | null {
  const op = node.opType;
  if (node.domain && node.domain !== "ai.onnx") return `${node.domain}.${op} is a custom op`;
  const outs = node.outputs.filter(Boolean) as Value[];
  if (outs.some((v) => !ctx.isSpatial(v))) return `its output is not a 2-D feature map (NCHW with known height and width)`;
  if (ELEMENTWISE.has(op)) {
    if (op === "Dropout" && node.outputs[1]) return "Dropout's mask output is used";
    if (op === "BatchNormalization" && node.outputs.filter(Boolean).length > 1) return "BatchNormalization in training mode";
    const [h, w] = ctx.hw(outs[0]!);
    for (const [slot, v] of node.inputs.entries()) {
      if (!v) continue;
      if (ctx.isSpatial(v)) {
        if (ctx.hw(v)[0] !== h || ctx.hw(v)[1] !== w) return `operand "${v.name}" has another height or width (broadcast across space)`;
        continue;
      }
      if (op === "BatchNormalization" && slot > 0) continue; // per-channel by definition
      // Any other operand must be the same for every pixel: its last two dims 1 (or absent).
      const s = v.shape;
      if (!s) return `operand "${v.name}" has no known shape`;
      if (s.slice(-2).some((d) => d !== 1)) return `operand "${v.name}" of shape [${s.join(",")}] varies across space`;
    }
    return null;
  }
  switch (op) {
    case "Conv": {
      const x = node.inputs[0];
      if (!x || x.shape?.length !== 4) return "only 2-D convolutions tile";
      return null;
    }
    case "MaxPool":
    case "AveragePool":
    case "LpPool": {
      if (node.outputs[1]) return "MaxPool's Indices output depends on the absolute position";
      if (node.inputs[0]?.shape?.length !== 4) return "only 2-D pooling tiles";
      return null;
    }
    case "Concat": {
      const axis = node.attrInt("axis", 0);
      if (axis !== 1 && axis !== -3) return `Concat along axis ${axis} joins across space (only channel concat tiles)`;
      return null;
    }
    case "Split": {
      const axis = node.attrInt("axis", 0);
      if (axis !== 1 && axis !== -3) return `Split along axis ${axis} splits space`;
      return null;
    }
    case "Pad": {
      const mode = node.attrString("mode", "constant");
      if (mode !== "constant") return `Pad in "${mode}" mode reads across the tile border`;
      if (node.inputs[3]) return "Pad with axes is not tiled";
      const pads = ctx.opset < 11 ? node.attrInts("pads") : ctx.constInts(node.inputs[1]);
      if (!pads) return "Pad's pads are computed at run time";
      if (pads.length !== 8 || pads[0] || pads[1] || pads[4] || pads[5]) return "Pad pads the batch or the channels";
      if (pads.some((p) => p < 0)) return "Pad with negative pads crops";
      return null;
    }
    case "Resize": {
      const mode = node.attrString("mode", "nearest");
      if (mode !== "nearest" && mode !== "linear") return `Resize in "${mode}" mode`;
      const ctm = node.attrString("coordinate_transformation_mode", "half_pixel");
      if (!["half_pixel", "asymmetric", "pytorch_half_pixel", "tf_half_pixel_for_nn"].includes(ctm)) return `Resize's coordinate_transformation_mode "${ctm}" does not scale by a constant factor`;
      if (node.attr("antialias")?.i) return "Resize with antialias";
      if (node.attr("axes")) return "Resize with axes";
      const x = node.inputs[0]!;
      const [h, w] = ctx.hw(x);
      const [oh, ow] = ctx.hw(outs[0]!);
      if (oh % h || ow % w) return `Resize from ${h}x${w} to ${oh}x${ow} is not by an integer factor`;
      const scales = ctx.opset < 11 ? ctx.constFloats(node.inputs[1]) : node.inputs[2] ? ctx.constFloats(node.inputs[2]) : undefined;
      const sizes = ctx.opset >= 11 && node.inputs[3] ? ctx.constInts(node.inputs[3]) : undefined;
      if (!scales?.length && !sizes) return "Resize's scales or sizes are computed at run time";
      if (scales?.length && (scales[0] !== 1 || scales[1] !== 1 || scales[2] !== oh / h || scales[3] !== ow / w)) return `Resize's scales [${scales.join(",")}] are not the integer factors ${oh / h}, ${ow / w}`;
      return null;
    }
    case "GlobalAveragePool":
    case "GlobalMaxPool":
    case "GlobalLpPool":
      return "global pooling reads the whole map";
    case "ConvTranspose":
      return "ConvTranspose is not tiled (its output tiles overlap)";
    case "Gemm":
    case "MatMul":
      return "a fully connected layer reads the whole map";
    case "Reshape":
    case "Flatten":
    case "Transpose":
    case "Squeeze":
    case "Unsqueeze":
    case "DepthToSpace":
    case "SpaceToDepth":
      return `${op} moves data across space`;
    case "Softmax":
    case "LogSoftmax":
      return `${op} normalises along an axis`;
    case "InstanceNormalization":
    case "LayerNormalization":
    case "GroupNormalization":
      return `${op} normalises over the whole map`;
    case "ReduceMean":
    case "ReduceMax":
    case "ReduceSum":
      return `${op} reduces`;
    default:
      return `${op} has no tiling rule`;
  }
}

function windowOf(node: Node, x: Value, axis: 0 | 1, kernel: [number, number], ctx: RuleContext, outHW: [number, number]): Window {
  const [h, w] = ctx.hw(x);
  const size = axis === 0 ? h : w;
  const k = kernel[axis];
  const s = node.attrInts("strides")?.[axis] ?? 1;
  const d = node.attrInts("dilations")?.[axis] ?? 1;
  const ceil = node.attrInt("ceil_mode", 0) === 1;
  const autoPad = node.attrString("auto_pad", "NOTSET");
  let pb: number, pe: number;
  if (autoPad === "SAME_UPPER" || autoPad === "SAME_LOWER") {
    const out = Math.ceil(size / s);
    const total = Math.max(0, (out - 1) * s + d * (k - 1) + 1 - size);
    pb = autoPad === "SAME_UPPER" ? Math.floor(total / 2) : Math.ceil(total / 2);
    pe = total - pb;
  } else if (autoPad === "VALID") {
    pb = pe = 0;
  } else {
    const pads = node.attrInts("pads") ?? [0, 0, 0, 0];
    pb = pads[axis] ?? 0;
    pe = pads[axis + 2] ?? 0;
  }
  const out = outHW[axis];
  const span = size + pb + pe - d * (k - 1) - 1;
  const expect = (ceil ? Math.ceil(span / s) : Math.floor(span / s)) + 1;
  // ceil_mode drops a last window that would start in the end padding, as onnxruntime does.
  if (expect !== out && !(ceil && expect - 1 === out)) throw new GraphError(`${node.label}: window arithmetic gives ${expect} outputs along ${axis ? "width" : "height"}, the graph says ${out}`);
  return { k, s, d, pb, pe, ceil };
}

/** Input rows [i0, i1) and the tile's own pads for output rows [o0, o1) along one axis. */
function windowBack(win: Window, o0: number, o1: number, size: number): { i0: number; i1: number; pb: number; pe: number } {
  const lo = o0 * win.s - win.pb;
  const hi = (o1 - 1) * win.s - win.pb + win.d * (win.k - 1) + 1;
  return { i0: Math.max(0, lo), i1: Math.min(size, hi), pb: Math.max(0, -lo), pe: Math.min(win.pe, Math.max(0, hi - size)) };
}

function windowed(node: Node, out: Region, ctx: RuleContext, kernel: [number, number]): Mapping {
  const x = node.inputs[0]!;
  const [h, w] = ctx.hw(x);
  const outHW = ctx.hw(node.outputs[0]!);
  const wh = windowOf(node, x, 0, kernel, ctx, outHW);
  const ww = windowOf(node, x, 1, kernel, ctx, outHW);
  const bh = windowBack(wh, out.h0, out.h1, h);
  const bw = windowBack(ww, out.w0, out.w1, w);
  // Check the tile's window arithmetic reproduces exactly the rows and columns asked for.
  for (const [win, b, o0, o1, name] of [[wh, bh, out.h0, out.h1, "height"], [ww, bw, out.w0, out.w1, "width"]] as const) {
    const span = b.i1 - b.i0 + b.pb + b.pe - win.d * (win.k - 1) - 1;
    let n = (win.ceil ? Math.ceil(span / win.s) : Math.floor(span / win.s)) + 1;
    if (win.ceil && (n - 1) * win.s >= b.i1 - b.i0 + b.pb) n--;
    if (n !== o1 - o0) throw new UnsupportedError(`${node.label} (${node.opType}): a tile's window along the ${name} gives ${n} outputs, not ${o1 - o0} (ceil_mode at the border)`);
  }
  const reads: (Region | null)[] = node.inputs.map((_, i) => (i === 0 ? { h0: bh.i0, h1: bh.i1, w0: bw.i0, w1: bw.i1 } : null));
  return {
    reads,
    emit: (_t, n, inputs) => {
      const attributes = n.attributes.filter((a) => a.name !== "pads" && a.name !== "auto_pad");
      attributes.push({ name: "pads", type: AttrType.INTS, ints: [bh.pb, bw.pb, bh.pe, bw.pe] });
      return { attributes, inputs, computed: { ...out } };
    },
  };
}

const RULES: Record<string, Rule> = {
  Conv: (node, out, ctx) => {
    const wShape = node.inputs[1]!.shape!;
    const ks = node.attrInts("kernel_shape") ?? [Number(wShape[2]), Number(wShape[3])];
    return windowed(node, out, ctx, [ks[0]!, ks[1]!]);
  },
  MaxPool: (node, out, ctx) => windowed(node, out, ctx, node.attrInts("kernel_shape") as [number, number]),
  AveragePool: (node, out, ctx) => windowed(node, out, ctx, node.attrInts("kernel_shape") as [number, number]),
  LpPool: (node, out, ctx) => windowed(node, out, ctx, node.attrInts("kernel_shape") as [number, number]),
  Pad: (node, out, ctx) => {
    const opset11 = node.inputs.length > 1 && node.attrInts("pads") === undefined;
    const pads = (opset11 ? ctx.constInts(node.inputs[1]) : node.attrInts("pads"))!;
    const [h, w] = ctx.hw(node.inputs[0]!);
    const ph = { b: pads[2]!, e: pads[6]! };
    const pw = { b: pads[3]!, e: pads[7]! };
    const axis = (o0: number, o1: number, size: number, p: { b: number; e: number }) => ({ i0: Math.max(0, o0 - p.b), i1: Math.min(size, o1 - p.b), pb: Math.max(0, p.b - o0), pe: Math.max(0, o1 - p.b - size) });
    const ah = axis(out.h0, out.h1, h, ph);
    const aw = axis(out.w0, out.w1, w, pw);
    const tilePads = [0, 0, ah.pb, aw.pb, 0, 0, ah.pe, aw.pe];
    return {
      reads: node.inputs.map((_, i) => (i === 0 ? { h0: ah.i0, h1: Math.max(ah.i0, ah.i1), w0: aw.i0, w1: Math.max(aw.i0, aw.i1) } : null)),
      emit: (t, n, inputs, prefix) => {
        if (!opset11) return { attributes: [...n.attributes.filter((a) => a.name !== "pads"), { name: "pads", type: AttrType.INTS, ints: tilePads }], inputs, computed: { ...out } };
        const name = `${prefix}pads`;
        t.addInitializer(Tensor.fromInt64(name, [8], tilePads));
        return { attributes: n.attributes, inputs: [inputs[0]!, name, ...inputs.slice(2)], computed: { ...out } };
      },
    };
  },
  Resize: (node, out, ctx) => {
    const x = node.inputs[0]!;
    const [h, w] = ctx.hw(x);
    const [oh, ow] = ctx.hw(node.outputs[0]!);
    const sh = oh / h;
    const sw = ow / w;
    const ctm = node.attrString("coordinate_transformation_mode", "half_pixel");
    // The input coordinate of output index o; taps lie in [floor(x), floor(x) + 1].
    const coord = (o: number, s: number) => (ctm === "asymmetric" ? o / s : ctm === "tf_half_pixel_for_nn" ? (o + 0.5) / s : (o + 0.5) / s - 0.5);
    const axis = (o0: number, o1: number, s: number, size: number) => ({ i0: Math.max(0, Math.floor(coord(o0, s))), i1: Math.min(size, Math.floor(coord(o1 - 1, s)) + 2) });
    const ah = axis(out.h0, out.h1, sh, h);
    const aw = axis(out.w0, out.w1, sw, w);
    return {
      reads: node.inputs.map((_, i) => (i === 0 ? { h0: ah.i0, h1: ah.i1, w0: aw.i0, w1: aw.i1 } : null)),
      emit: (t, n, inputs, prefix) => {
        // The tile resizes its slice by the same factors: output [i0*s, i1*s), cropped by consumers.
        const computed = { h0: ah.i0 * sh, h1: ah.i1 * sh, w0: aw.i0 * sw, w1: aw.i1 * sw };
        const sizes = n.inputs[3] ? ctx.constInts(n.inputs[3]) : undefined;
        if (!sizes) return { attributes: n.attributes, inputs, computed };
        const name = `${prefix}sizes`;
        t.addInitializer(Tensor.fromInt64(name, [4], [sizes[0]!, sizes[1]!, computed.h1 - computed.h0, computed.w1 - computed.w0]));
        return { attributes: n.attributes, inputs: [...inputs.slice(0, 3), name], computed };
      },
    };
  },
};

function elementwise(node: Node, out: Region, ctx: RuleContext): Mapping {
  return {
    reads: node.inputs.map((v) => (v && ctx.isSpatial(v) ? { ...out } : null)),
    emit: (_t, n, inputs) => ({ attributes: n.attributes, inputs, computed: { ...out } }),
  };
}

function ruleFor(node: Node): Rule {
  return RULES[node.opType] ?? elementwise;
}

// ---------------------------------------------------------------------------------------------
// Finding the run to tile.

export interface TileStop {
  node: string;
  op: string;
  reason: string;
}

export interface TileableRun {
  /** The tensors the run starts from and ends at (cuts of the part it was found in). */
  start: string[];
  end: string[];
  /** The part split at the run: [before (null when the run starts at the part's inputs), run, after (null when it ends at its outputs)]. */
  before: Model | null;
  run: Model;
  after: Model | null;
  macs: number;
  /** The share of the part's MACs inside the run. */
  share: number;
  /** The non-local ops just before and just after the run, with why they end it. */
  stops: TileStop[];
}

function contextFor(model: Model): RuleContext & { opset: number } {
  const g = model.graph;
  const hw = (v: Value): [number, number] => [v.shape![2] as number, v.shape![3] as number];
  const isSpatial = (v: Value | null): boolean =>
    !!v && v.dtype === DataType.FLOAT && v.shape?.length === 4 && typeof v.shape[2] === "number" && typeof v.shape[3] === "number" && !g.isInitializer(v.name) && !(v.producer?.opType === "Constant");
  const constTensor = (v: Value | null | undefined): Tensor | undefined => {
    if (!v || !v.name) return undefined;
    const t = g.initializers.get(v.name);
    if (t) return t;
    const p = v.producer;
    if (p?.opType === "Constant") return p.attr("value")?.t;
    return undefined;
  };
  return {
    opset: model.opset("") ?? 17,
    hw,
    isSpatial,
    constInts: (v) => constTensor(v)?.toNumbers(),
    constFloats: (v) => constTensor(v)?.toNumbers(),
  };
}

/**
 * Static values computed from the shapes of tensors (Shape/Size and what follows from them):
 * in a tile they would see the tile's shapes, not the run's. Weights and constant folding
 * (an Identity of a shared weight, say) are fine: the tile copies them.
 */
function shapeDerived(g: Graph, statics: Set<string>): Set<string> {
  const out = new Set<string>();
  for (const n of topoSort(g)) {
    const outs = n.outputs.filter((v): v is Value => !!v && statics.has(v.name));
    if (!outs.length) continue;
    if (n.opType === "Shape" || n.opType === "Size" || n.reads.some((v) => out.has(v.name))) for (const v of outs) out.add(v.name);
  }
  return out;
}

/** Why a node of `model` cannot be tiled, or null. Shape arithmetic read by a local op also stops it. */
function stopReason(ctx: ReturnType<typeof contextFor>, node: Node, derived: Set<string>): string | null {
  const r = nonLocalReason(node, { ...ctx });
  if (r) return r;
  for (const v of node.inputs) if (v && derived.has(v.name)) return `it reads "${v.name}", computed from shapes at run time`;
  return null;
}

/**
 * The longest run (by MACs) of spatially local ops in `model` between two of its cuts whose
 * tensors are all feature maps, with the part split around it. Null (with the reasons) when
 * no op of the part tiles.
 */
export function findTileableRun(model: Model): TileableRun | { stops: TileStop[] } {
  const ctx = contextFor(model);
  const facts = findCuts(model);
  const derived = shapeDerived(model.graph, staticValues(model.graph).values);
  const order = facts.order;
  const reasons = order.map((n) => stopReason(ctx, n, derived));
  const spatialCut = (tensors: readonly string[]) => tensors.length > 0 && tensors.every((t) => ctx.isSpatial(model.graph.value(t)));
  const cuts = facts.cuts;
  const macsBefore = (pos: number) => (pos === 0 ? 0 : cuts.find((c) => c.position === pos)?.deviceMacs ?? 0);
  let best: { from: (typeof cuts)[number]; to: (typeof cuts)[number]; macs: number } | null = null;
  // Maximal stretches of local nodes [s, e): the run is between the first and last spatial cuts inside.
  for (let s = 0; s < order.length; ) {
    if (reasons[s]) {
      s++;
      continue;
    }
    let e = s;
    while (e < order.length && !reasons[e]) e++;
    const inside = cuts.filter((c) => c.position >= s && c.position <= e && spatialCut(c.tensors));
    if (inside.length >= 2) {
      const from = inside[0]!;
      const to = inside[inside.length - 1]!;
      const macs = macsBefore(to.position) - macsBefore(from.position);
      if (macs > 0 && (!best || macs > best.macs)) best = { from, to, macs };
    }
    s = e;
  }
  const stopAt = (pos: number): TileStop | null => (pos >= 0 && pos < order.length && reasons[pos] ? { node: order[pos]!.label, op: order[pos]!.opType, reason: reasons[pos]! } : null);
  if (!best) {
    const stops = order.map((_, i) => stopAt(i)).filter((x): x is TileStop => !!x);
    return { stops: stops.slice(0, 3) };
  }
  const stops = [stopAt(best.from.position - 1), stopAt(best.to.position)].filter((x): x is TileStop => !!x);
  const inner = [best.from, best.to].filter((c) => c.kind === "inner");
  const parts = partitionChain(model, inner.map((c) => c.tensors));
  const before = best.from.kind === "inner" ? parts.shift()! : null;
  const run = parts.shift()!;
  const after = best.to.kind === "inner" ? parts.shift()! : null;
  return { start: best.from.tensors, end: best.to.tensors, before, run, after, macs: best.macs, share: facts.totalMacs ? best.macs / facts.totalMacs : 0, stops };
}

// ---------------------------------------------------------------------------------------------
// Tiling a run.

/** Output rows/cols of tile (r, c) of an extent split into `n` near-equal parts. */
const band = (i: number, n: number, size: number): [number, number] => [Math.floor((i * size) / n), Math.floor(((i + 1) * size) / n)];

/**
 * Splits `run` (every input and output a feature map, every op local: `findTileableRun`'s run)
 * into `grid` tiles. Each tile model reads its input regions (halos included) and writes its
 * part of every output; stitching the parts gives the untiled outputs exactly.
 */
export function tileRun(run: Model, grid: Grid): TiledRun {
  const g = run.graph;
  const ctx = contextFor(run);
  const inputs = g.inputs.filter((v) => !g.isInitializer(v.name));
  const outputs = g.outputs;
  for (const v of [...inputs, ...outputs]) {
    if (!ctx.isSpatial(v)) throw new UnsupportedError(`tile-spatial: "${v.name}" is not a float32 NCHW feature map with known height and width`);
  }
  for (const v of outputs) {
    const [h, w] = ctx.hw(v);
    if (h < grid.rows || w < grid.cols) throw new UnsupportedError(`tile-spatial: "${v.name}" is ${h}x${w}, too small for a ${gridName(grid)} grid`);
  }
  const statics = staticValues(g);
  const derived = shapeDerived(g, statics.values);
  const nodes = topoSort(g).filter((n) => !statics.nodes.has(n));
  for (const n of nodes) {
    const r = stopReason(ctx, n, derived);
    if (r) throw new UnsupportedError(`tile-spatial: ${n.label} (${n.opType}) does not tile: ${r}`);
  }
  const macs = computeCosts(run).totalMacs;
  const inputBytes = inputs.reduce((s, v) => s + 4 * numel(v.shape), 0);
  const tiles: Tile[] = [];
  for (let r = 0; r < grid.rows; r++) {
    for (let c = 0; c < grid.cols; c++) {
      const want = new Map<string, Region>();
      for (const v of outputs) {
        const [h, w] = ctx.hw(v);
        const [h0, h1] = band(r, grid.rows, h);
        const [w0, w1] = band(c, grid.cols, w);
        want.set(v.name, { h0, h1, w0, w1 });
      }
      tiles.push(buildTile(run, ctx, nodes, want, r, c, grid));
    }
  }
  const tiledMacs = tiles.reduce((s, t) => s + t.macs, 0);
  const tiledInputBytes = tiles.reduce((s, t) => s + t.inputs.reduce((a, io) => a + 4 * channelsBatch(g.value(io.name)) * area(io.region), 0), 0);
  return { grid, tiles, macs, tiledMacs, inputBytes, tiledInputBytes };
}

const channelsBatch = (v: Value) => (typeof v.shape![0] === "number" ? v.shape![0] : 1) * (v.shape![1] as number);

function buildTile(run: Model, ctx: RuleContext, nodes: Node[], want: Map<string, Region>, row: number, col: number, grid: Grid): Tile {
  const g = run.graph;
  // 1. Backwards: the region each tensor must hold, the union of what its consumers read.
  const need = new Map<string, Region>(want);
  const mappings = new Map<Node, Mapping>();
  for (let i = nodes.length - 1; i >= 0; i--) {
    const n = nodes[i]!;
    let out: Region | undefined;
    for (const v of n.outputs) if (v && need.has(v.name)) out = union(out, need.get(v.name)!);
    if (!out) continue; // not needed by this tile
    const m = ruleFor(n)(n, out, ctx);
    mappings.set(n, m);
    n.inputs.forEach((v, slot) => {
      const r = m.reads[slot];
      if (v && r && ctx.isSpatial(v)) need.set(v.name, union(need.get(v.name), r));
    });
  }
  // 2. Forwards: the tile graph. Each tensor holds `computed`; a consumer reading less slices.
  // An op writing a run output writes "<name>__tile_full"; the output itself is its crop.
  const t = new Graph();
  t.name = `${g.name || "run"}_tile_${row}_${col}`;
  const outNames = new Set(g.outputs.map((v) => v.name));
  const local = (name: string) => (outNames.has(name) ? `${name}__tile_full` : name);
  const computed = new Map<string, Region>();
  const inputs: TileIo[] = [];
  for (const v of g.inputs) {
    if (g.isInitializer(v.name)) continue;
    const r = need.get(v.name);
    if (!r) continue;
    const w = t.value(local(v.name));
    w.dtype = v.dtype;
    w.shape = regionShape(v, r);
    w.decl = { type: tensorTypeDesc(v.dtype ?? DataType.FLOAT, w.shape) };
    t.inputs.push(w);
    computed.set(v.name, r);
    inputs.push({ name: v.name, region: { ...r } });
  }
  if (inputs.some((io) => outNames.has(io.name))) throw new UnsupportedError(`tile-spatial: run input "${inputs.find((io) => outNames.has(io.name))!.name}" is also an output`);
  const crops = new Map<string, string>();
  let serial = 0;
  /** The tile's name for `name` cropped to `r` (a Slice, made once per region), or `as` for the crop's name. */
  const cropTo = (name: string, r: Region, as?: string): string => {
    const have = computed.get(name)!;
    const src = local(name);
    if (same(have, r) && !as) return src;
    if (r.h0 < have.h0 || r.h1 > have.h1 || r.w0 < have.w0 || r.w1 > have.w1) throw new GraphError(`tile-spatial: "${name}" holds ${regionText(have)} but ${regionText(r)} is read`);
    const key = `${name}|${r.h0},${r.h1},${r.w0},${r.w1}`;
    const known = crops.get(key);
    if (known && !as) return known;
    const out = as ?? `${name}__tile_crop${serial++}`;
    const v = g.value(name);
    if (same(have, r)) {
      t.addNode("Identity", [src], [out], { name: `${out}__identity` });
    } else {
      const base = `${out}__tile_slice`;
      const starts = [r.h0 - have.h0, r.w0 - have.w0];
      const ends = [r.h1 - have.h0, r.w1 - have.w0];
      if ((run.opset("") ?? 17) < 10) {
        // Slice-1 (opsets before 10) takes its starts, ends and axes as attributes.
        const ints = (name: string, v: number[]): Attribute => ({ name, type: AttrType.INTS, ints: v });
        t.addNode("Slice", [src], [out], { name: base, attributes: [ints("starts", starts), ints("ends", ends), ints("axes", [2, 3])] });
      } else {
        t.addInitializer(Tensor.fromInt64(`${base}_starts`, [2], starts));
        t.addInitializer(Tensor.fromInt64(`${base}_ends`, [2], ends));
        t.addInitializer(Tensor.fromInt64(`${base}_axes`, [2], [2, 3]));
        t.addNode("Slice", [src, `${base}_starts`, `${base}_ends`, `${base}_axes`], [out], { name: base });
      }
    }
    const o = t.value(out);
    o.dtype = v.dtype;
    o.shape = regionShape(v, r);
    if (!as) crops.set(key, out);
    return out;
  };
  const used = new Set<string>();
  for (const n of nodes) {
    const m = mappings.get(n);
    if (!m) continue;
    const names = n.inputs.map((v, slot) => {
      if (!v) return "";
      const r = m.reads[slot];
      if (r && ctx.isSpatial(v)) return cropTo(v.name, r);
      used.add(v.name);
      return v.name;
    });
    const { attributes, inputs: ins, computed: region } = m.emit(t, n, names, `${n.outputs.find(Boolean)?.name ?? n.label}__tile_`);
    t.addNode(n.opType, ins, n.outputs.map((v) => (v ? local(v.name) : "")), { name: n.name, domain: n.domain, attributes, extra: n.extra });
    for (const v of n.outputs) {
      if (!v) continue;
      computed.set(v.name, region);
      const o = t.value(local(v.name));
      o.dtype = v.dtype;
      o.shape = regionShape(v, region);
    }
  }
  // Weights and constants the tile's ops read, shared with the run (tensors are immutable), with
  // the constant folding that makes them (an Identity of a shared weight, a Constant).
  const copy = (name: string): void => {
    const init = g.initializers.get(name);
    if (init) {
      if (!t.isInitializer(name)) t.addInitializer(init);
      return;
    }
    const p = g.value(name).producer;
    if (!p || t.value(name).producer) return;
    for (const v of p.reads) copy(v.name);
    t.copyNode(p);
  };
  for (const name of used) copy(name);
  const outputs: TileIo[] = [];
  for (const v of g.outputs) {
    const r = want.get(v.name)!;
    cropTo(v.name, r, v.name);
    const o = t.value(v.name);
    o.decl = { type: tensorTypeDesc(v.dtype ?? DataType.FLOAT, o.shape) };
    t.outputs.push(o);
    outputs.push({ name: v.name, region: { ...r } });
  }
  const sorted = topoSort(t);
  t.nodes.splice(0, t.nodes.length, ...sorted);
  const model = run.withGraph(t);
  verifyOrThrow(t, `tile ${row},${col} of ${gridName(grid)}`);
  return { row, col, model, inputs, outputs, macs: computeCosts(model).totalMacs };
}

function regionShape(v: Value, r: Region): (number | string | null)[] {
  const s = v.shape!;
  return [s[0]!, s[1]!, r.h1 - r.h0, r.w1 - r.w0];
}
