#!/usr/bin/env node
// Regenerates compiler/onnx/onnx.schema.json: the ONNX protobuf schema as protobufjs reflection
// JSON. Its source is the FileDescriptorProto that the `onnx-buf` package embeds (generated from
// onnx.proto of ONNX 1.20, IR version 11), so every field of current ONNX files is known to the
// reader; docs/onnx-schema.md says why this and not onnx-proto. Run after bumping onnx-buf:
//   node scripts/gen-onnx-schema.js
import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import protobuf from "protobufjs";
import "protobufjs/ext/descriptor.js";

const require = createRequire(import.meta.url);
const pkgPath = require.resolve("onnx-buf/package.json");
const pkg = JSON.parse(readFileSync(pkgPath, "utf8"));
const src = readFileSync(pkgPath.replace(/package\.json$/, pkg.main), "utf8");
const match = src.match(/fileDesc\("([A-Za-z0-9+/=]+)"/);
if (!match) throw new Error(`no embedded FileDescriptorProto found in onnx-buf ${pkg.version}`);

const file = Buffer.from(match[1], "base64");
// A FileDescriptorSet is `repeated FileDescriptorProto file = 1`: one length-delimited field.
const set = protobuf.Writer.create().uint32((1 << 3) | 2).bytes(file).finish();
const root = protobuf.Root.fromDescriptor(set);
const json = { source: `onnx-buf@${pkg.version} (embedded onnx.proto descriptor)`, ...root.toJSON() };
const out = new URL("../compiler/onnx/onnx.schema.json", import.meta.url);
writeFileSync(out, JSON.stringify(json, null, 1) + "\n");
console.log(`wrote ${out.pathname} from onnx-buf@${pkg.version}`);
