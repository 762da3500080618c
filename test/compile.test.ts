import { openExecutor } from "../runtime/node/executor.js";
import { perSampleDims } from "../runtime/common/manifest.js";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, cpSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import ort from "onnxruntime-node";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { loadModel } from "../compiler/onnx/import.js";
import { verify } from "../compiler/ir/order.js";
import { openBundle } from "../runtime/node/bundle.js";
import { loadCalibration } from "../compiler/bundler/calibration.js";
import { Executor } from "../runtime/exec/executor.js";
import { parseManifest } from "../runtime/common/manifest.js";
import * as session from "../runtime/node/session.js";
import { verifyBundle } from "../compiler/bundler/verify.js";
import { compileTestBundle, fixtures, runDyno } from "./fixtures.js";

const root = mkdtempSync(join(tmpdir(), "dyno-compile-"));
const FAST = { samples: 64, bits: [2, 4, 8] };

async function compileFixture(path: string, out: string) {
  return (await compileTestBundle(path, out, { samples: FAST.samples, bits: FAST.bits })).result;
}

const perFixture = suite("compile + verify on every fixture (fast settings)");
perFixture.after(() => rmSync(root, { recursive: true, force: true }));

for (const fx of fixtures()) {
  perFixture(`${fx.name}: bundle is valid, weights stored once, every variant verifies`, async () => {
    const out = join(root, fx.name);
    const r = await compileFixture(fx.path, out);
    const m = parseManifest(JSON.parse(readFileSync(join(out, "manifest.json"), "utf8")));
    assert.ok(m.cuts.length >= 3, "input, output and at least one inner cut");
    assert.is(m.cuts[0]!.kind, "input");
    assert.is(m.cuts[m.cuts.length - 1]!.kind, "output");
    assert.ok(m.variants.some((v) => v.codec.bits === "f32"), "float32 passthrough variants exist");
    // Weights once: weights.bin within 1.1x of the model file; the whole bundle within 1.1x + 1 MiB.
    assert.ok(m.weights.bytes <= 1.1 * r.modelBytes, `weights.bin ${m.weights.bytes} vs model ${r.modelBytes}`);
    assert.ok(r.bundleBytes <= 1.1 * r.modelBytes + 2 ** 20, `bundle ${r.bundleBytes} B vs model ${r.modelBytes} B`);
    // 8-bit per-input quantisation costs at most 0.2 pp at every cut (64 samples: at most 1 flip... stated in docs).
    for (const v of m.variants.filter((x) => x.codec.bits === 8)) assert.ok(v.accuracy.drop <= 100 / FAST.samples + 1e-9, `${v.id} drops ${v.accuracy.drop} pp`);
    // Variant graphs, as export-variant writes them, are well-formed IR with ai.dyno nodes at the boundary.
    const some = m.variants.find((v) => v.codec.bits === 4 && m.cuts.find((c) => c.id === v.cut)!.kind === "inner")!;
    const exported = join(out, "exported");
    assert.equal((await runDyno(["export-variant", out, some.id, "-o", exported])).code, 0);
    const dev = loadModel(join(exported, `${some.id}.device.onnx`));
    const cloud = loadModel(join(exported, `${some.id}.cloud.onnx`));
    assert.equal(verify(dev.graph), []);
    assert.equal(verify(cloud.graph), []);
    assert.ok(dev.graph.nodes.some((n) => n.domain === "ai.dyno" && n.opType === "QuantizePack"));
    assert.ok(cloud.graph.nodes.some((n) => n.domain === "ai.dyno" && n.opType === "UnpackDequantize"));
    assert.ok(dev.opsets.some((o) => o.domain === "ai.dyno" && o.version === 1));
    // Every variant against the model, through the runtime.
    const bundle = openBundle(out);
    const calibration = await loadCalibration(fx.path, { inputDims: perSampleDims(m.model.inputs[0]!.shape), samples: FAST.samples });
    const checks = await verifyBundle(bundle, calibration);
    const bad = checks.filter((c) => !c.ok);
    assert.equal(bad.map((c) => `${c.id}: ${c.problem}`), []);
  });
}

perFixture.run();

const runtime = suite("executor and bundle checks");
const fx0 = () => fixtures()[0]!;
let bundleDir = "";

runtime.before(async () => {
  bundleDir = join(root, "exec");
  await compileFixture(fx0().path, bundleDir);
});

runtime("switching variants between inferences creates no session", async () => {
  const exec = await openExecutor(openBundle(bundleDir));
  const opened = session.sessionsOpened;
  const m = exec.manifest;
  const dims = perSampleDims(m.model.inputs[0]!.shape);
  const x = new ort.Tensor("float32", new Float32Array(dims.reduce((a, b) => a * b, 1)).fill(0.25), dims);
  for (const v of m.variants) {
    const d = await exec.device(v.id, x);
    if (d.kind === "split") await exec.cloud(v.id, d.payloads);
  }
  assert.is(session.sessionsOpened, opened);
  await exec.release();
});

