// Calibration data as users have it: image folders (through sharp), .npy arrays, DYNOIMG1 and
// random:N, labels files, and the preprocessing flags. All data is made here, in a temp folder.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import sharp from "sharp";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { UsageError } from "../runtime/common/errors.js";
import { bundleCalibration, loadCalibration, type CalibrationOptions } from "../compiler/bundler/calibration.js";
import { Manifest } from "../runtime/common/manifest.js";
import { rng } from "../runtime/common/random.js";

const SEED = 4242;
const root = mkdtempSync(join(tmpdir(), "dyno-calib-"));
const test = suite("calibration data");
test.after(() => rmSync(root, { recursive: true, force: true }));

let folders = 0;
/** A fresh folder under the temp root. */
function folder(): string {
  const dir = join(root, `d${folders++}`);
  mkdirSync(dir);
  return dir;
}

/** Writes `pixels` (HWC uint8, `channels` of them) as an image file in the format of its extension. */
async function image(path: string, width: number, height: number, channels: 1 | 3 | 4, pixels: ArrayLike<number>): Promise<void> {
  let s = sharp(Buffer.from(Uint8Array.from(pixels)), { raw: { width, height, channels } });
  if (channels === 1) s = s.toColourspace("b-w");
  const ext = path.slice(path.lastIndexOf(".") + 1);
  const out = ext === "png" ? s.png() : ext === "webp" ? s.webp({ lossless: true }) : s.jpeg({ quality: 95 });
  writeFileSync(path, await out.toBuffer());
}

function solid(width: number, height: number, rgb: number[]): number[] {
  return Array.from({ length: width * height }, () => rgb).flat();
}

/** Seeded random RGB pixels, HWC. */
function noise(width: number, height: number, seed: number): number[] {
  const next = rng(seed);
  return Array.from({ length: width * height * 3 }, () => Math.floor(next() * 256));
}

const load = (options: CalibrationOptions) => loadCalibration("", options);

/** The expected float32 of one pixel value: (p * scale - mean) / std. */
const norm = (p: number, scale: number, mean: number, std: number) => Math.fround((p * scale - mean) / std);

async function rejects(options: CalibrationOptions, pattern: RegExp): Promise<void> {
  try {
    await load(options);
  } catch (e) {
    assert.instance(e, UsageError, `${(e as Error).message}`);
    assert.match((e as Error).message, pattern);
    assert.not.match((e as Error).message, /\n/);
    return;
  }
  assert.unreachable(`expected ${pattern} for ${JSON.stringify(options)}`);
}

/** A .npy file: magic, version, header dict padded to 64 bytes, data. */
function npy(descr: string, shape: number[], data: Uint8Array, options: { fortran?: boolean; version?: 1 | 2 } = {}): Uint8Array {
  const version = options.version ?? 1;
  const dict = `{'descr': '${descr}', 'fortran_order': ${options.fortran ? "True" : "False"}, 'shape': (${shape.join(", ")}${shape.length === 1 ? "," : ""}), }`;
  const fixed = version === 1 ? 10 : 12;
  const padded = dict.padEnd(Math.ceil((fixed + dict.length + 1) / 64) * 64 - fixed - 1, " ") + "\n";
  const out = new Uint8Array(fixed + padded.length + data.length);
  out.set([0x93, ..."NUMPY"].map((c) => (typeof c === "number" ? c : c.charCodeAt(0))), 0);
  out.set([version, 0], 6);
  const view = new DataView(out.buffer);
  if (version === 1) view.setUint16(8, padded.length, true);
  else view.setUint32(8, padded.length, true);
  out.set(new TextEncoder().encode(padded), fixed);
  out.set(data, fixed + padded.length);
  return out;
}

const bytesOf = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

