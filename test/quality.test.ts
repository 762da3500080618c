// Accuracy metrics (runtime/quality, docs/metrics.md) on tiny hand-made tensors whose answers are
// worked out in the comments: each built-in, the spec parser's errors, the user-metric contract
// and its example file, and the drop's sign. Plus a printed (not asserted) box-f1 timing on a
// 640x640 map.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { UsageError } from "../runtime/common/errors.js";
import * as quality from "../compiler/bundler/quality/index.js";
import { defaultMetricSpec, loadMetric, metricDrop, type Label, type Metric, type MetricContext, type SampleOutputs } from "../compiler/bundler/quality/index.js";
import { ctcGreedy, editDistance } from "../compiler/bundler/quality/ctc.js";
import { BoxDetector, type DetectOptions } from "../compiler/bundler/quality/map.js";
import { rng } from "../runtime/common/random.js";

const REPO = fileURLToPath(new URL("..", import.meta.url));
const tmp = mkdtempSync(join(tmpdir(), "dyno-quality-"));
test.after(() => rmSync(tmp, { recursive: true, force: true }));

function context(over: Partial<MetricContext> = {}): MetricContext {
  return { inputDims: [1, 3, 8, 8], outputs: ["out"], labelled: false, baseDir: tmp, ...over };
}

function out(dims: number[], data: ArrayLike<number>): SampleOutputs {
  return { out: { dims, data: Float32Array.from(data) } };
}

interface Sample {
  float32: SampleOutputs;
  variant: SampleOutputs;
  label?: Label;
}

/** Runs a metric as compile does: reference from float32, stats of the variant, summed, value. */
function score(metric: Metric, samples: Sample[]): { value: number; sum: number[] } {
  let sum: number[] = [];
  for (const s of samples) {
    const label = s.label ?? null;
    const st = metric.stats(s.variant, metric.reference(s.float32, label), label);
    sum = sum.length === 0 ? st.slice() : sum.map((x, i) => x + st[i]!);
  }
  return { value: metric.value(sum, samples.length), sum };
}

const near = (a: number, b: number, tol = 1e-9) => Math.abs(a - b) <= tol;

async function usageError(p: Promise<unknown>, ...patterns: RegExp[]): Promise<void> {
  try {
    await p;
  } catch (e) {
    assert.instance(e, UsageError, `${(e as Error).message}`);
    for (const re of patterns) assert.match((e as Error).message, re);
    return;
  }
  assert.unreachable("expected a UsageError");
}

test("public API: loadMetric, defaultMetricSpec, metricDrop", () => {
  assert.equal(Object.keys(quality).sort(), ["defaultMetricSpec", "loadMetric", "metricDrop"]);
});

test("top1: 3 of 4 correct against class labels, [1, C] and [1, C, 1, 1] alike", async () => {
  const m = await loadMetric("top1", context({ labelled: true }));
  const logits = [[5, 1, 0], [0, 2, 1], [3, 0, 1], [0, 9, 0]]; // argmax 0, 1, 0, 1
  const labels = [0, 1, 2, 1];
  const flat = logits.map((l, i) => ({ float32: out([1, 3], l), variant: out([1, 3], l), label: labels[i] }));
  assert.equal(score(m, flat), { value: 75, sum: [3] });
  const nchw = logits.map((l, i) => ({ float32: out([1, 3, 1, 1], l), variant: out([1, 3, 1, 1], l), label: labels[i] }));
  assert.is(score(m, nchw).value, 75);
  assert.is(m.unit, "% top-1");
  assert.ok(m.higherIsBetter);
});

test("agreement: 2 of 4 variant top-1s equal float32's; maps are refused with a pointer to map-iou", async () => {
  const m = await loadMetric("agreement", context());
  const f32 = [[1, 0], [0, 1], [1, 0], [0, 1]];
  const got = [[1, 0], [1, 0], [0, 1], [0, 1]];
  assert.equal(score(m, f32.map((f, i) => ({ float32: out([1, 2], f), variant: out([1, 2], got[i]!) }))), { value: 50, sum: [2] });
  const map = out([1, 2, 2, 2], [1, 0, 0, 1, 0, 1, 1, 0]);
  assert.throws(() => m.reference(map, null), /agreement reads one class-score vector.*\[1, 2, 2, 2\].*map-iou/);
});