runtime("the cloud rejects a payload of the wrong shape, a truncated one, and a missing one", async () => {
  const exec = await openExecutor(openBundle(bundleDir));
  const m = exec.manifest;
  const v = m.variants.find((x) => x.codec.bits === 4 && m.cuts.find((c) => c.id === x.cut)!.kind === "inner")!;
  const dims = perSampleDims(m.model.inputs[0]!.shape);
  const x = new ort.Tensor("float32", new Float32Array(dims.reduce((a, b) => a * b, 1)).fill(0.5), dims);
  const d = await exec.device(v.id, x);
  assert.is(d.kind, "split");
  if (d.kind !== "split") return;
  const p = d.payloads[0]!;
  await exec.cloud(v.id, d.payloads);
  try {
    await exec.cloud(v.id, [{ tensor: p.tensor, bytes: p.bytes.subarray(0, Math.floor(p.bytes.length / 2)) }, ...d.payloads.slice(1)]);
    assert.unreachable();
  } catch (e) {
    assert.match((e as Error).message, new RegExp(`payload for "${p.tensor.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}"`));
  }
  try {
    await exec.cloud(v.id, []);
    assert.unreachable();
  } catch (e) {
    assert.match((e as Error).message, /expects \d+ payload/);
  }
  const cutOf = (id: number) => m.cuts.find((c) => c.id === id)!;
  const shapeKey = (id: number) => JSON.stringify(cutOf(id).tensors.map((t) => t.shape));
  const other = m.variants.find((x) => cutOf(x.cut).kind === "inner" && cutOf(x.cut).tensors.length === 1 && shapeKey(x.cut) !== shapeKey(v.cut));
  assert.ok(other, "the fixture has inner cuts of two different shapes");
  const o = await exec.device(other!.id, x);
  assert.is(o.kind, "split");
  if (o.kind === "split") {
    try {
      await exec.cloud(v.id, cutOf(v.cut).tensors.map((t, i) => ({ tensor: t.name, bytes: o.payloads[0]!.bytes, i })));
      assert.unreachable("accepted a payload of another cut's shape");
    } catch (e) {
      assert.match((e as Error).message, /payload for ".*"(: .*elements| has shape \[.*\], the cut tensor is)/, (e as Error).message);
    }
  }
  await exec.release();
});

runtime("a tampered bundle, a wrong manifest version and a foreign file are refused by name", () => {
  const copy = join(root, "tampered");
  cpSync(bundleDir, copy, { recursive: true });
  const m = JSON.parse(readFileSync(join(copy, "manifest.json"), "utf8"));
  const seg = join(copy, m.segments[0].graph.file);
  const bytes = readFileSync(seg);
  bytes[bytes.length - 1] ^= 0xff;
  writeFileSync(seg, bytes);
  assert.throws(() => openBundle(copy), new RegExp(`"${m.segments[0].graph.file}" does not match its SHA-256`));
  writeFileSync(seg, bytes.subarray(0, 10));
  assert.throws(() => openBundle(copy), /is 10 bytes, the manifest says/);
  writeFileSync(join(copy, "manifest.json"), JSON.stringify({ ...m, version: 3 }));
  assert.throws(() => openBundle(copy), /manifest version 3; this dyno reads version 2 \(upgrade dyno\)/);
  writeFileSync(join(copy, "manifest.json"), JSON.stringify({ ...m, version: 1 }));
  assert.throws(() => openBundle(copy), /manifest version 1; this dyno reads version 2/);
  writeFileSync(join(copy, "manifest.json"), JSON.stringify({ format: "something" }));
  assert.throws(() => openBundle(copy), /is not a dyno bundle manifest/);
  writeFileSync(join(copy, "manifest.json"), JSON.stringify({ ...m, variants: [{ ...m.variants[0], cut: 99999 }] }));
  assert.throws(() => openBundle(copy), /refers to cut 99999/);
});

runtime("compile errors: bits out of range, unknown cut index, unknown input name, data of the wrong size", () => {
  const path = fx0().path;
  const out = join(root, "bad");
  const cases: [string[], RegExp][] = [
    [["--bits", "2,17"], /--bits: 17 is out of range/],
    [["--bits", "0"], /--bits: 0 is out of range/],
    [["--cuts", "9999"], /--cuts: cut 9999 does not exist/],
    [["--calib", "pixels=models/fmnist-test.bin"], /the model has no input "pixels"/],
    [["--calib", "package.json"], /not a DYNOIMG1 image set/],
  ];
  for (const [args, pattern] of cases) {
    const r = runDyno(["compile", path, "-o", out, "--calib-samples", "8", ...args]);
    assert.ok(r.code !== 0, `compile ${args.join(" ")} exited 0`);
    assert.match(r.stderr, pattern);
    assert.not.match(r.stderr, /\n\s+at /);
  }
});

runtime("dyno verify BUNDLE from the CLI passes, and names the model mismatch", () => {
  const r = runDyno(["verify", bundleDir]);
  assert.is(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /0 failed; checksums ok; metric top1 on 64 samples/);
  const other = fixtures().find((f) => f.name !== fx0().name);
  if (other) {
    const bad = runDyno(["verify", other.path, bundleDir]);
    assert.ok(bad.code !== 0);
    assert.match(bad.stderr, /was compiled from another model/);
  }
  assert.ok(statSync(join(bundleDir, "weights.bin")).size > 0);
});

runtime.run();
