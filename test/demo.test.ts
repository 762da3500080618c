import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { runDyno } from "./fixtures.js";

const demo = suite("npm start (dyno demo), short steps");
const dir = mkdtempSync(join(tmpdir(), "dyno-demo-"));
demo.after(() => rmSync(dir, { recursive: true, force: true }));

demo("compiles, serves, adapts over the link trace, compares throughput, and shuts down", () => {
  const r = runDyno(["demo", "--step-seconds", "2", "--bundle", join(dir, "bundle")]);
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stdout, /link: emulated trace wifi-3g-4g/);
  assert.match(r.stdout, /device\s+emulated: 20x slower/);
  assert.match(r.stdout, /link wifi/);
  assert.match(r.stdout, /link 3g/);
  assert.match(r.stdout, /\d+ inferences, top-1 \d+\.\d%, 0 finished locally/);
  for (const link of ["wifi", "3g", "4g"]) assert.match(r.stdout, new RegExp(`^${link}\\s+[\\d.]+\\s+[\\d.]+\\s+[\\d.]+\\s+[\\d.]+x`, "m"));
  assert.match(r.stdout, /everything shut down/);
  // A second run reuses the bundle.
  const again = runDyno(["demo", "--step-seconds", "1", "--bundle", join(dir, "bundle")]);
  assert.is(again.code, 0, again.stderr);
  assert.match(again.stdout, /\(reused\)/);
});

demo.run();
