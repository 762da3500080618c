import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { buildModel, node } from "../compiler/ir/builder.js";
import { Tensor } from "../compiler/ir/tensor.js";
import { saveModel } from "../compiler/onnx/export.js";
import { ROOT, runDyno } from "./fixtures.js";

const cli = suite("cli");
const dir = mkdtempSync(join(tmpdir(), "dyno-cli-"));
const modelPath = join(dir, "tiny.onnx");
const weights = Float32Array.from({ length: 8 * 3 * 9 }, (_, i) => Math.sin(i));
const tiny = buildModel({
  inputs: { image: ["float32", ["batch", 3, 16, 16]] },
  initializers: [Tensor.fromFloat32("w", [8, 3, 3, 3], weights)],
  nodes: [node("Conv", ["image", "w"], ["c"], { pads: [1, 1, 1, 1] }), node("Relu", ["c"], ["r"]), node("GlobalAveragePool", ["r"], ["p"]), node("Flatten", ["p"], ["out"])],
  outputs: ["out"],
});
saveModel(tiny, modelPath);

/** One line on stderr, no stack trace. */
function assertOneLineError(stderr: string, pattern: RegExp) {
  const lines = stderr.trim().split("\n");
  assert.match(lines[0]!, /^dyno: /);
  assert.match(stderr, pattern);
  assert.not.match(stderr, /\n\s+at /, "stack trace printed");
}

cli.after(() => rmSync(dir, { recursive: true, force: true }));

cli("--version prints the package version; --help lists commands", () => {
  const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8"));
  const v = runDyno(["--version"]);
  assert.is(v.code, 0);
  assert.is(v.stdout.trim(), pkg.version);
  const h = runDyno(["--help"]);
  assert.is(h.code, 0);
  assert.match(h.stdout, /inspect/);
  const sub = runDyno(["inspect", "--help"]);
  assert.match(sub.stdout, /--input-shape/);
});

cli("unknown command and unknown flag exit 2 with a usage message", () => {
  const a = runDyno(["frobnicate"]);
  assert.is(a.code, 2);
  assertOneLineError(a.stderr, /unknown command "frobnicate"/);
  const b = runDyno(["inspect", modelPath, "--bogus"]);
  assert.is(b.code, 2);
  assertOneLineError(b.stderr, /Unknown option '--bogus'/);
});

cli("inspect prints the per-node table and the summary", () => {
  const r = runDyno(["inspect", modelPath]);
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stdout, /Conv\s+\[batch,8,16,16\]\s+55\.3K\s+/);
  assert.match(r.stdout, /inputs\s+image float32\[batch,3,16,16\]/);
  assert.match(r.stdout, /parameters\s+216 \(864 B\)/);
});

cli("inspect --json gives the same data; --input-shape fixes the batch", () => {
  const r = runDyno(["inspect", modelPath, "--json", "--input-shape", "image=4,3,16,16"]);
  assert.is(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  assert.is(j.nodes.length, 4);
  assert.equal(j.nodes[0].outputs[0].shape, [4, 8, 16, 16]);
  assert.is(j.nodes[0].macs, 4 * 8 * 16 * 16 * 27);
  assert.is(j.nodes[3].cumulativeMacsPercent, 100);
  assert.is(j.parameters, 216);
  assert.equal(j.inputs, [{ name: "image", dtype: "float32", shape: [4, 3, 16, 16] }]);
});

cli("bad input: truncated, not ONNX, missing file, missing external data, wrong input name", () => {
  const bytes = readFileSync(modelPath);
  const truncated = join(dir, "truncated.onnx");
  writeFileSync(truncated, bytes.subarray(0, Math.floor(bytes.length / 2)));
  const text = join(dir, "notes.onnx");
  writeFileSync(text, "this is not a model\n");
  const ext = join(dir, "ext", "model.onnx");
  saveModel(tiny, ext, { externalData: { location: "model.data", threshold: 64 } });
  rmSync(join(dir, "ext", "model.data"));

  const cases: [string[], RegExp][] = [
    [["inspect", truncated], /truncated\.onnx" is not a readable ONNX model \(truncated or corrupt/],
    [["inspect", text], /notes\.onnx" is not (a readable ONNX model|an ONNX model)/],
    [["inspect", join(dir, "absent.onnx")], /cannot read model ".*absent\.onnx": no such file/],
    [["inspect", ext], /tensor "w": external data file ".*model\.data" is missing/],
    [["inspect", modelPath, "--input-shape", "pixels=1,3,16,16"], /no input "pixels" \(inputs: image\)/],
    [["inspect", modelPath, "--input-shape", "image=1,3,-4"], /dim "-4" is not/],
  ];
  for (const [args, pattern] of cases) {
    const r = runDyno(args);
    assert.ok(r.code !== 0, `${args.join(" ")} exited 0`);
    assertOneLineError(r.stderr, pattern);
  }
});

cli.run();
