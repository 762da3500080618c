// KServe v2 (the Open Inference Protocol) on dyno serve, as the published protocol has it: the
// requests are written by hand from the KServe v2 REST spec and Triton's binary tensor data and
// model repository extensions (their example requests: JSON tensors nested and flat, binary
// inputs with binary_data_size behind an Inference-Header-Content-Length, binary outputs per
// output and per request, a raw binary body, gzip and deflate bodies, {"error": ...} bodies),
// sent over plain node:http so that nothing of dyno's client is in the way, and every output is
// compared bit for bit with what the native protocol (the local Executor) gives for the same
// payload.
import http from "node:http";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { deflateSync, gunzipSync, gzipSync } from "node:zlib";
import ort from "onnxruntime-node";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { readHeader } from "../kernels/format.js";
import { perSampleDims, type Variant } from "../runtime/common/manifest.js";
import { buildRequest, decodeResponse, modelId } from "../runtime/common/protocol.js";
import { randomFloats } from "../runtime/common/random.js";
import type { Executor, Payload } from "../runtime/exec/executor.js";
import { openBundle, type NodeBundle } from "../runtime/node/bundle.js";
import { openExecutor } from "../runtime/node/executor.js";
import type { DynoServer } from "../runtime/cloud/server.js";
import { cloudHarness } from "./helpers/cloud.js";
import { compileTestBundle, fixtures } from "./fixtures.js";

const SEED = 1515;
const TOKEN = "kserve-token";
const root = mkdtempSync(join(tmpdir(), "dyno-kserve-"));
let bundle: NodeBundle;
let local: Executor;
let srv: DynoServer;
const harness = cloudHarness({ bundle: () => bundle, token: TOKEN, timeoutMs: 5000 });

const k = suite("KServe v2 on dyno serve (the published protocol)");

/** Per variant: the device payloads of input 0 and the local cloud's output bytes for them. */
const cases = new Map<string, { payloads: Payload[]; out: Uint8Array }>();
let NAME = "";
let x0: ort.Tensor;

k.before(async () => {
  const fx = fixtures().find((f) => f.name === "resnet")!;
  await compileTestBundle(fx.path, join(root, "bundle"), { bits: [4, 8], samples: 16, profileRuns: 1 });
  bundle = openBundle(join(root, "bundle"));
  local = await openExecutor(bundle);
  const m = bundle.manifest;
  NAME = m.model.name;
  const dims = perSampleDims(m.model.inputs[0]!.shape);
  x0 = new ort.Tensor("float32", randomFloats(dims.reduce((p, q) => p * q, 1), SEED), dims);
  for (const v of m.variants) {
    if (m.cuts.find((c) => c.id === v.cut)!.kind === "output" || typeof v.codec.bits === "string" && !["f32", "f16"].includes(v.codec.bits)) continue;
    const d = await local.device(v.id, x0);
    if (d.kind !== "split") continue;
    const c = await local.cloud(v.id, d.payloads);
    const y = c.outputs[m.model.outputs[0]!.name]!.data as Float32Array;
    cases.set(v.id, { payloads: d.payloads, out: new Uint8Array(y.buffer.slice(y.byteOffset, y.byteOffset + y.byteLength)) });
  }
  srv = await harness.serve();
});

k.after(async () => {
  for (const s of harness.servers) await s.close();
  await local?.release();
  rmSync(root, { recursive: true, force: true });
});

// --- plain HTTP ------------------------------------------------------------------------------

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

function send(method: string, path: string, body?: Uint8Array | string, headers: Record<string, string | number> = {}, auth = true): Promise<Reply> {
  const url = new URL(srv.url);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: url.hostname, port: url.port, method, path, headers: { ...(auth ? { Authorization: `Bearer ${TOKEN}` } : {}), ...headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on("error", reject);
    req.end(body === undefined ? undefined : typeof body === "string" ? body : Buffer.from(body));
  });
}

const json = (r: Reply) => JSON.parse((r.headers["content-encoding"] === "gzip" ? gunzipSync(r.body) : r.body).toString("utf8"));

/** The JSON part and the binary tail of a reply (Inference-Header-Content-Length). */
function split(r: Reply): { head: any; tail: Buffer } {
  const n = Number(r.headers["inference-header-content-length"]);
  return { head: JSON.parse(r.body.subarray(0, n).toString("utf8")), tail: r.body.subarray(n) };
}

