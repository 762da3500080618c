// A reference evaluator for the ops spatial tiling touches, summing every output value in one
// fixed order (input channel, kernel row, kernel column) whatever the tensor's extent. onnxruntime
// does not: its SGEMM picks how it blocks a reduction from the size of the output it is given
// (MLAS sgemm.cpp: "expand the K stride if N is small"), so a smaller tile can round differently.
// Under this evaluator a tiled run equals the untiled one bit for bit exactly when the tiling
// approximates nothing: the proof of "lossless" in the tests. Slow (plain loops); for checks only.
import { UnsupportedError } from "../../runtime/common/errors.js";
import type { Model, Node } from "../ir/graph.js";
import { topoSort } from "../ir/order.js";

export interface RefTensor {
  dims: number[];
  data: Float32Array | Float64Array;
}

const f = Math.fround;

/** Runs `model` on `feeds` (float32 NCHW); returns every value computed, by name. */
export function evaluate(model: Model, feeds: Record<string, RefTensor>): Record<string, RefTensor> {
  const g = model.graph;
  const env: Record<string, RefTensor> = { ...feeds };
  for (const [name, t] of g.initializers) if (!(name in env)) env[name] = { dims: [...t.dims], data: Float64Array.from(t.toNumbers()) };
  for (const n of topoSort(g)) {
    const ins = n.inputs.map((v) => (v ? env[v.name] : undefined));
    const outs = run(n, ins);
    n.outputs.forEach((v, i) => {
      if (v && outs[i]) env[v.name] = outs[i]!;
    });
  }
  return env;
}

function run(n: Node, ins: (RefTensor | undefined)[]): (RefTensor | undefined)[] {
  const x = ins[0];
  switch (n.opType) {
    case "Constant": {
      const t = n.attr("value")!.t!;
      return [{ dims: [...t.dims], data: Float64Array.from(t.toNumbers()) }];
    }
    case "Identity":
    case "Dropout":
      return [x];
    case "Conv":
      return [conv(n, x!, ins[1]!, ins[2])];
    case "MaxPool":
    case "AveragePool":
      return [pool(n, x!)];
    case "BatchNormalization": {
      const [, scale, bias, mean, variance] = ins as RefTensor[];
      const eps = n.attrFloat("epsilon", 1e-5);
      const [N, C, H, W] = x!.dims as [number, number, number, number];
      const out = new Float32Array(x!.data.length);
      for (let b = 0; b < N; b++) {
        for (let c = 0; c < C; c++) {
          const k = scale!.data[c]! / Math.sqrt(variance!.data[c]! + eps);
          for (let i = 0, o = (b * C + c) * H * W; i < H * W; i++) out[o + i] = (x!.data[o + i]! - mean!.data[c]!) * k + bias!.data[c]!;
        }
      }
      return [{ dims: x!.dims, data: out }];
    }
    case "Relu":
      return [map(x!, (v) => (v > 0 ? v : 0))];
    case "LeakyRelu": {
      const a = n.attrFloat("alpha", 0.01);
      return [map(x!, (v) => (v >= 0 ? v : v * a))];
    }
    case "Sigmoid":
      return [map(x!, (v) => 1 / (1 + Math.exp(-v)))];
    case "Tanh":
      return [map(x!, Math.tanh)];
    case "HardSigmoid": {
      const a = n.attrFloat("alpha", 0.2);
      const b = n.attrFloat("beta", 0.5);
      return [map(x!, (v) => Math.max(0, Math.min(1, a * v + b)))];
    }
    case "HardSwish":
      return [map(x!, (v) => v * Math.max(0, Math.min(1, v / 6 + 0.5)))];
    case "Clip": {
      const lo = ins[1] ? ins[1].data[0]! : n.attrFloat("min", -Infinity);
      const hi = ins[2] ? ins[2].data[0]! : n.attrFloat("max", Infinity);
      return [map(x!, (v) => Math.min(hi, Math.max(lo, v)))];
    }
    case "Add":
      return [binary(x!, ins[1]!, (a, b) => a + b)];
    case "Sub":
      return [binary(x!, ins[1]!, (a, b) => a - b)];
    case "Mul":
      return [binary(x!, ins[1]!, (a, b) => a * b)];
    case "Div":
      return [binary(x!, ins[1]!, (a, b) => a / b)];
    case "Concat":
      return [concat(ins.filter((t): t is RefTensor => !!t), n.attrInt("axis", 0))];
    case "Slice": {
      // Slice-1 (before opset 10) has attributes; later ones, inputs.
      const attr = (name: string): RefTensor | undefined => {
        const v = n.attrInts(name);
        return v ? { dims: [v.length], data: Float64Array.from(v) } : undefined;
      };
      return [slice(x!, ins[1] ?? attr("starts")!, ins[2] ?? attr("ends")!, ins[3] ?? attr("axes"))];
    }
    case "Pad":
      return [pad(x!, ins[1] ? Array.from(ins[1].data) : n.attrInts("pads")!, ins[2]?.data[0] ?? n.attrFloat("value", 0))];
    default:
      throw new UnsupportedError(`reference evaluator: ${n.opType} (${n.label}) is not implemented`);
  }
}

