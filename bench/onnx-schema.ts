// Which protobuf layer should read and write ONNX files? Measures three candidates on fidelity
// (IR 9+ fields, the libonnx-testdata corpus), speed and memory on a ~100 MB model, and browser
// bundle size. docs/onnx-schema.md records the numbers and the decision.
//
//   npm run bench -- onnx-schema        (or: node --import tsx bench/onnx-schema.ts)
//
// Memory is measured in one child process per candidate, so the candidates do not share a heap.
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import { build } from "esbuild";
import { ModelProtoSchema } from "onnx-buf";
import { serializeModel } from "../compiler/onnx/export.js";
import { ModelProto } from "../compiler/onnx/proto.js";
import { firstDifference } from "../test/helpers/diff.js";
import { corpusModels, decodePlain, encodePlain, ir9ModelPlain, matmulChain, REPO } from "../test/helpers/onnx.js";

const require = createRequire(import.meta.url);
const { onnx: onnxProto } = require("onnx-proto") as { onnx: { ModelProto: { decode(b: Uint8Array): unknown; encode(m: unknown): { finish(): Uint8Array } } } };
/** An installed package's version (read from node_modules: some packages do not export package.json). */
const version = (pkg: string) => (JSON.parse(readFileSync(join(REPO, "node_modules", pkg, "package.json"), "utf8")) as { version: string }).version;

interface Candidate {
  key: string;
  label: string;
  decode(bytes: Uint8Array): unknown;
  encode(message: unknown): Uint8Array;
  /** A one-line browser entry point that pulls in what reading and writing a model needs. */
  bundleEntry: string;
}

const CANDIDATES: Candidate[] = [
  {
    key: "onnx-proto",
    label: `onnx-proto ${version("onnx-proto")} (protobufjs 6 static code, ONNX 1.10 / IR 8)`,
    decode: (b) => onnxProto.ModelProto.decode(b),
    encode: (m) => onnxProto.ModelProto.encode(m).finish(),
    bundleEntry: `import { onnx } from "onnx-proto"; globalThis.x = [onnx.ModelProto.decode, onnx.ModelProto.encode];`,
  },
  {
    key: "onnx-buf",
    label: `onnx-buf ${version("onnx-buf")} (@bufbuild/protobuf ${version("@bufbuild/protobuf")}, ONNX 1.20 / IR 11)`,
    decode: (b) => fromBinary(ModelProtoSchema, b),
    encode: (m) => toBinary(ModelProtoSchema, m as Parameters<typeof toBinary<typeof ModelProtoSchema>>[1]),
    bundleEntry: `import { fromBinary, toBinary } from "@bufbuild/protobuf"; import { ModelProtoSchema } from "onnx-buf"; globalThis.x = [fromBinary, toBinary, ModelProtoSchema];`,
  },
  {
    key: "reflection",
    label: `protobufjs ${version("protobufjs")} reflection + onnx-buf descriptor (compiler/onnx/proto.ts)`,
    decode: (b) => ModelProto.decode(b),
    encode: (m) => ModelProto.encode(m as never).finish(),
    bundleEntry: `import { ModelProto } from "./compiler/onnx/proto.ts"; globalThis.x = ModelProto;`,
  },
];

const LARGE_LAYERS = 24;
const LARGE_WIDTH = 1024;
const LARGE_PATH = join(tmpdir(), "dyno-bench", `matmul-chain-${LARGE_LAYERS}x${LARGE_WIDTH}.onnx`);

// ---------------------------------------------------------------------------------- child mode
// `onnx-schema.ts --measure KEY PATH`: decode then encode PATH, print one JSON line.

function measure(key: string, path: string): void {
  const c = CANDIDATES.find((x) => x.key === key)!;
  const mb = (n: number) => Math.round(n / 2 ** 20);
  const peakRss = () => process.resourceUsage().maxRSS * 1024;
  const bytes = readFileSync(path);
  const loaded = { rss: peakRss(), mem: process.memoryUsage() };
  // Cold pass: memory figures.
  let t = performance.now();
  const message = c.decode(bytes);
  const times = { decode: [performance.now() - t], encode: [] as number[] };
  const decoded = { rss: peakRss(), mem: process.memoryUsage() };
  t = performance.now();
  const out = c.encode(message);
  times.encode.push(performance.now() - t);
  const encoded = { rss: peakRss() };
  // Warm passes: timings only (the median of all passes is reported).
  for (let i = 0; i < 4; i++) {
    t = performance.now();
    const m = c.decode(bytes);
    times.decode.push(performance.now() - t);
    t = performance.now();
    c.encode(m);
    times.encode.push(performance.now() - t);
  }
  const alloc = (a: NodeJS.MemoryUsage, b: NodeJS.MemoryUsage) => b.heapUsed - a.heapUsed + b.arrayBuffers - a.arrayBuffers;
  console.log(
    JSON.stringify({
      decodeMs: median(times.decode),
      encodeMs: median(times.encode),
      decodeAllocMB: Math.max(0, mb(alloc(loaded.mem, decoded.mem))),
      rssLoadedMB: mb(loaded.rss),
      rssDecodeMB: mb(decoded.rss),
      rssEncodeMB: mb(encoded.rss),
      sameLength: out.length === bytes.length,
    }),
  );
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1]!;
}

// ---------------------------------------------------------------------------------- fidelity

interface Fidelity {
  ir9: string; // kept fields or the first loss
  unknownKept: boolean; // a field this schema does not know (a future ONNX's) survives
  corpus: { models: number; lengthDiffers: number; contentDiffers: number; throws: number };
}

