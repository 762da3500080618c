// dyno compile MODEL -o BUNDLE [--calib DATA] [--bits 2,3,4,5,6,8,16] [--max-accuracy-drop 1]
//                   [--cuts auto|i,j,k] [--input-shape ...]
import { perSampleDims } from "../../runtime/common/manifest.js";
import cliProgress from "cli-progress";
import { compile, DEFAULT_BITS, DEFAULT_IMAGES } from "../../compiler/bundler/compile.js";
import type { ImageFormat } from "../../runtime/common/image.js";
import { UsageError } from "../../runtime/common/errors.js";
import { analyzeModel } from "../../compiler/pipeline.js";
import { loadCalibration } from "../../compiler/bundler/calibration.js";
import { parseInputShapes, type Command } from "../args.js";
import { humanBytes } from "../format.js";
import { dynoVersion } from "../version.js";

export const compileCommand: Command = {
  name: "compile",
  summary: "compile a model into a bundle: cuts x bits variants, accuracy profile, manifest",
  usage: "compile MODEL -o BUNDLE [--calib DATA] [--bits 2,3,4,5,6,8,16] [--images jpeg,webp|none] [--image-qualities 10,25,50,75,90] [--max-accuracy-drop PP] [--cuts auto|I,J,K] [--tiers device,edge,cloud]",
  help: [
    "  -o, --out BUNDLE            output directory (replaced)",
    "  --calib [INPUT=]DATA        calibration data: a folder of JPEG/PNG/WebP images, a .npy array [N,...],",
    "                              a DYNOIMG1 .bin (labelled), or random:N (unlabelled);",
    "                              default: the dataset of models/fixtures.json when MODEL is a fixture",
    "  --calib-samples N           use the first N calibration samples (default: all)",
    "  --preprocess S,M,D          x = (pixel * S - M) / D for --calib images, M and D per channel as M1:M2:M3",
    "                              (default from fixtures.json, else 1/255,0,1)",
    "  --labels FILE               labels of the --calib images (path<TAB>label lines) or .npy (one per line):",
    "                              a class index, a text, or PaddleOCR boxes [{\"transcription\",\"points\"}]",
    "  --layout nchw|nhwc          the image layout of the input (default: from its dims)",
    "  --channel-order rgb|bgr     channel order of the input (default rgb; PaddleOCR models: bgr)",
    "  --resize stretch|pad        stretch to H x W (default), or keep the aspect at height H and pad right with 0",
    "  --bits LIST                 quantised widths to profile (1..8, 16; default 2,3,4,5,6,8,16); float16 and float32 always",
    "  --images jpeg,webp|none     also send the input as an image file, as a practitioner would (default jpeg,webp;",
    "                              offered for an image input whose preprocess is known: --calib images or a fixture)",
    "  --image-qualities LIST      the encoders' qualities to profile, 1..100 (default 10,25,50,75,90)",
    "  --metric NAME[:K=V,..]|F.js accuracy metric: top1, agreement, ctc, map-iou, box-f1, cosine, or a",
    "                              module (docs/metrics.md); default top1 when labelled with classes, else agreement",
    "  --max-accuracy-drop D       admissible variants lose at most D in the metric's unit (default 1)",
    "  --cuts auto|I,J,K           candidate cuts (auto: those not dominated in packed bytes and device MACs)",
    "  --per-channel               quantisation ranges per channel (axis 1) instead of per tensor",
    "  --tiers device,edge,cloud   three tiers: also profile every chain of two crossings (device -> edge at one",
    "                              variant's cut, edge -> cloud at a later one's) for accuracy together, since the",
    "                              two quantisations compound (manifest.tiers; docs/d3.md). Default: two tiers",
    "  --profile-runs N            timed runs per segment for the latency profile (default 10)",
    "  --input-shape NAME=D,...    fix an input's dims",
  ].join("\n"),
  options: {
    out: { type: "string", short: "o" },
    calib: { type: "string" },
    "calib-samples": { type: "string" },
    preprocess: { type: "string" },
    labels: { type: "string" },
    layout: { type: "string" },
    "channel-order": { type: "string" },
    resize: { type: "string" },
    bits: { type: "string" },
    images: { type: "string" },
    "image-qualities": { type: "string" },
    "max-accuracy-drop": { type: "string" },
    metric: { type: "string" },
    cuts: { type: "string" },
    "per-channel": { type: "boolean" },
    tiers: { type: "string" },
    "profile-runs": { type: "string" },
    "input-shape": { type: "string", multiple: true },
  },
  async run({ values, positionals }) {
    if (positionals.length !== 1) throw new UsageError(`compile: expected one MODEL\nusage: dyno ${compileCommand.usage}`);
    const modelPath = positionals[0]!;
    const out = values.out as string | undefined;
    if (!out) throw new UsageError(`compile: -o BUNDLE is required\nusage: dyno ${compileCommand.usage}`);
    const bits = values.bits === undefined ? [...DEFAULT_BITS] : parseList("--bits", values.bits as string);
    const maxDrop = values["max-accuracy-drop"] === undefined ? 1 : parseNumber("--max-accuracy-drop", values["max-accuracy-drop"] as string);
    const cuts = values.cuts === undefined || values.cuts === "auto" ? "auto" : parseList("--cuts", values.cuts as string);
    const a = await analyzeModel(modelPath, { inputShapes: parseInputShapes(values["input-shape"] as string[] | undefined) });
    const input = a.model.graph.inputs.find((v) => !a.model.graph.isInitializer(v.name))!;
    const perSample = perSampleDims(input.shape ?? []);
    const samples = values["calib-samples"] === undefined ? undefined : parseNumber("--calib-samples", values["calib-samples"] as string);
    const calibration = await loadCalibration(modelPath, {
      calib: values.calib as string | undefined,
      labels: values.labels as string | undefined,
      preprocess: values.preprocess as string | undefined,
      layout: values.layout as string | undefined,
      channelOrder: values["channel-order"] as string | undefined,
      resize: values.resize as string | undefined,
      samples,
      inputName: input.name,
      inputDims: perSample,
    });

    const bar = process.stderr.isTTY
      ? new cliProgress.SingleBar({ format: "profiling {bar} {percentage}% | {value}/{total} | ETA {eta_formatted} | {label}", hideCursor: true }, cliProgress.Presets.shades_classic)
      : null;
    let started = false;
    let lastLine = 0;
    const t0 = performance.now();
    const result = await compile(a, modelPath, {
      out,
      calibration,
      bits,
      maxAccuracyDrop: maxDrop,
      metric: values.metric as string | undefined,
      cuts,
      perChannel: !!values["per-channel"],
      tiers: tiersOf(values.tiers as string | undefined),
      images: imagesOf(values.images as string | undefined, values["image-qualities"] as string | undefined),
      profileRuns: values["profile-runs"] === undefined ? undefined : parseNumber("--profile-runs", values["profile-runs"] as string),
      dynoVersion: dynoVersion(),
      log: (line) => console.log(line),
      onProgress: (done, total, label) => {
        if (bar) {
          if (!started) bar.start(total, 0, { label });
          started = true;
          bar.update(done, { label });
          if (done === total) bar.stop();
        } else if (done === total || performance.now() - lastLine > 5000) {
          // Not a terminal: a line every few seconds with the estimate of the time left.
          lastLine = performance.now();
          const elapsed = (lastLine - t0) / 1000;
          console.error(`profiling ${done}/${total} (${label}), ${elapsed.toFixed(0)} s elapsed, ~${((elapsed / done) * (total - done)).toFixed(0)} s left`);
        }
      },
    });
    const m = result.manifest;
    const admissible = m.variants.filter((v) => v.admissible);
    const mc = m.calibration;
    console.log(`bundle ${out}: ${m.cuts.length} cuts, ${m.variants.length} variants (${admissible.length} admissible within ${maxDrop} ${mc.metric.unit}), ${m.segments.length} segments`);
    console.log(`size ${humanBytes(result.bundleBytes)} (model ${humanBytes(result.modelBytes)}, ${(result.bundleBytes / result.modelBytes).toFixed(2)}x); calibration ${mc.samples} samples of ${mc.source}${mc.labelled ? " (labelled)" : ""}; metric ${mc.metric.spec}: float32 ${mc.float32Value.toFixed(2)} ${mc.metric.unit}; ${result.seconds.toFixed(1)} s`);
    for (const c of m.cuts) {
      const vs = m.variants.filter((v) => v.cut === c.id && v.admissible && typeof v.codec.bits === "number");
      const min = vs.length ? Math.min(...vs.map((v) => v.codec.bits as number)) : null;
      console.log(`  cut ${String(c.id).padStart(3)} ${c.kind.padEnd(6)} smallest admissible bits: ${min ?? "-"}`);
    }
    return 0;
  },
};