function map(x: RefTensor, fn: (v: number) => number): RefTensor {
  const out = new Float32Array(x.data.length);
  for (let i = 0; i < out.length; i++) out[i] = fn(x.data[i]!);
  return { dims: x.dims, data: out };
}

function binary(a: RefTensor, b: RefTensor, fn: (x: number, y: number) => number): RefTensor {
  const rank = Math.max(a.dims.length, b.dims.length);
  const da = [...Array(rank - a.dims.length).fill(1), ...a.dims];
  const db = [...Array(rank - b.dims.length).fill(1), ...b.dims];
  const dims = da.map((d, i) => Math.max(d, db[i]!));
  const size = dims.reduce((p, d) => p * d, 1);
  const out = new Float32Array(size);
  const stride = (d: number[]) => {
    const s = new Array<number>(rank).fill(0);
    let acc = 1;
    for (let i = rank - 1; i >= 0; i--) {
      s[i] = d[i] === 1 ? 0 : acc;
      acc *= d[i]!;
    }
    return s;
  };
  const sa = stride(da);
  const sb = stride(db);
  const idx = new Array<number>(rank).fill(0);
  for (let i = 0; i < size; i++) {
    let ia = 0;
    let ib = 0;
    for (let k = 0; k < rank; k++) {
      ia += idx[k]! * sa[k]!;
      ib += idx[k]! * sb[k]!;
    }
    out[i] = fn(a.data[ia]!, b.data[ib]!);
    for (let k = rank - 1; k >= 0; k--) {
      if (++idx[k]! < dims[k]!) break;
      idx[k] = 0;
    }
  }
  return { dims, data: out };
}

interface Win {
  k: [number, number];
  s: [number, number];
  d: [number, number];
  pads: [number, number, number, number];
  out: [number, number];
}

function windowFor(n: Node, H: number, W: number, kernel: [number, number]): Win {
  const s = (n.attrInts("strides") ?? [1, 1]) as [number, number];
  const d = (n.attrInts("dilations") ?? [1, 1]) as [number, number];
  const auto = n.attrString("auto_pad", "NOTSET");
  const ceil = n.attrInt("ceil_mode", 0) === 1;
  let pads = (n.attrInts("pads") ?? [0, 0, 0, 0]) as [number, number, number, number];
  const size = [H, W];
  if (auto === "SAME_UPPER" || auto === "SAME_LOWER") {
    pads = [0, 0, 0, 0];
    for (let a = 0; a < 2; a++) {
      const o = Math.ceil(size[a]! / s[a]!);
      const total = Math.max(0, (o - 1) * s[a]! + d[a]! * (kernel[a]! - 1) + 1 - size[a]!);
      pads[a] = auto === "SAME_UPPER" ? Math.floor(total / 2) : Math.ceil(total / 2);
      pads[a + 2] = total - pads[a]!;
    }
  } else if (auto === "VALID") pads = [0, 0, 0, 0];
  const out = [0, 1].map((a) => {
    const span = size[a]! + pads[a]! + pads[a + 2]! - d[a]! * (kernel[a]! - 1) - 1;
    let o = (ceil ? Math.ceil(span / s[a]!) : Math.floor(span / s[a]!)) + 1;
    if (ceil && (o - 1) * s[a]! >= size[a]! + pads[a]!) o--;
    return o;
  }) as [number, number];
  return { k: kernel, s, d, pads, out };
}

function conv(n: Node, x: RefTensor, w: RefTensor, bias: RefTensor | undefined): RefTensor {
  const [N, C, H, W] = x.dims as [number, number, number, number];
  const [M, Cg, KH, KW] = w.dims as [number, number, number, number];
  const group = n.attrInt("group", 1);
  const win = windowFor(n, H, W, [KH, KW]);
  const [OH, OW] = win.out;
  const out = new Float32Array(N * M * OH * OW);
  const mPerG = M / group;
  for (let b = 0; b < N; b++) {
    for (let m = 0; m < M; m++) {
      const g = Math.floor(m / mPerG);
      for (let oy = 0; oy < OH; oy++) {
        for (let ox = 0; ox < OW; ox++) {
          let acc = 0;
          for (let c = 0; c < Cg; c++) {
            const ci = g * Cg + c;
            for (let ky = 0; ky < KH; ky++) {
              const iy = oy * win.s[0] - win.pads[0] + ky * win.d[0];
              if (iy < 0 || iy >= H) continue;
              for (let kx = 0; kx < KW; kx++) {
                const ix = ox * win.s[1] - win.pads[1] + kx * win.d[1];
                if (ix < 0 || ix >= W) continue;
                acc = f(acc + f(x.data[((b * C + ci) * H + iy) * W + ix]! * w.data[((m * Cg + c) * KH + ky) * KW + kx]!));
              }
            }
          }
          out[((b * M + m) * OH + oy) * OW + ox] = bias ? f(acc + bias.data[m]!) : acc;
        }
      }
    }
  }
  void C;
  return { dims: [N, M, OH, OW], data: out };
}

