// Calibration data for compile and verify, from what users have (models/README.md, "Calibration data"):
//
//   --calib DIR        JPEG/PNG/WebP images, sorted by name, decoded by sharp to 8-bit RGB (or gray
//                      for a 1-channel input), resized to the input's H x W, normalised, laid out
//   --calib FILE.npy   float32/float64/uint8/int32/int64 [N, ...input dims], used as-is
//   --calib FILE.bin   DYNOIMG1 (compiler/bundler/dataset.ts), its uint8 labels as classes
//   --calib random:N   seeded random inputs, unlabelled
//   (none)             the fixtures' dataset when the model is listed in its folder's fixtures.json
//
// Images become model inputs in one place (`layOut`), whatever their source:
//
//   uint8 HWC raster (H x w, w <= W) --channel order--> x = (pixel * scale - mean[c]) / std[c]
//     --> NCHW or NHWC, the columns right of w (--resize pad) left at 0
//
// mean[c] and std[c] are per model channel, after the channel order (PaddleOCR applies its
// ImageNet means to BGR images, and so do we with --channel-order bgr).
//
// Images are decoded up front so that `batch` is synchronous; they are kept as uint8 (a quarter
// of their float size) and normalised per batch.
import { perSampleDims } from "../../runtime/common/manifest.js";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { basename, dirname, extname, join, resolve } from "node:path";
import sharp from "sharp";
import { DynoError, UsageError } from "../../runtime/common/errors.js";
import type { Manifest } from "../../runtime/common/manifest.js";
import { parseImageSet, type ImageSet } from "./dataset.js";
import { isNpy, parseNpy } from "./npy.js";
import type { Label, TextBox } from "./quality/types.js";
import { randomFloats } from "../../runtime/common/random.js";

/** Calibration inputs: float32 batches laid out as the model input, with labels when known. */
export interface Calibration {
  /** Shown to users and stored in the manifest: the file or folder name. */
  source: string;
  count: number;
  /** Samples [start, start + n) laid out as the model input, batch dim first. */
  batch(start: number, n: number): Float32Array;
  labels: Label[] | null;
  preprocess: Manifest["preprocess"];
}

export type Layout = "nchw" | "nhwc";
export type ChannelOrder = "rgb" | "bgr";
export type Resize = "stretch" | "pad";

/** Options of `loadCalibration`; the string ones are flag texts, checked here. */
export interface CalibrationOptions {
  /** `[INPUT=]DATA`: a folder of images, a .npy file, a DYNOIMG1 file or random:N. */
  calib?: string;
  /** A labels file (PaddleOCR's `path<TAB>label`; for .npy one label per line). */
  labels?: string;
  /** "SCALE,MEAN,STD", MEAN and STD one value or one per channel joined by ":". */
  preprocess?: string;
  /** "nchw" | "nhwc"; default inferred from `inputDims`. */
  layout?: string;
  /** "rgb" | "bgr"; default rgb. */
  channelOrder?: string;
  /** "stretch" | "pad"; default stretch. */
  resize?: string;
  /** Use the first `samples` samples only (and decode only those). */
  samples?: number;
  /** The model input's name, to check `NAME=DATA` against. */
  inputName?: string;
  /** The model input's dims with batch 1, e.g. [1, 3, 48, 320]. */
  inputDims: readonly number[];
}

type Preprocess = NonNullable<Manifest["preprocess"]>;
/** x = (pixel * scale - mean[c]) / std[c]; one mean or std serves every channel. */
type Normalise = Pick<Preprocess, "scale" | "mean" | "std">;

interface FixtureIndex {
  dataset: { file: string; preprocess: Normalise };
  models: { file: string }[];
}

const DEFAULT_NORMALISE: Normalise = { scale: 1 / 255, mean: [0], std: [1] };
const IMAGE_EXTENSIONS = new Set([".jpg", ".jpeg", ".png", ".webp"]);
/** Images decoded at once: sharp decodes on libuv's threads; more only costs memory. */
const DECODE_CONCURRENCY = 4;

/**
 * The calibration data of `options.calib`; when absent and `modelPath` is listed in the
 * fixtures.json of its folder, that dataset with its preprocessing.
 */
