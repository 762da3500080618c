import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import ort from "onnxruntime-node";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { buildModel, node } from "../compiler/ir/builder.js";
import { AttrType } from "../compiler/ir/graph.js";
import { verify } from "../compiler/ir/order.js";
import { Tensor } from "../compiler/ir/tensor.js";
import { loadModel } from "../compiler/onnx/import.js";
import { serializeModel } from "../compiler/onnx/export.js";
import { inferShapes } from "../compiler/passes/infer-shapes.js";
import { findCuts } from "../compiler/passes/find-cuts.js";
import { minCutPartition } from "../compiler/passes/min-cut.js";
import { partition, partitionChain } from "../compiler/passes/partition.js";
import { nodeMacs } from "../compiler/passes/costs.js";
import { analyzeModel } from "../compiler/pipeline.js";
import { DynoError } from "../runtime/common/errors.js";
import { openSession } from "../runtime/node/session.js";
import { maxAbsDiff, randomFeeds, runChain } from "../compiler/bundler/feeds.js";
import { fixtures, runDyno } from "./fixtures.js";

const SEED = 20261123;

/** Runs the whole model and the parts on the same seeded input; returns the worst |diff|. */
async function chainDiff(whole: Uint8Array, parts: Uint8Array[], feeds: Record<string, ort.Tensor>): Promise<{ name: string; diff: number }> {
  const ref = await (await openSession(whole)).run(feeds);
  const sessions = [];
  for (const p of parts) sessions.push(await openSession(p));
  const got = await runChain(sessions, feeds);
  let worst = { name: "", diff: 0 };
  for (const name of Object.keys(ref)) {
    const d = got[name] ? maxAbsDiff(ref[name]!, got[name]!) : Infinity;
    if (d >= worst.diff) worst = { name, diff: d };
  }
  for (const s of sessions) await s.release();
  return worst;
}

const exact = suite("partition: every candidate cut of every fixture is exact");

for (const fx of fixtures()) {
  exact(`${fx.name}: cloud(device(x)) is bit-identical to the model at every cut`, async () => {
    const model = inferShapes(loadModel(fx.path)).model;
    const whole = serializeModel(model);
    const { cuts } = findCuts(model);
    assert.ok(cuts.length >= 5, `only ${cuts.length} cuts`);
    const feeds = randomFeeds(model, SEED, 2); // batch of 2: the symbolic batch crosses the cut
    for (const cut of cuts) {
      const [device, cloud] = partition(model, cut.tensors);
      assert.equal(verify(device.graph), []);
      assert.equal(verify(cloud.graph), []);
      const { name, diff } = await chainDiff(whole, [serializeModel(device), serializeModel(cloud)], feeds);
      assert.is(diff, 0, `${fx.name} cut ${cut.index} {${cut.tensors.join(", ")}}: output "${name}" differs by ${diff} (seed ${SEED})`);
    }
  });

  exact(`${fx.name}: the segment chain over all cuts reproduces the model, each weight in one segment`, async () => {
    const model = inferShapes(loadModel(fx.path)).model;
    const inner = findCuts(model).cuts.filter((c) => c.kind === "inner");
    const parts = partitionChain(model, inner.map((c) => c.tensors));
    assert.is(parts.length, inner.length + 1);
    const bytes = parts.map(serializeModel);
    const { diff } = await chainDiff(serializeModel(model), bytes, randomFeeds(model, SEED + 1));
    assert.is(diff, 0);
    // Each weight lives in exactly one segment (small shape constants may be recomputed on both sides).
    const owners = new Map<string, number>();
    for (const p of parts) for (const [name, t] of p.graph.initializers) if (t.byteLength > 64) owners.set(name, (owners.get(name) ?? 0) + 1);
    assert.equal([...owners].filter(([, n]) => n > 1), []);
    // Beyond the weights, a segment file costs only its header and boundary declarations.
    const total = bytes.reduce((s, b) => s + b.length, 0);
    const original = statSync(fx.path).size;
    assert.ok(total <= original + 400 * parts.length, `chain ${total} B vs model ${original} B over ${parts.length} segments`);
  });

  exact(`${fx.name}: the chain over the non-dominated cuts is within 5% of the model's size`, async () => {
    const model = inferShapes(loadModel(fx.path)).model;
    const useful = findCuts(model).cuts.filter((c) => c.kind === "inner" && !c.dominated);
    const parts = partitionChain(model, useful.map((c) => c.tensors));
    const bytes = parts.map(serializeModel);
    const { diff } = await chainDiff(serializeModel(model), bytes, randomFeeds(model, SEED + 2));
    assert.is(diff, 0);
    const total = bytes.reduce((s, b) => s + b.length, 0);
    const original = statSync(fx.path).size;
    assert.ok(total <= original * 1.05, `chain ${total} B vs model ${original} B (${parts.length} segments)`);
  });
}

