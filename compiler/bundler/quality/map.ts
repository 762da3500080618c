// Dense-map metrics: pixel IoU of a thresholded or argmaxed map (`map-iou`), and box-level F1 of
// a DB-style text detector (`box-f1`, also `map-iou:boxes=1`).
//
// map-iou   [1, 1, H, W] or [1, H, W]: mask = p > threshold, IoU of the foreground
//           [1, K, H, W], K > 1:       class = argmax over K, mean IoU over the classes present
//           Intersections and unions are summed over the samples per class (stats
//           [I0, U0, I1, U1, ...]), then IoU per class, as segmentation benchmarks do.
//
// box-f1    DB post-process (Liao et al., "Real-time Scene Text Detection with Differentiable
//           Binarization", and PaddleOCR's db_postprocess.py), with axis-aligned boxes:
//
//             p > threshold -> 8-connected components -> short side >= min-size
//             -> mean p inside >= box-thresh -> bbox grown by d = area * unclip / perimeter
//
//           then predicted boxes are matched one-to-one to reference boxes, highest IoU first,
//           at IoU >= iou; stats [tp, fp, fn], value F1 in %.
//
// The reference is the label (text boxes, scaled from the input's H, W to the map's) when the
// sample has one, else the float32 map: a bit mask, a class map or a box list, never the floats.
import { DynoError } from "../../../runtime/common/errors.js";
import type { Options } from "./spec.js";
import { argmax, formatDims, labelKind, outputOf } from "./tensor.js";
import type { Label, Metric, MetricContext, SampleOutputs, TextBox } from "./types.js";

/** An axis-aligned box in map pixels: [x0, x1) x [y0, y1). */
export interface Box {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
}

export interface DetectOptions {
  threshold: number;
  boxThresh: number;
  minSize: number;
  unclip: number;
}

/**
 * DB-style boxes from a probability map (row-major H x W at `offset`). One BFS per component over
 * a reused Uint8Array of unvisited foreground and a reused Int32Array queue: no allocation per
 * pixel, each pixel is queued at most once.
 */
export class BoxDetector {
  private fg = new Uint8Array(0);
  private queue = new Int32Array(0);

  detect(prob: Float32Array, offset: number, height: number, width: number, o: DetectOptions): Box[] {
    const n = height * width;
    if (this.fg.length < n) {
      this.fg = new Uint8Array(n);
      this.queue = new Int32Array(n);
    }
    const { fg, queue } = this;
    for (let i = 0; i < n; i++) fg[i] = prob[offset + i]! > o.threshold ? 1 : 0;
    const boxes: Box[] = [];
    for (let start = 0; start < n; start++) {
      if (fg[start] === 0) continue;
      fg[start] = 0;
      queue[0] = start;
      let head = 0;
      let tail = 1;
      let x0 = width;
      let y0 = height;
      let x1 = -1;
      let y1 = -1;
      let sum = 0;
      while (head < tail) {
        const p = queue[head++]!;
        const y = (p / width) | 0;
        const x = p - y * width;
        if (x < x0) x0 = x;
        if (x > x1) x1 = x;
        if (y < y0) y0 = y;
        if (y > y1) y1 = y;
        sum += prob[offset + p]!;
        const xa = x > 0 ? x - 1 : x;
        const xb = x < width - 1 ? x + 1 : x;
        const ya = y > 0 ? y - 1 : y;
        const yb = y < height - 1 ? y + 1 : y;
        for (let yy = ya; yy <= yb; yy++) {
          for (let q = yy * width + xa, end = yy * width + xb; q <= end; q++) {
            if (fg[q] !== 0) {
              fg[q] = 0;
              queue[tail++] = q;
            }
          }
        }
      }
      const w = x1 - x0 + 1;
      const h = y1 - y0 + 1;
      if (Math.min(w, h) < o.minSize) continue;
      if (sum / tail < o.boxThresh) continue;
      // DB's unclip offsets the polygon by area * ratio / perimeter; for a w x h box, outwards on every side.
      const d = (w * h * o.unclip) / (2 * (w + h));
      boxes.push({ x0: Math.max(0, x0 - d), y0: Math.max(0, y0 - d), x1: Math.min(width, x1 + 1 + d), y1: Math.min(height, y1 + 1 + d) });
    }
    return boxes;
  }
}