/** An infer request with binary tensors: the JSON, then the bytes (the spec's example layout). */
function binaryRequest(head: object, ...tails: Uint8Array[]): { body: Buffer; headers: Record<string, string | number> } {
  const j = Buffer.from(JSON.stringify(head));
  return { body: Buffer.concat([j, ...tails]), headers: { "Content-Type": "application/octet-stream", "Inference-Header-Content-Length": j.length } };
}

const f32Bytes = (a: ArrayLike<number>) => {
  const b = Buffer.alloc(a.length * 4);
  for (let i = 0; i < a.length; i++) b.writeFloatLE(a[i]!, 4 * i);
  return b;
};
const dataBytes = (data: number[]) => new Uint8Array(Float32Array.from(data).buffer);
/** The float32 values a float32 payload carries (header, then raw little-endian floats). */
function valuesOf(p: Uint8Array): { shape: number[]; values: Float32Array } {
  const h = readHeader(p);
  const values = new Float32Array(h.shape.reduce((a, b) => a * b, 1));
  const v = new DataView(p.buffer, p.byteOffset + h.bodyOffset);
  for (let i = 0; i < values.length; i++) values[i] = v.getFloat32(4 * i, true);
  return { shape: h.shape, values };
}
function nest(values: Float32Array, shape: number[]): unknown {
  if (shape.length <= 1) return Array.from(values);
  const step = values.length / shape[0]!;
  return Array.from({ length: shape[0]! }, (_, i) => nest(values.subarray(i * step, (i + 1) * step), shape.slice(1)));
}

const variantsOf = (kind: "input" | "inner") => bundle.manifest.variants.filter((v) => bundle.manifest.cuts.find((c) => c.id === v.cut)!.kind === kind);
const modelOf = (v: Variant) => (bundle.manifest.cuts.find((c) => c.id === v.cut)!.kind === "input" ? NAME : `${NAME}.c${v.cut}`);

// --- metadata ----------------------------------------------------------------------------------

k("GET /v2 lists binary_tensor_data and model_repository; the repository index has one READY model per cut", async () => {
  const meta = json(await send("GET", "/v2"));
  assert.ok(meta.extensions.includes("binary_tensor_data"), JSON.stringify(meta));
  assert.ok(meta.extensions.includes("model_repository"));
  assert.type(meta.name, "string");
  assert.type(meta.version, "string");
  const index = await send("POST", "/v2/repository/index", "");
  assert.is(index.status, 200);
  const models = json(index) as { name: string; version: string; state: string }[];
  const m = bundle.manifest;
  const cuts = m.cuts.filter((c) => c.kind !== "output");
  assert.is(models.length, cuts.length);
  assert.equal(models.map((x) => x.name).sort(), cuts.map((c) => (c.kind === "input" ? NAME : `${NAME}.c${c.id}`)).sort());
  assert.ok(models.every((x) => x.state === "READY" && x.version === modelId(m)));
  assert.equal(json(await send("POST", "/v2/repository/index", JSON.stringify({ ready: true }))), models);
  const badIndex = await send("POST", "/v2/repository/index", '{"ready": "yes"}');
  assert.is(badIndex.status, 400);
  assert.type(json(badIndex).error, "string");
  assert.is((await send("POST", "/v2/repository/index", "", {}, false)).status, 401);
});

k("model metadata per cut: FP32 inputs with -1 for the batch, the model's outputs; ready; versions", async () => {
  const m = bundle.manifest;
  const whole = json(await send("GET", `/v2/models/${NAME}`));
  assert.equal(whole.inputs, [{ name: "input", datatype: "FP32", shape: [-1, 1, 64, 64] }]);
  assert.equal(whole.outputs, [{ name: "logits", datatype: "FP32", shape: [-1, 10] }]);
  for (const c of m.cuts.filter((x) => x.kind === "inner")) {
    const r = await send("GET", `/v2/models/${NAME}.c${c.id}`);
    assert.is(r.status, 200);
    const meta = json(r);
    assert.is(meta.name, `${NAME}.c${c.id}`);
    assert.equal(meta.versions, [modelId(m)]);
    assert.equal(meta.inputs, c.tensors.map((t) => ({ name: t.name, datatype: "FP32", shape: t.shape.map((d) => (typeof d === "number" ? d : -1)) })));
    assert.equal(json(await send("GET", `/v2/models/${NAME}.c${c.id}/versions/${modelId(m)}/ready`)), { name: `${NAME}.c${c.id}`, ready: true });
  }
  const missing = await send("GET", `/v2/models/${NAME}.c999`);
  assert.is(missing.status, 404);
  assert.match(json(missing).error, /unknown model/);
  assert.is((await send("GET", `/v2/models/${NAME}/versions/0000/ready`)).status, 404);
});

