#!/usr/bin/env node
// Runs the uvu suite under test/ (TypeScript through tsx) and ends with the plain line
// "N passed, N failed, N skipped" that CI reads. Exit status is non-zero when any test fails
// or the runner itself dies before its summary.
//
//   npm test                 every test/**/*.test.ts
//   npm test -- kernels      only files whose path matches /kernels/
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const filter = process.argv[2];
const pattern = filter ? `${filter}.*\\.test\\.ts$` : "\\.test\\.ts$";
const uvu = fileURLToPath(new URL("../node_modules/uvu/bin.js", import.meta.url));

const color = process.stdout.isTTY ? [] : ["--no-color"];
const child = spawn(process.execPath, ["--import", "tsx", uvu, "test", pattern, ...color], {
  cwd: root,
  stdio: ["ignore", "pipe", "inherit"],
});

let out = "";
child.stdout.on("data", (chunk) => {
  process.stdout.write(chunk);
  out += chunk.toString();
  if (out.length > 1 << 20) out = out.slice(-4096);
});

child.on("close", (code, signal) => {
  const plain = out.replace(/\x1b\[[0-9;]*m/g, "");
  const count = (label) => {
    const m = plain.match(new RegExp(`${label}:\\s+(\\d+)`));
    return m ? Number(m[1]) : undefined;
  };
  const total = count("Total");
  const passed = count("Passed");
  const skipped = count("Skipped") ?? 0;
  if (total === undefined || passed === undefined) {
    console.log(`test runner ended without a summary (exit ${code ?? signal})`);
    console.log("0 passed, 1 failed");
    process.exit(1);
  }
  const failed = Math.max(0, total - passed);
  console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
  process.exit(failed > 0 || code !== 0 ? 1 : 0);
});
