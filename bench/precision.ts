// The precision picture (issue #5 §4): for each fixture, top-1 accuracy against bits at every
// inner cut, measured through the real kernels on the labelled test subset — DynO's observation
// that different parts of a CNN need different precision. Writes docs/precision.md and
// docs/precision-<model>.svg.
//
//   npm run bench -- precision [--samples N] [--only NAME,...]
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { compile } from "../compiler/compile.js";
import { analyzeModel } from "../compiler/pipeline.js";
import { loadCalibration } from "../runtime/calibration.js";
import type { Manifest } from "../runtime/manifest.js";

const args = process.argv.slice(2);
const flag = (name: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const samples = Number(flag("--samples") ?? 2000);
const only = flag("--only")?.split(",");
const BITS = [1, 2, 3, 4, 5, 6, 7, 8, 16];
const index = JSON.parse(readFileSync("models/fixtures.json", "utf8")) as { models: { name: string; file: string }[] };
const sections: string[] = [];
const summary: string[][] = [];

for (const fx of index.models.filter((m) => !only || only.includes(m.name))) {
  const path = `models/${fx.file}`;
  const t0 = performance.now();
  const a = await analyzeModel(path);
  const input = a.model.graph.inputs.find((v) => !a.model.graph.isInitializer(v.name))!;
  const perSample = input.shape!.map((d) => (typeof d === "number" ? d : 1));
  const calibration = await loadCalibration(path, { inputDims: perSample, samples });
  const inner = a.cuts.cuts.filter((c) => c.kind === "inner").map((c) => c.index);
  const out = mkdtempSync(join(tmpdir(), `dyno-precision-${fx.name}-`));
  const { manifest } = await compile(a, path, { out, calibration, bits: BITS, cuts: inner, profileRuns: 1, dynoVersion: "bench" });
  const seconds = (performance.now() - t0) / 1000;
  sections.push(renderModel(fx.name, manifest, a.cuts.cuts.length, seconds));
  writeFileSync(`docs/precision-${fx.name}.svg`, plot(fx.name, manifest));
  const eight = manifest.variants.filter((v) => v.codec.bits === 8);
  summary.push([fx.name, pct(manifest.calibration.float32Value), String(manifest.cuts.length - 2), Math.max(...eight.map((v) => v.accuracy.drop)).toFixed(2), minBitsRange(manifest)]);
  console.log(`${fx.name}: ${manifest.variants.length} variants in ${seconds.toFixed(0)} s`);
  writeDoc();
}

function pct(x: number): string {
  return `${x.toFixed(2)}%`;
}

function minBits(m: Manifest, cut: number): number | null {
  const ok = m.variants.filter((v) => v.cut === cut && typeof v.codec.bits === "number" && v.accuracy.drop <= 1);
  return ok.length ? Math.min(...ok.map((v) => v.codec.bits as number)) : null;
}

function minBitsRange(m: Manifest): string {
  const xs = m.cuts.filter((c) => c.kind === "inner").map((c) => minBits(m, c.id)).filter((b): b is number => b !== null);
  return `${Math.min(...xs)}–${Math.max(...xs)}`;
}

function renderModel(name: string, m: Manifest, allCuts: number, seconds: number): string {
  const rows = m.cuts.filter((c) => c.kind !== "output").map((c) => {
    const cells = BITS.map((b) => {
      const v = m.variants.find((x) => x.cut === c.id && x.codec.bits === b);
      return v ? v.accuracy.value.toFixed(1) : "";
    });
    const names = c.tensors.map((t) => t.name.replace(/_output_0$/, "")).join(" + ");
    return `| ${c.id} | ${names.length > 60 ? names.slice(0, 57) + "..." : names} | ${(c.bytes / 1024).toFixed(1)} | ${cells.join(" | ")} | ${minBits(m, c.id) ?? "-"} |`;
  });
  return [
    `## ${name}`,
    "",
    `float32 top-1 ${pct(m.calibration.float32Value)} on ${m.calibration.samples} test images; ${m.cuts.length - 2} inner cuts of ${allCuts - 2}, every codec through the kernels (${seconds.toFixed(0)} s). Cells: top-1 %; last column: the smallest bits within 1 pp.`,
    "",
    `![accuracy against bits per cut](precision-${name}.svg)`,
    "",
    `| cut | tensors | KiB (f32) | ${BITS.map((b) => `${b}-bit`).join(" | ")} | min bits |`,
    `|---|---|---|${BITS.map(() => "---").join("|")}|---|`,
    ...rows,
    "",
  ].join("\n");
}

function plot(name: string, m: Manifest): string {
  const W = 900, H = 380, L = 60, R = 110, T = 40, B = 50;
  const cuts = m.cuts.filter((c) => c.kind !== "output");
  const pw = W - L - R, ph = H - T - B;
  const x = (i: number) => L + (pw * (i + 0.5)) / cuts.length;
  const lo = 0, hi = 100;
  const y = (p: number) => T + ph - ((p - lo) / (hi - lo)) * ph;
  const colors = ["#d62728", "#ff7f0e", "#bcbd22", "#2ca02c", "#17becf", "#1f77b4", "#9467bd", "#8c564b", "#7f7f7f"];
  const out = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12"><rect width="${W}" height="${H}" fill="white"/>`];
  out.push(`<text x="${W / 2}" y="22" text-anchor="middle" font-size="15">${name}: top-1 against bits at every cut (${m.calibration.samples} test images)</text>`);
  for (let p = 0; p <= 100; p += 20) out.push(`<line x1="${L}" x2="${W - R}" y1="${y(p)}" y2="${y(p)}" stroke="#e5e5e5"/><text x="${L - 6}" y="${y(p) + 4}" text-anchor="end">${p}%</text>`);
  BITS.forEach((b, k) => {
    const pts = cuts.map((c, i) => {
      const v = m.variants.find((x2) => x2.cut === c.id && x2.codec.bits === b);
      return v ? `${x(i).toFixed(1)},${y(v.accuracy.value).toFixed(1)}` : null;
    }).filter(Boolean);
    out.push(`<polyline points="${pts.join(" ")}" fill="none" stroke="${colors[k]}" stroke-width="2"/>`);
    out.push(`<rect x="${W - R + 12}" y="${T + k * 18}" width="12" height="12" fill="${colors[k]}"/><text x="${W - R + 30}" y="${T + k * 18 + 10}">${b}-bit</text>`);
  });
  out.push(`<line x1="${L}" x2="${W - R}" y1="${y(m.calibration.float32Value)}" y2="${y(m.calibration.float32Value)}" stroke="#000" stroke-dasharray="4 4"/>`);
  cuts.forEach((c, i) => {
    if (i % Math.ceil(cuts.length / 25) === 0) out.push(`<text x="${x(i)}" y="${T + ph + 16}" text-anchor="middle">${c.id}</text>`);
  });
  out.push(`<text x="${(L + W - R) / 2}" y="${H - 12}" text-anchor="middle">cut (0 = input, cloud-only; dashed: float32)</text></svg>`);
  return out.join("\n") + "\n";
}

function writeDoc() {
const doc = [
  "# The precision picture",
  "",
  "Top-1 accuracy on the labelled Fashion-MNIST test subset (models/README.md) when the tensors",
  "crossing a cut are quantised per input to b bits (range from the tensor itself, round half to",
  "even, zero exact after ReLU) and decoded, measured through the real kernels at every inner cut",
  `of every fixture. Made by \`npm run bench -- precision --samples ${samples}\` (one run; the numbers below are its output).`,
  "",
  "| model | float32 top-1 | inner cuts | worst 8-bit drop (pp) | smallest bits within 1 pp, over cuts |",
  "|---|---|---|---|---|",
  ...summary.map((r) => `| ${r.join(" | ")} |`),
  "",
  ...sections,
].join("\n");
writeFileSync("docs/precision.md", doc + "\n");
console.log("wrote docs/precision.md");
}
