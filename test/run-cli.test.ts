// `dyno run` from the command line against a server in this process, through an emulated link.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { openBundle } from "../runtime/node/bundle.js";
import { startServer, type DynoServer } from "../runtime/cloud/server.js";
import { compileTestBundle, fixtures, runDynoAsync } from "./fixtures.js";

const run = suite("dyno run");
const dir = mkdtempSync(join(tmpdir(), "dyno-run-"));
const bundleDir = join(dir, "bundle");
let server: DynoServer;

run.before(async () => {
  await compileTestBundle(fixtures()[0]!.path, bundleDir);
  server = await startServer({ bundle: openBundle(bundleDir), port: 0 });
});

run.after(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

run("adapts over an emulated link; prints a line per inference and the summary, probes included", async () => {
  const r = await runDynoAsync(["run", bundleDir, "--cloud", server.url, "--link", "4g", "--slowdown", "20", "-n", "12", "--no-pipeline"]);
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stdout, /link: emulated 4g \(15 Mbit\/s, 50 ms RTT/);
  assert.match(r.stdout, /device: emulated, 20x slower/);
  assert.is(r.stdout.split("\n").filter((l) => /^\s+\d+\s+c\d+-/.test(l)).length, 12, r.stdout);
  assert.match(r.stdout, /inferences\s+12/);
  assert.match(r.stdout, /top-1\s+\d+\.\d+%/);
  assert.match(r.stdout, /bandwidth probes\s+[1-9]\d* \(/, "the first inference probes the link");
});

run("--variant pins every inference; an unknown one is a clear error", async () => {
  const r = await runDynoAsync(["run", bundleDir, "--cloud", server.url, "--variant", "c0-b8-zstd", "-n", "5", "--quiet"]);
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stdout, /variants: c0-b8-zstd x5\n/);
  const bad = await runDynoAsync(["run", bundleDir, "--cloud", server.url, "--variant", "c42-b9-nope", "-n", "1"]);
  assert.is(bad.code, 1);
  assert.match(bad.stderr, /dyno: unknown variant "c42-b9-nope" \(the bundle has \d+ variants: c0-/);
});

run.run();
