// The browser device against the Node device, per segment, on the default fixture; and the
// size of what a page downloads (dist/browser).
//
//   npm run bench -- browser [--runs N] [--rounds R] [--out bench/results/browser.md]
//
// Node: onnxruntime-node, 1 intra-op thread. Browser: headless Debian Chromium (playwright-core),
// onnxruntime-web's WASM backend, 1 thread (the page's setting), the same bundle fetched from
// `dyno serve --page`'s routes. Each round measures Node then the browser (measureProfile: one
// warm-up run, then N runs of every segment), so both see the same machine load; the table gives
// the median over rounds of each side's per-segment mean and the browser/Node ratio of each
// round's own pair, with its min-max over rounds.
import { perSampleDims } from "../runtime/common/manifest.js";
import { mkdirSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import ort from "onnxruntime-node";
import { cachedBundle, fixture } from "../cli/bundle-cache.js";
import { table } from "../cli/format.js";
import { createPage } from "../cli/page.js";
import { loadCalibration } from "../compiler/bundler/calibration.js";
import type { Profile } from "../runtime/common/manifest.js";
import { startServer } from "../runtime/cloud/server.js";
import { measureProfile } from "../runtime/exec/executor.js";
import { openExecutor } from "../runtime/node/executor.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const CHROMIUM = "/usr/bin/chromium";
const TOKEN = "bench-browser";

const { values } = parseArgs({ options: { runs: { type: "string", default: "20" }, rounds: { type: "string", default: "3" }, out: { type: "string", default: join(ROOT, "bench/results/browser.md") } } });
const runs = Number(values.runs);
const rounds = Number(values.rounds);

const fx = fixture();
const { bundle } = await cachedBundle(fx);
const m = bundle.manifest;
const dims = perSampleDims(m.model.inputs[0]!.shape);
const size = dims.reduce((a, b) => a * b, 1);
const page = createPage({ bundle, token: TOKEN, inputs: await loadCalibration("", { calib: "random:2", inputDims: dims }), slowdown: 1, browserDir: join(ROOT, "dist/browser") });
const server = await startServer({ bundle, port: 0, token: TOKEN, routes: (req, res) => page.routes(req, res) });
const { chromium } = await import("playwright-core");
const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"] });
const tab = await browser.newPage();
await tab.goto(`${server.url}/page/none`); // same origin, no page app running

const node: Profile[] = [];
const web: Profile[] = [];
try {
  for (let r = 0; r < rounds; r++) {
    const exec = await openExecutor(bundle, { threads: 1 });
    node.push(await measureProfile(exec, new ort.Tensor("float32", new Float32Array(size).fill(0.1), dims), { runs }));
    await exec.release();
    web.push(await tab.evaluate(async ({ token, dims, runs }) => {
      const dyno = await import("/page/dyno.js" as string);
      const b = await dyno.fetchBundle(new URL("/page/bundle/", location.href).href, { token });
      const backend = await dyno.webBackend();
      const exec = await dyno.Executor.open(b, { backend, threads: 1 });
      const x = backend.tensor(new Float32Array(dims.reduce((a: number, c: number) => a * c, 1)).fill(0.1), dims);
      const p = await dyno.measureProfile(exec, x, { runs });
      await exec.release();
      return p;
    }, { token: TOKEN, dims, runs }) as Profile);
    console.log(`round ${r + 1}/${rounds}: node ${node[r]!.segments.reduce((a, s) => a + s.meanMs, 0).toFixed(2)} ms, browser ${web[r]!.segments.reduce((a, s) => a + s.meanMs, 0).toFixed(2)} ms`);
  }
} finally {
  await browser.close().catch(() => {});
  await server.close();
  await page.close();
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const rows = m.segments.map((s, i) => {
  const n = node.map((p) => p.segments[i]!.meanMs);
  const w = web.map((p) => p.segments[i]!.meanMs);
  const ratios = n.map((x, k) => w[k]! / x);
  return [String(i), (s.macs / 1e6).toFixed(1), median(n).toFixed(3), median(w).toFixed(3), `${median(ratios).toFixed(2)}x`, `${Math.min(...ratios).toFixed(2)}-${Math.max(...ratios).toFixed(2)}x`];
});
const total = (ps: Profile[]) => ps.map((p) => p.segments.reduce((a, s) => a + s.meanMs, 0));
const tr = total(node).map((x, k) => total(web)[k]! / x);
rows.push(["all", (m.segments.reduce((a, s) => a + s.macs, 0) / 1e6).toFixed(1), median(total(node)).toFixed(3), median(total(web)).toFixed(3), `${median(tr).toFixed(2)}x`, `${Math.min(...tr).toFixed(2)}-${Math.max(...tr).toFixed(2)}x`]);
const header = ["segment", "MMAC", "Node ms", "browser ms", "browser/Node", "over rounds"];
console.log(table(header, rows));

const dist = join(ROOT, "dist/browser");
const sizeOf = (p: string): number => (statSync(p).isDirectory() ? readdirSync(p).reduce((a, f) => a + sizeOf(join(p, f)), 0) : p.endsWith(".map") || p.endsWith("meta.json") ? 0 : statSync(p).size);
const files = readdirSync(dist).filter((f) => f.endsWith(".js"));
const js = (pred: (f: string) => boolean) => files.filter(pred).reduce((a, f) => a + statSync(join(dist, f)).size, 0);
const kB = (b: number) => `${(b / 1e3).toFixed(0)} kB`;
const MB = (b: number) => `${(b / 1e6).toFixed(1)} MB`;
const sizes = [
  ["dyno.js + shared chunks (device runtime, kernels' glue, zod)", kB(js((f) => !f.startsWith("ort.") && f !== "app.js"))],
  ["onnxruntime-web JavaScript, WASM build (loaded by default)", kB(js((f) => f.startsWith("ort.wasm")))],
  ["onnxruntime-web JavaScript, WebGPU build (only when asked for)", kB(js((f) => f.startsWith("ort.webgpu")))],
  ["ort/ort-wasm-simd-threaded.wasm (WASM backend)", MB(statSync(join(dist, "ort/ort-wasm-simd-threaded.wasm")).size)],
  ["ort/ort-wasm-simd-threaded.asyncify.wasm (WebGPU backend, only when asked for)", MB(statSync(join(dist, "ort/ort-wasm-simd-threaded.asyncify.wasm")).size)],
  ["build/kernels.wasm (dyno's packing kernels)", kB(statSync(join(dist, "build/kernels.wasm")).size)],
  ["zstd.wasm", kB(statSync(join(dist, "zstd.wasm")).size)],
  ["the page (app.js, index.html, app.css)", kB(js((f) => f === "app.js") + statSync(join(dist, "index.html")).size + statSync(join(dist, "app.css")).size)],
  ["all of dist/browser (no source maps)", MB(sizeOf(dist))],
];
const md = [
  "# The browser device against the Node device",
  "",
  `Command: \`npm run bench -- browser --runs ${runs} --rounds ${rounds}\` (${new Date().toISOString().slice(0, 10)}, ${cpus().length} CPUs ${cpus()[0]?.model ?? ""}, Node ${process.version}, Chromium ${browser.version()}).`,
  "",
  `Fixture \`${fx.name}\` (input [${dims.join("x")}], ${m.segments.length} segments), all-0.1 input. Node: onnxruntime-node, 1 intra-op thread. Browser: headless Chromium, onnxruntime-web WASM backend, 1 thread, the bundle fetched from \`dyno serve --page\`. Per round, Node then the browser, ${runs} runs per segment after one warm-up; medians over ${rounds} rounds, the ratio's min-max over rounds beside it.`,
  "",
  `| ${header.join(" | ")} |`,
  `|${header.map(() => "---:").join("|")}|`,
  ...rows.map((r) => `| ${r.join(" | ")} |`),
  "",
  "What a page downloads (`npm run build` writes dist/browser):",
  "",
  "| file | size |",
  "|---|---:|",
  ...sizes.map(([a, b]) => `| ${a} | ${b} |`),
  "",
  "Timings depend on the machine and on what else runs on it; compare the two columns of one run.",
  "",
].join("\n");
mkdirSync(dirname(values.out!), { recursive: true });
writeFileSync(values.out!, md);
console.log(`\nwrote ${values.out!.replace(`${ROOT}/`, "")}`);
process.exit(0);
