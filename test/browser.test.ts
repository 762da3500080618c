// The device half in a real browser: Debian's /usr/bin/chromium, headless, driven by
// playwright-core (no browser is downloaded), loads the page of `dyno serve --page` (the built
// runtime in dist/browser: onnxruntime-web, the kernels' and zstd's .wasm), classifies the
// fixture's inputs through a real server on loopback, and switches emulated links.
//
// Checked: the page's results against the Node device (onnxruntime-node) for the same input and
// variant; a link change (direct -> 3G) moves the chosen variant. Skipped, with the reason
// printed, when Chromium is not installed; fails when dist/browser was not built.
import { perSampleDims } from "../runtime/common/manifest.js";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import ort from "onnxruntime-node";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { createPage, type Page } from "../cli/page.js";
import { loadCalibration, type Calibration } from "../compiler/bundler/calibration.js";
import { startServer, type DynoServer } from "../runtime/cloud/server.js";
import { openBundle, type NodeBundle } from "../runtime/node/bundle.js";
import { openExecutor } from "../runtime/node/executor.js";
import { compileTestBundle, fixtures } from "./fixtures.js";

const CHROMIUM = "/usr/bin/chromium";
const ROOT = fileURLToPath(new URL("..", import.meta.url));
const TOKEN = "browser-token";

interface PageResult {
  n: number;
  sample: number;
  link: string;
  variant: string;
  kind: string;
  deviceSegments: number;
  bytes: number;
  top1: number;
  output: number[] | null;
}

const s = suite("the device half in Chromium");