export function boxIou(a: Box, b: Box): number {
  const iw = Math.min(a.x1, b.x1) - Math.max(a.x0, b.x0);
  const ih = Math.min(a.y1, b.y1) - Math.max(a.y0, b.y0);
  if (iw <= 0 || ih <= 0) return 0;
  const inter = iw * ih;
  return inter / ((a.x1 - a.x0) * (a.y1 - a.y0) + (b.x1 - b.x0) * (b.y1 - b.y0) - inter);
}

/** True positives of a greedy one-to-one matching, highest IoU first, pairs below `minIou` never matched. */
export function matchBoxes(pred: readonly Box[], ref: readonly Box[], minIou: number): number {
  const pairs: [number, number, number][] = [];
  for (let i = 0; i < pred.length; i++) {
    for (let j = 0; j < ref.length; j++) {
      const iou = boxIou(pred[i]!, ref[j]!);
      if (iou > 0 && iou >= minIou) pairs.push([iou, i, j]);
    }
  }
  pairs.sort((a, b) => b[0] - a[0] || a[1] - b[1] || a[2] - b[2]);
  const usedPred = new Uint8Array(pred.length);
  const usedRef = new Uint8Array(ref.length);
  let tp = 0;
  for (const [, i, j] of pairs) {
    if (usedPred[i] || usedRef[j]) continue;
    usedPred[i] = usedRef[j] = 1;
    tp++;
  }
  return tp;
}

/** Label polygons as their axis-aligned hulls, scaled by (sx, sy) into the map and clipped to it. */
export function labelBoxes(boxes: readonly TextBox[], sx: number, sy: number, height: number, width: number): Box[] {
  return boxes.map((b, i) => {
    if (b.points.length === 0) throw new DynoError(`label box ${i} has no points`);
    let x0 = Infinity;
    let y0 = Infinity;
    let x1 = -Infinity;
    let y1 = -Infinity;
    for (const [x, y] of b.points) {
      x0 = Math.min(x0, x * sx);
      x1 = Math.max(x1, x * sx);
      y0 = Math.min(y0, y * sy);
      y1 = Math.max(y1, y * sy);
    }
    return { x0: Math.max(0, x0), y0: Math.max(0, y0), x1: Math.min(width, x1), y1: Math.min(height, y1) };
  });
}

/** Label polygons filled (even-odd, pixel centres) into a bit mask of the map, after scaling by (sx, sy). */
export function rasterise(boxes: readonly TextBox[], sx: number, sy: number, height: number, width: number): Uint8Array {
  const bits = new Uint8Array((height * width + 7) >> 3);
  const xs: number[] = [];
  boxes.forEach((box, b) => {
    if (box.points.length < 3) throw new DynoError(`label box ${b} has ${box.points.length} points; a polygon needs at least 3`);
    const pts = box.points.map(([x, y]) => [x * sx, y * sy] as const);
    const top = Math.max(0, Math.floor(Math.min(...pts.map((p) => p[1]))));
    const bottom = Math.min(height, Math.ceil(Math.max(...pts.map((p) => p[1]))));
    for (let y = top; y < bottom; y++) {
      const yc = y + 0.5;
      xs.length = 0;
      for (let i = 0, j = pts.length - 1; i < pts.length; j = i++) {
        const [xi, yi] = pts[i]!;
        const [xj, yj] = pts[j]!;
        if (yi > yc !== yj > yc) xs.push(xi + ((yc - yi) * (xj - xi)) / (yj - yi));
      }
      xs.sort((a, b) => a - b);
      for (let k = 0; k + 1 < xs.length; k += 2) {
        // Pixel x is inside when its centre x + 0.5 lies in [xs[k], xs[k + 1]).
        const to = Math.min(width, Math.ceil(xs[k + 1]! - 0.5));
        for (let x = Math.max(0, Math.ceil(xs[k]! - 0.5)); x < to; x++) {
          const p = y * width + x;
          bits[p >> 3]! |= 1 << (p & 7);
        }
      }
    }
  });
  return bits;
}