test("PNG at the input size: exact values in nchw rgb and nhwc bgr, per-channel mean and std", async () => {
  const dir = folder();
  const [W, H] = [6, 5];
  const pixels = noise(W, H, SEED);
  await image(join(dir, "a.png"), W, H, 3, pixels);
  const flag = "0.00392157,0.485:0.456:0.406,0.229:0.224:0.225";
  const [scale, mean, std] = [0.00392157, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]];

  const nchw = await load({ calib: dir, preprocess: flag, inputDims: [1, 3, H, W] });
  const expectNchw: number[] = [];
  for (let c = 0; c < 3; c++) for (let k = 0; k < W * H; k++) expectNchw.push(norm(pixels[k * 3 + c]!, scale, mean[c]!, std[c]!));
  assert.equal(Array.from(nchw.batch(0, 1)), expectNchw, `seed ${SEED}`);
  assert.equal(nchw.preprocess, { scale, mean, std, layout: "nchw", channelOrder: "rgb", resize: "stretch" });
  assert.is(nchw.source, dir.split("/").pop());
  assert.is(nchw.labels, null);

  // NHWC inferred from the dims; BGR: model channel c is image channel 2 - c, normalised with mean[c].
  const nhwc = await load({ calib: dir, preprocess: flag, channelOrder: "bgr", inputDims: [1, H, W, 3] });
  const expectNhwc: number[] = [];
  for (let k = 0; k < W * H; k++) for (let c = 0; c < 3; c++) expectNhwc.push(norm(pixels[k * 3 + 2 - c]!, scale, mean[c]!, std[c]!));
  assert.equal(Array.from(nhwc.batch(0, 1)), expectNhwc, `seed ${SEED}`);
  assert.equal([nhwc.preprocess!.layout, nhwc.preprocess!.channelOrder], ["nhwc", "bgr"]);

  // --layout overrides the inference: [1,3,6,3] reads as 3 channels of 6x3 unless told it is 3x6x3.
  assert.is((await load({ calib: dir, inputDims: [1, 3, 6, 3] })).preprocess!.layout, "nchw");
  const forced = await load({ calib: dir, layout: "nhwc", inputDims: [1, 3, 6, 3] });
  assert.is(forced.preprocess!.layout, "nhwc");
  assert.is(forced.batch(0, 1).length, 3 * 6 * 3);
});

test("stretch resizes to H x W; pad keeps the aspect at height H and leaves 0 on the right", async () => {
  const dir = folder();
  const rgb = [200, 100, 50];
  await image(join(dir, "tall.png"), 10, 20, 3, solid(10, 20, rgb)); // pad: width ceil(8 * 10 / 20) = 4 of 16
  await image(join(dir, "wide.png"), 40, 10, 3, solid(40, 10, rgb)); // pad: ceil(8 * 40 / 10) = 32 > 16: full width
  const [H, W] = [8, 16];
  const flag = "0.00784314,1,1"; // PaddleOCR rec: p * 2/255 - 1, so black would be -1, not 0
  const value = (c: number) => norm(rgb[c]!, 0.00784314, 1, 1);

  const stretch = await load({ calib: dir, preprocess: flag, inputDims: [1, 3, H, W] });
  assert.is(stretch.count, 2);
  const s = stretch.batch(0, 2);
  assert.is(s.length, 2 * 3 * H * W);
  for (let i = 0; i < s.length; i++) assert.is(s[i], value(Math.floor(i / (H * W)) % 3), `stretch at ${i}`);

  const pad = await load({ calib: dir, preprocess: flag, resize: "pad", channelOrder: "bgr", inputDims: [1, 3, H, W] });
  assert.is(pad.preprocess!.resize, "pad");
  const tall = pad.batch(0, 1); // sorted by name: tall.png, wide.png
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) assert.is(tall[c * H * W + y * W + x], x < 4 ? value(2 - c) : 0, `pad at c${c} y${y} x${x}`);
    }
  }
  const wide = pad.batch(1, 1);
  assert.ok(wide.every((v, i) => v === value(2 - Math.floor(i / (H * W)))), "a wide image fills the width");

  // nhwc with pad: the zero columns are per pixel, every channel.
  const padNhwc = await load({ calib: dir, preprocess: flag, resize: "pad", inputDims: [1, H, W, 3] });
  const t = padNhwc.batch(0, 1);
  assert.equal(Array.from(t.subarray((2 * W + 3) * 3, (2 * W + 5) * 3)), [value(0), value(1), value(2), 0, 0, 0]);
});