test("ctc greedy decode collapses repeats, then drops blanks", () => {
  const oneHot = (seq: number[], classes: number) => seq.flatMap((c) => Array.from({ length: classes }, (_, j) => (j === c ? 1 : 0)));
  const seq = [3, 3, 0, 5, 5, 5, 0, 0, 3, 3, 1];
  assert.equal(Array.from(ctcGreedy(oneHot(seq, 6), seq.length, 6)), [3, 5, 3, 1]);
  // Blank 5 instead: 0s are characters, and the blank run splits "0 0" into two.
  assert.equal(Array.from(ctcGreedy(oneHot([0, 5, 0, 0, 3], 6), 5, 6, 5)), [0, 0, 3]);
  assert.is(editDistance([1, 2, 3], [1, 2, 3]), 0);
  const codes = (s: string) => Array.from(s, (c) => c.charCodeAt(0));
  assert.is(editDistance(codes("kitten"), codes("sitting")), 3);
  assert.is(editDistance([], [1, 2]), 2);
});

/** One-hot [1, T, C] output decoding to `classes` (each class on one step, blanks between). */
function ctcOutput(classes: number[], numClasses: number): SampleOutputs {
  const steps = classes.flatMap((c) => [c, 0]);
  return out([1, steps.length, numClasses], steps.flatMap((c) => Array.from({ length: numClasses }, (_, j) => (j === c ? 1 : 0))));
}

test("ctc against labels: CER = edits / label characters, through the dictionary", async () => {
  writeFileSync(join(tmp, "abcd.txt"), "a\nb\nc\nd\n");
  const m = await loadMetric("ctc:dict=abcd.txt", context({ labelled: true }));
  // 5 classes = blank + 4 lines. "abd" vs "abc": 1 edit; "cab" vs "cab": 0. CER 1/6.
  const samples = [
    { float32: ctcOutput([1, 2, 3], 5), variant: ctcOutput([1, 2, 4], 5), label: "abc" },
    { float32: ctcOutput([3, 1, 2], 5), variant: ctcOutput([3, 1, 2], 5), label: "cab" },
  ];
  const r = score(m, samples);
  assert.equal(r.sum, [1, 6]);
  assert.ok(near(r.value, 100 / 6), `${r.value}`);
  assert.is(m.higherIsBetter, false);
  assert.is(m.unit, "% CER");
  assert.is(m.spec, "ctc:dict=abcd.txt");
});

test("ctc: one class more than blank + lines is the space; a wrong class count names both numbers", async () => {
  writeFileSync(join(tmp, "abc.txt"), "a\r\nb\r\nc");
  const m = await loadMetric("ctc:dict=abc.txt", context({ labelled: true }));
  // 5 classes = blank + 3 lines + " ": "a b" decodes exactly, "ab" misses one character.
  assert.equal(score(m, [{ float32: ctcOutput([1, 4, 2], 5), variant: ctcOutput([1, 4, 2], 5), label: "a b" }]).sum, [0, 3]);
  assert.equal(score(m, [{ float32: ctcOutput([1, 2], 5), variant: ctcOutput([1, 2], 5), label: "a b" }]).sum, [1, 3]);
  assert.throws(
    () => score(m, [{ float32: ctcOutput([1], 7), variant: ctcOutput([1], 7), label: "a" }]),
    (e: Error) => e instanceof UsageError && /"abc.txt" has 3 characters/.test(e.message) && /4 classes/.test(e.message) && /has 7/.test(e.message),
  );
});

test("ctc without labels compares class sequences with the float32 decode, no dictionary needed", async () => {
  const m = await loadMetric("ctc", context());
  // [1,2,3,4] vs [1,3,4]: 1 edit of 4; [2] vs [2]: 0 of 1. CER 20 %.
  const r = score(m, [
    { float32: ctcOutput([1, 2, 3, 4], 6), variant: ctcOutput([1, 3, 4], 6) },
    { float32: ctcOutput([2], 6), variant: ctcOutput([2], 6) },
  ]);
  assert.equal(r.sum, [1, 5]);
  assert.ok(near(r.value, 20));
  assert.is(m.value([0, 0], 3), 0, "no reference characters and no edits: 0 %");
  await usageError(loadMetric("ctc", context({ labelled: true })), /dict=FILE/);
  await usageError(loadMetric("ctc:dict=missing.txt", context({ labelled: true })), /missing\.txt/);
});

/** A [1, 1, h, w] map with 0.9 inside the given [x0, y0, x1, y1) rectangles and `bg` elsewhere. */
function probMap(h: number, w: number, rects: [number, number, number, number, number?][], bg = 0): Float32Array {
  const p = new Float32Array(h * w).fill(bg);
  for (const [x0, y0, x1, y1, v = 0.9] of rects) for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) p[y * w + x] = v;
  return p;
}

