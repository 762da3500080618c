// Bundled by test/kernels-browser.test.ts for Chromium: loads the kernels the browser way
// (fetch beside the bundle) and exposes the determinism cases to the test.
import { initKernels } from "../../kernels/index.js";
import { runDeterminismCases } from "./determinism-cases.js";

(globalThis as Record<string, unknown>).dynoRun = async (seed: number) => {
  await initKernels();
  return runDeterminismCases(seed);
};
