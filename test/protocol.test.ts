// The wire protocol without sockets: round trips, every malformation a ProtocolError of the right
// kind naming the bad thing, truncation at every length and seeded byte flips never a crash.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { encode, initKernels } from "../kernels/index.js";
import type { Manifest } from "../runtime/common/manifest.js";
import {
  buildRequest, crc32, decodeFrame, decodeRequest, decodeResponse, encodeFrame, encodePing, encodePong, encodeRequest,
  encodeResponse, errorResponse, MAX_HEADER_BYTES, MessageType, modelId, ProtocolError, validateRequest,
  type ErrorKind, type RequestHeader,
} from "../runtime/common/protocol.js";
import { randomFloats, rng } from "../runtime/common/random.js";

const SEED = 20240606;
const SHA = "ab".repeat(32);
const B4 = { bits: 4, perChannel: false, shuffle: false, lossless: "zstd" } as const;
const F32 = { bits: "f32", perChannel: false, shuffle: false, lossless: "none" } as const;

/** The fields of a manifest the protocol reads: one inner cut of one tensor, one output cut. */
const manifest = {
  model: { name: "tiny", sha256: SHA, inputs: [], outputs: [] },
  cuts: [
    { id: 1, kind: "inner", tensors: [{ name: "t", dtype: "float32", shape: ["batch", 4, 2, 2], bytes: 64 }] },
    { id: 2, kind: "output", tensors: [{ name: "y", dtype: "float32", shape: ["batch", 3], bytes: 12 }] },
  ],
  variants: [
    { id: "c1-b4-zstd", cut: 1, codec: B4 },
    { id: "c1-f32-none", cut: 1, codec: F32 },
    { id: "c2-f32-none", cut: 2, codec: F32 },
  ],
} as unknown as Manifest;
const MODEL = modelId(manifest);

let x: Float32Array;
let p4: Uint8Array;
let p32: Uint8Array;

test.before(async () => {
  await initKernels();
  x = randomFloats(16, SEED).map(Math.abs);
  p4 = encode(x, [1, 4, 2, 2], { bits: 4, codec: "zstd", shuffle: false });
  p32 = encode(x, [1, 4, 2, 2], { bits: "f32", codec: "none" });
});

function good(id = 7): Uint8Array {
  return buildRequest(id, MODEL, { id: "c1-b4-zstd", codec: B4 }, [{ tensor: "t", bytes: p4 }]);
}

function header(over: Partial<RequestHeader> = {}, tensor: Partial<RequestHeader["tensors"][0]> = {}): RequestHeader {
  const h = decodeRequest(good()).header;
  return { ...h, ...over, tensors: [{ ...h.tensors[0]!, ...tensor }] };
}

/** decode + validate, as the server does; returns the error (or fails the test when none). */
function rejected(bytes: Uint8Array, kind: ErrorKind, message: RegExp): ProtocolError {
  try {
    validateRequest(manifest, decodeRequest(bytes));
  } catch (e) {
    assert.instance(e, ProtocolError, String(e));
    const err = e as ProtocolError;
    assert.is(err.kind, kind, err.message);
    assert.match(err.message, message);
    return err;
  }
  assert.unreachable(`accepted; expected ${kind} ${message}`);
  throw new Error("unreachable");
}

test("CRC-32 matches the IEEE check value", () => {
  assert.is(crc32(new TextEncoder().encode("123456789")), 0xcbf43926);
  assert.is(crc32(new Uint8Array(0)), 0);
});

test("request round trip: header fields from the variant and the payload, bytes unchanged", () => {
  const r = decodeRequest(good(41));
  assert.is(r.id, 41);
  assert.equal(r.header, {
    variant: "c1-b4-zstd",
    model: SHA.slice(0, 16),
    tensors: [{ name: "t", bytes: p4.length, crc32: crc32(p4), shape: [1, 4, 2, 2], bits: 4, perChannel: false, shuffle: false, codec: "zstd" }],
  });
  const v = validateRequest(manifest, r);
  assert.is(v.variant.id, "c1-b4-zstd");
  assert.equal([...v.payloads[0]!.bytes], [...p4]);
  // A full SHA-256 is accepted as the identity too; a float32 variant with codec none as well.
  validateRequest(manifest, decodeRequest(encodeRequest(2, header({ model: SHA }), [p4])));
  validateRequest(manifest, decodeRequest(buildRequest(3, MODEL, { id: "c1-f32-none", codec: F32 }, [{ tensor: "t", bytes: p32 }])));
});

