// The input as an image file (runtime/common/image.ts, runtime/node/image.ts): the preprocess
// undone and made again exactly, the files' formats told by their bytes, the protocol refusing a
// file that is not the variant's, and a device's JPEG and WebP answered by dyno serve with the
// numbers a local decode gives.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import ort from "onnxruntime-node";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { fromPixels, imageFormatOf, imageLayout, toPixels, type ImageLayout } from "../runtime/common/image.js";
import { buildRequest, decodeRequest, validateRequest, ProtocolError } from "../runtime/common/protocol.js";
import { sharpImages } from "../runtime/node/image.js";
import { openBundle, type NodeBundle } from "../runtime/node/bundle.js";
import { openExecutor } from "../runtime/node/executor.js";
import { createDevice } from "../runtime/node/device.js";
import { startServer } from "../runtime/cloud/server.js";
import type { Calibration } from "../compiler/bundler/calibration.js";
import { perSampleDims } from "../runtime/common/manifest.js";
import { compileTestBundle, fixtures } from "./fixtures.js";

const s = suite("image codecs of the input");
const dir = mkdtempSync(join(tmpdir(), "dyno-image-"));
let bundle: NodeBundle;
let cal: Calibration;

s.before(async () => {
  ({ calibration: cal } = await compileTestBundle(fixtures()[0]!.path, join(dir, "bundle")));
  bundle = openBundle(join(dir, "bundle"));
});
s.after(() => rmSync(dir, { recursive: true, force: true }));

s("pixels and back: a tensor made from 8-bit pixels by the preprocess is made again exactly (NCHW, NHWC, BGR)", () => {
  for (const [layout, bgr, channels] of [["nchw", false, 1], ["nchw", true, 3], ["nhwc", false, 3]] as const) {
    const l: ImageLayout = { width: 5, height: 3, channels, layout, bgr, scale: 1 / 255, mean: Array(channels).fill(0).map((_, c) => 0.4 + 0.05 * c), std: Array(channels).fill(0).map((_, c) => 0.2 + 0.01 * c) };
    const pixels = { data: Uint8Array.from({ length: 15 * channels }, (_, i) => (i * 37) % 256), width: 5, height: 3, channels };
    const x = fromPixels(pixels, l);
    assert.equal(Array.from(toPixels(x, l).data), Array.from(pixels.data), `${layout}${bgr ? " bgr" : ""}`);
  }
  // BGR: the model's channel 0 is the file's blue (channel 2).
  const l: ImageLayout = { width: 1, height: 1, channels: 3, layout: "nchw", bgr: true, scale: 1, mean: [0, 0, 0], std: [1, 1, 1] };
  assert.equal(Array.from(toPixels(Float32Array.from([10, 20, 30]), l).data), [30, 20, 10]);
});

s("layout from the manifest: the fixture is a 64x64 grey image; a model without a preprocess has none, and says why", () => {
  const l = imageLayout(bundle.manifest);
  assert.ok(typeof l !== "string", String(l));
  assert.equal([(l as ImageLayout).width, (l as ImageLayout).height, (l as ImageLayout).channels], [64, 64, 1]);
  assert.match(String(imageLayout({ ...bundle.manifest, preprocess: null })), /no preprocess/);
});

s("formats by their bytes; sharp's files decode to the pixels' size", async () => {
  const pixels = { data: Uint8Array.from({ length: 16 * 8 * 3 }, (_, i) => i % 256), width: 16, height: 8, channels: 3 as const };
  for (const format of ["jpeg", "webp"] as const) {
    const file = await sharpImages.encode(pixels, format, 80);
    assert.is(imageFormatOf(file), format);
    const back = await sharpImages.decode(file, 3);
    assert.equal([back.width, back.height, back.channels, back.data.length], [16, 8, 3, 16 * 8 * 3]);
  }
  assert.is(imageFormatOf(new Uint8Array([1, 2, 3, 4])), null);
});

s("the bundle offers JPEG and WebP at several qualities; the server refuses a file that is not the variant's, and a wrong quality", async () => {
  const m = bundle.manifest;
  const jpeg = m.variants.filter((v) => v.codec.bits === "jpeg");
  const webp = m.variants.filter((v) => v.codec.bits === "webp");
  assert.ok(jpeg.length >= 3 && webp.length >= 3, `jpeg ${jpeg.length}, webp ${webp.length}`);
  assert.ok(jpeg.every((v) => /^c\d+-jpeg-q\d+$/.test(v.id) && v.wire.meanBytes > 0), jpeg.map((v) => v.id).join(" "));
  const exec = await openExecutor(bundle);
  const dims = perSampleDims(m.model.inputs[0]!.shape);
  const x = new ort.Tensor("float32", cal.batch(0, 1), dims);
  const d = await exec.device(jpeg[0]!.id, x);
  assert.is(d.kind, "split");
  if (d.kind !== "split") return;
  const shapes = { [m.model.inputs[0]!.name]: dims };
  const ok = validateRequest(m, decodeRequest(buildRequest(1, m.model.sha256, jpeg[0]!, d.payloads, shapes)));
  assert.is(ok.variant.id, jpeg[0]!.id);
  const refused = (variant: typeof jpeg[0], why: RegExp) => {
    try {
      validateRequest(m, decodeRequest(buildRequest(2, m.model.sha256, variant, d.payloads, shapes)));
      assert.unreachable("accepted");
    } catch (e) {
      assert.instance(e, ProtocolError);
      assert.match((e as Error).message, why);
    }
  };
  refused(webp[0]!, /is not a webp file/);
  refused({ ...jpeg[0]!, codec: { ...jpeg[0]!.codec, quality: 7 } }, /quality 7 \(variant: \d+\)/);
  await exec.release();
});

s("a device sends the input as JPEG and WebP through dyno serve and gets what a local decode gives; cloud-only-webp sends the smallest admissible file", async () => {
  const m = bundle.manifest;
  const server = await startServer({ bundle, port: 0, profileRuns: 0 });
  const local = await openExecutor(bundle);
  try {
    const d = await createDevice({ bundle, cloud: server.url, bandwidthProbe: false, profile: false });
    const dims = perSampleDims(m.model.inputs[0]!.shape);
    for (const v of m.variants.filter((x) => x.codec.bits === "jpeg" || x.codec.bits === "webp").slice(0, 4)) {
      const xs = cal.batch(3, 1);
      const r = await d.infer(xs, { variant: v.id });
      assert.not.ok(r.fellBack, `${v.id}: ${r.fallback}`);
      const t = new ort.Tensor("float32", xs, dims);
      const dd = await local.device(v.id, t);
      if (dd.kind !== "split") throw new Error("split expected");
      const want = (await local.cloud(v.id, dd.payloads)).outputs[m.model.outputs[0]!.name]!.data as Float32Array;
      assert.equal(Array.from(r.outputs[m.model.outputs[0]!.name]!.data), Array.from(want), v.id);
    }
    await d.close();
    const w = await createDevice({ bundle, cloud: server.url, policy: "cloud-only-webp", bandwidthProbe: false, profile: false });
    const r = await w.infer(cal.batch(0, 1));
    const admissible = m.variants.filter((v) => v.codec.bits === "webp" && v.admissible).sort((a, b) => a.wire.meanBytes - b.wire.meanBytes);
    assert.is(r.variant, admissible[0]!.id, r.choice.reason);
    await w.close();
  } finally {
    await local.release();
    await server.close();
  }
});

s.run();
