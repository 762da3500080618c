// `npm run bench -- e2e --quick` (bench/e2e.ts) runs every strategy on every link on the default
// fixture, the oracle and the trace, and fills every cell of its results: a number in each, the
// markdown with its targets, the JSON and the three plots (about 2 minutes).
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { ROOT } from "./fixtures.js";

const e2e = suite("bench e2e --quick");
const out = mkdtempSync(join(tmpdir(), "dyno-e2e-"));
e2e.after(() => rmSync(out, { recursive: true, force: true }));

e2e("every strategy, link and device speed has its numbers; the oracle, the trace, the targets and the plots are written", async () => {
  const code = await new Promise<number>((resolve) => {
    const child = spawn(process.execPath, ["--import", "tsx", join(ROOT, "bench/e2e.ts"), "--quick", "--out", out], { cwd: ROOT, stdio: ["ignore", "ignore", "inherit"] });
    const timer = setTimeout(() => child.kill("SIGKILL"), 400_000);
    child.on("close", (c) => {
      clearTimeout(timer);
      resolve(c ?? -1);
    });
  });
  assert.is(code, 0, "the bench exits 0");
  const r = JSON.parse(readFileSync(join(out, "e2e-resnet.json"), "utf8"));
  assert.ok(r.slowdowns.length >= 1 && r.links.length === 3, JSON.stringify({ slowdowns: r.slowdowns, links: r.links }));
  assert.is(r.cells.length, r.slowdowns.length * r.links.length);
  const strategies = ["device-only", "cloud-only f32", "cloud-only u8", "cloud-only JPEG", "cloud-only WebP", "Neurosurgeon", "JALAD", "dyno", "dyno cloud-cost"];
  const bad: string[] = [];
  const fin = (x: unknown) => typeof x === "number" && Number.isFinite(x);
  for (const c of r.cells) {
    for (const k of strategies) {
      const s = c.strategies[k];
      if (!s) bad.push(`${c.slowdown}x ${c.link}: no ${k}`);
      else if (!(s.throughput > 0 && s.p50 > 0 && s.p95 >= s.p50 && fin(s.bytes) && s.bytes >= 0 && fin(s.cloudMs) && fin(s.drop))) bad.push(`${c.slowdown}x ${c.link} ${k}: ${JSON.stringify(s)}`);
    }
    if (!(c.oracle.throughput.throughput > 0 && c.oracle.throughput.id && c.oracle.latency.p50 > 0)) bad.push(`${c.slowdown}x ${c.link}: oracle ${JSON.stringify(c.oracle)}`);
    // The image baselines really sent images.
    for (const k of ["cloud-only JPEG", "cloud-only WebP"]) if (!Object.keys(c.strategies[k]?.variants ?? {}).some((id) => /-(jpeg|webp)-q\d+$/.test(id))) bad.push(`${c.slowdown}x ${c.link} ${k} ran ${JSON.stringify(c.strategies[k]?.variants)}`);
  }
  for (const t of r.traces) {
    if (t.steps.length !== 3 || !t.steps.every((s: { dyno: number; oracle: number }) => s.dyno > 0 && s.oracle > 0) || t.path.length === 0) bad.push(`trace ${t.slowdown}x: ${JSON.stringify(t.steps)}`);
  }
  assert.is(r.traces.length, r.slowdowns.length);
  assert.equal(bad, [], bad.join("\n"));
  const md = readFileSync(join(out, "e2e-resnet.md"), "utf8");
  assert.match(md, /## Against the targets/);
  assert.match(md, /dyno >= 10x device-only throughput at 4G \| \d+x \| [\d.]+x \| (yes|no) \|/);
  assert.match(md, /npm run bench -- e2e --quick/);
  for (const sd of r.slowdowns) for (const kind of ["throughput", "bytes", "trace"]) {
    const f = join(out, `e2e-resnet-${sd}x-${kind}.svg`);
    assert.ok(existsSync(f) && readFileSync(f, "utf8").startsWith("<svg"), f);
  }
});

e2e.run();