exact.run();

const dag = suite("partition: DAG structure and errors");

dag("a cut inside a residual block carries the branch and the skip", async () => {
  const fx = fixtures().find((f) => f.family.toLowerCase().includes("res")) ?? fixtures()[0]!;
  const model = inferShapes(loadModel(fx.path)).model;
  const { cuts } = findCuts(model);
  const multi = cuts.filter((c) => c.tensors.length === 2);
  assert.ok(multi.length > 0, "no two-tensor cut in the ResNet fixture");
  const addNode = model.graph.nodes.find((n) => n.opType === "Add")!;
  const reads = addNode.inputs.map((v) => v!.name);
  // The cut just before the Add: both of its inputs cross.
  assert.ok(cuts.some((c) => reads.every((r) => c.tensors.includes(r))), `no cut carries both inputs of ${addNode.label}`);
});

dag("tensors that do not separate the graph are rejected with a path that avoids them", () => {
  const fx = fixtures().find((f) => f.family.toLowerCase().includes("res")) ?? fixtures()[0]!;
  const model = inferShapes(loadModel(fx.path)).model;
  const cut = findCuts(model).cuts.find((c) => c.tensors.length === 2)!;
  try {
    partition(model, [cut.tensors[1]!]);
    assert.unreachable("accepted half of a two-tensor cut");
  } catch (e) {
    assert.instance(e, DynoError);
    assert.match((e as Error).message, /do not separate the inputs from the outputs .*: path input -> .* -> logits avoids them/);
  }
});

dag("unknown tensor, constant tensor, and a tensor inside an If body are rejected by name", () => {
  const thenBranch = {
    name: "then",
    node: [{ input: ["x"], output: ["inner"], op_type: "Relu" }, { input: ["inner"], output: ["t_out"], op_type: "Neg" }],
    output: [{ name: "t_out", type: { tensor_type: { elem_type: 1 } } }],
  };
  const elseBranch = { name: "else", node: [{ input: ["x"], output: ["e_out"], op_type: "Abs" }], output: [{ name: "e_out", type: { tensor_type: { elem_type: 1 } } }] };
  const m = buildModel({
    inputs: { x: ["float32", [1, 4]], c: ["bool", []] },
    initializers: [Tensor.fromFloat32("w", [1, 4], new Float32Array(4))],
    nodes: [
      node("Add", ["x", "w"], ["a"]),
      { opType: "If", inputs: ["c"], outputs: ["y"], attributes: [
        { name: "then_branch", type: AttrType.GRAPH, g: { proto: thenBranch, freeNames: ["x"] } },
        { name: "else_branch", type: AttrType.GRAPH, g: { proto: elseBranch, freeNames: ["x"] } },
      ] },
      node("Mul", ["a", "y"], ["out"]),
    ],
    outputs: ["out"],
  });
  const g = inferShapes(m).model;
  assert.throws(() => partition(g, ["nope"]), /cut tensor "nope" not found/);
  assert.throws(() => partition(g, ["w"]), /"w" is a constant or shape computation/);
  assert.throws(() => partition(g, ["inner", "a"]), /"inner" is inside the body of .*\(If\)/);
  // The If reads x implicitly: a cut after Add alone does not separate.
  assert.throws(() => partition(g, ["a"]), /do not separate/);
});

dag("shape arithmetic never crosses: each side recomputes it, the batch stays symbolic", async () => {
  const w = Tensor.fromFloat32("w", [4, 2, 3, 3], Float32Array.from({ length: 72 }, (_, i) => Math.cos(i)));
  const m = buildModel({
    inputs: { x: ["float32", ["N", 2, 6, 6]] },
    initializers: [w, Tensor.fromInt64("zero", [], [0]), Tensor.fromInt64("ax", [1], [0]), Tensor.fromInt64("m1", [1], [-1])],
    nodes: [
      node("Shape", ["x"], ["s"]),
      node("Gather", ["s", "zero"], ["n"], { axis: 0 }),
      node("Unsqueeze", ["n", "ax"], ["n1"]),
      node("Concat", ["n1", "m1"], ["target"], { axis: 0 }),
      node("Conv", ["x", "w"], ["c"]),
      node("Relu", ["c"], ["r"]),
      node("Reshape", ["r", "target"], ["out"]),
    ],
    outputs: ["out"],
  });
  const model = inferShapes(m).model;
  const [device, cloud] = partition(model, ["r"]);
  assert.equal(device.graph.inputs.map((v) => v.name), ["x"]);
  assert.equal(cloud.graph.inputs.map((v) => v.name), ["r"]);
  assert.equal(cloud.graph.value("r").shape, ["N", 4, 4, 4]);
  // The cloud has no x: it reads the symbolic batch N from the shape of r, which carries it.
  assert.ok(cloud.graph.nodes.some((n) => n.opType === "Shape" && n.inputs[0]!.name === "r"), "cloud should read N from r");
  const { diff } = await chainDiff(serializeModel(model), [serializeModel(device), serializeModel(cloud)], randomFeeds(model, SEED, 3));
  assert.is(diff, 0);
});

