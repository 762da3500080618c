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

// The browser device (runtime/web/index.ts -> dist/browser/dyno.js, ESM): onnxruntime-web and
// the kernels bundled, their .wasm files next to it (self-hosted, never a CDN); the page of
// `dyno serve --page` (runtime/web/page/: app.ts bundled to app.js, index.html, app.css) beside it. Nothing of the compiler, the server or Node inside:
// the import-direction test (test/layout.test.ts) holds the sources to that, and
// test/browser-build.test.ts checks the bundle's inputs.
{
  const t0 = performance.now();
  const { build } = await import("esbuild");
  const { cpSync, mkdirSync, rmSync, statSync, writeFileSync, readdirSync } = await import("node:fs");
  const out = `${root}/dist/browser`;
  rmSync(out, { recursive: true, force: true });
  const result = await build({
    absWorkingDir: root,
    entryPoints: { dyno: "runtime/web/index.ts", app: "runtime/web/page/app.ts" },
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    splitting: true,
    outdir: out,
    chunkNames: "[name]-[hash]",
    minify: true,
    sourcemap: "linked",
    metafile: true,
    // The kernels read their .wasm through node:fs only under Node; a browser fetches it.
    external: ["node:*"],
    logLevel: "warning",
  });
  writeFileSync(`${out}/meta.json`, JSON.stringify(result.metafile));
  const ortDist = `${root}/node_modules/onnxruntime-web/dist`;
  mkdirSync(`${out}/ort`, { recursive: true });
  for (const f of ["ort-wasm-simd-threaded.wasm", "ort-wasm-simd-threaded.asyncify.wasm"]) cpSync(`${ortDist}/${f}`, `${out}/ort/${f}`);
  mkdirSync(`${out}/build`, { recursive: true });
  cpSync(`${root}/kernels/build/kernels.wasm`, `${out}/build/kernels.wasm`);
  cpSync(`${root}/node_modules/@bokuweb/zstd-wasm/dist/web/zstd.wasm`, `${out}/zstd.wasm`);
  for (const f of ["index.html", "app.css"]) cpSync(`${root}/runtime/web/page/${f}`, `${out}/${f}`);
  const size = (dir) => readdirSync(dir, { withFileTypes: true }).reduce((a, e) => a + (e.isDirectory() ? size(`${dir}/${e.name}`) : e.name.endsWith(".map") || e.name === "meta.json" ? 0 : statSync(`${dir}/${e.name}`).size), 0);
  const js = readdirSync(out).filter((f) => f.endsWith(".js")).reduce((a, f) => a + statSync(`${out}/${f}`).size, 0);
  const mb = (b) => `${(b / 1e6).toFixed(1)} MB`;
  console.log(`build: browser (esbuild) ok (${((performance.now() - t0) / 1000).toFixed(1)} s): dist/browser ${mb(size(out))}, of which JavaScript ${(js / 1e3).toFixed(0)} kB`);
}
