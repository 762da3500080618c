// External data: tensors whose bytes live in a side file next to the model. Loading reads them
// by offset and length; saving writes one side file; onnxruntime must run what we save; saving
// onto the very file the model reads from must not corrupt it; bad references name the tensor
// and the file.
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { basename, dirname, join, relative } from "node:path";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { ModelError } from "../runtime/common/errors.js";
import type { Model } from "../compiler/ir/graph.js";
import { externalEntry } from "../compiler/ir/tensor.js";
import { loadModel } from "../compiler/onnx/import.js";
import { saveModel, serializeModel } from "../compiler/onnx/export.js";
import { firstDifference } from "./helpers/diff.js";
import { EXTERNAL_FIXTURE, REPO, decodePlain, encodePlain, fixtureModels, smallCnn, tempDir } from "./helpers/onnx.js";
import { runOrt, seededFeeds } from "./helpers/ort.js";

interface Subject {
  /** A model.onnx whose large initializers are external. */
  path: string;
  /** The same model with every tensor inline. */
  inline: Model;
  label: string;
}

/**
 * test/data/external/model.onnx (python onnx's writer, made from the smallest models/ fixture by
 * models/make_fixtures.py) with its inline twin from models/; without that fixture, our own
 * writer's output for a small CNN.
 */
function subject(): Subject {
  if (existsSync(EXTERNAL_FIXTURE)) {
    const names = initializerNames(loadModel(EXTERNAL_FIXTURE));
    const twin = fixtureModels().map((p) => loadModel(p)).find((m) => initializerNames(m) === names);
    if (!twin) throw new Error(`no models/*.onnx has the initializers of ${relative(REPO, EXTERNAL_FIXTURE)}: rerun models/make_fixtures.py`);
    return { path: EXTERNAL_FIXTURE, inline: twin, label: `${relative(REPO, EXTERNAL_FIXTURE)} (twin ${basename(twin.source)})` };
  }
  const dir = tempDir("external-own");
  const inline = smallCnn();
  saveModel(inline, join(dir, "model.onnx"), { externalData: { location: "model.onnx.data" } });
  console.log(`${relative(REPO, EXTERNAL_FIXTURE)} is absent: testing external data written by our own exporter`);
  return { path: join(dir, "model.onnx"), inline, label: "small CNN saved by dyno" };
}

function initializerNames(m: Model): string {
  return [...m.graph.initializers.keys()].sort().join("\n");
}

/** Every initializer's bytes, by name (reads all external data). */
function allBytes(m: Model): Map<string, Uint8Array> {
  return new Map([...m.graph.initializers].map(([name, t]) => [name, t.bytes()]));
}

function assertSameTensors(actual: Model, expected: Model, what: string): void {
  const a = allBytes(actual);
  const e = allBytes(expected);
  assert.equal([...a.keys()].sort(), [...e.keys()].sort(), `${what}: initializer names`);
  for (const [name, bytes] of e) {
    const diff = firstDifference(a.get(name), bytes, name);
    assert.ok(diff === undefined, `${what}: initializer ${diff}`);
  }
}

function externalCount(m: Model): number {
  return [...m.graph.initializers.values()].filter((t) => t.isExternal).length;
}

/** The data files a model's external tensors name. */
function dataFiles(m: Model): string[] {
  return [...new Set([...m.graph.initializers.values()].flatMap((t) => (t.data.external ? [externalEntry(t.data.external, "location")!] : [])))];
}

/** A copy of the external-data model (model file and data files) in a fresh directory `<tmp>/model/`. */
function copySubject(path: string, prefix: string): string {
  const dir = join(tempDir(prefix), "model");
  mkdirSync(dir);
  copyFileSync(path, join(dir, "model.onnx"));
  for (const f of dataFiles(loadModel(path))) copyFileSync(join(dirname(path), f), join(dir, f));
  return join(dir, "model.onnx");
}

const ext = suite("onnx external data");
const s = subject();

ext(`${s.label}: initializers read from external data equal the inline model's`, () => {
  const model = loadModel(s.path);
  assert.ok(externalCount(model) > 0, `${s.label} has no external tensors`);
  assertSameTensors(model, s.inline, s.label);
});

