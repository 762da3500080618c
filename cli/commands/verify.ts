// dyno verify MODEL DIR: the parts written by `dyno split`, run in order, against the model.
import { perSampleDims } from "../../runtime/common/manifest.js";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import ort from "onnxruntime-node";
import { DynoError, UsageError } from "../../runtime/common/errors.js";
import { inferShapes } from "../../compiler/passes/infer-shapes.js";
import { loadModel } from "../../compiler/onnx/import.js";
import type { SplitIndex } from "../../compiler/split.js";
import { openSession } from "../../runtime/node/session.js";
import { maxAbsDiff, randomFeeds, runChain, type Feeds } from "../../compiler/bundler/feeds.js";
import { parseInputShapes, type Command } from "../args.js";
import { table } from "../format.js";
import { openBundle } from "../../runtime/node/bundle.js";
import { bundleCalibration, type BundleCalibrationOptions } from "../../compiler/bundler/calibration.js";
import { ACCURACY_TOLERANCE, verifyBundle } from "../../compiler/bundler/verify.js";
import { sha256File } from "../../compiler/bundler/compile.js";

export const verify: Command = {
  name: "verify",
  summary: "run the parts of a split against the original model and report the difference",
  usage: "verify MODEL DIR [--seed N] [--input FILE] [--tolerance T] | verify [MODEL] BUNDLE [--calib DATA]",
  help: [
    "  MODEL DIR           the parts written by dyno split (DIR/cut.json or chain.json) against MODEL",
    "  [MODEL] BUNDLE      every variant of a dyno compile bundle: float32 exact, quantised within the",
    "                      kernels' bound, the accuracy table reproduced (MODEL: also check it is the",
    "                      model the bundle was compiled from)",
    "  --calib DATA        calibration data for the accuracy table (default: the fixtures' dataset)",
    "  --labels FILE       labels of --calib (as for dyno compile)",
    "  --layout L, --channel-order O, --resize R",
    "                      override the bundle's image preprocessing (as for dyno compile)",
    "  --seed N            seed of the random float32 input (default 1)",
    "  --input FILE        raw little-endian float32 input instead (one model input)",
    "  --tolerance T       largest allowed |difference| (default 0: bit-exact, graph optimisations off)",
    "  --input-shape N=D,.. fix an input's dims (repeatable)",
  ].join("\n"),
  options: {
    seed: { type: "string" },
    input: { type: "string" },
    tolerance: { type: "string" },
    calib: { type: "string" },
    labels: { type: "string" },
    layout: { type: "string" },
    "channel-order": { type: "string" },
    resize: { type: "string" },
    "input-shape": { type: "string", multiple: true },
  },
  async run({ values, positionals }) {
    const last = positionals[positionals.length - 1];
    if (last && existsSync(join(last, "manifest.json")) && positionals.length <= 2) {
      return verifyBundleCommand(last, positionals.length === 2 ? positionals[0] : undefined, {
        calib: values.calib as string | undefined,
        labels: values.labels as string | undefined,
        layout: values.layout as string | undefined,
        channelOrder: values["channel-order"] as string | undefined,
        resize: values.resize as string | undefined,
      });
    }
    if (positionals.length !== 2) throw new UsageError(`verify: expected MODEL and DIR, or a BUNDLE\nusage: dyno ${verify.usage}`);
    const [modelPath, dir] = positionals as [string, string];
    const tolerance = values.tolerance === undefined ? 0 : Number(values.tolerance);
    if (!(tolerance >= 0)) throw new UsageError(`--tolerance "${values.tolerance}" is not a non-negative number`);
    const seed = values.seed === undefined ? 1 : Number(values.seed);
    if (!Number.isInteger(seed)) throw new UsageError(`--seed "${values.seed}" is not an integer`);
    const index = readIndex(dir);
    const model = inferShapes(loadModel(modelPath), { inputShapes: parseInputShapes(values["input-shape"] as string[] | undefined) }).model;
    const feeds = values.input ? fileFeeds(model.graph.inputs.filter((v) => !model.graph.isInitializer(v.name)), values.input as string) : randomFeeds(model, seed);

    const whole = await openSession(modelPath);
    const expected = await whole.run(feeds);
    const parts = [];
    for (const p of index.parts) parts.push(await openSession(join(dir, p.file)));
    const got = await runChain(parts, feeds);
    const rows: (string | number)[][] = [];
    let worst = 0;
    for (const name of whole.outputNames) {
      const t = got[name];
      if (!t) throw new DynoError(`the parts in "${dir}" do not produce model output "${name}"`);
      const d = maxAbsDiff(expected[name]!, t);
      worst = Math.max(worst, d);
      rows.push([name, (expected[name]!.dims as number[]).join("x"), d === 0 ? "0 (bit-exact)" : d.toExponential(3), d <= tolerance ? "ok" : "FAIL"]);
    }
    console.log(table(["output", "shape", "max |diff|", "status"], rows));
    console.log(`${index.parts.length} parts, input ${values.input ? values.input : `random (seed ${seed})`}, tolerance ${tolerance}`);
    return worst <= tolerance ? 0 : 1;
  },
};

