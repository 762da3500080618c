// The IR: building graphs, the invariants verify() checks (each with the message a user sees),
// deterministic topological order, clone independence, and use lists kept up to date.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { GraphError } from "../runtime/common/errors.js";
import { attribute, buildGraph, buildModel, floats, node } from "../compiler/ir/builder.js";
import { DataType } from "../compiler/ir/dtype.js";
import { AttrType, Graph, type Node, type Value } from "../compiler/ir/graph.js";
import { isTopologicallySorted, topoSort, verify, verifyOrThrow } from "../compiler/ir/order.js";
import { Tensor } from "../compiler/ir/tensor.js";
import { parseModel } from "../compiler/onnx/import.js";
import { encodePlain, rng } from "./helpers/onnx.js";

const labels = (nodes: readonly Node[]) => nodes.map((n) => n.label);
const uses = (v: Value) => v.uses.map((u) => `${u.node.label}:${u.index}`);

/** x -> conv -> relu -> add(relu, x) -> y: a residual block. */
function residual(): Graph {
  return buildGraph({
    inputs: { x: ["float32", [1, 2, 4, 4]] },
    initializers: [Tensor.fromFloat32("w", [2, 2, 1, 1], new Float32Array([1, 0, 0, 1]))],
    nodes: [node("Conv", ["x", "w"], ["c"], { pads: [0, 0, 0, 0] }), node("Relu", ["c"], ["r"]), node("Add", ["r", "x"], ["y"])],
    outputs: ["y"],
  });
}

const builder = suite("ir builder");

builder("buildGraph wires producers, uses, declarations and initializers", () => {
  const g = residual();
  assert.equal(labels(g.nodes), ["conv_0", "relu_1", "add_2"]);
  const x = g.value("x");
  assert.is(x.producer, null);
  assert.equal(uses(x), ["conv_0:0", "add_2:1"]);
  assert.equal(x.dtype, DataType.FLOAT);
  assert.equal(x.shape, [1, 2, 4, 4]);
  assert.equal(x.decl?.type, { tensor_type: { elem_type: 1, shape: { dim: [1, 2, 4, 4].map((d) => ({ dim_value: d })) } } });
  assert.is(g.value("c").producer, g.nodes[0]);
  assert.equal(g.value("r").consumers.map((n) => n.label), ["add_2"]);
  assert.ok(g.isInitializer("w"));
  assert.equal(g.value("w").shape, [2, 2, 1, 1]);
  assert.equal(g.outputs.map((v) => v.name), ["y"]);
  assert.equal(verify(g), []);
});

builder("attributes: integers become INT(S), other numbers FLOAT(S), floats() forces FLOATS", () => {
  const enc = (s: string) => new TextEncoder().encode(s);
  assert.equal(attribute("axis", 1), { name: "axis", type: AttrType.INT, i: 1 });
  assert.equal(attribute("alpha", 0.5), { name: "alpha", type: AttrType.FLOAT, f: 0.5 });
  assert.equal(attribute("pads", [1, 1]), { name: "pads", type: AttrType.INTS, ints: [1, 1] });
  assert.equal(attribute("scales", [1, 1.5]), { name: "scales", type: AttrType.FLOATS, floats: [1, 1.5] });
  assert.equal(attribute("scales", floats(1, 2)), { name: "scales", type: AttrType.FLOATS, floats: [1, 2] });
  assert.equal(attribute("mode", "nearest"), { name: "mode", type: AttrType.STRING, s: enc("nearest") });
  assert.equal(attribute("names", ["a", "b"]), { name: "names", type: AttrType.STRINGS, strings: [enc("a"), enc("b")] });
  const n = buildGraph({ inputs: { x: ["float32", [4]] }, nodes: [node("LeakyRelu", ["x"], ["y"], { alpha: 0.25 })], outputs: ["y"] }).nodes[0]!;
  assert.is(n.attrFloat("alpha", 0.01), 0.25);
  assert.is(n.attrInt("axis", 7), 7, "absent attribute gives the fallback");
});

