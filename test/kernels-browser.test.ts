// Same bytes from Node and from a real headless Chromium (Debian's /usr/bin/chromium driven by
// playwright-core; no browser is ever downloaded) for the same seeded tensors: payloads and
// decoded floats, every codec. Skipped, with the reason printed, when Chromium is not installed.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { existsSync, readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { initKernels } from "../kernels/index.js";
import { runDeterminismCases } from "./kernels/determinism-cases.js";
import { SEED } from "./kernels/harness.js";

const CHROMIUM = "/usr/bin/chromium";
const root = fileURLToPath(new URL("..", import.meta.url));

async function bundle(): Promise<string> {
  const r = await build({
    entryPoints: [`${root}/test/kernels/browser-entry.ts`],
    bundle: true,
    format: "esm",
    platform: "browser",
    write: false,
    external: ["node:fs"], // only on the Node branch of the loader
    logLevel: "silent",
  });
  return r.outputFiles[0].text;
}

function serve(files: Record<string, [string, string | Uint8Array]>): Promise<Server> {
  const server = createServer((req, res) => {
    const f = files[new URL(req.url ?? "/", "http://x").pathname];
    if (!f) return void res.writeHead(404).end();
    res.writeHead(200, { "content-type": f[0], "cache-control": "no-store" }).end(f[1]);
  });
  return new Promise((ok) => server.listen(0, "127.0.0.1", () => ok(server)));
}

if (!existsSync(CHROMIUM)) {
  console.log(`kernels-browser: skipped: ${CHROMIUM} not found (apt-get install -y chromium)`);
  test.skip("Node and headless Chromium produce the same payload bytes and decoded floats", () => {});
} else {
  test("Node and headless Chromium produce the same payload bytes and decoded floats", async () => {
    const t0 = performance.now();
    await initKernels();
    const want = runDeterminismCases(SEED);
    const server = await serve({
      "/index.html": ["text/html", "<!doctype html><script type=module src=/bundle.js></script>"],
      "/bundle.js": ["text/javascript", await bundle()],
      "/build/kernels.wasm": ["application/wasm", readFileSync(`${root}/kernels/build/kernels.wasm`)],
      "/zstd.wasm": ["application/wasm", readFileSync(`${root}/node_modules/@bokuweb/zstd-wasm/dist/web/zstd.wasm`)],
    });
    const { chromium } = await import("playwright-core");
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    });
    try {
      const page = await browser.newPage();
      const errors: string[] = [];
      page.on("pageerror", (e) => errors.push(e.message));
      const port = (server.address() as { port: number }).port;
      await page.goto(`http://127.0.0.1:${port}/index.html`);
      await page.waitForFunction(() => "dynoRun" in globalThis, null, { timeout: 20000 });
      const version = browser.version();
      const t1 = performance.now();
      const got = (await page.evaluate((seed) => (globalThis as any).dynoRun(seed), SEED)) as typeof want;
      assert.equal(errors, []);
      assert.is(got.length, want.length);
      for (let i = 0; i < want.length; i++) {
        assert.is(got[i].name, want[i].name);
        assert.ok(got[i].payload === want[i].payload, `payload differs in Chromium ${version}: ${want[i].name} seed=${SEED}`);
        assert.ok(got[i].decoded === want[i].decoded, `decoded floats differ in Chromium ${version}: ${want[i].name} seed=${SEED}`);
      }
      const t2 = performance.now();
      console.log(`  kernels-browser: ${want.length} cases identical in Node ${process.version} and Chromium ${version} (setup ${((t1 - t0) / 1000).toFixed(1)} s, cases ${((t2 - t1) / 1000).toFixed(1)} s)`);
    } finally {
      await browser.close();
      server.close();
    }
  });
}

test.run();