function parseList(flag: string, s: string): number[] {
  return s.split(",").map((x) => {
    const t = x.trim();
    if (!/^\d+$/.test(t)) throw new UsageError(`${flag}: "${t}" is not a non-negative integer`);
    return Number(t);
  });
}

function parseNumber(flag: string, s: string): number {
  const n = Number(s);
  if (!Number.isFinite(n) || n < 0) throw new UsageError(`${flag}: "${s}" is not a non-negative number`);
  return n;
}

/** --images and --image-qualities: the image codecs to profile (none: an empty list). */
function imagesOf(formats: string | undefined, qualities: string | undefined): { format: ImageFormat; qualities: number[] }[] | undefined {
  if (formats === undefined && qualities === undefined) return undefined;
  const qs = qualities === undefined ? [...DEFAULT_IMAGES[0]!.qualities] : parseList("--image-qualities", qualities);
  for (const q of qs) if (q < 1 || q > 100) throw new UsageError(`--image-qualities: ${q} is not in 1..100`);
  if (formats === "none") return [];
  const names = (formats ?? "jpeg,webp").split(",").map((f) => f.trim());
  for (const f of names) if (f !== "jpeg" && f !== "webp") throw new UsageError(`--images: "${f}" is not jpeg or webp (or none)`);
  return [...new Set(names)].map((format) => ({ format: format as ImageFormat, qualities: qs }));
}

/** --tiers: names in order, device first and cloud last (two: today's bundles). */
function tiersOf(spec: string | undefined): string[] | undefined {
  if (spec === undefined) return undefined;
  const names = spec.split(",").map((s) => s.trim());
  if (names.length < 2 || names.some((n) => !/^[a-z][a-z0-9-]*$/.test(n)) || new Set(names).size !== names.length) throw new UsageError(`--tiers "${spec}" is not a list of distinct tier names (e.g. device,edge,cloud)`);
  if (names[0] !== "device" || names[names.length - 1] !== "cloud") throw new UsageError(`--tiers "${spec}": the first tier is the device and the last the cloud (e.g. device,edge,cloud)`);
  if (names.length > 3) throw new UsageError(`--tiers "${spec}": dyno profiles at most three tiers (two crossings)`);
  return names.length === 2 ? undefined : names;
}