function readIndex(dir: string): SplitIndex {
  for (const file of ["cut.json", "chain.json"]) {
    const path = join(dir, file);
    if (!existsSync(path)) continue;
    let index: SplitIndex;
    try {
      index = JSON.parse(readFileSync(path, "utf8")) as SplitIndex;
    } catch (e) {
      throw new DynoError(`"${path}" is not valid JSON: ${(e as Error).message}`);
    }
    if (index.format !== "dyno-split" || index.version !== 1 || !Array.isArray(index.parts)) {
      throw new DynoError(`"${path}" is not a dyno split index of version 1`);
    }
    return index;
  }
  throw new UsageError(`"${dir}" has no cut.json or chain.json (write one with dyno split)`);
}

function fileFeeds(inputs: { name: string; shape?: (number | string | null)[] }[], path: string): Feeds {
  if (inputs.length !== 1) throw new UsageError(`--input gives one tensor, the model has ${inputs.length} inputs`);
  const v = inputs[0]!;
  const dims = perSampleDims(v.shape ?? []);
  const n = dims.reduce((a, b) => a * b, 1);
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw new UsageError(`--input "${path}": ${(e as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (e as Error).message}`);
  }
  if (bytes.length !== n * 4) throw new UsageError(`--input "${path}" holds ${bytes.length} bytes; input "${v.name}" [${dims.join(",")}] needs ${n * 4} (float32)`);
  const data = new Float32Array(n);
  new Uint8Array(data.buffer).set(bytes);
  return { [v.name]: new ort.Tensor("float32", data, dims) };
}

async function verifyBundleCommand(dir: string, modelPath: string | undefined, data: Omit<BundleCalibrationOptions, "modelPath">): Promise<number> {
  const bundle = openBundle(dir);
  const m = bundle.manifest;
  if (modelPath && sha256File(modelPath) !== m.model.sha256) {
    throw new DynoError(`bundle "${dir}" was compiled from another model than "${modelPath}" (SHA-256 differs)`);
  }
  const calibration = await bundleCalibration(m, { ...data, modelPath });
  const checks = await verifyBundle(bundle, calibration);
  const mm = m.calibration.metric;
  const fmt = (x: number | null) => (x === null ? "-" : x.toFixed(2));
  console.log(table(
    ["variant", "variant graphs", "max |out diff|", "cut error / bound", `${mm.name} (${mm.unit})`, "manifest", "status"],
    checks.map((c) => [c.id, c.graphsMatch === null ? "-" : c.graphsMatch ? "same" : "DIFFER", c.outputDiff === 0 ? "0 (exact)" : c.outputDiff.toExponential(2), c.cutBoundRatio.toFixed(3), fmt(c.value), fmt(c.manifestValue), c.ok ? "ok" : `FAIL: ${c.problem}`]),
  ));
  const failed = checks.filter((c) => !c.ok).length;
  console.log(`${checks.length} variants, ${failed} failed; checksums ok; ${calibration ? `metric ${mm.spec} on ${calibration.count} samples of ${calibration.source} (tolerance ${ACCURACY_TOLERANCE} ${mm.unit})` : "accuracy not reproduced: no calibration data (give --calib DATA)"}`);
  return failed === 0 ? 0 : 1;
}