builder("an omitted optional input is a null slot, not a value", () => {
  const g = buildGraph({ inputs: { x: ["float32", [1, 4]] }, nodes: [node("Clip", ["x", "", "hi"], ["y"])], outputs: ["y"] });
  assert.equal(g.nodes[0]!.inputs.map((v) => v?.name ?? null), ["x", null, "hi"]);
  assert.not.ok(g.has(""));
});

builder("unknown dtype names are refused", () => {
  assert.throws(() => buildGraph({ inputs: { x: ["float33", [1]] }, nodes: [], outputs: [] }), /unknown dtype "float33"/);
});

builder.run();

const verifying = suite("ir verify");

/** The only problem verify() reports for g. */
function onlyProblem(g: Graph): string {
  const problems = verify(g);
  assert.is(problems.length, 1, `expected one problem, got ${JSON.stringify(problems)}`);
  return problems[0]!;
}

verifying("an input that nothing produces or declares", () => {
  const g = residual();
  g.addNode("Mul", ["y", "ghost"], ["z"], { name: "mul" });
  assert.is(onlyProblem(g), `input 1 "ghost" of mul is not produced by any node nor declared`);
});

verifying("a value produced twice: addNode refuses, verify reports one built by hand", () => {
  const g = residual();
  assert.throws(() => g.addNode("Neg", ["x"], ["r"], { name: "neg" }), (e: Error) => e instanceof GraphError && e.message === `value "r" is produced twice (by relu_1 and neg)`);
  const h = residual();
  const neg = h.addNode("Neg", ["x"], ["n"], { name: "neg" });
  (neg.outputs as (Value | null)[])[0] = h.value("r");
  assert.ok(verify(h).includes(`value "r" is produced by both relu_1 and neg`), verify(h).join("; "));
});

verifying("an output that is also a graph input", () => {
  const g = residual();
  g.addNode("Neg", ["c"], ["x"], { name: "neg" });
  assert.ok(verify(g).includes(`value "x" is both a graph input/initializer and the output of neg`), verify(g).join("; "));
});

verifying("duplicate node names", () => {
  const g = residual();
  g.addNode("Neg", ["y"], ["z"], { name: "relu_1" });
  assert.is(onlyProblem(g), `node name "relu_1" is used twice`);
});

verifying("a graph output that no node produces", () => {
  const g = residual();
  g.outputs.push(g.value("nowhere"));
  assert.is(onlyProblem(g), `graph output "nowhere" is not produced by any node`);
});

verifying("a cycle", () => {
  const g = residual();
  g.addNode("Add", ["y", "b"], ["a"], { name: "loop_a" });
  g.addNode("Relu", ["a"], ["b"], { name: "loop_b" });
  assert.match(onlyProblem(g), /^graph "test" has a cycle through node loop_[ab]$/);
  assert.throws(() => verifyOrThrow(g, "after fuse-conv"), /^after fuse-conv: graph "test" has a cycle/);
});

verifying("a subgraph reading an outer value nothing defines", () => {
  const g = residual();
  g.addNode("If", ["y"], ["z"], { name: "if", implicit: ["outer_ghost"] });
  assert.is(onlyProblem(g), `subgraph of if reads "outer_ghost", which is not defined in the outer graph`);
});

verifying.run();

const ordering = suite("ir topoSort");

ordering("among ready nodes, file order wins (not depth-first order)", () => {
  const named = (op: string, inputs: string[], out: string) => node(op, inputs, [out], {}, { name: out });
  const g = buildGraph({
    inputs: { x: ["float32", [1]] },
    nodes: [named("Add", ["a", "b"], "c"), named("Neg", ["x"], "d"), named("Neg", ["x"], "a"), named("Neg", ["x"], "b")],
    outputs: ["c", "d"],
  });
  assert.equal(labels(topoSort(g)), ["d", "a", "b", "c"]);
  assert.equal(labels(g.nodes), ["c", "d", "a", "b"], "topoSort does not reorder the graph itself");
});

