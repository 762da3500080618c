import { suite } from "uvu";
import * as assert from "uvu/assert";
import { buildModel, floats, node } from "../compiler/ir/builder.js";
import { Tensor } from "../compiler/ir/tensor.js";
import { loadModel } from "../compiler/onnx/import.js";
import { analyzeModel } from "../compiler/pipeline.js";
import { computeCosts } from "../compiler/passes/costs.js";
import { fmt, inferShapes } from "../compiler/passes/infer-shapes.js";
import { DynoError } from "../runtime/common/errors.js";
import { fixtures } from "./fixtures.js";
import { compareWithOrt } from "./shape-check.js";

const rules = suite("infer-shapes rules");

const f32 = (n: number) => new Float32Array(n);
const shapeOf = (spec: Parameters<typeof buildModel>[0], name: string, opset = 17) => {
  const facts = inferShapes(buildModel(spec, [{ domain: "", version: opset }]));
  return fmt(facts.model.graph.value(name).shape);
};

rules("Conv: pads, strides, dilations, groups; batch stays symbolic", () => {
  const spec = {
    inputs: { x: ["float32", ["batch", 8, 17, 20]] as [string, (number | string)[]] },
    initializers: [Tensor.fromFloat32("w", [16, 4, 3, 3], f32(16 * 4 * 9))],
    nodes: [node("Conv", ["x", "w"], ["y"], { pads: [1, 2, 1, 0], strides: [2, 3], dilations: [2, 1], group: 2 })],
    outputs: ["y"],
  };
  // H: (17 + 2 - 2*2 - 1)/2 + 1 = 8; W: (20 + 2 - 3)/3 + 1 = 7
  assert.is(shapeOf(spec, "y"), "batch,16,8,7");
});

rules("MaxPool ceil_mode drops a window that starts in the padding", () => {
  const spec = {
    inputs: { x: ["float32", [1, 3, 7, 7]] as [string, number[]] },
    nodes: [node("MaxPool", ["x"], ["y"], { kernel_shape: [2, 2], strides: [2, 2], ceil_mode: 1 })],
    outputs: ["y"],
  };
  assert.is(shapeOf(spec, "y"), "1,3,4,4");
});

rules("Shape -> Gather -> Unsqueeze -> Concat -> Reshape keeps the batch symbol", () => {
  const spec = {
    inputs: { x: ["float32", ["N", 4, 3, 3]] as [string, (number | string)[]] },
    initializers: [Tensor.fromInt64("zero", [], [0]), Tensor.fromInt64("ax", [1], [0]), Tensor.fromInt64("minus1", [1], [-1])],
    nodes: [
      node("Shape", ["x"], ["s"]),
      node("Gather", ["s", "zero"], ["n"], { axis: 0 }),
      node("Unsqueeze", ["n", "ax"], ["n1"]),
      node("Concat", ["n1", "minus1"], ["target"], { axis: 0 }),
      node("Reshape", ["x", "target"], ["y"]),
    ],
    outputs: ["y"],
  };
  assert.is(shapeOf(spec, "y"), "N,36");
});

rules("Flatten, Gemm, Concat, Split, Slice with INT64_MAX, Resize scales, Pad, Transpose", () => {
  const spec = {
    inputs: { x: ["float32", [2, 6, 8, 8]] as [string, number[]] },
    initializers: [
      Tensor.fromInt64("split", [2], [2, 4]),
      Tensor.fromInt64("starts", [1], [1]),
      Tensor.fromInt64("ends", [1], [9223372036854775807n]),
      Tensor.fromInt64("axes", [1], [2]),
      Tensor.fromFloat32("scales", [4], Float32Array.from([1, 1, 2, 1.5])),
      Tensor.fromInt64("pads", [8], [0, 0, 1, 2, 0, 0, 3, 4]),
    ],
    nodes: [
      node("Split", ["x", "split"], ["a", "b"], { axis: 1 }),
      node("Concat", ["b", "a", "a"], ["c"], { axis: 1 }),
      node("Slice", ["c", "starts", "ends", "axes"], ["s"]),
      node("Resize", ["s", "", "scales"], ["r"], { mode: "nearest" }),
      node("Pad", ["r", "pads"], ["p"]),
      node("Transpose", ["p"], ["t"], { perm: [0, 2, 3, 1] }),
      node("Flatten", ["t"], ["f"], { axis: 1 }),
    ],
    outputs: ["f"],
  };
  const g = inferShapes(buildModel(spec)).model.graph;
  assert.is(fmt(g.value("a").shape), "2,2,8,8");
  assert.is(fmt(g.value("c").shape), "2,8,8,8");
  assert.is(fmt(g.value("s").shape), "2,8,7,8");
  assert.is(fmt(g.value("r").shape), "2,8,14,12");
  assert.is(fmt(g.value("p").shape), "2,8,18,18");
  assert.is(fmt(g.value("t").shape), "2,18,18,8");
  assert.is(fmt(g.value("f").shape), "2,2592");
});