interface MapShape {
  classes: number;
  height: number;
  width: number;
}

function mapShape(dims: readonly number[], output: string, metric: string): MapShape {
  if (dims.length === 4 && dims[0] === 1) return { classes: dims[1]!, height: dims[2]!, width: dims[3]! };
  if (dims.length === 3 && dims[0] === 1) return { classes: 1, height: dims[1]!, width: dims[2]! };
  if (dims.length === 2) return { classes: 1, height: dims[0]!, width: dims[1]! };
  throw new DynoError(`metric ${metric} reads a [1, K, H, W] or [1, H, W] map, but output "${output}" has dims ${formatDims(dims)}`);
}

const isChannels = (n: number | undefined) => n === 1 || n === 3 || n === 4;

/** (sx, sy) from the model input's pixels to the map's, for label boxes. */
function labelScale(ctx: MetricContext, shape: MapShape, metric: string): [number, number] {
  const d = ctx.inputDims;
  if (d.length < 2) throw new DynoError(`metric ${metric}: input dims ${formatDims(d)} have no H, W to scale label boxes from`);
  const nhwc = ctx.inputLayout ? ctx.inputLayout === "nhwc" : d.length === 4 && !isChannels(d[1]) && isChannels(d[3]);
  const [h, w] = nhwc ? [d[1]!, d[2]!] : [d[d.length - 2]!, d[d.length - 1]!];
  return [shape.width / w, shape.height / h];
}

function boxLabel(label: Label, metric: string): TextBox[] {
  if (!Array.isArray(label)) throw new DynoError(`metric ${metric} needs text boxes as labels, got ${labelKind(label)}`);
  return label;
}

interface MaskReference {
  shape: MapShape;
  /** classes = 1: one bit per pixel; else one class per pixel. */
  mask: Uint8Array | Uint16Array;
}