dag("min s-t cut: no costlier than the best candidate cut, and a valid partition", async () => {
  for (const fx of fixtures()) {
    const model = inferShapes(loadModel(fx.path)).model;
    const facts = findCuts(model);
    for (const [slowdown, bytesPerSecond] of [[10, 2e6 / 8], [10, 100e6 / 8], [1.2, 15e6 / 8]] as const) {
      const cost = {
        deviceSeconds: (n: Parameters<typeof nodeMacs>[0]) => (nodeMacs(n) * slowdown) / 1e9,
        cloudSeconds: (n: Parameters<typeof nodeMacs>[0]) => nodeMacs(n) / 1e9,
        transferSeconds: (bytes: number) => bytes / bytesPerSecond,
      };
      const best = Math.min(...facts.cuts.map((c) => (c.deviceMacs * slowdown) / 1e9 + c.cloudMacs / 1e9 + (c.kind === "output" ? 0 : c.bytes / bytesPerSecond)));
      const r = minCutPartition(model, cost);
      assert.ok(r.seconds <= best * (1 + 1e-9) + 1e-12, `${fx.name}: min-cut ${r.seconds} > best candidate ${best}`);
      if (r.cloudNodes.length > 0) {
        const [device, cloud] = partition(model, r.tensors);
        assert.is(device.graph.nodes.length + cloud.graph.nodes.length >= facts.order.length, true);
      }
    }
  }
});

dag.run();

const cli = suite("dyno split / verify");
const dir = mkdtempSync(join(tmpdir(), "dyno-split-"));
cli.after(() => rmSync(dir, { recursive: true, force: true }));

cli("split --cut INDEX writes device.onnx, cloud.onnx, cut.json; verify reports bit-exact", async () => {
  const fx = fixtures()[0]!;
  const a = await analyzeModel(fx.path);
  const inner = a.cuts.cuts.find((c) => c.kind === "inner" && !c.dominated) ?? a.cuts.cuts[1]!;
  const out = join(dir, "one");
  const r = runDyno(["split", fx.path, "--cut", String(inner.index), "-o", out]);
  assert.is(r.code, 0, r.stderr);
  const index = JSON.parse(readFileSync(join(out, "cut.json"), "utf8"));
  assert.equal(index.cuts[0].tensors.map((t: { name: string }) => t.name), inner.tensors);
  assert.equal(index.parts.map((p: { file: string }) => p.file), ["device.onnx", "cloud.onnx"]);
  const v = runDyno(["verify", fx.path, out]);
  assert.is(v.code, 0, v.stdout + v.stderr);
  assert.match(v.stdout, /0 \(bit-exact\)\s+ok/);
});

cli("split --cuts all writes a chain that verify accepts; a tampered part fails verify", async () => {
  const fx = fixtures()[0]!;
  const out = join(dir, "chain");
  const r = runDyno(["split", fx.path, "--cuts", "all", "-o", out]);
  assert.is(r.code, 0, r.stderr);
  const index = JSON.parse(readFileSync(join(out, "chain.json"), "utf8"));
  assert.ok(index.parts.length > 5);
  assert.is(runDyno(["verify", fx.path, out]).code, 0);
  // Verify must be able to fail: compare against a different model's outputs.
  const other = fixtures().find((f) => f.name !== fx.name);
  if (other) {
    const bad = runDyno(["verify", other.path, out]);
    assert.ok(bad.code !== 0, "verify passed parts of another model");
  }
});

cli("split errors: bad cut index, non-separating tensors", () => {
  const fx = fixtures()[0]!;
  const a = runDyno(["split", fx.path, "--cut", "9999", "-o", join(dir, "x")]);
  assert.is(a.code, 2);
  assert.match(a.stderr, /cut index 9999 does not exist/);
  const b = runDyno(["split", fx.path, "--cut", "nope", "-o", join(dir, "y")]);
  assert.ok(b.code !== 0);
  assert.match(b.stderr, /cut tensor "nope" not found/);
});

cli.run();
