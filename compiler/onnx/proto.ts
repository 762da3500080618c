// The ONNX protobuf schema, loaded once with protobufjs reflection from onnx.schema.json
// (regenerate with scripts/gen-onnx-schema.js; docs/onnx-schema.md says why this schema).
// Only import.ts and export.ts use this module.
import protobuf from "protobufjs";
import schema from "./onnx.schema.json" with { type: "json" };

const root = protobuf.Root.fromJSON(schema as protobuf.INamespace);

export const ModelProto = root.lookupType("onnx.ModelProto");
export const SCHEMA_SOURCE = (schema as { source: string }).source;

/**
 * Plain-object conversion options: int64 as decimal strings (exact, unlike numbers), bytes kept
 * as Uint8Array views (no copy), absent fields absent.
 */
export const PLAIN: protobuf.IConversionOptions = { longs: String, enums: Number, defaults: false, arrays: false };

/** A decoded message as plain data with ONNX's field names. */
export type Plain = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