test("map-iou: binary masks overlapping by 8 of 24 pixels give 33.3 %", async () => {
  const m = await loadMetric("map-iou", context());
  const f32 = out([1, 1, 6, 6], probMap(6, 6, [[0, 0, 4, 4]])); // 16 px
  const got = out([1, 1, 6, 6], probMap(6, 6, [[2, 0, 6, 4]])); // 16 px, 8 shared
  const r = score(m, [{ float32: f32, variant: got }]);
  assert.equal(r.sum, [8, 24]);
  assert.ok(near(r.value, 100 / 3));
  assert.is(score(m, [{ float32: f32, variant: f32 }]).value, 100);
});

test("map-iou: K > 1 is argmax segmentation, mean IoU over the classes present", async () => {
  const m = await loadMetric("map-iou", context());
  // 1 x 4 pixels, 3 classes, channel-major. float32 classes [0, 0, 1, 1], variant [0, 1, 1, 1].
  // class 0: I 1, U 2; class 1: I 2, U 3; class 2 absent. mean(1/2, 2/3) = 58.33 %.
  const seg = (classes: number[]) => out([1, 3, 1, 4], [0, 1, 2].flatMap((k) => classes.map((c) => (c === k ? 1 : 0))));
  const r = score(m, [{ float32: seg([0, 0, 1, 1]), variant: seg([0, 1, 1, 1]) }]);
  assert.equal(r.sum, [1, 2, 2, 3, 0, 0]);
  assert.ok(near(r.value, (100 * (1 / 2 + 2 / 3)) / 2));
});

test("map-iou against box labels: polygons rasterised at the map's resolution", async () => {
  const m = await loadMetric("map-iou", context({ labelled: true, inputDims: [1, 3, 8, 8] }));
  // Input 8x8, map 4x4: the label square (0,0)-(4,4) becomes map pixels x, y in {0, 1} (4 px).
  const label = [{ points: [[0, 0], [4, 0], [4, 4], [0, 4]] as [number, number][] }];
  const exact = out([1, 1, 4, 4], probMap(4, 4, [[0, 0, 2, 2]]));
  const wider = out([1, 1, 4, 4], probMap(4, 4, [[0, 0, 2, 2], [2, 0, 3, 1]])); // 1 px more: 4/5
  assert.is(score(m, [{ float32: wider, variant: exact, label }]).value, 100);
  assert.ok(near(score(m, [{ float32: exact, variant: wider, label }]).value, 80));
});

const DB: DetectOptions = { threshold: 0.3, boxThresh: 0.6, minSize: 3, unclip: 1.5 };

test("box detector: unclip widens the box by area * ratio / perimeter; small and faint components go", () => {
  const d = new BoxDetector();
  const p = probMap(32, 32, [[10, 10, 20, 20]]);
  assert.equal(d.detect(p, 0, 32, 32, { ...DB, unclip: 0 }), [{ x0: 10, y0: 10, x1: 20, y1: 20 }]);
  // 10x10: d = 100 * 1.5 / 40 = 3.75 on every side.
  assert.equal(d.detect(p, 0, 32, 32, DB), [{ x0: 6.25, y0: 6.25, x1: 23.75, y1: 23.75 }]);
  // Clipped to the map at the border.
  assert.equal(d.detect(probMap(32, 32, [[0, 0, 10, 10]]), 0, 32, 32, DB), [{ x0: 0, y0: 0, x1: 13.75, y1: 13.75 }]);
  // A 2-px-high line is below min-size 3, kept at min-size 2.
  const line = probMap(32, 32, [[4, 4, 24, 6]]);
  assert.is(d.detect(line, 0, 32, 32, DB).length, 0);
  assert.is(d.detect(line, 0, 32, 32, { ...DB, minSize: 2 }).length, 1);
  // Mean probability 0.5 < box-thresh 0.6.
  assert.is(d.detect(probMap(32, 32, [[10, 10, 20, 20, 0.5]]), 0, 32, 32, DB).length, 0);
  // 8-connected: two squares touching at a corner are one component.
  assert.is(d.detect(probMap(32, 32, [[0, 0, 5, 5], [5, 5, 10, 10]]), 0, 32, 32, DB).length, 1);
});

