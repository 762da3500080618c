// Payload format v1 pinned byte for byte: small tensors encoded every way, stored in
// test/kernels/golden-payload-v1.json. A change here is a wire-format change: bump
// PAYLOAD_VERSION (docs/kernels.md) or fix the regression. (An upgrade of a compression library
// may also change its bytes while staying valid v1: then regenerating is right.) Regenerate, then
// review the diff:
//   DYNO_REGEN_GOLDEN=1 npm test -- kernels-golden
import { test } from "uvu";
import * as assert from "uvu/assert";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { decode, encode, initKernels, type Bits, type Codec } from "../kernels/index.js";

const FILE = new URL("./kernels/golden-payload-v1.json", import.meta.url);
await initKernels();

interface Golden { name: string; input: number[]; shape: number[]; bits: Bits; shuffle: boolean; perChannel: boolean; codec: Codec; payload: string; decoded: number[] }

function cases(): Omit<Golden, "payload" | "decoded">[] {
  const relu = [0, 0.5, 0, 1.25, 3, 0, 0.75, 2, 0, 0, 1, 0.25, 2.5, 0, 0.125, 1.5, 0, 3.5, 0.5];
  const signed = [-1.5, 0.25, 2, -0.75, 0, 1, -2, 0.5, 3, -3, 0.125, 1.75];
  const out: Omit<Golden, "payload" | "decoded">[] = [];
  for (const bits of [1, 2, 3, 4, 5, 6, 7, 8, 16, "f16", "f32"] as Bits[]) {
    for (const shuffle of [false, true]) {
      if (typeof bits === "string" && shuffle) continue;
      out.push({ name: `relu bits=${bits} shuffle=${shuffle}`, input: relu, shape: [1, 19], bits, shuffle, perChannel: false, codec: "none" });
    }
  }
  for (const codec of ["lz4", "deflate", "zstd"] as Codec[]) {
    out.push({ name: `zeros 4-bit ${codec}`, input: new Array(256).fill(0), shape: [256], bits: 4, shuffle: false, perChannel: false, codec });
  }
  out.push({ name: "signed per-channel 4-bit", input: signed, shape: [2, 3, 2], bits: 4, shuffle: false, perChannel: true, codec: "none" });
  out.push({ name: "signed per-channel 6-bit shuffled", input: signed, shape: [2, 3, 2], bits: 6, shuffle: true, perChannel: true, codec: "none" });
  out.push({ name: "rank 0", input: [2.5], shape: [], bits: 8, shuffle: false, perChannel: false, codec: "none" });
  out.push({ name: "empty", input: [], shape: [0, 3], bits: 4, shuffle: false, perChannel: false, codec: "none" });
  return out;
}

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

function compute(): Golden[] {
  return cases().map((c) => {
    const bytes = encode(new Float32Array(c.input), c.shape, { bits: c.bits, shuffle: c.shuffle, perChannel: c.perChannel, codec: c.codec });
    return { ...c, payload: hex(bytes), decoded: Array.from(decode(bytes)) };
  });
}

if (process.env.DYNO_REGEN_GOLDEN) {
  writeFileSync(FILE, "[\n" + compute().map((c) => JSON.stringify(c)).join(",\n") + "\n]\n"); // one case per line: reviewable diffs
  console.log(`wrote ${FILE.pathname}`);
}

test("payload format v1: every case encodes to the pinned bytes and decodes to the pinned values", () => {
  assert.ok(existsSync(FILE), "golden file missing: DYNO_REGEN_GOLDEN=1 npm test -- kernels-golden");
  const want: Golden[] = JSON.parse(readFileSync(FILE, "utf8"));
  const got = compute();
  assert.is(got.length, want.length, "case list changed: regenerate and review");
  for (let i = 0; i < want.length; i++) {
    assert.is(got[i].name, want[i].name);
    assert.is(got[i].payload, want[i].payload, `payload bytes changed: ${want[i].name}`);
    assert.equal(got[i].decoded, want[i].decoded, `decoded values changed: ${want[i].name}`);
    // The pinned bytes themselves still decode (readers of v1 keep working).
    assert.equal(Array.from(decode(new Uint8Array(Buffer.from(want[i].payload, "hex")))), want[i].decoded);
  }
});

test.run();
