// Calibration data for compile and verify: a DYNOIMG1 image set (labelled), the fixtures'
// dataset when the model is a fixture, or seeded random inputs (unlabelled).
import { existsSync, readFileSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { UsageError } from "../compiler/errors.js";
import type { Manifest } from "./manifest.js";
import { imageBatch, parseImageSet, type Preprocess } from "./dataset.js";
import { randomFloats } from "./random.js";

/** Calibration inputs: float32 batches (NCHW), with labels when known. */
export interface Calibration {
  source: string;
  count: number;
  /** Samples [start, start + n) as one float32 batch. */
  batch(start: number, n: number): Float32Array;
  labels: Uint8Array | null;
  preprocess: Manifest["preprocess"];
}

interface FixtureIndex {
  dataset: { file: string; preprocess: Preprocess };
  models: { file: string }[];
}

/**
 * `calib`: a DYNOIMG1 file or "random:N"; when absent and the model sits in a folder whose
 * fixtures.json lists it, that dataset and its preprocessing. `preprocessFlag`: "SCALE,MEAN,STD".
 */
export function loadCalibration(modelPath: string, calib: string | undefined, preprocessFlag: string | undefined, perSample: number[], samples: number | undefined, inputName?: string): Calibration {
  let preprocess: Preprocess | null = null;
  let file = calib;
  const fixturesPath = join(dirname(resolve(modelPath)), "fixtures.json");
  if (existsSync(fixturesPath)) {
    const index = JSON.parse(readFileSync(fixturesPath, "utf8")) as FixtureIndex;
    if (index.models.some((m) => m.file === basename(modelPath))) {
      preprocess = index.dataset.preprocess;
      file ??= join(dirname(resolve(modelPath)), index.dataset.file);
    }
  }
  if (preprocessFlag) {
    const [scale, mean, std] = preprocessFlag.split(",").map(Number);
    if (![scale, mean, std].every((x) => Number.isFinite(x)) || std === 0) throw new UsageError(`--preprocess "${preprocessFlag}": expected SCALE,MEAN,STD`);
    preprocess = { scale: scale!, mean: [mean!], std: [std!] };
  }
  if (!file) throw new UsageError(`compile: no calibration data: give --calib DATA.bin (DYNOIMG1) or --calib random:N`);
  // NAME=DATA names the model input the data is for.
  const named = file.match(/^([^=/\\]+)=(.+)$/);
  if (named) {
    if (inputName !== undefined && named[1] !== inputName) throw new UsageError(`--calib: the model has no input "${named[1]}" (inputs: ${inputName})`);
    file = named[2]!;
  }
  const random = file.match(/^random:(\d+)$/);
  const per = perSample.slice(1).reduce((a, b) => a * b, 1);
  if (random) {
    const count = Math.min(Number(random[1]), samples ?? Infinity);
    return { source: `random:${count} (seeded, unlabelled)`, count, labels: null, preprocess: null, batch: (start, n) => randomFloats(n * per, 1000 + start) };
  }
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch {
    throw new UsageError(`--calib "${file}": no such file`);
  }
  const set = parseImageSet(bytes, file);
  if (set.channels * set.height * set.width !== per) {
    throw new UsageError(`--calib "${file}": images are ${set.channels}x${set.height}x${set.width}; the model input needs [${perSample.slice(1).join(",")}]`);
  }
  const p = preprocess ?? { scale: 1 / 255, mean: [0], std: [1] };
  const count = Math.min(set.count, samples ?? Infinity);
  return { source: basename(file), count, labels: set.labels.subarray(0, count), preprocess: p, batch: (start, n) => imageBatch(set, start, n, p) };
}

/**
 * The calibration data a bundle was compiled with, to reproduce its accuracy table: --calib if
 * given (with the manifest's preprocessing), else the fixtures' dataset of `modelPath`, else
 * models/<source> under the working directory. Null when none is found.
 */
export function bundleCalibration(manifest: Manifest, calib: string | undefined, modelPath: string | undefined): Calibration | null {
  const input = manifest.model.inputs[0]!;
  const perSample = input.shape.map((d) => (typeof d === "number" ? d : 1));
  const samples = manifest.calibration.samples;
  const flag = manifest.preprocess ? `${manifest.preprocess.scale},${manifest.preprocess.mean[0]},${manifest.preprocess.std[0]}` : undefined;
  if (calib) return loadCalibration(modelPath ?? "", calib, flag, perSample, samples);
  if (manifest.calibration.source.startsWith("random:")) return loadCalibration("", `random:${samples}`, undefined, perSample, samples);
  if (modelPath) {
    try {
      return loadCalibration(modelPath, undefined, flag, perSample, samples);
    } catch {
      /* fall through */
    }
  }
  const guess = join(process.cwd(), "models", manifest.calibration.source);
  return existsSync(guess) ? loadCalibration("", guess, flag, perSample, samples) : null;
}