rules("an op without a rule leaves its outputs unknown and is reported", () => {
  const facts = inferShapes(
    buildModel({ inputs: { x: ["float32", [4]] }, nodes: [node("NonZero", ["x"], ["y"]), node("Relu", ["y"], ["z"])], outputs: ["z"] }),
  );
  assert.equal(facts.unsupportedOps, ["NonZero"]);
  assert.equal(facts.unknown, ["y", "z"]);
});

rules("--input-shape naming an input the model lacks is a clear error", () => {
  const m = buildModel({ inputs: { x: ["float32", ["N", 3]] }, nodes: [node("Relu", ["x"], ["y"])], outputs: ["y"] });
  try {
    inferShapes(m, { inputShapes: { image: [1, 3] } });
    assert.unreachable();
  } catch (e) {
    assert.instance(e, DynoError);
    assert.match((e as Error).message, /no input "image" \(inputs: x\)/);
  }
  assert.is(fmt(inferShapes(m, { inputShapes: { x: [5, 3] } }).model.graph.value("y").shape), "5,3");
});

rules("inference does not mutate its input model", () => {
  const m = buildModel({ inputs: { x: ["float32", [1, 3]] }, nodes: [node("Relu", ["x"], ["y"])], outputs: ["y"] });
  inferShapes(m);
  assert.is(m.graph.value("y").shape, undefined);
});

rules("costs: Conv MACs = out elements x Cin/group x kernel; BN one per element; weights counted once", () => {
  const m = buildModel({
    inputs: { x: ["float32", [1, 4, 8, 8]] },
    initializers: [Tensor.fromFloat32("w", [8, 2, 3, 3], f32(8 * 2 * 9)), ...["s", "b", "m", "v"].map((n) => Tensor.fromFloat32(n, [8], f32(8)))],
    nodes: [
      node("Conv", ["x", "w"], ["y"], { pads: [1, 1, 1, 1], group: 2 }),
      node("BatchNormalization", ["y", "s", "b", "m", "v"], ["z"], { epsilon: floats(1e-5) }),
      node("Conv", ["z", "w"], ["u"], { pads: [1, 1, 1, 1], group: 4 }),
    ],
    outputs: ["z"],
  });
  const c = computeCosts(inferShapes(m).model);
  assert.is(c.nodes[0]!.macs, 8 * 8 * 8 * 2 * 9);
  assert.is(c.nodes[1]!.macs, 8 * 8 * 8);
  assert.is(c.nodes[0]!.paramBytes, 8 * 2 * 9 * 4);
  assert.is(c.nodes[2]!.paramBytes, 0);
  assert.is(c.totalParams, 8 * 2 * 9 + 4 * 8);
});

rules.run();

const differential = suite("infer-shapes vs onnxruntime (fixtures)");

for (const fx of fixtures()) {
  differential(`${fx.name}: every tensor's dtype and shape equal onnxruntime's`, async () => {
    const model = loadModel(fx.path);
    const r = await compareWithOrt(model);
    assert.ok(r.checked > 5, `only ${r.checked} tensors checked`);
    assert.equal(r.unknown, [], `static inference left unknown: ${r.unknown.join(", ")}`);
    assert.equal(r.mismatches, [], JSON.stringify(r.mismatches.slice(0, 3)));
  });
  differential(`${fx.name}: batch stays symbolic and costs are complete`, async () => {
    const a = await analyzeModel(fx.path);
    assert.equal(a.observed, []);
    assert.ok(a.costs.complete);
    assert.ok(a.costs.totalMacs > 1e6);
    const out = a.model.graph.outputs[0]!;
    assert.is(typeof out.shape?.[0], "string", `output batch dim is ${out.shape?.[0]}`);
  });
}

differential.run();