// --- inference ---------------------------------------------------------------------------------

k("FP32 JSON, nested and flat, for the whole model and inner cuts: the native protocol's outputs bit for bit", async () => {
  const picks = [variantsOf("input").find((v) => v.codec.bits === "f32")!, ...variantsOf("inner").filter((v) => v.codec.bits === "f32").slice(0, 3)];
  assert.ok(picks.length >= 3);
  for (const v of picks) {
    const c = cases.get(v.id)!;
    const p = c.payloads[0]!;
    const { shape, values } = valuesOf(p.bytes);
    for (const data of [nest(values, shape), Array.from(values)]) {
      const r = await send("POST", `/v2/models/${modelOf(v)}/infer`, JSON.stringify({ id: "42", inputs: [{ name: p.tensor, shape, datatype: "FP32", data }], outputs: [{ name: "logits" }] }), { "Content-Type": "application/json" });
      assert.is(r.status, 200, r.body.toString());
      const body = json(r);
      assert.is(body.id, "42");
      assert.is(body.model_name, modelOf(v));
      assert.type(body.model_version, "string");
      assert.is(body.outputs.length, 1);
      const o = body.outputs[0];
      assert.equal([o.name, o.datatype, o.shape], ["logits", "FP32", [1, 10]]);
      assert.equal(dataBytes(o.data), c.out, `${v.id}: the JSON output differs from the native protocol's`);
      assert.is(body.parameters.dyno_variant, v.id);
    }
  }
});

k("the binary tensor extension: binary inputs, outputs binary per output and per request, mixed with JSON", async () => {
  const v = variantsOf("inner").find((x) => x.codec.bits === "f32")!;
  const c = cases.get(v.id)!;
  const { shape, values } = valuesOf(c.payloads[0]!.bytes);
  const bin = f32Bytes(values);
  // Binary in, one output asked binary.
  let q = binaryRequest({ model_name: modelOf(v), inputs: [{ name: c.payloads[0]!.tensor, shape, datatype: "FP32", parameters: { binary_data_size: bin.length } }], outputs: [{ name: "logits", parameters: { binary_data: true } }] }, bin);
  let r = await send("POST", `/v2/models/${modelOf(v)}/infer`, q.body, q.headers);
  assert.is(r.status, 200, r.body.toString());
  assert.is(r.headers["content-type"], "application/octet-stream");
  let { head, tail } = split(r);
  assert.is(head.outputs[0].parameters.binary_data_size, 40);
  assert.is(head.outputs[0].data, undefined);
  assert.is(Number(r.headers["content-length"]), r.body.length);
  assert.equal(new Uint8Array(tail), c.out);
  // No outputs listed, binary_data_output for all.
  q = binaryRequest({ parameters: { binary_data_output: true }, inputs: [{ name: c.payloads[0]!.tensor, shape, datatype: "FP32", parameters: { binary_data_size: bin.length } }] }, bin);
  r = await send("POST", `/v2/models/${modelOf(v)}/infer`, q.body, q.headers);
  ({ head, tail } = split(r));
  assert.equal(new Uint8Array(tail), c.out);
  // Binary in, JSON out (no Inference-Header-Content-Length in the reply).
  q = binaryRequest({ inputs: [{ name: c.payloads[0]!.tensor, shape, datatype: "FP32", parameters: { binary_data_size: bin.length } }], outputs: [{ name: "logits", parameters: { binary_data: false } }] }, bin);
  r = await send("POST", `/v2/models/${modelOf(v)}/infer`, q.body, q.headers);
  assert.is(r.headers["inference-header-content-length"], undefined);
  assert.equal(dataBytes(json(r).outputs[0].data), c.out);
});

k("a raw binary request (Inference-Header-Content-Length: 0): the one input's float32 bytes, outputs binary", async () => {
  const v = variantsOf("input").find((x) => x.codec.bits === "f32")!;
  const c = cases.get(v.id)!;
  const { values } = valuesOf(c.payloads[0]!.bytes);
  const r = await send("POST", `/v2/models/${NAME}/infer`, f32Bytes(values), { "Content-Type": "application/octet-stream", "Inference-Header-Content-Length": 0 });
  assert.is(r.status, 200, r.body.toString());
  const { head, tail } = split(r);
  assert.equal(head.outputs[0].shape, [1, 10]);
  assert.equal(new Uint8Array(tail), c.out);
  const odd = await send("POST", `/v2/models/${NAME}/infer`, Buffer.alloc(10), { "Inference-Header-Content-Length": 0 });
  assert.is(odd.status, 400);
  assert.match(json(odd).error, /not a whole number of float32/);
});