test("box-f1 against labels: one matched, one missed, one false positive -> F1 50 %", async () => {
  // Input 128x128, map 64x64: labels are in input pixels, twice the map's.
  const m = await loadMetric("box-f1", context({ labelled: true, inputDims: [1, 3, 128, 128] }));
  const map = out([1, 1, 64, 64], probMap(64, 64, [[10, 10, 20, 20], [40, 40, 50, 50]]));
  // Predicted boxes (map px): [6.25, 23.75]^2 and [36.25, 53.75]^2.
  const rect = (x0: number, y0: number, x1: number, y1: number) => ({ points: [[x0, y0], [x1, y0], [x1, y1], [x0, y1]] as [number, number][] });
  const label = [rect(12, 12, 48, 48), rect(80, 4, 120, 30)]; // map [6, 24]^2 (IoU 0.95) and one with no prediction
  const r = score(m, [{ float32: map, variant: map, label }]);
  assert.equal(r.sum, [1, 1, 1]);
  assert.is(r.value, 50);
  assert.is(m.unit, "% box F1");
  // Unlabelled, against float32's own boxes: identical maps score 100; an empty variant loses both boxes.
  const self = await loadMetric("map-iou:boxes=1", context());
  assert.is(self.spec, "box-f1");
  assert.is(score(self, [{ float32: map, variant: map }]).value, 100);
  assert.equal(score(self, [{ float32: map, variant: out([1, 1, 64, 64], new Float32Array(64 * 64)) }]).sum, [0, 0, 2]);
  assert.is(self.value([0, 0, 0], 1), 100, "nothing to find and nothing found");
});

test("cosine: mean cosine x100, or % of samples at or above a threshold", async () => {
  const m = await loadMetric("cosine", context());
  const samples = [
    { float32: out([1, 2], [1, 0]), variant: out([1, 2], [2, 0]) }, // cos 1
    { float32: out([1, 2], [1, 0]), variant: out([1, 2], [1, 1]) }, // cos 0.7071
  ];
  assert.ok(near(score(m, samples).value, (100 * (1 + Math.SQRT1_2)) / 2, 1e-6));
  assert.is(m.unit, "cosine x100");
  const t = await loadMetric("cosine:threshold=0.99", context({ labelled: true }));
  assert.is(score(t, samples.map((s) => ({ ...s, label: 3 }))).value, 50, "labels are ignored");
  assert.is(t.spec, "cosine:threshold=0.99");
});

test("loadMetric errors name the spec, the key and what is accepted", async () => {
  await usageError(loadMetric("top5", context()), /unknown metric "top5"/, /top1, agreement, ctc, map-iou, box-f1, cosine/);
  await usageError(loadMetric("cosine:treshold=0.9", context()), /"cosine:treshold=0.9"/, /unknown option "treshold"/, /accepted: output, threshold/);
  await usageError(loadMetric("map-iou:iou=0.5", context()), /unknown option "iou" for map-iou/);
  await usageError(loadMetric("box-f1:iou=2", context()), /option "iou" of box-f1 must be a number in \(0, 1\], got "2"/);
  await usageError(loadMetric("ctc:blank=x", context()), /option "blank" of ctc must be an integer >= 0, got "x"/);
  await usageError(loadMetric("top1:output=logits", context({ labelled: true })), /output "logits" is not an output of the model \(outputs: out\)/);
  await usageError(loadMetric("top1", context()), /top1 needs labelled calibration data/, /--metric agreement/);
  await usageError(loadMetric("cosine:threshold=2", context()), /must be a number in \[-1, 1\], got "2"/);
  await usageError(loadMetric("cosine:threshold", context()), /"threshold" is not key=value/);
  await usageError(loadMetric("cosine:output=out,output=out", context()), /"output" is given twice/);
});

test("canonical specs list the options that were set, and load again to themselves", async () => {
  writeFileSync(join(tmp, "keys.txt"), "x\ny\n");
  writeFileSync(join(tmp, "keys.js"), "x\ny\n");
  const cases: [string, string][] = [
    ["top1", "top1"],
    ["map-iou:boxes=1,iou=0.70,threshold=0.30", "box-f1:threshold=0.3,iou=0.7"],
    ["ctc:dict=keys.txt,blank=0", "ctc:blank=0,dict=keys.txt"],
    [" cosine:threshold=.9 ", "cosine:threshold=0.9"],
    ["ctc:dict=keys.js", "ctc:dict=keys.js"], // a built-in name first: not a module path
  ];
  for (const [given, canonical] of cases) {
    const m = await loadMetric(given, context({ labelled: true }));
    assert.is(m.spec, canonical, given);
    assert.is((await loadMetric(m.spec, context({ labelled: true }))).spec, canonical);
  }
});