ordering("a shuffled node list sorts into a valid order, the same for every shuffle of it", () => {
  // A ladder: 8 rungs, each rung reading the previous rung and the input; plus side branches.
  const specs = [];
  for (let i = 0; i < 8; i++) {
    specs.push(node("Add", [i ? `r${i - 1}` : "x", "x"], [`r${i}`], {}, { name: `rung${i}` }));
    specs.push(node("Neg", [`r${i}`], [`s${i}`], {}, { name: `side${i}` }));
  }
  const reference = buildGraph({ inputs: { x: ["float32", [1]] }, nodes: specs, outputs: ["r7", ...specs.filter((_, i) => i % 2).map((n) => n.outputs[0]!)] });
  assert.equal(labels(topoSort(reference)), labels(reference.nodes), "already sorted: unchanged");
  for (const seed of [1, 2, 3, 4, 5]) {
    const next = rng(seed);
    const shuffled = [...specs];
    for (let i = shuffled.length - 1; i > 0; i--) {
      const j = Math.floor(next() * (i + 1));
      [shuffled[i], shuffled[j]] = [shuffled[j]!, shuffled[i]!];
    }
    const g = buildGraph({ inputs: { x: ["float32", [1]] }, nodes: shuffled, outputs: ["r7"] });
    const order = topoSort(g);
    const position = new Map(order.map((n, i) => [n, i]));
    for (const n of order) {
      for (const v of n.reads) if (v.producer) assert.ok(position.get(v.producer)! < position.get(n)!, `seed ${seed}: ${v.producer.label} after its reader ${n.label}`);
    }
    assert.equal(labels(order), labels(topoSort(g)), `seed ${seed}: deterministic`);
    const reordered = new Graph();
    order.forEach((n) => reordered.addNode(n.opType, n.inputs.map((v) => v?.name ?? ""), n.outputs.map((v) => v?.name ?? ""), { name: n.name }));
    assert.ok(isTopologicallySorted(reordered), `seed ${seed}`);
  }
});

ordering("a cycle is named by a node on it, not by a node downstream of it", () => {
  const g = new Graph();
  g.name = "loopy";
  g.inputs.push(g.value("x"));
  g.addNode("Neg", ["b"], ["tail"], { name: "downstream" });
  g.addNode("Add", ["x", "b"], ["a"], { name: "on_cycle_1" });
  g.addNode("Relu", ["a"], ["b"], { name: "on_cycle_2" });
  assert.throws(() => topoSort(g), (e: Error) => e instanceof GraphError && /^graph "loopy" has a cycle through node on_cycle_[12]$/.test(e.message));
});

ordering("a node reading its own output is a cycle", () => {
  const g = new Graph();
  g.inputs.push(g.value("x"));
  g.addNode("Add", ["x", "y"], ["y"], { name: "self" });
  assert.throws(() => topoSort(g), /cycle through node self/);
});

ordering.run();

const mutation = suite("ir clone and removeNode");

mutation("a clone is independent: mutating it leaves the original intact", () => {
  const g = residual();
  const before = { nodes: labels(g.nodes), xUses: uses(g.value("x")), yProducer: g.value("y").producer?.label, shape: g.value("x").shape };
  const c = g.clone();
  assert.equal(labels(c.nodes), before.nodes);
  assert.equal(verify(c), []);
  assert.is.not(c.value("x"), g.value("x"));
  assert.is.not(c.nodes[0], g.nodes[0]);
  c.removeNode(c.nodes[2]!);
  c.addNode("Sigmoid", ["r"], ["y"], { name: "sig" });
  c.value("x").shape![0] = 8;
  c.value("x").dtype = DataType.FLOAT16;
  c.outputs.push(c.value("r"));
  c.initializers.delete("w");
  c.name = "changed";
  c.extra.doc_string = "changed";
  assert.equal(labels(g.nodes), before.nodes);
  assert.equal(uses(g.value("x")), before.xUses);
  assert.is(g.value("y").producer?.label, before.yProducer);
  assert.equal(g.value("x").shape, [1, 2, 4, 4]);
  assert.is(g.value("x").dtype, DataType.FLOAT);
  assert.equal(g.outputs.map((v) => v.name), ["y"]);
  assert.ok(g.isInitializer("w"));
  assert.is(g.name, "test");
  assert.is(g.extra.doc_string, undefined);
  assert.equal(verify(g), []);
});