k("packed payloads as UINT8 and BYTES, for several cuts, the variant from the payload's header or dyno_variant: outputs equal the native protocol's", async () => {
  const packed = [...cases.keys()].map((id) => bundle.manifest.variants.find((v) => v.id === id)!).filter((v) => typeof v.codec.bits === "number");
  const cutsCovered = new Set(packed.map((v) => v.cut));
  assert.ok(cutsCovered.size >= 3, `packed variants over ${cutsCovered.size} cuts`);
  for (const v of packed) {
    const c = cases.get(v.id)!;
    const p = c.payloads[0]!;
    // UINT8 [n], binary, variant named.
    let q = binaryRequest({ parameters: { dyno_variant: v.id }, inputs: [{ name: p.tensor, shape: [p.bytes.length], datatype: "UINT8", parameters: { binary_data_size: p.bytes.length } }], outputs: [{ name: "logits", parameters: { binary_data: true } }] }, p.bytes);
    let r = await send("POST", `/v2/models/${modelOf(v)}/infer`, q.body, q.headers);
    assert.is(r.status, 200, `${v.id}: ${r.body.toString().slice(0, 300)}`);
    assert.equal(new Uint8Array(split(r).tail), c.out, `${v.id} as UINT8`);
    // BYTES [1]: a 4-byte length, then the payload; the variant from its header.
    const len = Buffer.alloc(4);
    len.writeUInt32LE(p.bytes.length);
    q = binaryRequest({ inputs: [{ name: p.tensor, shape: [1], datatype: "BYTES", parameters: { binary_data_size: p.bytes.length + 4 } }] }, len, p.bytes);
    r = await send("POST", `/v2/models/${modelOf(v)}/infer`, q.body, q.headers);
    assert.is(r.status, 200, `${v.id}: ${r.body.toString().slice(0, 300)}`);
    const body = json(r);
    assert.equal(dataBytes(body.outputs[0].data), c.out, `${v.id} as BYTES`);
    assert.is(body.parameters.dyno_variant.split("-").slice(0, 2).join("-"), v.id.split("-").slice(0, 2).join("-"));
  }
  // JSON UINT8 data (small payload: the 4-bit input cut's).
  const small = packed.filter((v) => v.codec.bits === 4).sort((a, b) => cases.get(a.id)!.payloads[0]!.bytes.length - cases.get(b.id)!.payloads[0]!.bytes.length)[0]!;
  const p = cases.get(small.id)!.payloads[0]!;
  const r = await send("POST", `/v2/models/${modelOf(small)}/infer`, JSON.stringify({ parameters: { dyno_variant: small.id }, inputs: [{ name: p.tensor, shape: [1, p.bytes.length], datatype: "UINT8", data: Array.from(p.bytes) }] }));
  assert.is(r.status, 200, r.body.toString());
  assert.equal(dataBytes(json(r).outputs[0].data), cases.get(small.id)!.out);
});

k("gzip and deflate request bodies, a gzip response when accepted, and an unknown encoding refused with what is taken", async () => {
  const v = variantsOf("input").find((x) => x.codec.bits === "f32")!;
  const c = cases.get(v.id)!;
  const { shape, values } = valuesOf(c.payloads[0]!.bytes);
  const text = JSON.stringify({ inputs: [{ name: "input", shape, datatype: "FP32", data: Array.from(values) }] });
  for (const [encoding, body] of [["gzip", gzipSync(text)], ["deflate", deflateSync(text)]] as const) {
    const r = await send("POST", `/v2/models/${NAME}/infer`, body, { "Content-Encoding": encoding, "Accept-Encoding": "gzip;q=1, deflate;q=0.5" });
    assert.is(r.status, 200, `${encoding}: ${r.body.toString().slice(0, 200)}`);
    assert.equal(dataBytes(json(r).outputs[0].data), c.out, encoding);
  }
  // Binary inputs inside a gzip body: Inference-Header-Content-Length counts the uncompressed JSON.
  const bin = f32Bytes(values);
  const q = binaryRequest({ inputs: [{ name: "input", shape, datatype: "FP32", parameters: { binary_data_size: bin.length } }], outputs: [{ name: "logits", parameters: { binary_data: true } }] }, bin);
  const r = await send("POST", `/v2/models/${NAME}/infer`, gzipSync(q.body), { ...q.headers, "Content-Encoding": "gzip" });
  assert.is(r.status, 200, r.body.toString());
  assert.equal(new Uint8Array(split(r).tail), c.out);
  const br = await send("POST", `/v2/models/${NAME}/infer`, text, { "Content-Encoding": "br" });
  assert.is(br.status, 415);
  assert.is(br.headers["accept-encoding"], "gzip, deflate");
  assert.match(json(br).error, /Content-Encoding/);
  const bomb = await send("POST", `/v2/models/${NAME}/infer`, gzipSync(Buffer.alloc(64 << 20)), { "Content-Encoding": "gzip" });
  assert.is(bomb.status, 413, bomb.body.toString());
});