test("user metric: the example file loads, scores MAE (lower is better) and keeps its spec", async () => {
  const ctx = context({ baseDir: REPO, outputs: ["out", "aux"] });
  const m = await loadMetric("docs/examples/my-metric.js", ctx);
  assert.is(m.name, "mae");
  assert.is(m.spec, "docs/examples/my-metric.js");
  assert.is(m.higherIsBetter, false);
  // |1.5-1| + |2-2| + |2-3| + |4-4| = 1.5 over 4 values, and 0.5 over 2: 2 / 6.
  const r = score(m, [
    { float32: out([1, 4], [1, 2, 3, 4]), variant: out([1, 4], [1.5, 2, 2, 4]) },
    { float32: out([1, 2], [0, 0]), variant: out([1, 2], [0.25, -0.25]) },
  ]);
  assert.equal(r.sum, [2, 6]);
  assert.ok(near(r.value, 1 / 3));
  const aux = await loadMetric("./docs/examples/my-metric.js:output=aux", ctx);
  assert.is(aux.spec, "./docs/examples/my-metric.js:output=aux");
  await usageError(loadMetric("docs/examples/my-metric.js:scale=2", ctx), /my-metric\.js/, /unknown option "scale"/);
});

test("user metric: a module missing stats, or that is not there, is named", async () => {
  writeFileSync(join(tmp, "no-stats.mjs"), `export default { name: "x", unit: "u", higherIsBetter: true, reference: () => 0, value: () => 0 };\n`);
  await usageError(loadMetric("no-stats.mjs", context()), /"no-stats\.mjs"/, /stats \(function, missing\)/);
  writeFileSync(join(tmp, "bad-stats.mjs"), `export default () => ({ name: "x", unit: "u", higherIsBetter: 1, reference: () => 0, stats: () => "no", value: () => 0 });\n`);
  await usageError(loadMetric("bad-stats.mjs", context()), /higherIsBetter \(boolean, got number\)/);
  await usageError(loadMetric("no-stats.mjs:k=v", context()), /exports a Metric object, which takes no options/);
  await usageError(loadMetric("nowhere.js", context()), /metric module "nowhere\.js" not found/);
});

test("metricDrop is positive when worse, for higher- and lower-is-better metrics", () => {
  assert.is(metricDrop({ higherIsBetter: true }, 76, 75), 1);
  assert.is(metricDrop({ higherIsBetter: true }, 76, 77), -1);
  assert.is(metricDrop({ higherIsBetter: false }, 5, 7), 2);
  assert.is(metricDrop({ higherIsBetter: false }, 5, 4), -1);
});

test("defaultMetricSpec: top1 for class-number labels, else by the output's shape", () => {
  assert.is(defaultMetricSpec(context({ labelled: true }), [1, 0, 2]), "top1");
  assert.is(defaultMetricSpec(context({ labelled: true }), ["abc"]), "agreement");
  assert.is(defaultMetricSpec(context(), null), "agreement");
  assert.is(defaultMetricSpec(context(), null, ["batch", 1000]), "agreement");
  assert.is(defaultMetricSpec(context(), null, [1, 1, 640, 640]), "map-iou");
  assert.is(defaultMetricSpec(context(), null, [1, 40, 6625]), "cosine");
  assert.is(defaultMetricSpec(context({ labelled: true }), [[{ points: [[0, 0], [1, 0], [1, 1]] }]], [1, 1, 64, 64]), "map-iou");
});

test("speed sanity: box-f1 of a 640x640 map (printed, not asserted)", async () => {
  const seed = 640;
  const next = rng(seed);
  const rects: [number, number, number, number][] = [];
  for (let i = 0; i < 60; i++) {
    const x = Math.floor(next() * 600);
    const y = Math.floor(next() * 620);
    rects.push([x, y, x + 5 + Math.floor(next() * 35), y + 4 + Math.floor(next() * 16)]);
  }
  const map = out([1, 1, 640, 640], probMap(640, 640, rects, 0.05));
  const m = await loadMetric("box-f1", context({ inputDims: [1, 3, 640, 640] }));
  const ref = m.reference(map, null);
  m.stats(map, ref, null);
  const runs = 20;
  const t0 = performance.now();
  for (let i = 0; i < runs; i++) m.stats(map, ref, null);
  const ms = (performance.now() - t0) / runs;
  console.log(`  box-f1 on 640x640 (seed ${seed}, ${(ref as unknown[]).length} boxes): ${ms.toFixed(2)} ms per sample`);
  assert.is(m.value(m.stats(map, ref, null), 1), 100);
});

test.run();