mutation("Model.clone copies the graph and opsets", () => {
  const m = buildModel({ inputs: { x: ["float32", [1]] }, nodes: [node("Neg", ["x"], ["y"])], outputs: ["y"] });
  const c = m.clone();
  c.graph.removeNode(c.graph.nodes[0]!);
  c.opsets[0]!.version = 21;
  assert.is(m.graph.nodes.length, 1);
  assert.is(m.opset(), 17);
  assert.is(m.opset("ai.onnx"), 17);
});

mutation("removeNode drops the node's uses and its outputs' producer", () => {
  const g = residual();
  const add = g.nodes[2]!;
  g.removeNode(add);
  assert.equal(uses(g.value("x")), ["conv_0:0"]);
  assert.equal(uses(g.value("r")), []);
  assert.is(g.value("y").producer, null);
  assert.is(onlyProblem(g), `graph output "y" is not produced by any node`);
  assert.throws(() => g.removeNode(add), /node add_2 is not in graph "test"/);
});

mutation("a node used twice by one consumer loses both uses", () => {
  const g = buildGraph({ inputs: { x: ["float32", [1]] }, nodes: [node("Mul", ["x", "x"], ["y"])], outputs: ["y"] });
  assert.equal(uses(g.value("x")), ["mul_0:0", "mul_0:1"]);
  g.removeNode(g.nodes[0]!);
  assert.equal(uses(g.value("x")), []);
});

mutation.run();

const subgraphs = suite("ir subgraph reads");

/** An If whose branches read outer values `a` (then) and `b` (else, inside a nested Loop body). */
function ifModelBytes(): Uint8Array {
  const out = (name: string) => [{ name, type: { tensor_type: { elem_type: 1 } } }];
  return encodePlain({
    ir_version: "9",
    opset_import: [{ domain: "", version: "19" }],
    graph: {
      name: "g",
      input: [{ name: "cond", type: { tensor_type: { elem_type: 9 } } }, ...out("a"), ...out("b")],
      node: [
        { op_type: "Neg", input: ["a"], output: ["na"], name: "neg" },
        {
          op_type: "If",
          name: "if",
          input: ["cond"],
          output: ["y"],
          attribute: [
            { name: "then_branch", type: 5, g: { name: "then", node: [{ op_type: "Add", input: ["na", "local"], output: ["t"] }], initializer: [{ name: "local", data_type: 1, dims: [], float_data: [1] }], output: out("t") } },
            {
              name: "else_branch",
              type: 5,
              g: {
                name: "else",
                node: [{ op_type: "Identity", input: ["b"], output: ["e"], attribute: [{ name: "unused", type: 5, g: { name: "deep", node: [{ op_type: "Neg", input: ["cond"], output: ["d"] }], output: out("d") } }] }],
                output: out("e"),
              },
            },
          ],
        },
      ],
      output: out("y"),
    },
  });
}

subgraphs("outer values read inside If branches (and nested subgraphs) are implicit inputs and uses", () => {
  const g = parseModel(ifModelBytes(), { source: "if.onnx" }).graph;
  const ifNode = g.nodes[1]!;
  assert.equal(ifNode.implicitInputs.map((v) => v.name).sort(), ["b", "cond", "na"]);
  assert.equal(uses(g.value("na")), ["if:-1"]);
  assert.equal(uses(g.value("cond")), ["if:0", "if:-1"]);
  assert.not.ok(g.has("local"), "a subgraph's own initializer is not an outer value");
  assert.equal(labels(topoSort(g)), ["neg", "if"]);
  assert.equal(verify(g), []);
});

subgraphs("implicit reads order nodes and keep uses up to date", () => {
  const g = parseModel(ifModelBytes(), { source: "if.onnx" }).graph;
  const [neg, ifNode] = g.nodes as [Node, Node];
  g.nodes.reverse();
  assert.not.ok(isTopologicallySorted(g), "If before the Neg whose output its branch reads");
  assert.equal(labels(topoSort(g)), ["neg", "if"]);
  g.removeNode(ifNode);
  assert.equal(uses(g.value("na")), []);
  assert.equal(uses(g.value("cond")), []);
  const c = g.clone();
  assert.equal(labels(c.nodes), [neg.label]);
});

subgraphs.run();
