// `dyno export --format triton`: the model repository a stock Triton (onnxruntime backend)
// serves. Triton does not run here, so this test does what it would do: reads every config.pbtxt
// (protobuf text format, Triton's ModelConfig field names), checks it against the ONNX model as
// onnxruntime-node loads it, runs each cut's ensemble step by step as its ensemble_scheduling
// says (one onnxruntime session per model, graph optimisation "all", as the backend's default),
// fed what a client sends for a device's payload (the header's bits and ranges, the body's
// codes before the lossless stage, from the real encoder), and compares every output bit for bit
// with dyno's cloud path for the same payload (Executor.cloud, what `dyno serve` runs).
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import ort from "onnxruntime-node";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { compile } from "../compiler/bundler/compile.js";
import { analyzeModel } from "../compiler/pipeline.js";
import { loadCalibration } from "../compiler/bundler/calibration.js";
import { tritonRepository, writeTritonRepository, BITS_INPUT, codesInput, rangesInput, codesRowBytes } from "../compiler/bundler/triton.js";
import { insertStandardUnpack, unpackable } from "../compiler/passes/standard-unpack.js";
import { buildModel, node } from "../compiler/ir/builder.js";
import { serializeModel } from "../compiler/onnx/export.js";
import { decode, encode, initKernels, readHeader } from "../kernels/index.js";
import { decompressInto } from "../kernels/lossless.js";
import { quantParams } from "../kernels/reference.js";
import { perSampleDims, type Cut, type Variant } from "../runtime/common/manifest.js";
import { randomFloats, rng } from "../runtime/common/random.js";
import { encodeOptions, type Executor } from "../runtime/exec/executor.js";
import { openBundle, type NodeBundle } from "../runtime/node/bundle.js";
import { openExecutor } from "../runtime/node/executor.js";
import { fixtures, runDyno } from "./fixtures.js";

const SEED = Number(process.env.DYNO_SEED ?? 1515);
const root = mkdtempSync(join(tmpdir(), "dyno-triton-"));
const OPTS: ort.InferenceSession.SessionOptions = { graphOptimizationLevel: "all", intraOpNumThreads: 1, interOpNumThreads: 1 };

const sameBits = (a: Float32Array, b: Float32Array) => {
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length), y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  let differ = 0, first = -1;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) (differ++, first < 0 && (first = i));
  return { differ, first, length: x.length === y.length };
};

// --- protobuf text format (the subset config.pbtxt uses) -------------------------------------

type PbValue = string | number | PbMessage;
interface PbMessage { [field: string]: PbValue[] }

