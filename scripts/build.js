#!/usr/bin/env node
// Builds everything a fresh clone needs: the WebAssembly kernels (AssemblyScript, asconfig.json)
// and the TypeScript sources (tsc -> dist/). Runs on `npm install` (prepare) and `npm run build`.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const bin = (name) => fileURLToPath(new URL(`../node_modules/.bin/${name}`, import.meta.url));

function step(label, cmd, args) {
  const t0 = performance.now();
  const r = spawnSync(cmd, args, { cwd: root, stdio: "inherit" });
  if (r.status !== 0) {
    console.error(`build: ${label} failed (exit ${r.status ?? r.signal})`);
    process.exit(r.status || 1);
  }
  console.log(`build: ${label} ok (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
}

if (existsSync(`${root}/asconfig.json`) && existsSync(`${root}/kernels/assembly`)) {
  step("kernels (asc)", bin("asc"), ["--config", "asconfig.json", "--target", "release"]);
}
step("typescript (tsc)", bin("tsc"), ["-p", "tsconfig.json"]);