k("bad requests get {\"error\": ...} with the right status, and the server keeps serving", async () => {
  const v = variantsOf("input").find((x) => x.codec.bits === "f32")!;
  const good = JSON.stringify({ inputs: [{ name: "input", shape: [1, 1, 64, 64], datatype: "FP32", data: Array.from(valuesOf(cases.get(v.id)!.payloads[0]!.bytes).values) }] });
  const short = binaryRequest({ inputs: [{ name: "input", shape: [1, 1, 64, 64], datatype: "FP32", parameters: { binary_data_size: 16384 } }] }, Buffer.alloc(8));
  const bad: [string, string, string | Uint8Array, Record<string, string | number>, number, RegExp][] = [
    ["not JSON", NAME, "{inputs:", {}, 400, /not JSON/],
    ["no inputs", NAME, "{}", {}, 400, /inputs/],
    ["unknown input", NAME, JSON.stringify({ inputs: [{ name: "x", shape: [1], datatype: "FP32", data: [1] }] }), {}, 400, /not an input/],
    ["wrong shape", NAME, JSON.stringify({ inputs: [{ name: "input", shape: [1, 3, 64, 64], datatype: "FP32", data: [] }] }), {}, 400, /does not fit/],
    ["too few values", NAME, JSON.stringify({ inputs: [{ name: "input", shape: [1, 1, 64, 64], datatype: "FP32", data: [1, 2] }] }), {}, 400, /values/],
    ["a string value", NAME, JSON.stringify({ inputs: [{ name: "input", shape: [1, 1, 64, 64], datatype: "FP32", data: Array(4096).fill("a") }] }), {}, 400, /not a number/],
    ["unsupported datatype", NAME, JSON.stringify({ inputs: [{ name: "input", shape: [1, 1, 64, 64], datatype: "INT64", data: [] }] }), {}, 400, /datatype INT64/],
    ["binary size past the body", NAME, short.body, short.headers, 400, /binary_data_size 16384 is more than the 8 binary bytes/],
    ["header length past the body", NAME, good, { "Inference-Header-Content-Length": 10 ** 7 }, 400, /Inference-Header-Content-Length/],
    ["not a dyno payload", NAME, JSON.stringify({ inputs: [{ name: "input", shape: [4], datatype: "UINT8", data: [1, 2, 3, 4] }] }), {}, 400, /not a dyno payload/],
    ["unknown variant", NAME, JSON.stringify({ parameters: { dyno_variant: "c999-b4-zstd" }, inputs: [{ name: "input", shape: [4], datatype: "UINT8", data: [1, 2, 3, 4] }] }), {}, 400, /not a variant/],
    ["unknown output", NAME, good.replace(/}$/, ',"outputs":[{"name":"nope"}]}'), {}, 400, /not an output/],
    ["unknown model", `${NAME}.c999`, good, {}, 404, /unknown model/],
  ];
  for (const [what, model, body, headers, status, message] of bad) {
    const r = await send("POST", `/v2/models/${model}/infer`, body, headers);
    assert.is(r.status, status, `${what}: ${r.body.toString().slice(0, 200)}`);
    const e = json(r);
    assert.equal(Object.keys(e), ["error"], what);
    assert.match(e.error, message, what);
  }
  const noToken = await send("POST", `/v2/models/${NAME}/infer`, good, {}, false);
  assert.is(noToken.status, 401);
  assert.type(json(noToken).error, "string");
  const wrongMethod = await send("GET", `/v2/models/${NAME}/infer`);
  assert.is(wrongMethod.status, 405);
  // Still serving, and the native protocol beside it.
  const ok = await send("POST", `/v2/models/${NAME}/infer`, good);
  assert.is(ok.status, 200);
  const c = cases.get(v.id)!;
  const native = decodeResponse(new Uint8Array((await send("POST", "/v1/infer", buildRequest(1, modelId(bundle.manifest), v, c.payloads))).body));
  assert.equal(dataBytes(json(ok).outputs[0].data), new Uint8Array(native.outputs[0]!.data.buffer));
});

k.run();