test("gray, RGBA, JPEG and WebP decode; 1-channel inputs keep gray; files sort by name; --calib-samples decodes only the first N", async () => {
  const dir = folder();
  await image(join(dir, "b-gray.png"), 4, 4, 1, solid(4, 4, [90]));
  await image(join(dir, "a-rgba.png"), 4, 4, 4, solid(4, 4, [10, 20, 30, 0]));
  await image(join(dir, "c.jpg"), 16, 16, 3, solid(16, 16, [120, 60, 240]));
  await image(join(dir, "d.webp"), 4, 4, 3, solid(4, 4, [1, 2, 3]));
  writeFileSync(join(dir, "notes.txt"), "not an image");
  const plane = 16;
  const cal = await load({ calib: dir, preprocess: "1,0,1", inputDims: [1, 3, 4, 4] });
  assert.is(cal.count, 4);
  const b = cal.batch(0, 4);
  const at = (i: number, c: number) => b[i * 3 * plane + c * plane]!;
  assert.equal([at(0, 0), at(0, 1), at(0, 2)], [10, 20, 30], "alpha dropped");
  assert.equal([at(1, 0), at(1, 1), at(1, 2)], [90, 90, 90], "gray expanded to 3 channels");
  for (const [c, v] of [120, 60, 240].entries()) assert.ok(Math.abs(at(2, c) - v) <= 3, `JPEG channel ${c}: ${at(2, c)} vs ${v}`);
  assert.equal([at(3, 0), at(3, 1), at(3, 2)], [1, 2, 3], "lossless WebP");

  const gray = await load({ calib: dir, preprocess: "1,0,1", inputDims: [1, 1, 4, 4], samples: 2 });
  assert.is(gray.count, 2);
  assert.equal(Array.from(gray.batch(1, 1)), solid(4, 4, [90]));

  writeFileSync(join(dir, "z-broken.png"), "not a png at all");
  assert.is((await load({ calib: dir, inputDims: [1, 3, 4, 4], samples: 4 })).count, 4, "the broken fifth image is never decoded");
  await rejects({ calib: dir, inputDims: [1, 3, 4, 4] }, /cannot decode image ".*z-broken\.png"/);
});

test(".npy float32, uint8, float64, int64, int32 (v1 and v2 headers) are used as-is; NAME=DATA", async () => {
  const dir = folder();
  const next = rng(SEED);
  const values = Array.from({ length: 2 * 3 * 2 * 2 }, () => Math.round((next() * 2 - 1) * 1000) / 8);
  const bytes = Array.from({ length: 2 * 12 }, () => Math.floor(next() * 256));
  const ints = bytes.map((b) => b - 128);
  const cases: [string, Uint8Array, number[]][] = [
    ["f4.npy", npy("<f4", [2, 3, 2, 2], bytesOf(Float32Array.from(values))), values],
    ["f8.npy", npy("<f8", [2, 3, 2, 2], bytesOf(Float64Array.from(values)), { version: 2 }), values],
    ["u1.npy", npy("|u1", [2, 3, 2, 2], Uint8Array.from(bytes)), bytes],
    ["i8.npy", npy("<i8", [2, 3, 2, 2], bytesOf(BigInt64Array.from(ints, BigInt))), ints],
    ["i4.npy", npy("<i4", [2, 3, 2, 2], bytesOf(Int32Array.from(ints))), ints],
  ];
  for (const [name, data, expected] of cases) {
    writeFileSync(join(dir, name), data);
    const cal = await load({ calib: `input=${join(dir, name)}`, inputName: "input", inputDims: [1, 3, 2, 2], preprocess: "2,1,1" });
    assert.is(cal.count, 2, name);
    assert.is(cal.source, name);
    assert.is(cal.preprocess, null, `${name}: no preprocessing`);
    assert.equal(Array.from(cal.batch(0, 2)), expected.map(Math.fround), `${name}, seed ${SEED}`);
    assert.equal(Array.from(cal.batch(1, 5)), expected.slice(12).map(Math.fround), `${name}: batch ends at the last sample`);
  }
  const limited = await load({ calib: join(dir, "f4.npy"), inputDims: [1, 3, 2, 2], samples: 1 });
  assert.is(limited.count, 1);
  assert.is(limited.batch(0, 2).length, 12);
  await rejects({ calib: `pixels=${join(dir, "f4.npy")}`, inputName: "input", inputDims: [1, 3, 2, 2] }, /no input "pixels"/);
});

