// Tensor accessors over the data forms a file can hold.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { DataType } from "../compiler/ir/dtype.js";
import { Tensor } from "../compiler/ir/tensor.js";

const tensor = suite("ir Tensor");

tensor("values of raw bytes that are a view into a larger Node Buffer (as protobufjs decodes them)", () => {
  const file = Buffer.alloc(64, 0xff);
  file.writeFloatLE(1.5, 5);
  file.writeFloatLE(-2, 9);
  const t = Tensor.fromBytes("w", DataType.FLOAT, [2], file.subarray(5, 13));
  assert.equal(Array.from(t.toFloat32()), [1.5, -2]);
  assert.equal(t.toNumbers(), [1.5, -2]);
  const half = Tensor.fromBytes("h", DataType.FLOAT16, [2], Buffer.from([0xaa, 0x00, 0x3c, 0x00, 0xc0]).subarray(1));
  assert.equal(half.toNumbers(), [1, -2]);
});

tensor("typed data fields decode to the same bytes as raw_data", () => {
  const ints = new Tensor("i", DataType.INT64, [2], { int64s: [2n ** 63n - 1n, -1n] });
  assert.equal(Array.from(new BigInt64Array(ints.bytes().slice().buffer)), [2n ** 63n - 1n, -1n]);
  assert.equal(ints.toNumbers(), [Number.MAX_SAFE_INTEGER, -1], "int64 beyond 2^53 saturates");
  const f16 = new Tensor("h", DataType.FLOAT16, [2], { int32s: [0x3c00, 0xc000] });
  assert.equal(f16.toNumbers(), [1, -2]);
  const f32 = new Tensor("f", DataType.FLOAT, [3], { floats: [0.5, -0, 3] });
  assert.equal(Array.from(f32.toFloat32()), [0.5, -0, 3]);
  assert.is(f32.byteLength, 12);
});

tensor.run();