const IR9_FIELDS: [string, (p: Record<string, any>) => unknown][] = [ // eslint-disable-line @typescript-eslint/no-explicit-any
  ["NodeProto.metadata_props", (p) => p.graph?.node?.[0]?.metadata_props],
  ["NodeProto.device_configurations", (p) => p.graph?.node?.[0]?.device_configurations],
  ["ModelProto.configuration", (p) => p.configuration],
  ["GraphProto.metadata_props", (p) => p.graph?.metadata_props],
  ["TensorProto.metadata_props", (p) => p.graph?.initializer?.[0]?.metadata_props],
];

function fidelity(c: Candidate, corpus: string[]): Fidelity {
  const original = encodePlain(ir9ModelPlain());
  const back = decodePlain(c.encode(c.decode(original)));
  const lost = IR9_FIELDS.filter(([, get]) => get(back) === undefined).map(([name]) => name);
  const diff = firstDifference(back, decodePlain(original));
  const ir9 = lost.length ? `drops ${lost.join(", ")}` : diff ? `differs at ${diff}` : "all kept";
  // ModelProto field 999 (length-delimited) stands for a field a later ONNX adds.
  const future = new TextEncoder().encode("a field from a future ONNX");
  const withUnknown = new Uint8Array([...original, 0xba, 0x3e, future.length, ...future]);
  const unknownOut = c.encode(c.decode(withUnknown));
  const unknownKept = unknownOut.length === withUnknown.length && Buffer.from(unknownOut).includes(Buffer.from(future));
  const counts = { models: corpus.length, lengthDiffers: 0, contentDiffers: 0, throws: 0 };
  for (const path of corpus) {
    const bytes = readFileSync(path);
    try {
      const out = c.encode(c.decode(bytes));
      if (out.length !== bytes.length) counts.lengthDiffers++;
      if (firstDifference(decodePlain(out), decodePlain(bytes))) counts.contentDiffers++;
    } catch {
      counts.throws++;
    }
  }
  return { ir9, unknownKept, corpus: counts };
}

// ---------------------------------------------------------------------------------- bundle size

async function bundleSize(c: Candidate): Promise<{ bytes: number; gzip: number }> {
  const result = await build({
    stdin: { contents: c.bundleEntry, resolveDir: REPO, loader: "ts" },
    bundle: true,
    minify: true,
    format: "esm",
    platform: "browser",
    write: false,
    logLevel: "silent",
  });
  const code = result.outputFiles[0]!.contents;
  return { bytes: code.length, gzip: gzipSync(code).length };
}

// ---------------------------------------------------------------------------------- main

function largeModel(): string {
  if (existsSync(LARGE_PATH)) return LARGE_PATH;
  mkdirSync(join(tmpdir(), "dyno-bench"), { recursive: true });
  const t = performance.now();
  writeFileSync(LARGE_PATH, serializeModel(matmulChain(LARGE_LAYERS, LARGE_WIDTH)));
  console.log(`made ${LARGE_PATH} in ${((performance.now() - t) / 1000).toFixed(1)} s`);
  return LARGE_PATH;
}

async function main(): Promise<void> {
  const corpus = corpusModels() ?? [];
  if (!corpus.length) console.log("libonnx-testdata is not installed: corpus fidelity is measured on 0 models");
  const large = largeModel();
  const size = statSync(large).size;
  console.log(`large model: ${LARGE_LAYERS} MatMul+Add layers of ${LARGE_WIDTH}x${LARGE_WIDTH} float32 (${(LARGE_LAYERS * (LARGE_WIDTH + 1) * LARGE_WIDTH / 1e6).toFixed(1)}M params), ${(size / 1e6).toFixed(1)} MB`);
  console.log(`node ${process.version}, ${process.platform}-${process.arch}\n`);

  const rows: string[][] = [];
  for (const c of CANDIDATES) {
    const fid = fidelity(c, corpus);
    const child = spawnSync(process.execPath, ["--import", "tsx", fileURLToPath(import.meta.url), "--measure", c.key, large], { encoding: "utf8", maxBuffer: 1 << 20 });
    if (child.status !== 0) throw new Error(`measuring ${c.key} failed: ${child.stderr}`);
    const m = JSON.parse(child.stdout.trim().split("\n").pop()!);
    const b = await bundleSize(c);
    console.log(`${c.key}: ${c.label}`);
    rows.push([
      c.key,
      fid.ir9,
      fid.unknownKept ? "kept" : "dropped",
      `${fid.corpus.lengthDiffers} / ${fid.corpus.contentDiffers}${fid.corpus.throws ? ` (${fid.corpus.throws} throw)` : ""} of ${fid.corpus.models}`,
      m.decodeMs.toFixed(0),
      m.encodeMs.toFixed(0),
      String(m.decodeAllocMB),
      `${m.rssLoadedMB} / ${m.rssDecodeMB} / ${m.rssEncodeMB}`,
      `${(b.bytes / 1024).toFixed(1)} / ${(b.gzip / 1024).toFixed(1)}`,
    ]);
  }
  console.log();
  printTable(
    ["candidate", "IR 9+ test model", "unknown field", "corpus: length / content differs", "decode ms", "encode ms", "decode allocates MB", "peak RSS MB: file read / decoded / encoded", "bundle KiB min / gzip"],
    rows,
  );
}

function printTable(head: string[], rows: string[][]): void {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(" | ")} |`;
  console.log(line(head));
  console.log(`|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`);
  for (const r of rows) console.log(line(r));
}

if (process.argv[2] === "--measure") measure(process.argv[3]!, process.argv[4]!);
else await main();