test(".npy errors: Fortran order, unsupported dtype, shape mismatch naming both shapes, short data", async () => {
  const dir = folder();
  const f = (name: string, data: Uint8Array) => {
    writeFileSync(join(dir, name), data);
    return join(dir, name);
  };
  const floats = bytesOf(new Float32Array(12));
  await rejects({ calib: f("fortran.npy", npy("<f4", [1, 3, 2, 2], floats, { fortran: true })), inputDims: [1, 3, 2, 2] }, /fortran\.npy.*Fortran order/);
  await rejects({ calib: f("big.npy", npy(">f4", [1, 3, 2, 2], floats)), inputDims: [1, 3, 2, 2] }, /big\.npy.*dtype '>f4' is not supported/);
  await rejects({ calib: f("shape.npy", npy("<f4", [1, 2, 2, 3], floats)), inputDims: [1, 3, 2, 2] }, /shape\.npy.*\[1,2,2,3\].*\[N,3,2,2\]/);
  await rejects({ calib: f("short.npy", npy("<f4", [2, 3, 2, 2], floats)), inputDims: [1, 3, 2, 2] }, /short\.npy.*needs 96 data bytes, the file has 48/);
  await rejects({ calib: f("bad.npy", new TextEncoder().encode("hello")), inputDims: [1, 3, 2, 2] }, /bad\.npy.*not a \.npy file/);
});

test("labels TSV: class, text (untrimmed, CRLF) and PaddleOCR boxes scaled to the input, for stretch and pad", async () => {
  const dir = folder();
  for (const name of ["a.png", "b.png", "c.png"]) await image(join(dir, name), 20, 10, 3, solid(20, 10, [1, 2, 3]));
  const boxes = [{ transcription: "HELLO", points: [[0, 0], [20, 0], [20, 10], [0, 10]] }, { transcription: "###", points: [[5, 5], [10, 5], [10, 8], [5, 8]] }];
  const labelsPath = join(dir, "labels.txt");
  writeFileSync(labelsPath, [`train/c.png\t${JSON.stringify(boxes)}`, "a.png\t7", "imgs\\b.png\t a\ttext  \r", ""].join("\n"));

  const stretch = await load({ calib: dir, labels: labelsPath, inputDims: [1, 3, 8, 16] });
  assert.equal(stretch.labels, [
    7,
    " a\ttext  ",
    [{ points: [[0, 0], [16, 0], [16, 8], [0, 8]], text: "HELLO" }, { points: [[4, 4], [8, 4], [8, 6.4], [4, 6.4]], text: "###" }],
  ]);

  // pad: height 10 -> 8 (0.8), width 20 -> ceil(8 * 20 / 10) = 16 of 32.
  const pad = await load({ calib: dir, labels: labelsPath, resize: "pad", inputDims: [1, 3, 8, 32] });
  assert.equal((pad.labels![2] as { points: number[][] }[])[0]!.points, [[0, 0], [16, 0], [16, 8], [0, 8]]);
  const samples = await load({ calib: dir, labels: labelsPath, inputDims: [1, 3, 8, 16], samples: 1 });
  assert.equal(samples.labels, [7]);
});