test("response round trip: outputs bit for bit (NaN, -0, Inf), timing, errors, ping/pong", () => {
  const data = new Float32Array([1.5, -0, NaN, Infinity, -3.25, 1e-40]);
  const timing = { queueMs: 0.5, decodeMs: 0.25, segmentMs: 2, cloudMs: 2.25, totalMs: 3 };
  const bytes = encodeResponse({ id: 9, status: "ok", timing, outputs: [{ name: "y", dims: [2, 3], data }, { name: "z", dims: [0], data: new Float32Array(0) }] });
  const r = decodeResponse(bytes);
  assert.is(r.id, 9);
  assert.is(r.status, "ok");
  assert.equal(r.timing, timing);
  assert.equal(r.outputs.map((o) => [o.name, o.dims]), [["y", [2, 3]], ["z", [0]]]);
  assert.equal([...new Uint8Array(r.outputs[0]!.data.buffer)], [...new Uint8Array(data.buffer)]);
  const e = decodeResponse(errorResponse(5, "overloaded", "too busy"));
  assert.equal([e.id, e.status, e.message, e.outputs.length], [5, "overloaded", "too busy", 0]);
  const pong = decodeResponse(encodePong(12));
  assert.equal([pong.type, pong.id], [MessageType.Pong, 12]);
  assert.is(decodeFrame(encodePing(13)).type, MessageType.Ping);
});

test("malformed frames: magic, version, type, reserved, id 0, header size, JSON, schema", () => {
  const g = good();
  const edit = (f: (b: Uint8Array) => void) => {
    const b = g.slice();
    f(b);
    return b;
  };
  rejected(edit((b) => (b[0] = 0x58)), "bad-request", /bad magic 0x58594e4f: not a dyno protocol message/);
  const v2 = rejected(edit((b) => (b[4] = 2)), "bad-version", /protocol version 2 is not supported: this server speaks version 1/);
  assert.is(v2.id, 7, "the id is read even from a frame of another version");
  rejected(edit((b) => (b[5] = 9)), "bad-request", /unknown message type 9/);
  rejected(edit((b) => (b[5] = MessageType.Response)), "bad-request", /expected a request \(type 1\), got message type 2/);
  rejected(edit((b) => (b[6] = 1)), "bad-request", /reserved bytes/);
  rejected(good(0), "bad-request", /request id 0 is reserved/);
  const big = encodeFrame(MessageType.Request, 3, { pad: "x".repeat(MAX_HEADER_BYTES) });
  rejected(big, "too-large", new RegExp(`header of \\d+ bytes is over the limit of ${MAX_HEADER_BYTES}`));
  rejected(edit((b) => (b[16] = 0x5b)), "bad-request", /header is not UTF-8 JSON/);
  rejected(encodeFrame(MessageType.Request, 3, { variant: "c1-b4-zstd" }), "bad-request", /request header: model: /);
  rejected(encodeRequest(3, header({}, { bits: 17 as never }), [p4]), "bad-request", /request header: tensors\.0\.bits/);
  rejected(encodeRequest(3, { ...header(), extra: 1 } as RequestHeader, [p4]), "bad-request", /request header: \(root\): Unrecognized key/);
});

test("body and checksum: length mismatch either way, a flipped payload byte", () => {
  rejected(encodeRequest(4, header({}, { bytes: p4.length + 1 }), [p4]), "bad-request", new RegExp(`body is ${p4.length} bytes, the header's tensors add up to ${p4.length + 1} \\(truncated\\)`));
  rejected(encodeRequest(4, header({}, { bytes: p4.length - 1 }), [p4]), "bad-request", /\(trailing bytes\)/);
  const flipped = good();
  flipped[flipped.length - 3]! ^= 0x10;
  const e = rejected(flipped, "checksum", /payload for "t": CRC-32 is [0-9a-f]{8}, the header says [0-9a-f]{8} \(corrupted in transit\)/);
  assert.is(e.id, 7);
});

