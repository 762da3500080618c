// Static shape and dtype inference for the ops CNN exports use. A pure pass: it returns a copy of
// the model whose values carry dtype and shape, plus the names it could not infer (so that the
// caller may ask onnxruntime for them, see compiler/onnx/ort-shapes.ts).
//
// Dims are numbers, symbols ("batch") or null (unknown). Small integer tensors computed from
// constants and shapes (the Shape -> Gather -> Concat -> Reshape chains that exporters write) are
// folded as lists of dims, so a Reshape target that mentions the batch keeps it symbolic.
import { GraphError, UsageError } from "../../runtime/common/errors.js";
import { DataType } from "../ir/dtype.js";
import type { Dim, Graph, Model, Node, Shape, Value } from "../ir/graph.js";
import { topoSort } from "../ir/order.js";

export interface ShapeFacts {
  model: Model;
  /** Values whose shape or dtype stayed unknown, in topological order. */
  unknown: string[];
  /** Op types (domain-qualified when not ONNX) that have no rule here. */
  unsupportedOps: string[];
}

export interface InferOptions {
  /** Fixes input dims: { input: [1, 3, 224, 224] }. Unknown input names are an error. */
  inputShapes?: Record<string, Dim[]>;
}

type Consts = Map<string, Dim[]>;

/** Largest constant (in elements) folded as a dim list; bigger constants are weights, not shapes. */
const MAX_FOLD = 64;

export function inferShapes(model: Model, options: InferOptions = {}): ShapeFacts {
  const out = model.clone();
  const g = out.graph;
  applyInputShapes(g, options.inputShapes ?? {}, model.source);
  const consts: Consts = new Map();
  // An initializer that is also a graph input is only a default: the caller may feed another value.
  const overridable = new Set(g.inputs.map((v) => v.name));
  for (const [name, t] of g.initializers) {
    if (!overridable.has(name) && t.size <= MAX_FOLD && isIntType(t.dtype)) consts.set(name, t.toNumbers());
  }
  const unsupported = new Set<string>();
  const opset = out.opset("") ?? 13;
  for (const n of topoSort(g)) {
    const ok = inferNode(n, g, consts, opset);
    if (!ok) unsupported.add(n.domain ? `${n.domain}.${n.opType}` : n.opType);
  }
  const unknown: string[] = [];
  for (const n of topoSort(g)) {
    for (const v of n.outputs) if (v && !isKnown(v)) unknown.push(v.name);
  }
  return { model: out, unknown, unsupportedOps: [...unsupported].sort() };
}

export function isKnown(v: Value): boolean {
  return v.dtype !== undefined && v.shape !== undefined && v.shape.every((d) => d !== null);
}

function applyInputShapes(g: Graph, shapes: Record<string, Dim[]>, source: string): void {
  for (const [name, dims] of Object.entries(shapes)) {
    const v = g.inputs.find((x) => x.name === name);
    if (!v) {
      const names = g.inputs.filter((x) => !g.isInitializer(x.name)).map((x) => x.name);
      throw new UsageError(`--input-shape: model "${source}" has no input "${name}" (inputs: ${names.join(", ")})`);
    }
    if (v.shape && v.shape.length !== dims.length) {
      throw new UsageError(`--input-shape: input "${name}" has rank ${v.shape.length} ([${fmt(v.shape)}]), got ${dims.length} dims`);
    }
    v.shape?.forEach((d, i) => {
      if (typeof d === "number" && d !== dims[i]) throw new UsageError(`--input-shape: input "${name}" dim ${i} is fixed at ${d}, got ${dims[i]}`);
    });
    v.shape = [...dims];
  }
}

export function fmt(shape: Shape | undefined): string {
  return shape ? shape.map((d) => (d === null ? "?" : String(d))).join(",") : "?";
}

function isIntType(t: DataType): boolean {
  return t === DataType.INT64 || t === DataType.INT32;
}

// ---------------------------------------------------------------------------------------------

