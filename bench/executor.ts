// Executor memory and variant switches (issue #5 §2), each number from one run:
// - resident memory of an executor with every variant ready (all segment sessions) against one
//   onnxruntime session of the whole model, each measured in a fresh process (goal <= 1.3x);
// - the cost of switching variants between two inferences, against staying on one.
//
//   npm run bench -- executor [MODEL=models/<default>.onnx] [BUNDLE]   (compiles MODEL if no BUNDLE)
import { perSampleDims } from "../runtime/common/manifest.js";
import { openExecutor } from "../runtime/node/executor.js";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import ort from "onnxruntime-node";
import { compile } from "../compiler/bundler/compile.js";
import { analyzeModel } from "../compiler/pipeline.js";
import { openBundle } from "../runtime/node/bundle.js";
import { loadCalibration } from "../compiler/bundler/calibration.js";
import { Executor } from "../runtime/exec/executor.js";
import { openSession } from "../runtime/node/session.js";
import { table } from "../cli/format.js";

const [mode, ...rest] = process.argv.slice(2);

if (mode === "--child-whole") {
  const [model] = rest as [string];
  const before = process.memoryUsage().rss;
  const s = await openSession(model, { optimize: true });
  const name = s.inputNames[0]!;
  const meta = JSON.parse(rest[1]!) as number[];
  await s.run({ [name]: new ort.Tensor("float32", new Float32Array(meta.reduce((a, b) => a * b, 1)), meta) });
  console.log(JSON.stringify({ rss: process.memoryUsage().rss - before }));
  process.exit(0);
}
if (mode === "--child-executor") {
  const [dir] = rest as [string];
  const before = process.memoryUsage().rss;
  const exec = await openExecutor(openBundle(dir, { checksums: false }));
  const dims = perSampleDims(exec.manifest.model.inputs[0]!.shape);
  const x = new ort.Tensor("float32", new Float32Array(dims.reduce((a, b) => a * b, 1)).fill(0.1), dims);
  for (const v of exec.manifest.variants) {
    const d = await exec.device(v.id, x);
    if (d.kind === "split") await exec.cloud(v.id, d.payloads);
  }
  console.log(JSON.stringify({ rss: process.memoryUsage().rss - before }));
  process.exit(0);
}

const index = JSON.parse(readFileSync("models/fixtures.json", "utf8"));
const model = mode ?? `models/${index.models.find((m: { name: string }) => m.name === index.default).file}`;
let bundleDir = rest[0];
if (!bundleDir || !existsSync(join(bundleDir, "manifest.json"))) {
  bundleDir = mkdtempSync(join(tmpdir(), "dyno-bench-exec-"));
  const a = await analyzeModel(model);
  const input = a.model.graph.inputs.find((v) => !a.model.graph.isInitializer(v.name))!;
  const perSample = perSampleDims(input.shape!);
  const calibration = await loadCalibration(model, { calib: existsSync(model) && model.startsWith("models/") ? undefined : "random:16", inputDims: perSample, samples: 64 });
  await compile(a, model, { out: bundleDir, calibration, bits: [2, 4, 8], profileRuns: 3, dynoVersion: "bench" });
}
const bundle = openBundle(bundleDir);
const dims = perSampleDims(bundle.manifest.model.inputs[0]!.shape);

const child = (args: string[]) => {
  const r = spawnSync(process.execPath, ["--import", "tsx", new URL(import.meta.url).pathname, ...args], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout.trim().split("\n").pop()!) as { rss: number };
};
const whole = child(["--child-whole", model, JSON.stringify(dims)]);
const exec = child(["--child-executor", bundleDir]);

// Switch cost: alternate between two split variants at different cuts vs repeat one.
const e = await openExecutor(bundle);
const x = new ort.Tensor("float32", new Float32Array(dims.reduce((a, b) => a * b, 1)).fill(0.1), dims);
const splits = bundle.manifest.variants.filter((v) => bundle.manifest.cuts.find((c) => c.id === v.cut)!.kind === "inner");
const [va, vb] = [splits[0]!, splits[splits.length - 1]!];
const run = async (id: string) => {
  const d = await e.device(id, x);
  if (d.kind === "split") await e.cloud(id, d.payloads);
};
for (let i = 0; i < 20; i++) await run(va.id);
/** Median milliseconds per inference (medians: this machine is shared and noisy). */
const time = async (ids: string[]) => {
  const ms: number[] = [];
  for (const id of ids) {
    const t0 = performance.now();
    await run(id);
    ms.push(performance.now() - t0);
  }
  return ms.sort((a, b) => a - b)[ms.length >> 1]!;
};
const N = 200;
const same = await time(Array.from({ length: N }, () => va.id));
const sameB = await time(Array.from({ length: N }, () => vb.id));
const alternating = await time(Array.from({ length: N }, (_, i) => (i % 2 ? vb.id : va.id)));
await e.release();

const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;
console.log(`bundle ${bundleDir}: ${bundle.manifest.variants.length} variants over ${bundle.manifest.segments.length} segments; model ${model}`);
console.log(table(["what", "value"], [
  ["RSS, one session of the whole model", mib(whole.rss)],
  ["RSS, executor with every variant run once", mib(exec.rss)],
  ["ratio (goal <= 1.3x)", `${(exec.rss / whole.rss).toFixed(2)}x`],
  [`inference on ${va.id} every time`, `${same.toFixed(3)} ms`],
  [`inference on ${vb.id} every time`, `${sameB.toFixed(3)} ms`],
  ["alternating the two (a switch every inference)", `${alternating.toFixed(3)} ms`],
  ["cost of a switch", `${(alternating - (same + sameB) / 2).toFixed(3)} ms (sessions created: 0)`],
]));