s("dist/browser holds the device runtime and its .wasm files, nothing of the compiler, the server or Node", () => {
  const meta = join(ROOT, "dist/browser/meta.json");
  assert.ok(existsSync(meta), "dist/browser is not built: run npm run build");
  const inputs = Object.keys((JSON.parse(readFileSync(meta, "utf8")) as { inputs: Record<string, unknown> }).inputs);
  const forbidden = inputs.filter((f) => /^(compiler|cli|bench)\/|^runtime\/(cloud|node|emu)\/|node_modules\/(onnxruntime-node|ws|sharp|protobufjs)\//.test(f));
  assert.equal(forbidden, [], "compiler, server or Node code in the browser bundle");
  assert.ok(inputs.includes("runtime/device/device.ts") && inputs.includes("runtime/web/backend.ts") && inputs.some((f) => f.includes("node_modules/onnxruntime-web/")), "the device runtime on onnxruntime-web is in it");
  for (const f of ["dyno.js", "app.js", "index.html", "ort/ort-wasm-simd-threaded.wasm", "build/kernels.wasm", "zstd.wasm"]) {
    assert.ok(existsSync(join(ROOT, "dist/browser", f)), `dist/browser/${f}`);
  }
});

if (!existsSync(CHROMIUM)) {
  console.log(`browser: skipped: ${CHROMIUM} not found (apt-get install -y chromium)`);
  s.skip("the page classifies through dyno serve like the Node device, and a link change moves the variant", () => {});
} else {
  const root = mkdtempSync(join(tmpdir(), "dyno-browser-"));
  let bundle: NodeBundle;
  let server: DynoServer;
  let page: Page;
  /** The page's samples and the model input's per-sample dims, for the Node device's runs. */
  let inputs: Calibration;
  let dims: number[];
  const origins: string[] = [];

  s.before(async () => {
    const fx = fixtures().find((f) => f.name === "resnet")!;
    await compileTestBundle(fx.path, join(root, "bundle"), { bits: [4, 8], samples: 16, profileRuns: 1 });
    bundle = openBundle(join(root, "bundle"));
    dims = perSampleDims(bundle.manifest.model.inputs[0]!.shape);
    inputs = await loadCalibration("", { calib: "random:12", inputDims: dims });
    page = createPage({ bundle, token: TOKEN, inputs, slowdown: 20, browserDir: join(ROOT, "dist/browser") });
    server = await startServer({ bundle, port: 0, token: TOKEN, routes: (req, res) => page.routes(req, res), allowOrigins: origins });
    await page.start(server.host, server.port);
    origins.push(server.url);
  });

  s.after(async () => {
    await page?.close();
    await server?.close();
    rmSync(root, { recursive: true, force: true });
  });

  s("the page classifies through dyno serve like the Node device, and a link change moves the variant", async () => {
    assert.ok(existsSync(join(ROOT, "dist/browser/dyno.js")), "dist/browser is not built: run npm run build");
    const { chromium } = await import("playwright-core");
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    });
    const errors: string[] = [];
    try {
      const tab = await browser.newPage();
      tab.on("pageerror", (e) => errors.push(e.message));
      await tab.goto(`${server.url}/page/#token=${TOKEN}&link=wifi`);
      type State = { ready: boolean; error: string | null; results: PageResult[] };
      const state = () => tab.evaluate(() => (globalThis as unknown as { dynoPage: State }).dynoPage);
      const count = () => tab.evaluate(() => (globalThis as unknown as { dynoPage: State }).dynoPage?.results.length ?? 0);
      const waitFor = async (what: string, ok: () => Promise<boolean>, ms = 60_000) => {
        const until = performance.now() + ms;
        while (!(await ok())) {
          const st = await state().catch(() => null);
          if (st?.error) assert.unreachable(`the page failed while waiting for ${what}: ${st.error}`);
          if (performance.now() > until) assert.unreachable(`waited ${ms} ms for ${what}; page errors: ${errors.join("; ") || "none"}`);
          await new Promise((r) => setTimeout(r, 100));
        }
      };
      await waitFor("24 results on Wi-Fi", async () => (await count()) >= 24);
      const crossIsolated = await tab.evaluate(() => (globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated);
      assert.ok(crossIsolated, "the page is cross-origin isolated (COOP/COEP)");
      await tab.evaluate(() => (globalThis as unknown as { dynoPage: { setLink(n: string): void } }).dynoPage.setLink("3g"));
      const switchedAt = await count();
      await waitFor("24 results on 3G", async () => (await count()) >= switchedAt + 24);
      // A split at an inner cut, pinned: segments in the browser, the rest in the server.
      const m = bundle.manifest;
      const inner = m.variants.find((v) => m.cuts.find((c) => c.id === v.cut)!.kind === "inner" && v.codec.bits === 8)!;
      await tab.evaluate((id) => (globalThis as unknown as { dynoPage: { pin(id: string | null): void } }).dynoPage.pin(id), inner.id);
      const pinnedAt = await count();
      await waitFor("8 pinned results", async () => (await count()) >= pinnedAt + 9);
      const { results } = await state();
      assert.equal(errors, [], "no page errors");

      // The same input and variant on the Node device: its part on onnxruntime-node, the payloads
      // to the same server's cloud part (or every segment locally for device-only).
      const exec = await openExecutor(bundle);
      const outName = bundle.manifest.model.outputs[0]!.name;
      let compared = 0, identical = 0, sameTop1 = 0, maxDiff = 0, splits = 0, innerSplits = 0, innerIdentical = 0;
      for (const r of results.filter((x) => x.output !== null || x.variant === inner.id)) {
        if (r.output === null) continue;
        const x = new ort.Tensor("float32", inputs.batch(r.sample, 1), dims);
        const d = await exec.device(r.variant, x);
        const out = d.kind === "local" ? d.outputs[outName]! : (await exec.cloud(r.variant, d.payloads)).outputs[outName]!;
        const want = out.data as Float32Array;
        assert.is(r.output!.length, want.length, `result ${r.n}: output size`);
        let diff = 0;
        let top1 = 0;
        for (let i = 0; i < want.length; i++) {
          diff = Math.max(diff, Math.abs(want[i]! - r.output![i]!));
          if (want[i]! > want[top1]!) top1 = i;
        }
        compared++;
        identical += diff === 0 ? 1 : 0;
        // A split's device part ran in the browser, its cloud part in this server: the payload
        // was the Node device's byte for byte, or the outputs would differ.
        if (d.kind === "split" && r.deviceSegments === 0) {
          splits++;
          assert.is(diff, 0, `result ${r.n} (${r.variant}, split at the input): the browser's outputs are the Node device's bit for bit`);
        } else if (d.kind === "split") {
          innerSplits++;
          innerIdentical += diff === 0 ? 1 : 0;
        }
        sameTop1 += top1 === r.top1 ? 1 : 0;
        maxDiff = Math.max(maxDiff, diff);
      }
      await exec.release();
      assert.ok(compared >= 40 && splits >= 8 && innerSplits >= 8, `${compared} results compared, ${splits} split at the input, ${innerSplits} at ${inner.id}`);
      assert.is(sameTop1, compared, `the browser's prediction is the Node device's for every result (${sameTop1} of ${compared})`);
      // Segments in the browser run onnxruntime-web's WASM SIMD kernels, which sum in another
      // order than onnxruntime-node's x86 ones: float rounding (an 8-bit payload mostly hides
      // it, a code that lands on a rounding boundary moves by one step), nothing more.
      assert.ok(maxDiff <= 1e-3, `largest |browser - Node| over outputs ${maxDiff}`);

      // The link change moved the variant: Wi-Fi's choice is not 3G's, and 3G sends less.
      const mostCommon = (rs: PageResult[]) => {
        const n = new Map<string, number>();
        for (const r of rs) n.set(r.variant, (n.get(r.variant) ?? 0) + 1);
        return [...n].sort((a, b) => b[1] - a[1])[0]!;
      };
      const wifi = results.filter((r) => r.link === "wifi").slice(8);
      const g3 = results.filter((r) => r.link === "3g" && r.n < pinnedAt).slice(8);
      const [onWifi] = mostCommon(wifi);
      const [on3g] = mostCommon(g3);
      const meanBytes = (rs: PageResult[]) => rs.reduce((a, r) => a + r.bytes, 0) / rs.length;
      assert.is.not(on3g, onWifi, "a link change moves the chosen variant");
      assert.ok(meanBytes(g3) < meanBytes(wifi), `3G sends less: ${meanBytes(g3).toFixed(0)} B against ${meanBytes(wifi).toFixed(0)} B on Wi-Fi`);
      console.log(`  browser: Chromium ${browser.version()}: ${compared} results against the Node device: ${splits} split at the input all bit-identical, ${innerIdentical} of ${innerSplits} split at ${inner.id} and ${identical - splits - innerIdentical} of ${compared - splits - innerSplits} device-only bit-identical (largest difference ${maxDiff.toExponential(2)}), top-1 equal in all; Wi-Fi ran ${onWifi} (${meanBytes(wifi).toFixed(0)} B), 3G ${on3g} (${meanBytes(g3).toFixed(0)} B)`);
    } finally {
      await browser.close();
    }
  });
}

s.run();