const UNARY_SAME = new Set([
  "Relu", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Exp", "Log", "Sqrt", "Neg", "Abs",
  "Erf", "Gelu", "Elu", "Selu", "Celu", "Softplus", "Softsign", "Mish", "Floor", "Ceil", "Round", "Sign",
  "Reciprocal", "Sin", "Cos", "Identity", "Softmax", "LogSoftmax", "Hardmax", "LRN", "Clip",
  "BatchNormalization", "InstanceNormalization", "LayerNormalization", "GroupNormalization",
  "Dropout", "ThresholdedRelu", "Shrink", "Not", "IsNaN", "IsInf", "MeanVarianceNormalization", "Swish",
]);
const BROADCAST = new Set(["Add", "Sub", "Mul", "Div", "Pow", "PRelu", "Max", "Min", "Sum", "Mean", "Mod", "BitShift", "And", "Or", "Xor", "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "Where"]);
const BOOL_OUT = new Set(["Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or", "Xor", "Not", "IsNaN", "IsInf"]);
const REDUCE = new Set(["ReduceMean", "ReduceMax", "ReduceMin", "ReduceSum", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceSumSquare", "ReduceLogSum", "ReduceLogSumExp", "ArgMax", "ArgMin"]);

/** Sets dtype/shape of n's outputs; returns false when the op has no rule. */
function inferNode(n: Node, g: Graph, consts: Consts, opset: number): boolean {
  if (n.domain !== "" && n.domain !== "ai.onnx") return false;
  const ins = n.inputs;
  const x = ins[0] ?? undefined;
  const out = n.outputs[0];
  const set = (v: Value | null | undefined, dtype: DataType | undefined, shape: Shape | undefined) => {
    if (!v) return;
    if (dtype !== undefined) v.dtype = dtype;
    if (shape !== undefined) v.shape = mergeDeclared(v.shape, shape);
  };
  const c = (i: number): Dim[] | undefined => {
    const v = ins[i];
    return v ? consts.get(v.name) : undefined;
  };
  const cnum = (i: number): number[] | undefined => {
    const d = c(i);
    return d && d.every((e) => typeof e === "number") ? (d as number[]) : undefined;
  };
  const xs = x?.shape;
  const op = n.opType;

  if (UNARY_SAME.has(op)) {
    set(out, BOOL_OUT.has(op) ? DataType.BOOL : x?.dtype, xs);
    if (op === "Dropout" && n.outputs[1]) set(n.outputs[1], DataType.BOOL, xs);
    if (op === "BatchNormalization") for (let k = 1; k < n.outputs.length; k++) set(n.outputs[k], x?.dtype, ins[1]?.shape);
    if (op === "LayerNormalization") {
      const axis = norm(n.attrInt("axis", -1), xs?.length ?? 0);
      for (let k = 1; k < n.outputs.length; k++) set(n.outputs[k], DataType.FLOAT, xs?.map((d, i) => (i < axis ? d : 1)));
    }
    if (op === "Identity") propagate(consts, x, out);
    return true;
  }
  if (BROADCAST.has(op)) {
    const shapes = ins.filter((v): v is Value => !!v).map((v) => v.shape);
    const dtype = op === "Where" ? ins[1]?.dtype : BOOL_OUT.has(op) ? DataType.BOOL : x?.dtype;
    set(out, dtype, shapes.every(Boolean) ? broadcast(shapes as Shape[]) : undefined);
    foldArith(op, ins, out, consts);
    return true;
  }
  if (REDUCE.has(op)) {
    const keep = n.attrInt("keepdims", 1) === 1;
    const isArg = op.startsWith("Arg");
    let axes = isArg ? [n.attrInt("axis", 0)] : opset >= 18 || op === "ReduceSum" && opset >= 13 ? cnum(1) : n.attrInts("axes");
    if (!isArg && ins[1] && axes === undefined && (opset >= 18 || (op === "ReduceSum" && opset >= 13))) return true; // axes not constant
    const noop = n.attrInt("noop_with_empty_axes", 0) === 1;
    if (xs) {
      const r = xs.length;
      const all = axes === undefined || axes.length === 0;
      if (all && noop) set(out, x?.dtype, xs);
      else {
        const ax = new Set((all ? xs.map((_, i) => i) : axes!).map((a) => norm(a, r)));
        const shape = keep ? xs.map((d, i) => (ax.has(i) ? 1 : d)) : xs.filter((_, i) => !ax.has(i));
        set(out, isArg ? DataType.INT64 : x?.dtype, shape);
      }
    }
    return true;
  }

  switch (op) {
    case "Constant": {
      const a = n.attributes[0];
      if (!a) return false;
      if (a.t) {
        set(out, a.t.dtype, [...a.t.dims]);
        if (a.t.size <= MAX_FOLD && isIntType(a.t.dtype)) consts.set(out!.name, a.t.toNumbers());
      } else if (a.name === "value_int") {
        set(out, DataType.INT64, []);
        consts.set(out!.name, [Number(a.i)]);
      } else if (a.name === "value_ints") {
        set(out, DataType.INT64, [a.ints!.length]);
        consts.set(out!.name, a.ints!.map(Number));
      } else if (a.name === "value_float") set(out, DataType.FLOAT, []);
      else if (a.name === "value_floats") set(out, DataType.FLOAT, [a.floats!.length]);
      else return false;
      return true;
    }
    case "Shape": {
      if (!xs) return true;
      const r = xs.length;
      const start = clamp(norm(n.attrInt("start", 0), r), 0, r);
      const end = clamp(norm(n.attrInt("end", r), r), 0, r);
      const dims = xs.slice(start, end);
      set(out, DataType.INT64, [dims.length]);
      if (dims.every((d) => d !== null)) consts.set(out!.name, dims);
      return true;
    }
    case "Size":
      set(out, DataType.INT64, []);
      return true;
    case "Cast": {
      set(out, n.attrInt("to", DataType.FLOAT), xs);
      propagate(consts, x, out);
      return true;
    }
    case "CastLike":
      set(out, ins[1]?.dtype, xs);
      return true;
    case "Conv":
    case "ConvInteger":
    case "QLinearConv":
    case "MaxPool":
    case "AveragePool":
    case "LpPool": {
      if (!xs) return true;
      const isConv = op.includes("Conv");
      const w = op === "QLinearConv" ? ins[3] : ins[1];
      const spatial = xs.length - 2;
      const kernel = n.attrInts("kernel_shape") ?? (isConv ? (w?.shape?.slice(2) as number[] | undefined) : undefined);
      if (!kernel || kernel.some((k) => typeof k !== "number")) return true;
      const sp = convSpatial(n, xs.slice(2), kernel, spatial);
      const channels = isConv ? (w?.shape?.[0] ?? null) : xs[1]!;
      const dtype = op === "ConvInteger" ? DataType.INT32 : op === "QLinearConv" ? ins[7]?.dtype : x?.dtype;
      set(out, dtype, [xs[0]!, channels, ...sp]);
      if (op === "MaxPool" && n.outputs[1]) set(n.outputs[1], DataType.INT64, [xs[0]!, channels, ...sp]);
      return true;
    }
    case "ConvTranspose": {
      const w = ins[1]?.shape;
      if (!xs || !w) return true;
      const spatial = xs.length - 2;
      const kernel = n.attrInts("kernel_shape") ?? (w.slice(2) as number[]);
      const strides = n.attrInts("strides") ?? Array(spatial).fill(1);
      const dil = n.attrInts("dilations") ?? Array(spatial).fill(1);
      const outPad = n.attrInts("output_padding") ?? Array(spatial).fill(0);
      const group = n.attrInt("group", 1);
      const outShape = n.attrInts("output_shape");
      const autoPad = n.attrString("auto_pad", "NOTSET");
      const pads = n.attrInts("pads") ?? Array(2 * spatial).fill(0);
      const sp: Dim[] = [];
      for (let i = 0; i < spatial; i++) {
        const inD = xs[2 + i];
        if (outShape) sp.push(outShape[outShape.length - spatial + i]!);
        else if (typeof inD !== "number") sp.push(null);
        else if (autoPad === "SAME_UPPER" || autoPad === "SAME_LOWER") sp.push(inD * strides[i]!);
        else sp.push(strides[i]! * (inD - 1) + outPad[i]! + (kernel[i]! - 1) * dil[i]! + 1 - pads[i]! - pads[i + spatial]!);
      }
      set(out, x?.dtype, [xs[0]!, mulDim(w[1]!, group), ...sp]);
      return true;
    }
    case "GlobalAveragePool":
    case "GlobalMaxPool":
    case "GlobalLpPool":
      if (xs) set(out, x?.dtype, xs.map((d, i) => (i < 2 ? d : 1)));
      return true;
    case "Gemm": {
      const a = xs;
      const b = ins[1]?.shape;
      if (!a || !b) return true;
      const m = n.attrInt("transA", 0) ? a[1]! : a[0]!;
      const nn = n.attrInt("transB", 0) ? b[0]! : b[1]!;
      set(out, x?.dtype, [m, nn]);
      return true;
    }
    case "MatMul":
    case "MatMulInteger":
    case "QLinearMatMul": {
      const a = xs;
      const b = op === "QLinearMatMul" ? ins[3]?.shape : ins[1]?.shape;
      if (!a || !b) return true;
      const dtype = op === "MatMulInteger" ? DataType.INT32 : op === "QLinearMatMul" ? ins[7]?.dtype : x?.dtype;
      set(out, dtype, matmulShape(a, b));
      return true;
    }
    case "Flatten": {
      if (!xs) return true;
      const axis = norm(n.attrInt("axis", 1), xs.length);
      set(out, x?.dtype, [prodDims(xs.slice(0, axis)), prodDims(xs.slice(axis))]);
      return true;
    }
    case "Reshape": {
      const target = opset >= 5 ? c(1) : n.attrInts("shape");
      if (!xs || !target) {
        if (target && !xs) set(out, x?.dtype, undefined);
        return true;
      }
      const allowZero = n.attrInt("allowzero", 0) === 1;
      set(out, x?.dtype, reshape(xs, target, allowZero));
      propagate(consts, x, out);
      return true;
    }
    case "Transpose": {
      if (!xs) return true;
      const perm = n.attrInts("perm") ?? xs.map((_, i) => xs.length - 1 - i);
      set(out, x?.dtype, perm.map((p) => xs[p]!));
      return true;
    }
    case "Squeeze":
    case "Unsqueeze": {
      const axes = opset >= 13 ? (ins[1] ? cnum(1) : undefined) : n.attrInts("axes");
      if (!xs) return true;
      if (op === "Squeeze") {
        if (axes === undefined && ins[1]) return true;
        const ax = axes ? new Set(axes.map((a) => norm(a, xs.length))) : new Set(xs.flatMap((d, i) => (d === 1 ? [i] : [])));
        set(out, x?.dtype, xs.filter((_, i) => !ax.has(i)));
      } else {
        if (!axes) return true;
        const r = xs.length + axes.length;
        const ax = new Set(axes.map((a) => norm(a, r)));
        const shape: Dim[] = [];
        let k = 0;
        for (let i = 0; i < r; i++) shape.push(ax.has(i) ? 1 : xs[k++]!);
        set(out, x?.dtype, shape);
      }
      propagate(consts, x, out);
      return true;
    }
    case "Concat": {
      const shapes = ins.filter((v): v is Value => !!v).map((v) => v.shape);
      if (shapes.some((s) => !s)) return true;
      const r = shapes[0]!.length;
      const axis = norm(n.attrInt("axis", 0), r);
      const shape = [...shapes[0]!];
      shape[axis] = shapes.map((s): Dim => s![axis] ?? null).reduce(addDim);
      set(out, x?.dtype, shape);
      const parts = ins.map((v) => (v ? consts.get(v.name) : undefined));
      if (r === 1 && parts.every(Boolean)) consts.set(out!.name, parts.flatMap((p) => p!));
      return true;
    }
    case "Split": {
      if (!xs) return true;
      const axis = norm(n.attrInt("axis", 0), xs.length);
      const count = n.outputs.length;
      let sizes: Dim[] | undefined = opset >= 13 ? (ins[1] ? cnum(1) : undefined) : n.attrInts("split");
      if (!sizes && ins[1] && opset >= 13) return true;
      const total = xs[axis]!;
      if (!sizes) {
        if (typeof total !== "number") sizes = Array(count).fill(null);
        else {
          const each = Math.ceil(total / count);
          sizes = Array.from({ length: count }, (_, i) => Math.max(0, Math.min(each, total - i * each)));
        }
      }
      n.outputs.forEach((v, i) => set(v, x?.dtype, xs.map((d, k) => (k === axis ? sizes![i] ?? null : d))));
      return true;
    }
    case "Slice": {
      if (!xs) return true;
      const starts = opset >= 10 ? cnum(1) : n.attrInts("starts");
      const ends = opset >= 10 ? cnum(2) : n.attrInts("ends");
      if (!starts || !ends) return true;
      const axes = (opset >= 10 ? (ins[3] ? cnum(3) : undefined) : n.attrInts("axes")) ?? starts.map((_, i) => i);
      const steps = (opset >= 10 && ins[4] ? cnum(4) : undefined) ?? starts.map(() => 1);
      if ((opset >= 10 && ins[3] && !cnum(3)) || (opset >= 10 && ins[4] && !cnum(4))) return true;
      const shape = [...xs];
      const folded = x ? consts.get(x.name) : undefined;
      let foldedOut: Dim[] | undefined;
      axes.forEach((a, i) => {
        const ax = norm(a, xs.length);
        const d = xs[ax];
        if (typeof d !== "number") return void (shape[ax] = null);
        const [s, e, st] = sliceBounds(starts[i]!, ends[i]!, steps[i]!, d);
        const len = st > 0 ? Math.max(0, Math.ceil((e - s) / st)) : Math.max(0, Math.ceil((e - s) / st));
        shape[ax] = len;
        if (folded && xs.length === 1) {
          foldedOut = [];
          for (let k = s; st > 0 ? k < e : k > e; k += st) foldedOut.push(folded[k]!);
        }
      });
      set(out, x?.dtype, shape);
      if (foldedOut) consts.set(out!.name, foldedOut);
      return true;
    }
    case "Gather": {
      const idx = ins[1]?.shape;
      if (!xs || !idx) return true;
      const axis = norm(n.attrInt("axis", 0), xs.length);
      set(out, x?.dtype, [...xs.slice(0, axis), ...idx, ...xs.slice(axis + 1)]);
      const data = x ? consts.get(x.name) : undefined;
      const ind = cnum(1);
      if (data && ind && xs.length === 1) consts.set(out!.name, ind.map((i) => data[norm(i, data.length)]!));
      return true;
    }
    case "Pad": {
      if (!xs) return true;
      const pads = opset >= 11 ? cnum(1) : n.attrInts("pads");
      if (!pads) return true;
      const axes = opset >= 18 && ins[3] ? cnum(3)?.map((a) => norm(a, xs.length)) : xs.map((_, i) => i);
      if (!axes) return true;
      const shape = [...xs];
      axes.forEach((a, i) => (shape[a] = addDim(addDim(shape[a]!, pads[i]!), pads[i + axes.length]!)));
      set(out, x?.dtype, shape);
      return true;
    }
    case "Resize":
    case "Upsample": {
      if (!xs) return true;
      const scalesIdx = op === "Upsample" || opset < 11 ? 1 : 2;
      const sizes = op === "Resize" && opset >= 11 && ins[3] ? cnum(3) : undefined;
      const scalesV = ins[scalesIdx];
      const scales = scalesV ? floatConst(g, scalesV.name) : n.attr("scales")?.floats;
      if (sizes) {
        const axes = n.attrInts("axes")?.map((a) => norm(a, xs.length));
        const shape = [...xs];
        if (axes) axes.forEach((a, i) => (shape[a] = sizes[i]!));
        else sizes.forEach((s, i) => (shape[i] = s));
        set(out, x?.dtype, shape);
      } else if (scales && scales.length) {
        const axes = n.attrInts("axes")?.map((a) => norm(a, xs.length)) ?? xs.map((_, i) => i);
        const shape = [...xs];
        axes.forEach((a, i) => {
          const d = xs[a];
          shape[a] = typeof d === "number" ? Math.floor(d * scales[i]!) : scales[i] === 1 ? d! : null;
        });
        set(out, x?.dtype, shape);
      }
      return true;
    }
    case "Expand": {
      const target = c(1);
      if (xs && target) set(out, x?.dtype, broadcast([xs, target]));
      return true;
    }
    case "Tile": {
      const reps = cnum(1);
      if (xs && reps) set(out, x?.dtype, xs.map((d, i) => mulDim(d, reps[i]!)));
      return true;
    }
    case "DepthToSpace":
    case "SpaceToDepth": {
      if (!xs) return true;
      const b = n.attrInt("blocksize", 1);
      const [nb, ch, h, w] = xs;
      set(out, x?.dtype, op === "DepthToSpace" ? [nb!, divDim(ch!, b * b), mulDim(h!, b), mulDim(w!, b)] : [nb!, mulDim(ch!, b * b), divDim(h!, b), divDim(w!, b)]);
      return true;
    }
    case "QuantizeLinear":
      set(out, ins[2]?.dtype ?? DataType.UINT8, xs);
      return true;
    case "DequantizeLinear":
      set(out, ins[1]?.dtype === DataType.FLOAT16 ? DataType.FLOAT16 : DataType.FLOAT, xs);
      return true;
    case "ConstantOfShape": {
      const dims = cnum(0);
      const t = n.attr("value")?.t;
      set(out, t?.dtype ?? DataType.FLOAT, dims);
      return true;
    }
    case "Range":
    case "NonZero":
    case "NonMaxSuppression":
    case "TopK":
      return false;
    default:
      return false;
  }
}

/** Declared dims win over unknown inferred ones; a known inferred dim fills an unknown declared one. */
function mergeDeclared(declared: Shape | undefined, inferred: Shape): Shape {
  if (!declared || declared.length !== inferred.length) return inferred;
  return inferred.map((d, i) => (d === null ? declared[i]! : typeof declared[i] === "number" ? declared[i]! : d));
}

function propagate(consts: Consts, from: Value | null | undefined, to: Value | null | undefined): void {
  if (from && to && consts.has(from.name)) consts.set(to.name, consts.get(from.name)!);
}

function foldArith(op: string, ins: (Value | null)[], out: Value | null | undefined, consts: Consts): void {
  if (!out || !["Add", "Sub", "Mul", "Div"].includes(op)) return;
  const a = ins[0] ? consts.get(ins[0].name) : undefined;
  const b = ins[1] ? consts.get(ins[1].name) : undefined;
  if (!a || !b) return;
  const n = Math.max(a.length, b.length);
  if ((a.length !== n && a.length !== 1) || (b.length !== n && b.length !== 1)) return;
  const r: Dim[] = [];
  for (let i = 0; i < n; i++) {
    const x = a[a.length === 1 ? 0 : i]!;
    const y = b[b.length === 1 ? 0 : i]!;
    if (typeof x !== "number" || typeof y !== "number") {
      if (op === "Mul" && (x === 1 || y === 1)) r.push(x === 1 ? y : x);
      else if (op === "Div" && y === 1) r.push(x);
      else return;
    } else r.push(op === "Add" ? x + y : op === "Sub" ? x - y : op === "Mul" ? x * y : Math.trunc(x / y));
  }
  consts.set(out.name, r);
}

function floatConst(g: Graph, name: string): number[] | undefined {
  const t = g.initializers.get(name);
  if (t && t.size <= MAX_FOLD) return t.toNumbers();
  const v = g.values.get(name);
  const p = v?.producer;
  if (p?.opType === "Constant") {
    const a = p.attributes[0];
    if (a?.t && a.t.size <= MAX_FOLD) return a.t.toNumbers();
    if (a?.floats) return a.floats;
  }
  return undefined;
}

function convSpatial(n: Node, inDims: Dim[], kernel: number[], spatial: number): Dim[] {
  const strides = n.attrInts("strides") ?? Array(spatial).fill(1);
  const dil = n.attrInts("dilations") ?? Array(spatial).fill(1);
  const pads = n.attrInts("pads") ?? Array(2 * spatial).fill(0);
  const autoPad = n.attrString("auto_pad", "NOTSET");
  const ceil = n.attrInt("ceil_mode", 0) === 1;
  return inDims.map((d, i) => {
    if (typeof d !== "number") return null;
    const k = (kernel[i]! - 1) * dil[i]! + 1;
    const s = strides[i]!;
    if (autoPad === "SAME_UPPER" || autoPad === "SAME_LOWER") return Math.ceil(d / s);
    if (autoPad === "VALID") return Math.floor((d - k) / s) + 1;
    const span = d + pads[i]! + pads[i + spatial]! - k;
    if (!ceil) return Math.floor(span / s) + 1;
    let o = Math.ceil(span / s) + 1;
    // A last window that starts inside the right padding is dropped (ONNX/PyTorch ceil_mode rule).
    if ((o - 1) * s >= d + pads[i]!) o--;
    return o;
  });
}

function sliceBounds(start: number, end: number, step: number, dim: number): [number, number, number] {
  if (step === 0) throw new GraphError("Slice step 0");
  let s = start < 0 ? start + dim : start;
  let e = end < 0 ? end + dim : end;
  if (step > 0) {
    s = clamp(s, 0, dim);
    e = clamp(e, 0, dim);
  } else {
    s = clamp(s, 0, dim - 1);
    e = clamp(e, -1, dim - 1);
  }
  return [s, e, step];
}

export function broadcast(shapes: Shape[]): Shape {
  const r = Math.max(...shapes.map((s) => s.length));
  const out: Dim[] = [];
  for (let i = 0; i < r; i++) {
    let d: Dim = 1;
    for (const s of shapes) {
      const e = s[s.length - r + i];
      if (e === undefined || e === 1) continue;
      if (d === 1) d = e;
      else if (d !== e) {
        if (typeof d === "number" && typeof e === "number") throw new GraphError(`shapes [${shapes.map(fmt).join("] and [")}] do not broadcast`);
        d = typeof d === "number" ? d : typeof e === "number" ? e : d === null ? e : d;
      }
    }
    out.push(d);
  }
  return out;
}

function matmulShape(a: Shape, b: Shape): Shape {
  const a2 = a.length === 1 ? [1, a[0]!] : a;
  const b2 = b.length === 1 ? [b[0]!, 1] : b;
  const batch = broadcast([a2.slice(0, -2), b2.slice(0, -2)]);
  const out = [...batch, a2[a2.length - 2]!, b2[b2.length - 1]!];
  if (a.length === 1) out.splice(out.length - 2, 1);
  if (b.length === 1) out.splice(out.length - 1, 1);
  return out;
}

/** Reshape with 0 (copy) and -1 (infer); a -1 over a symbolic batch stays that symbol when exact. */
function reshape(xs: Shape, target: Dim[], allowZero: boolean): Shape {
  const shape: Dim[] = target.map((t, i) => (t === 0 && !allowZero ? (xs[i] ?? null) : t));
  const inferAt = shape.indexOf(-1);
  if (inferAt < 0) return shape;
  const have = factor(xs);
  const rest = factor(shape.filter((_, i) => i !== inferAt));
  let value: Dim = null;
  if (have.known && rest.known) {
    const syms = [...have.symbols];
    for (const s of rest.symbols) {
      const k = syms.indexOf(s);
      if (k < 0) return shape.map((d, i) => (i === inferAt ? null : d));
      syms.splice(k, 1);
    }
    const num = have.product / rest.product;
    if (syms.length === 0) value = num;
    else if (syms.length === 1 && num === 1) value = syms[0]!;
  }
  shape[inferAt] = value;
  return shape;
}

function factor(dims: Dim[]): { product: number; symbols: string[]; known: boolean } {
  let product = 1;
  const symbols: string[] = [];
  let known = true;
  for (const d of dims) {
    if (typeof d === "number") product *= d;
    else if (typeof d === "string") symbols.push(d);
    else known = false;
  }
  return { product, symbols, known };
}

function prodDims(dims: Dim[]): Dim {
  const f = factor(dims);
  if (!f.known) return null;
  if (f.symbols.length === 0) return f.product;
  if (f.symbols.length === 1 && f.product === 1) return f.symbols[0]!;
  return null;
}

function addDim(a: Dim, b: Dim): Dim {
  if (typeof a === "number" && typeof b === "number") return a + b;
  if (b === 0) return a;
  if (a === 0) return b;
  return null;
}

function mulDim(a: Dim, k: number | Dim): Dim {
  if (typeof a === "number" && typeof k === "number") return a * k;
  if (k === 1) return a;
  if (a === 1) return k;
  return null;
}

function divDim(a: Dim, k: number): Dim {
  return typeof a === "number" ? Math.floor(a / k) : k === 1 ? a : null;
}

function norm(axis: number, rank: number): number {
  return axis < 0 ? axis + rank : axis;
}

function clamp(v: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, v));
}

