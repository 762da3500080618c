// Files that are not ONNX models: loadModel throws a ModelError with one line naming the file,
// never a protobufjs RangeError or a Node errno object.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { ModelError } from "../runtime/common/errors.js";
import { loadModel } from "../compiler/onnx/import.js";
import { serializeModel } from "../compiler/onnx/export.js";
import { fixtureModels, smallCnn, tempDir } from "./helpers/onnx.js";

const bad = suite("onnx loadModel: bad input");
const dir = tempDir("bad-input");

function assertLoadFails(path: string, reason: RegExp): void {
  let error: unknown;
  try {
    loadModel(path);
  } catch (e) {
    error = e;
  }
  assert.instance(error, ModelError, `loading ${path} did not throw a ModelError (threw ${String(error)})`);
  const message = (error as Error).message;
  assert.not.match(message, "\n", "one line");
  assert.ok(message.includes(path), `message does not name the file: ${message}`);
  assert.match(message, reason);
}

bad("a truncated model (the first half of a fixture)", () => {
  const [fixture] = fixtureModels();
  const bytes = fixture ? readFileSync(fixture) : serializeModel(smallCnn());
  const path = join(dir, "truncated.onnx");
  writeFileSync(path, bytes.subarray(0, bytes.length >> 1));
  assertLoadFails(path, /truncated|corrupt/);
});

bad("a text file", () => {
  const path = join(dir, "notes.onnx");
  writeFileSync(path, "This is not an ONNX model, just some notes.\n");
  assertLoadFails(path, /not .*ONNX model/);
});

bad("an empty file", () => {
  const path = join(dir, "empty.onnx");
  writeFileSync(path, "");
  assertLoadFails(path, /empty/);
});

bad("a missing path", () => {
  assertLoadFails(join(dir, "no-such-model.onnx"), /no such file/);
});

bad("a directory", () => {
  const path = join(dir, "folder.onnx");
  mkdirSync(path);
  assertLoadFails(path, /directory/);
});

bad.run();
