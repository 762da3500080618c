// The default fixture's bundle, compiled once and kept (for `dyno demo` and `bench/e2e`): reused
// when it was compiled from the same model file by the same dyno version.
import { perSampleDims } from "../runtime/common/manifest.js";
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { compile, sha256File } from "../compiler/bundler/compile.js";
import { DynoError } from "../runtime/common/errors.js";
import { analyzeModel } from "../compiler/pipeline.js";
import { openBundle, type NodeBundle } from "../runtime/node/bundle.js";
import { dynoVersion } from "./version.js";

/** The repository root (the sources run from it; the built CLI from dist/). */
export const ROOT = resolve(new URL("..", import.meta.url).pathname, existsSync(new URL("../models", import.meta.url)) ? "." : "..");

export interface Fixture {
  name: string;
  /** Absolute path of the .onnx file. */
  path: string;
}

/** A fixture of models/fixtures.json by name (default: the index's default). */
export function fixture(name?: string): Fixture {
  const index = JSON.parse(readFileSync(join(ROOT, "models/fixtures.json"), "utf8")) as { default: string; models: { name: string; file: string }[] };
  const want = name ?? index.default;
  const fx = index.models.find((m) => m.name === want);
  if (!fx) throw new DynoError(`no fixture "${want}" (fixtures: ${index.models.map((m) => m.name).join(", ")})`);
  return { name: fx.name, path: join(ROOT, "models", fx.file) };
}

/**
 * Opens the bundle of `fx` in `dir` (default .dyno/<name>.bundle), compiling it first (bits
 * 2/3/4/6/8, 300 calibration images, 5 profile runs) unless a current one is there.
 */
export async function cachedBundle(fx: Fixture, dir = join(ROOT, ".dyno", `${fx.name}.bundle`), log: (line: string) => void = console.log): Promise<{ bundle: NodeBundle; dir: string; reused: boolean }> {
  let reused = false;
  try {
    const m = openBundle(dir).manifest;
    reused = m.model.sha256 === sha256File(fx.path) && m.dyno === dynoVersion();
  } catch {
    reused = false;
  }
  if (reused) log(`bundle  ${dir} (reused)`);
  else {
    const { loadCalibration } = await import("../compiler/bundler/calibration.js");
    log(`bundle  compiling ${fx.path.replace(`${ROOT}/`, "")} -> ${dir} (first run only) ...`);
    const a = await analyzeModel(fx.path);
    const perSample = perSampleDims(a.model.graph.inputs[0]!.shape!);
    const calibration = await loadCalibration(fx.path, { inputDims: perSample, samples: 300 });
    const r = await compile(a, fx.path, { out: dir, calibration, bits: [2, 3, 4, 6, 8], profileRuns: 5, dynoVersion: dynoVersion() });
    log(`bundle  ${r.manifest.variants.length} variants over ${r.manifest.cuts.length} cuts in ${r.seconds.toFixed(0)} s`);
  }
  return { bundle: openBundle(dir), dir, reused };
}