test("against the manifest: bundle, variant, cut tensors, codec, shapes, payload header", () => {
  rejected(encodeRequest(5, header({ model: "cd".repeat(8) }), [p4]), "wrong-bundle", /request is for model cdcdcdcdcdcdcdcd, this server's bundle is "tiny" \(abababababababab\)/);
  rejected(encodeRequest(5, header({ variant: "c9-b4-zstd" }), [p4]), "unknown-variant", /variant "c9-b4-zstd" is not in bundle "tiny" \(variants: c1-b4-zstd, c1-f32-none, c2-f32-none\)/);
  rejected(encodeRequest(5, header({ variant: "c2-f32-none" }), [p4]), "bad-request", /variant "c2-f32-none" is device-only/);
  const two = header();
  rejected(encodeRequest(5, { ...two, tensors: [two.tensors[0]!, two.tensors[0]!] }, [p4, p4]), "bad-request", /expects 1 tensor\(s\) \(t\), the request has 2/);
  rejected(encodeRequest(5, header({}, { name: "u" }), [p4]), "bad-request", /tensor "u" is not a cut tensor of variant "c1-b4-zstd" \(expected "t"\)/);
  rejected(encodeRequest(5, header({}, { bits: 8 }), [p4]), "bad-request", /tensor "t": codec parameters do not match variant "c1-b4-zstd": bits 8 \(variant: 4\)/);
  rejected(encodeRequest(5, header({}, { codec: "lz4", shuffle: true }), [p4]), "bad-request", /shuffle true \(variant: false\), codec lz4 \(variant: zstd\)/);
  rejected(encodeRequest(5, header({}, { shape: [1, 4, 2, 3] }), [p4]), "bad-request", /tensor "t": shape \[1,4,2,3\] does not match the cut tensor \[batch,4,2,2\]/);
  rejected(encodeRequest(5, header({}, { shape: [1, 4, 2] }), [p4]), "bad-request", /does not match the cut tensor/);
  rejected(encodeRequest(5, header({}, { shape: [65, 4, 2, 2] }), [p4]), "bad-request", /does not match the cut tensor/);
  // Header shape fits the cut, the payload's own header says another batch.
  const p4b2 = encode(new Float32Array(32).fill(0.5), [2, 4, 2, 2], { bits: 4, codec: "zstd", shuffle: false });
  rejected(encodeRequest(5, header({}, { bytes: p4b2.length, crc32: crc32(p4b2) }), [p4b2]), "bad-request", /tensor "t": the payload has shape \[2,4,2,2\], the request header says \[1,4,2,2\]/);
  // A float32 payload sent as the 4-bit variant (the header claims 4-bit).
  rejected(encodeRequest(5, header({}, { bytes: p32.length, crc32: crc32(p32) }), [p32]), "bad-request", /tensor "t": the payload is f32 \(none\), variant "c1-b4-zstd" sends 4-bit \(zstd\)/);
  // A payload that is not one.
  const junk = new Uint8Array([1, 2, 3]);
  rejected(encodeRequest(5, header({}, { bytes: 3, crc32: crc32(junk) }), [junk]), "bad-request", /tensor "t": payload: truncated/);
});

test("truncated at every length: a ProtocolError, never a crash (request and response)", () => {
  const req = good(77);
  for (let n = 0; n < req.length; n++) {
    try {
      validateRequest(manifest, decodeRequest(req.subarray(0, n)));
      assert.unreachable(`accepted a request cut to ${n} of ${req.length} bytes`);
    } catch (e) {
      assert.instance(e, ProtocolError, `cut to ${n}: ${e}`);
      assert.is((e as ProtocolError).id, n >= 12 ? 77 : 0, `id of a request cut to ${n}`);
    }
  }
  const res = encodeResponse({ id: 3, status: "ok", timing: { queueMs: 0, decodeMs: 0, segmentMs: 1, cloudMs: 1, totalMs: 1 }, outputs: [{ name: "y", dims: [1, 3], data: new Float32Array([1, 2, 3]) }] });
  for (let n = 0; n < res.length; n++) {
    try {
      decodeResponse(res.subarray(0, n));
      assert.unreachable(`accepted a response cut to ${n} of ${res.length} bytes`);
    } catch (e) {
      assert.instance(e, ProtocolError, `cut to ${n}: ${e}`);
    }
  }
});

test("seeded byte flips: accepted unchanged or a ProtocolError, never anything else", () => {
  const next = rng(SEED);
  const req = good(5);
  let errors = 0;
  for (let i = 0; i < 2000; i++) {
    const b = req.slice();
    const flips = 1 + Math.floor(next() * 3);
    for (let k = 0; k < flips; k++) b[Math.floor(next() * b.length)]! ^= 1 << Math.floor(next() * 8);
    try {
      validateRequest(manifest, decodeRequest(b));
    } catch (e) {
      if (!(e instanceof ProtocolError)) assert.unreachable(`seed ${SEED}, case ${i}: ${(e as Error).stack}`);
      errors++;
    }
  }
  assert.ok(errors > 1900, `${errors} of 2000 flipped requests rejected`);
});

test.run();