export async function loadCalibration(modelPath: string, options: CalibrationOptions): Promise<Calibration> {
  let fixturePreprocess: Normalise | null = null;
  let file = options.calib;
  const fixturesPath = join(dirname(resolve(modelPath)), "fixtures.json");
  if (modelPath && existsSync(fixturesPath)) {
    const index = JSON.parse(readFileSync(fixturesPath, "utf8")) as FixtureIndex;
    if (index.models.some((m) => m.file === basename(modelPath))) {
      fixturePreprocess = index.dataset.preprocess;
      file ??= join(dirname(resolve(modelPath)), index.dataset.file);
    }
  }
  if (!file) throw new UsageError(`no calibration data: give --calib DIR (images), FILE.npy, DATA.bin (DYNOIMG1) or random:N`);
  // NAME=DATA names the model input the data is for.
  const named = file.match(/^([^=/\\]+)=(.+)$/);
  if (named) {
    if (options.inputName !== undefined && named[1] !== options.inputName) throw new UsageError(`--calib: the model has no input "${named[1]}" (inputs: ${options.inputName})`);
    file = named[2]!;
  }
  const limit = options.samples ?? Infinity;
  const inputDims = [...options.inputDims];
  const per = inputDims.slice(1).reduce((a, b) => a * b, 1);

  const random = file.match(/^random:(\d+)$/);
  if (random) {
    if (options.labels) throw new UsageError(`--labels "${options.labels}": random:N data has no labels`);
    const count = Math.min(Number(random[1]), limit);
    return { source: `random:${count} (seeded, unlabelled)`, count, labels: null, preprocess: null, batch: (start, n) => randomBatch(start, n, per) };
  }
  if (!existsSync(file)) throw new UsageError(`--calib "${file}": no such file or folder`);

  if (statSync(file).isDirectory()) {
    const { geometry, preprocess } = imagePreprocess(options, fixturePreprocess, inputDims, file);
    const names = listImages(file);
    const count = Math.min(names.length, limit);
    const decoded = await decodeImages(file, names.slice(0, count), geometry, preprocess.resize);
    let labels: Label[] | null = null;
    if (options.labels) {
      const byName = folderLabels(options.labels, file, names);
      labels = decoded.map((d, i) => scaleBoxes(byName.get(names[i]!)!, d.width / d.sourceWidth, geometry.height / d.sourceHeight));
    }
    return { source: basename(resolve(file)), count, labels, preprocess, batch: (start, n) => layOut(decoded, start, n, geometry, preprocess) };
  }

  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (e) {
    throw new UsageError(`--calib "${file}": cannot read it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  if (isNpy(bytes) || extname(file).toLowerCase() === ".npy") {
    const array = parseNpy(bytes, file);
    const sampleDims = inputDims.slice(1);
    if (array.shape.length !== inputDims.length || array.shape.slice(1).some((d, i) => d !== sampleDims[i])) {
      throw new UsageError(`--calib "${file}": the array is [${array.shape.join(",")}]; the model input needs [N,${sampleDims.join(",")}]`);
    }
    const total = array.shape[0]!;
    const count = Math.min(total, limit);
    const labels = options.labels ? lineLabels(options.labels, file, total).slice(0, count) : null;
    return { source: basename(file), count, labels, preprocess: null, batch: (start, n) => array.data.slice(start * per, Math.min(count, start + n) * per) };
  }

  if (options.labels) throw new UsageError(`--labels "${options.labels}": DYNOIMG1 data ("${file}") carries its own labels`);
  const { geometry, preprocess } = imagePreprocess(options, fixturePreprocess, inputDims, file);
  const set = readImageSet(bytes, file);
  if (set.channels !== geometry.channels || set.height !== geometry.height || set.width !== geometry.width) {
    throw new UsageError(`--calib "${file}": images are ${set.channels}x${set.height}x${set.width}; the model input needs [${inputDims.slice(1).join(",")}]`);
  }
  const count = Math.min(set.count, limit);
  const rasters = Array.from({ length: count }, (_, i) => rasterOf(set, i));
  return { source: basename(file), count, labels: Array.from(set.labels.subarray(0, count)), preprocess, batch: (start, n) => layOut(rasters, start, n, geometry, preprocess) };
}

/** `bundleCalibration` options: the flags of `dyno verify`, which override the manifest's. */
export interface BundleCalibrationOptions {
  calib?: string;
  labels?: string;
  layout?: string;
  channelOrder?: string;
  resize?: string;
  /** The model the bundle was compiled from, when known (its fixtures' dataset is the default). */
  modelPath?: string;
}

/**
 * The calibration data a bundle was compiled with, to reproduce its accuracy table: --calib if
 * given (with the manifest's preprocessing), else the fixtures' dataset of `modelPath`, else
 * models/<source> under the working directory. Null when none is found.
 */
export async function bundleCalibration(manifest: Manifest, options: BundleCalibrationOptions = {}): Promise<Calibration | null> {
  const input = manifest.model.inputs[0]!;
  const stored = preprocessOptions(manifest.preprocess);
  const base: CalibrationOptions = {
    inputDims: perSampleDims(input.shape),
    inputName: input.name,
    samples: manifest.calibration.samples,
    labels: options.labels,
    preprocess: stored.preprocess,
    layout: options.layout ?? stored.layout,
    channelOrder: options.channelOrder ?? stored.channelOrder,
    resize: options.resize ?? stored.resize,
  };
  if (options.calib) return loadCalibration(options.modelPath ?? "", { ...base, calib: options.calib });
  if (manifest.calibration.source.startsWith("random:")) return loadCalibration("", { ...base, labels: undefined, calib: `random:${base.samples}` });
  if (options.modelPath) {
    try {
      return await loadCalibration(options.modelPath, base);
    } catch {
      /* fall through */
    }
  }
  const guess = join(process.cwd(), "models", manifest.calibration.source);
  return existsSync(guess) ? loadCalibration("", { ...base, calib: guess }) : null;
}

/** A manifest's preprocessing as `loadCalibration` options, to make the same inputs again. */
export function preprocessOptions(p: Manifest["preprocess"]): Pick<CalibrationOptions, "preprocess" | "layout" | "channelOrder" | "resize"> {
  if (!p) return {};
  return { preprocess: `${p.scale},${p.mean.join(":")},${p.std.join(":")}`, layout: p.layout, channelOrder: p.channelOrder, resize: p.resize };
}

// --- preprocessing flags -------------------------------------------------------------------

/** Where images go in the input and how they are normalised: the flags, else the fixture's, else the defaults. */
function imagePreprocess(options: CalibrationOptions, fixture: Normalise | null, inputDims: number[], source: string): { geometry: Geometry; preprocess: Preprocess } {
  const normalise = options.preprocess ? parsePreprocess(options.preprocess) : fixture ?? DEFAULT_NORMALISE;
  const geometry = imageGeometry(inputDims, choice("--layout", options.layout, ["nchw", "nhwc"] as const), source);
  for (const [what, values] of [["means", normalise.mean], ["stds", normalise.std]] as const) {
    if (values.length !== 1 && values.length !== geometry.channels) {
      throw new UsageError(`--preprocess "${options.preprocess ?? `${normalise.scale},${normalise.mean.join(":")},${normalise.std.join(":")}`}": ${values.length} ${what} for an input of ${geometry.channels} channels (give 1 or ${geometry.channels})`);
    }
  }
  const preprocess: Preprocess = {
    ...normalise,
    layout: geometry.layout,
    channelOrder: choice("--channel-order", options.channelOrder, ["rgb", "bgr"] as const) ?? "rgb",
    resize: choice("--resize", options.resize, ["stretch", "pad"] as const) ?? "stretch",
  };
  return { geometry, preprocess };
}

function parsePreprocess(flag: string): Normalise {
  const parts = flag.split(",");
  const [scale, mean, std] = parts.map((part) => part.split(":").map((x) => (x.trim() === "" ? NaN : Number(x))));
  const ok = parts.length === 3 && scale!.length === 1 && [...scale!, ...mean!, ...std!].every(Number.isFinite) && std!.every((s) => s !== 0);
  if (!ok) throw new UsageError(`--preprocess "${flag}": expected SCALE,MEAN,STD (MEAN and STD one number or one per channel joined by ":", STD not 0)`);
  return { scale: scale![0]!, mean: mean!, std: std! };
}

function choice<T extends string>(flag: string, value: string | undefined, allowed: readonly T[]): T | undefined {
  if (value === undefined) return undefined;
  if (!(allowed as readonly string[]).includes(value)) throw new UsageError(`${flag} "${value}": expected ${allowed.join(" or ")}`);
  return value as T;
}

/** Where an image goes in the model input. */
interface Geometry {
  layout: Layout;
  channels: number;
  height: number;
  width: number;
}

/** Layout as given, else dims[1] in {1,3,4} -> nchw, else the last dim in {1,3,4} -> nhwc. */
function imageGeometry(dims: number[], layout: Layout | undefined, source: string): Geometry {
  if (dims.length !== 4) throw new UsageError(`--calib "${source}": images need a 4-d model input (NCHW or NHWC); the input is [${dims.join(",")}]`);
  const isChannels = (d: number) => d === 1 || d === 3 || d === 4;
  const resolved = layout ?? (isChannels(dims[1]!) ? "nchw" : isChannels(dims[3]!) ? "nhwc" : undefined);
  if (!resolved) throw new UsageError(`--calib "${source}": cannot tell the channel dim of the input [${dims.join(",")}]; give --layout nchw or --layout nhwc`);
  const [channels, height, width] = resolved === "nchw" ? [dims[1]!, dims[2]!, dims[3]!] : [dims[3]!, dims[1]!, dims[2]!];
  return { layout: resolved, channels, height, width };
}

// --- images --------------------------------------------------------------------------------

/** An image as 8-bit HWC in RGB (or gray) order, `height` the input's H, `width` at most its W. */
interface Raster {
  pixels: Uint8Array;
  width: number;
  /** The image's size before resizing, to scale its boxes. */
  sourceWidth: number;
  sourceHeight: number;
}

function listImages(dir: string): string[] {
  const names = readdirSync(dir)
    .filter((name) => IMAGE_EXTENSIONS.has(extname(name).toLowerCase()) && statSync(join(dir, name)).isFile())
    .sort();
  if (names.length === 0) throw new UsageError(`--calib "${dir}": the folder has no JPEG, PNG or WebP images`);
  return names;
}

async function decodeImages(dir: string, names: string[], g: Geometry, resize: Resize): Promise<Raster[]> {
  if (g.channels !== 1 && g.channels !== 3) throw new UsageError(`--calib "${dir}": the model input has ${g.channels} channels; images give 1 (gray) or 3 (RGB)`);
  const out: Raster[] = [];
  for (let i = 0; i < names.length; i += DECODE_CONCURRENCY) {
    out.push(...(await Promise.all(names.slice(i, i + DECODE_CONCURRENCY).map((name) => decodeImage(join(dir, name), g, resize)))));
  }
  return out;
}

/**
 * Decodes (EXIF orientation applied, as OpenCV's imread does), drops alpha, converts to gray or
 * RGB, resizes (bilinear) to H x W, or for pad to H x w <= W keeping the aspect ratio.
 */
async function decodeImage(path: string, g: Geometry, resize: Resize): Promise<Raster> {
  try {
    const bytes = readFileSync(path);
    const { width: sourceWidth, height: sourceHeight } = (await sharp(bytes, { autoOrient: true }).metadata()).autoOrient;
    const width = resize === "pad" ? Math.min(g.width, Math.ceil((g.height * sourceWidth) / sourceHeight)) : g.width;
    const { data, info } = await sharp(bytes, { autoOrient: true })
      .removeAlpha()
      .toColourspace(g.channels === 1 ? "b-w" : "srgb")
      .resize(width, g.height, { fit: "fill", kernel: "linear" })
      .raw({ depth: "uchar" })
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== g.channels) throw new Error(`decoded to ${info.channels} channels, expected ${g.channels}`);
    return { pixels: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), width, sourceWidth, sourceHeight };
  } catch (e) {
    throw new UsageError(`--calib: cannot decode image "${path}" (${(e as Error).message.split("\n")[0]!.replace(/:$/, "")})`);
  }
}

function readImageSet(bytes: Uint8Array, file: string): ImageSet {
  try {
    return parseImageSet(bytes, file);
  } catch (e) {
    if (!(e instanceof DynoError)) throw e;
    throw new UsageError(`--calib ${e.message}; give a folder of JPEG/PNG/WebP images, a .npy array, a DYNOIMG1 file or random:N`);
  }
}

/** Image `i` of a DYNOIMG1 set (CHW) as an HWC raster. */
function rasterOf(set: ImageSet, i: number): Raster {
  const { channels: C, height: H, width: W } = set;
  const plane = H * W;
  const src = set.pixels.subarray(i * C * plane, (i + 1) * C * plane);
  const pixels = new Uint8Array(C * plane);
  for (let c = 0; c < C; c++) for (let k = 0; k < plane; k++) pixels[k * C + c] = src[c * plane + k]!;
  return { pixels, width: W, sourceWidth: W, sourceHeight: H };
}

/** Rasters [start, start + n) as one float32 batch in the model's layout and channel order. */
function layOut(images: Raster[], start: number, n: number, g: Geometry, p: Preprocess): Float32Array {
  const { channels: C, height: H, width: W } = g;
  const per = C * H * W;
  const end = Math.min(images.length, start + n);
  const mean = Array.from({ length: C }, (_, c) => p.mean[c] ?? p.mean[0]!);
  const std = Array.from({ length: C }, (_, c) => p.std[c] ?? p.std[0]!);
  const source = Array.from({ length: C }, (_, c) => (p.channelOrder === "bgr" ? C - 1 - c : c));
  const nchw = p.layout === "nchw";
  // Zero-filled: the columns right of a padded image stay 0, after normalisation (as PaddleOCR).
  const out = new Float32Array(Math.max(0, end - start) * per);
  for (let i = start; i < end; i++) {
    const { pixels, width: w } = images[i]!;
    const base = (i - start) * per;
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < w; x++) {
        const src = (y * w + x) * C;
        for (let c = 0; c < C; c++) {
          out[nchw ? base + c * H * W + y * W + x : base + (y * W + x) * C + c] = (pixels[src + source[c]!]! * p.scale - mean[c]!) / std[c]!;
        }
      }
    }
  }
  return out;
}

// --- labels --------------------------------------------------------------------------------

/** The lines of a labels file, without the trailing newline and CRs. */
function labelLines(path: string): string[] {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new UsageError(`--labels "${path}": ${code === "ENOENT" ? "no such file" : `cannot read it (${code ?? (e as Error).message})`}`);
  }
  const lines = text.replace(/^\uFEFF/, "").split("\n").map((l) => l.replace(/\r$/, ""));
  if (lines[lines.length - 1] === "") lines.pop();
  return lines;
}

/** PaddleOCR's `path<TAB>label` lines, matched to the folder's images by file name. */
function folderLabels(path: string, dir: string, images: string[]): Map<string, Label> {
  const inFolder = new Set(images);
  const byName = new Map<string, Label>();
  labelLines(path).forEach((line, i) => {
    if (line === "") return;
    const where = `--labels "${path}" line ${i + 1}`;
    const tab = line.indexOf("\t");
    if (tab < 0) throw new UsageError(`${where}: no tab between the image path and its label`);
    const name = line.slice(0, tab).split(/[\\/]/).pop()!;
    if (!inFolder.has(name)) throw new UsageError(`${where}: image "${name}" is not in "${dir}"`);
    if (byName.has(name)) throw new UsageError(`${where}: a second label for image "${name}"`);
    byName.set(name, parseLabel(line.slice(tab + 1), where));
  });
  const missing = images.find((name) => !byName.has(name));
  if (missing !== undefined) throw new UsageError(`--labels "${path}": no label for image "${missing}" of "${dir}"`);
  return byName;
}

/** One label per line, in the order of the `total` samples of `source`. */
function lineLabels(path: string, source: string, total: number): Label[] {
  const lines = labelLines(path);
  if (lines.length !== total) throw new UsageError(`--labels "${path}": ${lines.length} labels for the ${total} samples of "${source}" (one per line)`);
  return lines.map((line, i) => parseLabel(line, `--labels "${path}" line ${i + 1}`));
}

/**
 * A class index (an integer), text boxes (a JSON array of PaddleOCR's
 * `{"transcription": ..., "points": [[x, y], ...]}`), or else the text itself.
 */
function parseLabel(text: string, where: string): Label {
  if (/^\d+$/.test(text)) return Number(text);
  if (text.startsWith("[")) {
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      return text;
    }
    const isObject = (x: unknown) => typeof x === "object" && x !== null && !Array.isArray(x);
    if (Array.isArray(json) && json.every(isObject)) return json.map((box, k) => textBox(box as Record<string, unknown>, `${where}, box ${k + 1}`));
  }
  return text;
}

function textBox(box: Record<string, unknown>, where: string): TextBox {
  const points = box.points;
  const isPoint = (p: unknown): p is [number, number] => Array.isArray(p) && p.length === 2 && p.every((v) => typeof v === "number" && Number.isFinite(v));
  if (!Array.isArray(points) || points.length < 3 || !points.every(isPoint)) throw new UsageError(`${where}: "points" is not a list of at least 3 [x, y] pairs`);
  const text = box.transcription;
  if (text !== undefined && typeof text !== "string") throw new UsageError(`${where}: "transcription" is not a string`);
  const copy = points.map(([x, y]): [number, number] => [x, y]);
  return text === undefined ? { points: copy } : { points: copy, text };
}

/** Boxes scaled from the image's pixels to the model input's; other labels unchanged. */
function scaleBoxes(label: Label, sx: number, sy: number): Label {
  if (!Array.isArray(label) || (sx === 1 && sy === 1)) return label;
  return label.map((box) => ({ ...box, points: box.points.map(([x, y]): [number, number] => [x * sx, y * sy]) }));
}

/** Random samples [start, start + n): sample i is seeded by i alone, so a batch equals its samples one by one. */
function randomBatch(start: number, n: number, per: number): Float32Array {
  const out = new Float32Array(n * per);
  for (let i = 0; i < n; i++) out.set(randomFloats(per, 1000 + start + i), i * per);
  return out;
}

/** Sample i's label, or null when the data is unlabelled. */
export function labelAt(cal: Calibration, i: number): Label | null {
  return cal.labels ? cal.labels[i]! : null;
}