test("labels for .npy: one per line, same parsing; DYNOIMG1 keeps its classes; random:N is unlabelled", async () => {
  const dir = folder();
  writeFileSync(join(dir, "x.npy"), npy("|u1", [3, 1, 2, 2], new Uint8Array(12)));
  writeFileSync(join(dir, "x.txt"), `3\nsome text\n[{"transcription": "A", "points": [[1, 2], [3, 2], [3, 4]]}]\n`);
  const cal = await load({ calib: join(dir, "x.npy"), labels: join(dir, "x.txt"), inputDims: [1, 1, 2, 2] });
  assert.equal(cal.labels, [3, "some text", [{ points: [[1, 2], [3, 2], [3, 4]], text: "A" }]]);
  writeFileSync(join(dir, "two.txt"), "1\n2\n");
  await rejects({ calib: join(dir, "x.npy"), labels: join(dir, "two.txt"), inputDims: [1, 1, 2, 2] }, /two\.txt.*2 labels for the 3 samples/);

  // DYNOIMG1: 2 images of 1x2x2, labels 3 and 7.
  const head = new Uint8Array(24);
  head.set(new TextEncoder().encode("DYNOIMG1"));
  const view = new DataView(head.buffer);
  [2, 1, 2, 2].forEach((v, i) => view.setUint32(8 + 4 * i, v, true));
  writeFileSync(join(dir, "set.bin"), Uint8Array.from([...head, 3, 7, 0, 51, 102, 255, 10, 20, 30, 40]));
  const set = await load({ calib: join(dir, "set.bin"), inputDims: [1, 1, 2, 2] });
  assert.equal(set.labels, [3, 7]);
  assert.equal(Array.from(set.batch(0, 2)), [0, 51, 102, 255, 10, 20, 30, 40].map((p) => norm(p, 1 / 255, 0, 1)));
  assert.equal(set.preprocess, { scale: 1 / 255, mean: [0], std: [1], layout: "nchw", channelOrder: "rgb", resize: "stretch" });
  await rejects({ calib: join(dir, "set.bin"), labels: join(dir, "x.txt"), inputDims: [1, 1, 2, 2] }, /x\.txt.*carries its own labels/);
  await rejects({ calib: join(dir, "set.bin"), inputDims: [1, 1, 4, 4] }, /set\.bin.*1x2x2.*\[1,4,4\]/);

  const random = await load({ calib: "random:5", inputDims: [1, 3, 2, 2], samples: 3 });
  assert.equal([random.count, random.labels, random.preprocess, random.batch(0, 2).length], [3, null, null, 24]);
});