ext("save with externalData { location: \"w.bin\" } writes one side file that reloads to the same bytes", () => {
  const dir = tempDir("external-save");
  const out = join(dir, "model.onnx");
  saveModel(loadModel(s.path), out, { externalData: { location: "w.bin" } });
  assert.equal(readdirSync(dir).sort(), ["model.onnx", "w.bin"]);
  const back = loadModel(out);
  assert.ok(externalCount(back) > 0, "nothing was written externally");
  assert.equal(dataFiles(back), ["w.bin"]);
  for (const t of back.graph.initializers.values()) {
    if (!t.data.external) continue;
    assert.ok(t.byteLength >= 1024, `"${t.name}" (${t.byteLength} bytes) is under the default threshold but external`);
    assert.is(Number(externalEntry(t.data.external, "offset")) % 64, 0, `"${t.name}" is not 64-byte aligned`);
  }
  assertSameTensors(back, s.inline, "reloaded w.bin model");
  assert.ok(statSync(out).size < statSync(join(dir, "w.bin")).size, "the weights went to w.bin, not the model file");
});

ext("the saved external-data model runs in onnxruntime-node exactly like the inline model", async () => {
  const dir = tempDir("external-ort");
  const out = join(dir, "model.onnx");
  saveModel(loadModel(s.path), out, { externalData: { location: "w.bin" } });
  const feeds = seededFeeds(s.inline);
  const expected = await runOrt(serializeModel(s.inline), feeds);
  const actual = await runOrt(out, feeds);
  assert.equal(Object.keys(actual), Object.keys(expected));
  for (const [name, values] of Object.entries(expected)) {
    const got = actual[name]!;
    let worst = 0;
    for (let i = 0; i < values.length; i++) worst = Math.max(worst, Math.abs(got[i]! - values[i]!));
    assert.ok(worst === 0 && got.length === values.length, `output "${name}": max difference ${worst} over ${values.length} values`);
  }
});

ext("saving a model onto the data file it reads from does not corrupt it", () => {
  const path = copySubject(s.path, "external-self");
  const model = loadModel(path);
  const [location] = dataFiles(model);
  assert.ok(location, "the copy has no data file");
  saveModel(model, path, { externalData: { location: location! } });
  assert.equal(readdirSync(dirname(path)).sort(), ["model.onnx", location!].sort(), "no temporary files are left");
  assertSameTensors(loadModel(path), s.inline, "model re-saved onto its own data file");
  // Once more, now that the layout is ours: the in-memory model still reads the right bytes.
  const again = loadModel(path);
  saveModel(again, path, { externalData: { location: location! } });
  assertSameTensors(again, s.inline, "model after its data file was rewritten");
  assertSameTensors(loadModel(path), s.inline, "model re-saved twice");
});

/** Writes a copy of the subject whose first external tensor's entries are changed by `edit`. */
function corrupted(prefix: string, edit: (entries: { key: string; value: string }[], dataSize: number) => void): { path: string; tensor: string } {
  const path = copySubject(s.path, prefix);
  const plain = decodePlain(readFileSync(path));
  const t = plain.graph.initializer.find((x: { external_data?: unknown }) => x.external_data);
  const location = t.external_data.find((e: { key: string }) => e.key === "location").value;
  edit(t.external_data, statSync(join(dirname(path), location)).size);
  writeFileSync(path, encodePlain(plain));
  return { path, tensor: t.name };
}

function setEntry(entries: { key: string; value: string }[], key: string, value: string): void {
  const e = entries.find((x) => x.key === key);
  if (e) e.value = value;
  else entries.push({ key, value });
}

/** Loading and reading every tensor throws a one-line ModelError naming all of `names`. */
function assertModelError(path: string, names: string[]): void {
  let error: unknown;
  try {
    allBytes(loadModel(path));
  } catch (e) {
    error = e;
  }
  assert.instance(error, ModelError, `no ModelError for ${path}`);
  const message = (error as Error).message;
  assert.not.match(message, "\n");
  for (const n of names) assert.ok(message.includes(n), `message does not name ${n}: ${message}`);
}

ext("errors: missing data file, offset or length beyond the file, location outside the directory", () => {
  const missing = corrupted("external-missing", () => {});
  const dataName = dataFiles(loadModel(missing.path))[0]!;
  rmSync(join(dirname(missing.path), dataName));
  assertModelError(missing.path, [`"${missing.tensor}"`, dataName]);

  const offset = corrupted("external-offset", (entries, size) => setEntry(entries, "offset", String(size + 16)));
  assertModelError(offset.path, [`"${offset.tensor}"`, dataName]);

  const length = corrupted("external-length", (entries, size) => setEntry(entries, "length", String(size * 2)));
  assertModelError(length.path, [`"${length.tensor}"`, dataName]);

  const escape = corrupted("external-escape", (entries) => setEntry(entries, "location", "../x"));
  // ../x exists and holds the right bytes: only the refusal to leave the directory can fail the read.
  copyFileSync(join(dirname(escape.path), dataName), join(dirname(escape.path), "..", "x"));
  assertModelError(escape.path, [`"${escape.tensor}"`, "../x"]);
});

ext.run();
