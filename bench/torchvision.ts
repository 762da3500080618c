// Shapes and cuts on ImageNet-size torchvision exports (made by
// `/usr/bin/python3 models/make_fixtures.py --torchvision ... --out /tmp/tv`, not committed):
// static shape inference against onnxruntime for every tensor, the candidate cuts, and
// cloud(device(x)) against the model at every cut (bit-exact expected, graph optimisations off).
//
//   npm run bench -- torchvision [DIR=/tmp/tv] [--no-cuts]
import { existsSync, readdirSync, statSync } from "node:fs";
import { basename, join } from "node:path";
import { loadModel } from "../compiler/onnx/import.js";
import { serializeModel } from "../compiler/onnx/export.js";
import { inferShapes } from "../compiler/passes/infer-shapes.js";
import { findCuts } from "../compiler/passes/find-cuts.js";
import { partition } from "../compiler/passes/partition.js";
import { openSession } from "../runtime/node/session.js";
import { maxAbsDiff, randomFeeds, runChain } from "../compiler/bundler/feeds.js";
import { compareWithOrt } from "../test/shape-check.js";
import { table } from "../cli/format.js";

const args = process.argv.slice(2);
const dir = args.find((a) => !a.startsWith("--")) ?? "/tmp/tv";
const checkCuts = !args.includes("--no-cuts");
if (!existsSync(dir)) {
  console.error(`${dir} does not exist: make the exports with /usr/bin/python3 models/make_fixtures.py --torchvision resnet50,mobilenet_v2,inception_v3,vgg16,googlenet,densenet121,squeezenet1_0 --out ${dir}`);
  process.exit(2);
}
const rows: (string | number)[][] = [];
for (const file of readdirSync(dir).filter((f) => f.endsWith(".onnx")).sort()) {
  const path = join(dir, file);
  const t0 = performance.now();
  const loaded = loadModel(path);
  const tLoad = performance.now() - t0;
  const shapes = await compareWithOrt(loaded);
  const model = inferShapes(loaded).model;
  const facts = findCuts(model);
  const single = facts.cuts.filter((c) => c.tensors.length === 1 && c.kind === "inner").length;
  const adds = model.graph.nodes.filter((n) => n.opType === "Add");
  // Every residual Add is followed (through its Relu) by a one-tensor cut: a cut after each block.
  const afterBlock = adds.filter((a) => {
    const out = a.outputs[0]!;
    const next = out.uses.length === 1 ? out.uses[0]!.node.outputs[0]! : out;
    return facts.cuts.some((c) => c.tensors.length === 1 && c.tensors[0] === next.name);
  }).length;
  let worst = NaN;
  let cutSeconds = 0;
  if (checkCuts) {
    const t1 = performance.now();
    const feeds = randomFeeds(model, 7);
    const whole = await openSession(serializeModel(model));
    const ref = await whole.run(feeds);
    await whole.release();
    worst = 0;
    for (const cut of facts.cuts) {
      const [d, c] = partition(model, cut.tensors);
      const sessions = [await openSession(serializeModel(d)), await openSession(serializeModel(c))];
      const got = await runChain(sessions, feeds);
      for (const name of Object.keys(ref)) worst = Math.max(worst, maxAbsDiff(ref[name]!, got[name]!));
      for (const s of sessions) await s.release();
    }
    cutSeconds = (performance.now() - t1) / 1000;
  }
  rows.push([
    basename(file, ".onnx"),
    `${(statSync(path).size / 2 ** 20).toFixed(1)} MiB`,
    model.graph.nodes.length,
    `${tLoad.toFixed(0)} ms`,
    `${shapes.checked - shapes.mismatches.length}/${shapes.checked}`,
    shapes.unknown.length,
    facts.cuts.length,
    single,
    adds.length ? `${afterBlock}/${adds.length}` : "-",
    checkCuts ? (worst === 0 ? "0 (exact)" : worst.toExponential(2)) : "skipped",
    checkCuts ? `${cutSeconds.toFixed(0)} s` : "",
  ]);
  if (shapes.mismatches.length) console.log(`${file}: shape mismatches`, shapes.mismatches.slice(0, 5));
}
console.log(table(["model", "size", "nodes", "load", "shapes = ort", "unknown", "cuts", "1-tensor cuts", "cut after Add", "max |diff| all cuts", "time"], rows));