export function mapIou(opts: Options, ctx: MetricContext): Metric {
  const output = opts.output(ctx);
  const threshold = opts.number("threshold", 0.3);
  if (opts.flag("boxes")) return boxMetric(opts, ctx, output, threshold);
  opts.finish();

  const read = (outputs: SampleOutputs) => {
    const t = outputOf(outputs, output, "map-iou");
    return { data: t.data, shape: mapShape(t.dims, output, "map-iou") };
  };
  const classMap = (data: Float32Array, s: MapShape) => {
    const n = s.height * s.width;
    const out = s.classes <= 256 ? new Uint8Array(n) : new Uint16Array(n);
    for (let i = 0; i < n; i++) out[i] = argmax(data, i, s.classes, n);
    return out;
  };

  const metric: Metric<MaskReference> = {
    name: "map-iou",
    spec: opts.canonical(),
    unit: "% IoU",
    higherIsBetter: true,
    reference(outputs, label) {
      const { data, shape } = read(outputs);
      if (label !== null) {
        const boxes = boxLabel(label, "map-iou");
        if (shape.classes !== 1) throw new DynoError(`metric map-iou: text-box labels need a 1-channel map, but output "${output}" has ${shape.classes} channels`);
        const [sx, sy] = labelScale(ctx, shape, "map-iou");
        return { shape, mask: rasterise(boxes, sx, sy, shape.height, shape.width) };
      }
      if (shape.classes > 1) return { shape, mask: classMap(data, shape) };
      const n = shape.height * shape.width;
      const bits = new Uint8Array((n + 7) >> 3);
      for (let i = 0; i < n; i++) if (data[i]! > threshold) bits[i >> 3]! |= 1 << (i & 7);
      return { shape, mask: bits };
    },
    stats(outputs, reference) {
      const { data, shape } = read(outputs);
      const r = reference.shape;
      if (shape.classes !== r.classes || shape.height !== r.height || shape.width !== r.width) {
        throw new DynoError(`metric map-iou: output "${output}" is ${shape.classes}x${shape.height}x${shape.width}, its reference ${r.classes}x${r.height}x${r.width}`);
      }
      const n = shape.height * shape.width;
      const ref = reference.mask;
      if (shape.classes === 1) {
        let inter = 0;
        let union = 0;
        for (let i = 0; i < n; i++) {
          const p = data[i]! > threshold ? 1 : 0;
          const q = (ref[i >> 3]! >> (i & 7)) & 1;
          inter += p & q;
          union += p | q;
        }
        return [inter, union];
      }
      const counts = new Float64Array(2 * shape.classes);
      for (let i = 0; i < n; i++) {
        const p = argmax(data, i, shape.classes, n);
        const q = ref[i]!;
        if (p === q) counts[2 * p]!++;
        counts[2 * p + 1]!++;
        if (p !== q) counts[2 * q + 1]!++;
      }
      return Array.from(counts);
    },
    value(sum) {
      let total = 0;
      let present = 0;
      for (let c = 0; 2 * c + 1 < sum.length; c++) {
        if (sum[2 * c + 1]! > 0) {
          total += sum[2 * c]! / sum[2 * c + 1]!;
          present++;
        }
      }
      return present === 0 ? 100 : (100 * total) / present;
    },
  };
  return metric;
}

export function boxF1(opts: Options, ctx: MetricContext): Metric<Box[]> {
  const output = opts.output(ctx);
  return boxMetric(opts, ctx, output, opts.number("threshold", 0.3));
}

function boxMetric(opts: Options, ctx: MetricContext, output: string, threshold: number): Metric<Box[]> {
  const detect: DetectOptions = {
    threshold,
    boxThresh: opts.number("box-thresh", 0.6),
    minSize: opts.number("min-size", 3, { min: 0 }),
    unclip: opts.number("unclip", 1.5, { min: 0 }),
  };
  const minIou = opts.number("iou", 0.5, { above: 0, max: 1 });
  opts.finish();
  const detector = new BoxDetector();
  const boxesOf = (outputs: SampleOutputs) => {
    const t = outputOf(outputs, output, "box-f1");
    const shape = mapShape(t.dims, output, "box-f1");
    if (shape.classes !== 1) throw new DynoError(`metric box-f1 reads a 1-channel probability map, but output "${output}" has ${shape.classes} channels`);
    return { boxes: detector.detect(t.data, 0, shape.height, shape.width, detect), shape };
  };

  return {
    name: "box-f1",
    spec: opts.canonical("box-f1"),
    unit: "% box F1",
    higherIsBetter: true,
    reference(outputs, label) {
      if (label === null) return boxesOf(outputs).boxes;
      const t = outputOf(outputs, output, "box-f1");
      const shape = mapShape(t.dims, output, "box-f1");
      const [sx, sy] = labelScale(ctx, shape, "box-f1");
      return labelBoxes(boxLabel(label, "box-f1"), sx, sy, shape.height, shape.width);
    },
    stats(outputs, reference) {
      const pred = boxesOf(outputs).boxes;
      const tp = matchBoxes(pred, reference, minIou);
      return [tp, pred.length - tp, reference.length - tp];
    },
    value([tp, fp, fn]) {
      const denom = 2 * tp! + fp! + fn!;
      return denom === 0 ? 100 : (200 * tp!) / denom;
    },
  };
}
