// Load -> IR -> save must give back the model that was loaded: every models/*.onnx fixture, the
// libonnx-testdata backend corpus (~1,000 models covering every operator) and a model sampling
// the IR 9+ fields an older schema would silently drop. Compared as decoded protobuf plain data,
// reporting the first differing field.
import { readFileSync } from "node:fs";
import { basename, dirname, relative } from "node:path";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { verify } from "../compiler/ir/order.js";
import { loadModel, parseModel } from "../compiler/onnx/import.js";
import { serializeModel } from "../compiler/onnx/export.js";
import { firstDifference } from "./helpers/diff.js";
import { CORPUS_ROOT, INT64_MAX, corpusModels, decodePlain, encodePlain, fixtureModels, ir9ModelPlain } from "./helpers/onnx.js";

/** Where the re-serialized model first differs from `bytes`, or undefined when it does not. */
function roundTripDifference(bytes: Uint8Array, source: string): string | undefined {
  const saved = serializeModel(parseModel(bytes, { source, baseDir: dirname(source) }));
  return firstDifference(decodePlain(saved), decodePlain(bytes));
}

const fixtures = suite("onnx round trip: models/*.onnx");
const fixturePaths = fixtureModels();

fixtures("models/ holds fixture models", () => {
  assert.ok(fixturePaths.length > 0, "no models/*.onnx found: run models/make_fixtures.py (see its header)");
});

for (const path of fixturePaths) {
  fixtures(`${basename(path)} survives load -> IR -> save`, () => {
    const model = loadModel(path);
    assert.equal(verify(model.graph), [], `${basename(path)} breaks an IR invariant`);
    const diff = roundTripDifference(readFileSync(path), path);
    assert.ok(diff === undefined, `${basename(path)}: round trip differs at ${diff}`);
  });
}

fixtures.run();

const corpus = suite("onnx round trip: libonnx-testdata corpus");
const corpusPaths = corpusModels();

if (corpusPaths) {
  const sets = [...new Set(corpusPaths.map((p) => relative(CORPUS_ROOT, p).split("/")[0]!))];
  for (const set of sets) {
    const paths = corpusPaths.filter((p) => relative(CORPUS_ROOT, p).startsWith(`${set}/`));
    corpus(`${set}: ${paths.length} models survive load -> IR -> save`, () => {
      const failures: string[] = [];
      for (const path of paths) {
        let diff: string | undefined;
        try {
          diff = roundTripDifference(readFileSync(path), path);
        } catch (e) {
          diff = `throws ${(e as Error).message}`;
        }
        if (diff) failures.push(`${relative(CORPUS_ROOT, path)}: ${diff}`);
      }
      assert.ok(failures.length === 0, `${failures.length} of ${paths.length} differ, first: ${failures.slice(0, 5).join("; ")}`);
    });
  }
} else {
  console.log(`skipping the libonnx-testdata corpus round trip: ${CORPUS_ROOT} is absent (libonnx-testdata is not installed)`);
  corpus.skip("libonnx-testdata corpus survives load -> IR -> save", () => {});
}

corpus.run();

const ir9 = suite("onnx round trip: IR 9+ fields");

ir9("the hand-built model carries every field under test (the schema knows them)", () => {
  const p = decodePlain(encodePlain(ir9ModelPlain()));
  const g = p.graph;
  const ifNode = g.node[0];
  assert.equal(ifNode.metadata_props, [{ key: "node.key", value: "node.value" }]);
  assert.is(ifNode.device_configurations[0].sharding_spec[0].sharded_dim[0].simple_sharding[0].dim_param, "n");
  assert.equal(p.configuration[0].device, ["cpu:0", "cpu:1"]);
  assert.equal(g.metadata_props, [{ key: "graph.key", value: "graph.value" }]);
  assert.equal(g.initializer[0].metadata_props, [{ key: "tensor.key", value: "tensor.value" }]);
  assert.is(g.node[1].attribute[0].i, INT64_MAX);
  assert.is(g.node[2].attribute[0].i, "0", "explicit i=0 is kept on the wire");
});

ir9("round trip keeps every field", () => {
  const bytes = encodePlain(ir9ModelPlain());
  const diff = roundTripDifference(bytes, "ir9.onnx");
  assert.ok(diff === undefined, `round trip differs at ${diff}`);
});

ir9("the IR reads what the fields mean", () => {
  const model = parseModel(encodePlain(ir9ModelPlain()), { source: "ir9.onnx" });
  const g = model.graph;
  assert.is(model.irVersion, 11);
  const ifNode = g.nodes[0]!;
  assert.equal(ifNode.implicitInputs.map((v) => v.name), ["x"], "If branches read the outer value x");
  assert.ok(g.value("x").uses.some((u) => u.node === ifNode && u.index === -1));
  assert.is(g.nodes[1]!.attr("value_int")!.i, 2n ** 63n - 1n);
  assert.equal(g.initializers.get("big")!.toNumbers(), [Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER, -1]);
  assert.equal(g.initializers.get("half")!.toNumbers().slice(0, 4), [1, -2, 65504, 2 ** -24]);
  assert.equal(verify(g), []);
});

ir9.run();