test("errors name the file: missing, empty folder, no tab, unknown image, unlabelled image, bad flags", async () => {
  const dir = folder();
  const empty = folder();
  await image(join(dir, "a.png"), 2, 2, 3, solid(2, 2, [0, 0, 0]));
  await image(join(dir, "b.png"), 2, 2, 3, solid(2, 2, [0, 0, 0]));
  const labels = (name: string, text: string) => {
    writeFileSync(join(empty, name), text);
    return join(empty, name);
  };
  const dims = [1, 3, 2, 2];
  await rejects({ calib: join(root, "nope"), inputDims: dims }, /"[^"]*nope": no such file or folder/);
  await rejects({ calib: join(root, "nope.npy"), inputDims: dims }, /nope\.npy": no such file or folder/);
  await rejects({ calib: empty, inputDims: dims }, new RegExp(`"${empty}": the folder has no JPEG, PNG or WebP images`));
  await rejects({ calib: dir, labels: join(root, "missing.txt"), inputDims: dims }, /missing\.txt": no such file/);
  await rejects({ calib: dir, labels: labels("notab.txt", "a.png\t1\nb.png 2\n"), inputDims: dims }, /notab\.txt" line 2: no tab/);
  await rejects({ calib: dir, labels: labels("extra.txt", "a.png\t1\nb.png\t2\nc.png\t3\n"), inputDims: dims }, /extra\.txt" line 3: image "c\.png" is not in/);
  await rejects({ calib: dir, labels: labels("short.txt", "a.png\t1\n"), inputDims: dims }, /short\.txt": no label for image "b\.png"/);
  await rejects({ calib: dir, labels: labels("twice.txt", "a.png\t1\nx/a.png\t2\nb.png\t3\n"), inputDims: dims }, /twice\.txt" line 2: a second label for image "a\.png"/);
  await rejects({ calib: dir, labels: labels("box.txt", `a.png\t[{"points": [[1, 2]]}]\nb.png\t1\n`), inputDims: dims }, /box\.txt" line 1, box 1: "points"/);
  await rejects({ calib: dir, inputDims: [1, 5, 6, 7] }, /cannot tell the channel dim of the input \[1,5,6,7\]; give --layout/);
  await rejects({ calib: dir, inputDims: [1, 12] }, /images need a 4-d model input/);
  await rejects({ calib: dir, layout: "chw", inputDims: dims }, /--layout "chw": expected nchw or nhwc/);
  await rejects({ calib: dir, resize: "crop", inputDims: dims }, /--resize "crop": expected stretch or pad/);
  await rejects({ calib: dir, channelOrder: "rbg", inputDims: dims }, /--channel-order "rbg": expected rgb or bgr/);
  await rejects({ calib: dir, preprocess: "1,0", inputDims: dims }, /--preprocess "1,0": expected SCALE,MEAN,STD/);
  await rejects({ calib: dir, preprocess: "1,0:0,1", inputDims: dims }, /--preprocess "1,0:0,1": 2 means for an input of 3 channels/);
  await rejects({ calib: dir, preprocess: "1,0,0", inputDims: dims }, /STD not 0/);
  await rejects({ calib: join(dir, "a.png"), inputDims: dims }, /a\.png.*not a DYNOIMG1 image set/);
});

test("the manifest keeps layout, channel order and resize; bundleCalibration makes the same inputs; old manifests parse", async () => {
  const dir = folder();
  await image(join(dir, "a.png"), 8, 4, 3, noise(8, 4, SEED + 1));
  const options: CalibrationOptions = { calib: dir, preprocess: "0.5,1:2:3,2:4:8", layout: "nhwc", channelOrder: "bgr", resize: "pad", inputDims: [1, 4, 4, 3] };
  const compiled = await load(options);
  const manifest = {
    model: { inputs: [{ name: "x", dtype: "float32", shape: ["batch", 4, 4, 3], bytes: 192 }] },
    calibration: { source: compiled.source, samples: compiled.count },
    preprocess: Manifest.shape.preprocess.parse(JSON.parse(JSON.stringify(compiled.preprocess))),
  } as unknown as Manifest;
  const again = (await bundleCalibration(manifest, { calib: dir }))!;
  assert.equal(again.preprocess, compiled.preprocess);
  assert.equal(Array.from(again.batch(0, 1)), Array.from(compiled.batch(0, 1)));
  const flipped = (await bundleCalibration(manifest, { calib: dir, channelOrder: "rgb" }))!;
  assert.is(flipped.preprocess!.channelOrder, "rgb", "verify's flags override the manifest's");

  assert.equal(Manifest.shape.preprocess.parse({ scale: 1, mean: [0], std: [1] }), { scale: 1, mean: [0], std: [1], channelOrder: "rgb", resize: "stretch" });
});

test.run();