function pool(n: Node, x: RefTensor): RefTensor {
  const [N, C, H, W] = x.dims as [number, number, number, number];
  const k = n.attrInts("kernel_shape") as [number, number];
  const win = windowFor(n, H, W, k);
  const [OH, OW] = win.out;
  const max = n.opType === "MaxPool";
  const includePad = n.attrInt("count_include_pad", 0) === 1;
  const out = new Float32Array(N * C * OH * OW);
  for (let p = 0; p < N * C; p++) {
    for (let oy = 0; oy < OH; oy++) {
      for (let ox = 0; ox < OW; ox++) {
        let acc = max ? -Infinity : 0;
        let count = 0;
        let padded = 0;
        for (let ky = 0; ky < k[0]; ky++) {
          const iy = oy * win.s[0] - win.pads[0] + ky * win.d[0];
          for (let kx = 0; kx < k[1]; kx++) {
            const ix = ox * win.s[1] - win.pads[1] + kx * win.d[1];
            const inPad = iy >= -win.pads[0] && iy < H + win.pads[2] && ix >= -win.pads[1] && ix < W + win.pads[3];
            if (iy < 0 || iy >= H || ix < 0 || ix >= W) {
              if (inPad) padded++;
              continue;
            }
            const v = x.data[(p * H + iy) * W + ix]!;
            acc = max ? Math.max(acc, v) : f(acc + v);
            count++;
          }
        }
        out[(p * OH + oy) * OW + ox] = max ? acc : f(acc / (includePad ? count + padded : count));
      }
    }
  }
  return { dims: [N, C, OH, OW], data: out };
}

function concat(xs: RefTensor[], axis: number): RefTensor {
  const rank = xs[0]!.dims.length;
  const a = axis < 0 ? axis + rank : axis;
  const outer = xs[0]!.dims.slice(0, a).reduce((p, d) => p * d, 1);
  const inner = xs[0]!.dims.slice(a + 1).reduce((p, d) => p * d, 1);
  const dims = [...xs[0]!.dims];
  dims[a] = xs.reduce((s, t) => s + t.dims[a]!, 0);
  const out = new Float32Array(dims.reduce((p, d) => p * d, 1));
  let o = 0;
  for (let i = 0; i < outer; i++) {
    for (const t of xs) {
      const len = t.dims[a]! * inner;
      out.set(t.data.subarray(i * len, (i + 1) * len), o);
      o += len;
    }
  }
  return { dims, data: out };
}

function slice(x: RefTensor, starts: RefTensor, ends: RefTensor, axes: RefTensor | undefined): RefTensor {
  const [N, C, H, W] = x.dims as [number, number, number, number];
  const ax = axes ? Array.from(axes.data) : [...starts.data.keys()];
  const lo = [0, 0, 0, 0];
  const hi = [N, C, H, W];
  ax.forEach((a, i) => {
    lo[a] = Math.max(0, Math.min(x.dims[a]!, starts.data[i]!));
    hi[a] = Math.max(0, Math.min(x.dims[a]!, ends.data[i]!));
  });
  const dims = hi.map((h, i) => h - lo[i]!);
  const out = new Float32Array(dims.reduce((p, d) => p * d, 1));
  let o = 0;
  for (let b = lo[0]!; b < hi[0]!; b++) for (let c = lo[1]!; c < hi[1]!; c++) for (let y = lo[2]!; y < hi[2]!; y++) for (let z = lo[3]!; z < hi[3]!; z++) out[o++] = x.data[((b * C + c) * H + y) * W + z]!;
  return { dims, data: out };
}

function pad(x: RefTensor, pads: number[], value: number): RefTensor {
  const [N, C, H, W] = x.dims as [number, number, number, number];
  const [pt, pl, pb, pr] = [pads[2]!, pads[3]!, pads[6]!, pads[7]!];
  const OH = H + pt + pb;
  const OW = W + pl + pr;
  const out = new Float32Array(N * C * OH * OW).fill(value);
  for (let p = 0; p < N * C; p++) for (let y = 0; y < H; y++) for (let z = 0; z < W; z++) out[(p * OH + y + pt) * OW + z + pl] = x.data[(p * H + y) * W + z]!;
  return { dims: [N, C, OH, OW], data: out };
}
