// The fixture models of models/ (described by models/fixtures.json) and a CLI runner for tests.
import { perSampleDims } from "../runtime/common/manifest.js";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

export const ROOT = fileURLToPath(new URL("..", import.meta.url));
export const MODELS = `${ROOT}models/`;

export interface FixtureModel {
  name: string;
  file: string;
  path: string;
  input: string;
  inputShape: number[];
  output: string;
  family: string;
  testAccuracy: number;
  subsetAccuracy: number;
}

export interface FixtureIndex {
  version: number;
  default: string;
  dataset: { file: string; classes: string[]; preprocess: { scale: number; mean: number[]; std: number[] } };
  models: FixtureModel[];
}

/** models/fixtures.json; throws (failing the test) when the fixtures are missing. */
export function fixtureIndex(): FixtureIndex {
  const path = `${MODELS}fixtures.json`;
  if (!existsSync(path)) throw new Error(`${path} is missing: run /usr/bin/python3 models/make_fixtures.py`);
  const index = JSON.parse(readFileSync(path, "utf8")) as FixtureIndex;
  for (const m of index.models) m.path = `${MODELS}${m.file}`;
  return index;
}

export function fixtures(): FixtureModel[] {
  const list = fixtureIndex().models;
  if (list.length === 0) throw new Error("models/fixtures.json lists no models");
  return list;
}

/** Runs `dyno ARGS` from the TypeScript sources; returns exit code and output. */
export function runDyno(args: string[], options: { cwd?: string } = {}): { code: number; stdout: string; stderr: string } {
  const code = `import("${ROOT}cli/main.ts").then(async (m) => { process.exitCode = await m.runCli(${JSON.stringify(args)}); })`;
  const r = spawnSync(process.execPath, ["--import", "tsx", "-e", code], { cwd: options.cwd ?? ROOT, encoding: "utf8", timeout: 120_000 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** runDyno without blocking this process (for a server the command talks to, in this process). */
export function runDynoAsync(args: string[], options: { cwd?: string; timeoutMs?: number } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const code = `import("${ROOT}cli/main.ts").then(async (m) => { process.exitCode = await m.runCli(${JSON.stringify(args)}); })`;
  const child = spawn(process.execPath, ["--import", "tsx", "-e", code], { cwd: options.cwd ?? ROOT, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (c: string) => (stdout += c));
  child.stderr.setEncoding("utf8").on("data", (c: string) => (stderr += c));
  const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 120_000);
  return new Promise((resolve) => child.on("close", (status) => {
    clearTimeout(timer);
    resolve({ code: status ?? -1, stdout, stderr });
  }));
}

/**
 * Compiles a fixture into a test bundle with fast settings (64 calibration inputs, bits 2/4/8,
 * 3 profile runs unless given); returns the compile result and the calibration it used.
 */
export async function compileTestBundle(modelPath: string, out: string, options: { bits?: number[]; samples?: number; maxAccuracyDrop?: number; profileRuns?: number; tiers?: string[] } = {}) {
  const { analyzeModel } = await import("../compiler/pipeline.js");
  const { compile } = await import("../compiler/bundler/compile.js");
  const { loadCalibration } = await import("../compiler/bundler/calibration.js");
  const a = await analyzeModel(modelPath);
  const input = a.model.graph.inputs.find((v) => !a.model.graph.isInitializer(v.name))!;
  const perSample = perSampleDims(input.shape!);
  const calibration = await loadCalibration(modelPath, { inputDims: perSample, samples: options.samples ?? 64 });
  const result = await compile(a, modelPath, {
    out,
    calibration,
    bits: options.bits ?? [2, 4, 8],
    maxAccuracyDrop: options.maxAccuracyDrop ?? 1,
    profileRuns: options.profileRuns ?? 3,
    tiers: options.tiers,
    dynoVersion: "test",
  });
  return { result, calibration };
}