/** Parses protobuf text format: fields `name: value`, `name { ... }`, `name [ v, ... ]`, # comments. */
function parsePbtxt(text: string): PbMessage {
  const tokens = text.replace(/#[^\n]*/g, "").match(/"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?|[A-Za-z_][\w.]*|[{}[\]:,]/g) ?? [];
  let at = 0;
  const peek = () => tokens[at];
  const take = (want?: string) => {
    const t = tokens[at++];
    if (t === undefined || (want !== undefined && t !== want)) throw new Error(`pbtxt: expected ${want ?? "a token"} at token ${at - 1}, got ${t}`);
    return t;
  };
  const scalar = (t: string): PbValue => (t.startsWith('"') ? JSON.parse(t) : /^-?\d/.test(t) ? Number(t) : t);
  const value = (): PbValue => (peek() === "{" ? message(true) : scalar(take()));
  function message(braced: boolean): PbMessage {
    if (braced) take("{");
    const out: PbMessage = {};
    while (at < tokens.length && peek() !== "}") {
      const field = take();
      if (!/^[A-Za-z_]/.test(field)) throw new Error(`pbtxt: "${field}" is not a field name`);
      if (peek() === ":") take(":");
      const list = (out[field] ??= []);
      if (peek() === "[") {
        take("[");
        while (peek() !== "]") {
          list.push(value());
          if (peek() === ",") take(",");
        }
        take("]");
      } else list.push(value());
      if (peek() === "," || peek() === ";") take();
    }
    if (braced) take("}");
    return out;
  }
  const m = message(false);
  if (at !== tokens.length) throw new Error(`pbtxt: unexpected "${peek()}"`);
  return m;
}

const one = <T extends PbValue>(m: PbMessage, f: string) => m[f]?.[0] as T;
const many = (m: PbMessage, f: string) => (m[f] ?? []) as PbMessage[];

// model_config.proto's field names for what the export writes (ModelConfig, ModelInput, ModelOutput, ...).
const FIELDS: Record<string, string[]> = {
  config: ["name", "platform", "max_batch_size", "input", "output", "instance_group", "ensemble_scheduling"],
  tensor: ["name", "data_type", "dims"],
  instance_group: ["kind"],
  ensemble_scheduling: ["step"],
  step: ["model_name", "model_version", "input_map", "output_map"],
  map: ["key", "value"],
};
function checkFields(m: PbMessage, kind: string, where: string) {
  for (const f of Object.keys(m)) assert.ok(FIELDS[kind]!.includes(f), `${where}: field "${f}" is not one of ${kind}'s`);
}

// --- the standard-op unpack against the kernels' decoder ------------------------------------

const unpack = suite("standard-op unpack = the kernels' decode");

unpack.before(async () => {
  await initKernels();
});

/** A model that is only the unpack of t [batch, C, H, W] (y = t), at `opset`. */
async function unpackSession(shape: (number | string)[], opset: number) {
  const m = buildModel({ inputs: { t: ["float32", shape] }, outputs: ["y"], nodes: [node("Identity", ["t"], ["y"])] }, [{ domain: "", version: opset }]);
  return ort.InferenceSession.create(serializeModel(insertStandardUnpack(m, ["t"])), OPTS);
}

/** What a client sends for payload `p` (codec none) with `batch` rows. */
function clientFeeds(p: Uint8Array, batch: number, name = "t"): Record<string, ort.Tensor> {
  const h = readHeader(p);
  assert.is(h.codec, "none");
  const body = p.slice(h.bodyOffset);
  const k = h.ranges.length / 2;
  const ranges = new Float32Array(batch * 2 * k);
  for (let b = 0; b < batch; b++) ranges.set(h.ranges, b * 2 * k); // one range per tensor: every row carries it
  return {
    [BITS_INPUT]: new ort.Tensor("uint8", new Uint8Array(batch).fill(h.bits), [batch, 1]),
    [codesInput(name)]: new ort.Tensor("uint8", body, [batch, body.length / batch]),
    [rangesInput(name)]: new ort.Tensor("float32", ranges, [batch, k, 2]),
  };
}

const families: Record<string, (r: () => number, n: number) => Float32Array> = {
  normal: (r, n) => Float32Array.from({ length: n }, () => r() * 2 - 1),
  "post-relu": (r, n) => Float32Array.from({ length: n }, () => Math.max(0, r() * 2 - 1)),
  constant: (_, n) => new Float32Array(n).fill(0.3),
  "negative-only": (r, n) => Float32Array.from({ length: n }, () => -1 - r()),
  "huge range": (r, n) => Float32Array.from({ length: n }, () => (r() * 2 - 1) * 3.4e38),
  subnormal: (r, n) => Float32Array.from({ length: n }, () => (r() - 0.5) * 1e-38),
  tiny: (r, n) => Float32Array.from({ length: n }, () => (r() - 0.5) * 1e-36),
  offset: (r, n) => Float32Array.from({ length: n }, () => 1000 + r()),
  "wide exponents": (r, n) => Float32Array.from({ length: n }, () => (r() - 0.2) * 10 ** (r() * 30 - 15)),
};

unpack("every bit width, per tensor and per channel, batch 1 and 2, opsets 9 and 17: the same bits as decode()", async () => {
  const [C, H, W] = [3, 4, 8];
  let cases = 0;
  for (const opset of [9, 17]) {
    const s = await unpackSession(["batch", C, H, W], opset);
    for (const batch of [1, 2]) for (const [family, make] of Object.entries(families)) {
      for (const bits of [1, 2, 3, 4, 5, 6, 7, 8, 16] as const) for (const perChannel of [false, true]) {
        const seed = SEED + cases++;
        const shape = [batch, C, H, W];
        const p = encode(make(rng(seed), batch * C * H * W), shape, { bits, perChannel, shuffle: false, codec: "none" });
        const y = (await s.run(clientFeeds(p, batch))).y!.data as Float32Array;
        const d = sameBits(y, decode(p));
        assert.ok(d.length && d.differ === 0, `opset ${opset}, ${family}, ${bits} bits, ${perChannel ? "per channel" : "per tensor"}, batch ${batch}: ${d.differ} values differ (first at ${d.first}); DYNO_SEED=${seed - cases + 1}`);
      }
    }
  }
  assert.is(cases, 2 * 2 * Object.keys(families).length * 9 * 2);
});

unpack("ranges whose step is moved 0, +1 or -1 ulps (quantParams' nudge): the same bits", async () => {
  // 96 channels, each holding its own (min, max): the nudge taken varies by channel.
  const C = 96, inner = 8;
  const r = rng(SEED);
  const moves = new Map<number, number>();
  const x = new Float32Array(C * inner);
  for (let c = 0; c < C; c++) {
    const lo = Math.fround((r() - 0.5) * 10 ** (r() * 8 - 4));
    const hi = Math.fround(lo + r() * 10 ** (r() * 8 - 4));
    for (let i = 0; i < inner; i++) x[c * inner + i] = i === 0 ? lo : i === 1 ? hi : Math.fround(lo + (hi - lo) * r());
  }
  const s = await unpackSession(["batch", C, 1, inner], 17);
  for (const bits of [2, 3, 4, 5, 8, 16] as const) {
    const p = encode(x, [1, C, 1, inner], { bits, perChannel: true, shuffle: false, codec: "none" });
    const h = readHeader(p);
    for (let c = 0; c < C; c++) {
      const q = quantParams(h.ranges[2 * c]!, h.ranges[2 * c + 1]!, bits);
      const f = new Float32Array([Math.fround((h.ranges[2 * c + 1]! - q.lo) / q.maxCode), q.step]);
      const u = new Int32Array(f.buffer);
      moves.set(u[1]! - u[0]!, (moves.get(u[1]! - u[0]!) ?? 0) + 1);
    }
    const d = sameBits((await s.run(clientFeeds(p, 1))).y!.data as Float32Array, decode(p));
    assert.is(d.differ, 0, `${bits} bits: ${d.differ} values differ (first at ${d.first})`);
  }
  for (const m of [0, 1, -1]) assert.ok((moves.get(m) ?? 0) > 0, `no channel's step moved by ${m} ulps (moves: ${JSON.stringify([...moves])})`);
});

unpack("a bit width the kernels lack, or codes of the wrong length, are onnxruntime errors, not numbers", async () => {
  const s = await unpackSession(["batch", 2, 2, 8], 17);
  const p = encode(randomFloats(32, SEED), [1, 2, 2, 8], { bits: 4, shuffle: false, codec: "none" });
  for (const bits of [0, 9, 15, 17, 255]) {
    const feeds = clientFeeds(p, 1);
    feeds[BITS_INPUT] = new ort.Tensor("uint8", Uint8Array.of(bits), [1, 1]);
    await s.run(feeds).then(() => assert.unreachable(`bits ${bits} ran`), (e: Error) => assert.match(e.message, /out of|bounds|invalid|reshape/i));
  }
  const short = clientFeeds(p, 1);
  short[codesInput("t")] = new ort.Tensor("uint8", new Uint8Array(15), [1, 15]);
  await s.run(short).then(() => assert.unreachable("15 bytes of 4-bit codes for 32 values ran"), (e: Error) => assert.match(e.message, /reshape|shape/i));
});

unpack("cut tensors it takes: a static shape after the batch, a multiple of 8 values per sample", () => {
  assert.is(unpackable(["batch", 64, 8, 8]), null);
  assert.is(unpackable([1, 16]), null);
  assert.match(unpackable(["batch", 90])!, /90 values per sample is not a multiple of 8/);
  assert.match(unpackable(["batch", 3, "h", 8])!, /symbolic dimension after the first/);
  assert.match(unpackable([])!, /scalar/);
});

unpack.run();

// --- the export of compiled bundles against dyno's cloud path --------------------------------

const repoSuite = suite("dyno export --format triton: every cut's ensemble = dyno's cloud path, bit for bit");

interface Exported {
  bundle: NodeBundle;
  local: Executor;
  repo: string;
}
const exported: Exported[] = [];
const sessions = new Map<string, ort.InferenceSession>();

async function compileFixture(out: string, options: { bits: number[]; cuts?: number[]; perChannel?: boolean }) {
  const fx = fixtures().find((f) => f.name === "resnet")!;
  const a = await analyzeModel(fx.path);
  const input = a.model.graph.inputs.find((v) => !a.model.graph.isInitializer(v.name))!;
  const calibration = await loadCalibration(fx.path, { inputDims: perSampleDims(input.shape!), samples: 16 });
  await compile(a, fx.path, { out, calibration, maxAccuracyDrop: 100, profileRuns: 1, dynoVersion: "test", ...options });
  return openBundle(out);
}

repoSuite.before(async () => {
  await initKernels();
  // Auto cuts, 2/4/8 bits per tensor (with the JPEG/WebP and float variants the export skips);
  // and a two-tensor cut (inside a residual block) with 3- and 16-bit codes per channel.
  const bundles = [
    await compileFixture(join(root, "a.bundle"), { bits: [2, 4, 8] }),
    await compileFixture(join(root, "b.bundle"), { bits: [3, 16], cuts: [4, 19], perChannel: true }),
  ];
  for (const [i, bundle] of bundles.entries()) {
    const repo = join(root, `repo-${i}`);
    writeTritonRepository(tritonRepository(bundle), repo, bundle.manifest);
    exported.push({ bundle, local: await openExecutor(bundle), repo });
  }
});

repoSuite.after(async () => {
  for (const e of exported) await e.local.release();
  for (const s of sessions.values()) await s.release();
  rmSync(root, { recursive: true, force: true });
});

const config = (repo: string, name: string) => parsePbtxt(readFileSync(join(repo, name, "config.pbtxt"), "utf8"));

async function session(repo: string, name: string): Promise<ort.InferenceSession> {
  const key = join(repo, name);
  if (!sessions.has(key)) sessions.set(key, await ort.InferenceSession.create(join(key, "1", "model.onnx"), OPTS));
  return sessions.get(key)!;
}

/** Runs ensemble `name` as Triton's ensemble scheduler would: its steps in order over a pool of tensors. */
async function runEnsemble(repo: string, name: string, feeds: Record<string, ort.Tensor>): Promise<Record<string, ort.Tensor>> {
  const c = config(repo, name);
  assert.is(one(c, "platform"), "ensemble");
  const pool: Record<string, ort.Tensor> = { ...feeds };
  for (const step of many(one<PbMessage>(c, "ensemble_scheduling"), "step")) {
    const s = await session(repo, one<string>(step, "model_name"));
    const inputs: Record<string, ort.Tensor> = {};
    for (const m of many(step, "input_map")) inputs[one<string>(m, "key")] = pool[one<string>(m, "value")]!;
    const out = await s.run(inputs);
    for (const m of many(step, "output_map")) pool[one<string>(m, "value")] = out[one<string>(m, "key")]!;
  }
  return Object.fromEntries(many(c, "output").map((o) => [one<string>(o, "name"), pool[one<string>(o, "name")]!]));
}

/** What a client sends to cut model `cut` for the device's input `x` under variant `v` (header and body of the payload before its lossless stage). */
async function feedsFor(e: Exported, cut: Cut, v: Variant, x: ort.Tensor, devicePayloads: { tensor: string; bytes: Uint8Array }[]) {
  const m = e.bundle.manifest;
  if (cut.kind === "input") return { [m.model.inputs[0]!.name]: x };
  const pool: Record<string, any> = { [m.model.inputs[0]!.name]: x };
  await e.local.runSegments(0, cut.deviceSegments, pool);
  const batch = x.dims[0]!;
  const feeds: Record<string, ort.Tensor> = {};
  for (const t of cut.tensors) {
    // The device encodes the same codes without the lossless stage: the same body the variant's payload compresses.
    const p = encode(pool[t.name].data, pool[t.name].dims, { ...encodeOptions(v.codec), codec: "none", shuffle: false });
    const sent = devicePayloads.find((d) => d.tensor === t.name)!.bytes;
    const h = readHeader(sent), raw = new Uint8Array(h.rawLength);
    decompressInto(h.codec, sent.subarray(h.bodyOffset), raw);
    assert.equal(raw, p.subarray(readHeader(p).bodyOffset), `${v.id} "${t.name}": the payload's codes differ from the re-encoded ones`);
    Object.assign(feeds, clientFeeds(p, batch, t.name));
    assert.is(feeds[codesInput(t.name)]!.dims[1], codesRowBytes(cut, t.name, h.bits));
  }
  return feeds;
}

repoSuite("every served variant, batch 1 and 2, seeded inputs: the outputs are dyno's cloud path's bits", async () => {
  let compared = 0;
  for (const e of exported) {
    const m = e.bundle.manifest;
    const dims = perSampleDims(m.model.inputs[0]!.shape);
    const repo = tritonRepository(e.bundle);
    for (const model of repo.models.filter((x) => x.cut)) {
      for (const v of model.variants!) {
        for (const batch of [1, 2]) {
          const shape = [batch, ...dims.slice(1)];
          const x = new ort.Tensor("float32", randomFloats(shape.reduce((a, b) => a * b, 1), SEED + compared), shape);
          const d = await e.local.device(v.id, x);
          assert.is(d.kind, "split");
          if (d.kind !== "split") continue;
          const want = await e.local.cloud(v.id, d.payloads);
          const got = await runEnsemble(e.repo, model.name, await feedsFor(e, model.cut!, v, x, d.payloads));
          for (const o of m.model.outputs) {
            const r = sameBits(got[o.name]!.data as Float32Array, want.outputs[o.name]!.data as Float32Array);
            assert.ok(r.length && r.differ === 0, `${model.name} (${v.id}, batch ${batch}) output "${o.name}": ${r.differ} values differ, first at ${r.first} (DYNO_SEED=${SEED})`);
          }
          compared++;
        }
      }
    }
  }
  // a: the input cut (f32) and 6 inner cuts x 3 widths; b: the input cut and 2 inner cuts x 2 widths; each at 2 batch sizes.
  assert.is(compared, 2 * (1 + 6 * 3) + 2 * (1 + 2 * 2));
});

repoSuite("each config.pbtxt parses as Triton's ModelConfig and matches its ONNX model as onnxruntime loads it", async () => {
  const TYPES: Record<string, string> = { float32: "TYPE_FP32", uint8: "TYPE_UINT8" };
  for (const e of exported) {
    const names = readdirSync(e.repo).sort();
    const repo = tritonRepository(e.bundle);
    assert.equal(names, repo.models.map((x) => x.name).sort());
    const m = e.bundle.manifest;
    // The KServe route's names: NAME for the input cut, NAME.c<id> for the inner ones.
    for (const cut of m.cuts.filter((c) => c.kind !== "output")) assert.ok(names.includes(cut.kind === "input" ? m.model.name : `${m.model.name}.c${cut.id}`), `no model for cut ${cut.id}`);
    for (const name of names) {
      const c = config(e.repo, name);
      checkFields(c, "config", name);
      assert.is(one(c, "name"), name);
      assert.is(one(c, "max_batch_size"), 64);
      for (const t of [...many(c, "input"), ...many(c, "output")]) checkFields(t, "tensor", name);
      if (one(c, "platform") === "ensemble") {
        assert.equal(readdirSync(join(e.repo, name, "1")), [], `${name}: an ensemble's version directory is empty`);
        for (const step of many(one<PbMessage>(c, "ensemble_scheduling"), "step")) {
          checkFields(step, "step", name);
          for (const mp of [...many(step, "input_map"), ...many(step, "output_map")]) checkFields(mp, "map", name);
          assert.ok(names.includes(one<string>(step, "model_name")), `${name}: step model ${one(step, "model_name")} is not in the repository`);
        }
        continue;
      }
      assert.is(one(c, "platform"), "onnxruntime_onnx");
      for (const g of many(c, "instance_group")) (checkFields(g, "instance_group", name), assert.is(one(g, "kind"), "KIND_CPU"));
      const s = await session(e.repo, name);
      for (const [list, meta] of [[many(c, "input"), s.inputMetadata], [many(c, "output"), s.outputMetadata]] as const) {
        assert.equal(list.map((t) => one(t, "name")), meta.map((x) => x.name), `${name}: tensors in config and model`);
        for (const [i, t] of list.entries()) {
          const mt = meta[i]!;
          assert.ok(mt.isTensor);
          if (!mt.isTensor) continue;
          assert.is(one(t, "data_type"), TYPES[mt.type], `${name} "${mt.name}"`);
          // max_batch_size > 0: the model's first dimension is the batch, and dims leave it out.
          assert.type(mt.shape[0], "string", `${name} "${mt.name}": a symbolic batch`);
          assert.equal(t.dims, mt.shape.slice(1).map((d) => (typeof d === "number" ? d : -1)), `${name} "${mt.name}": dims`);
        }
      }
    }
  }
});

repoSuite("the cut models' inputs are stable: bits, then T__codes and T__ranges per cut tensor", () => {
  const e = exported[1]!;
  const cut = e.bundle.manifest.cuts.find((c) => c.id === 4)!;
  const c = config(e.repo, `${e.bundle.manifest.model.name}.c4`);
  const inputs = many(c, "input").map((t) => [one(t, "name"), one(t, "data_type"), t.dims]);
  assert.equal(inputs, [
    ["bits", "TYPE_UINT8", [1]],
    ...cut.tensors.flatMap((t) => [[`${t.name}__codes`, "TYPE_UINT8", [-1]], [`${t.name}__ranges`, "TYPE_FP32", [-1, 2]]]),
  ]);
});

repoSuite("dyno export: one line per model, every variant with its model or why none; clear usage errors", () => {
  const bundle = exported[0]!.bundle;
  const out = join(root, "cli-repo");
  const r = runDyno(["export", bundle.dir, "--format", "triton", "-o", out]);
  assert.is(r.code, 0, r.stderr);
  const name = bundle.manifest.model.name;
  assert.match(r.stdout, new RegExp(`${name}\\.c13  ensemble: ${name}\\.c13\\.unpack -> .*; inputs bits UINT8 \\[1\\], .*__codes UINT8 \\[-1\\], .*__ranges FP32 \\[-1,2\\]`));
  assert.match(r.stdout, new RegExp(`${name}\\.segment-00/1/model\\.onnx  [\\d.]+ (B|KiB)`));
  assert.match(r.stdout, /c13-b4-zstd\s+-> \S+\.c13 with bits=4: the device sends the same codes without the zstd stage/);
  assert.match(r.stdout, /c13-f16-none\s+not exported: sends float16 values/);
  assert.match(r.stdout, /c0-jpeg-q50\s+not exported: sends the input as a jpeg file/);
  assert.ok(existsSync(join(out, `${name}.c13.unpack`, "1", "model.onnx")));

  const usage = (args: string[], pattern: RegExp) => {
    const x = runDyno(["export", ...args]);
    assert.is(x.code, 2, `${args.join(" ")}: exit ${x.code}\n${x.stderr}`);
    assert.match(x.stderr, /^dyno: /);
    assert.match(x.stderr, pattern);
  };
  usage([bundle.dir, "--format", "tensorrt", "-o", join(root, "x")], /unknown format "tensorrt" \(formats: triton\)/);
  usage([bundle.dir, "--format", "triton"], /-o REPO is required/);
  usage([bundle.dir, "-o", join(root, "x")], /--format is required/);
  usage([bundle.dir, "--format", "triton", "-o", out], /is not empty/);
  usage([bundle.dir, "--format", "triton", "-o", join(root, "y"), "--max-batch", "lots"], /--max-batch "lots"/);
  mkdirSync(join(root, "empty"));
  writeFileSync(join(root, "file"), "x");
  usage([bundle.dir, "--format", "triton", "-o", join(root, "file")], /exists and is not a directory/);
  assert.is(runDyno(["export", bundle.dir, "--format", "triton", "-o", join(root, "empty"), "--max-batch", "0"]).code, 0);
  assert.is(one(config(join(root, "empty"), name), "max_batch_size"), 0);
  assert.equal(many(config(join(root, "empty"), name), "input")[0]!.dims, [-1, 1, 64, 64]);
});

repoSuite.run();
