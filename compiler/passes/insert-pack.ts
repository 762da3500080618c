// Inserts dyno's own ops at a cut (a transform; docs/ops.md specifies them):
//   device part:  ... -> t -> ai.dyno.QuantizePack -> t__payload (uint8[payload_bytes])
//   cloud part:   t__payload -> ai.dyno.UnpackDequantize -> t -> ...
// so each variant's graphs say, in ONNX, what crosses the cut and how it is packed.
import type { CodecSpec } from "../../runtime/common/manifest.js";
import { DynoError, UsageError } from "../../runtime/common/errors.js";
import { DataType } from "../ir/dtype.js";
import { AttrType, Model, tensorTypeDesc, type Attribute } from "../ir/graph.js";
import { verifyOrThrow } from "../ir/order.js";

export const DYNO_DOMAIN = "ai.dyno";
export const DYNO_OPSET = 1;


export function payloadName(tensor: string): string {
  return `${tensor}__payload`;
}

export function packAttributes(spec: CodecSpec): Attribute[] {
  if (spec.bits === "jpeg" || spec.bits === "webp") throw new DynoError(`codec ${spec.bits} is an image file: no ai.dyno op packs one (docs/ops.md)`);
  const text = (s: string) => new TextEncoder().encode(s);
  const format = spec.bits === "f32" ? "float32" : spec.bits === "f16" ? "float16" : "quantized";
  const bits = spec.bits === "f32" ? 32 : spec.bits === "f16" ? 16 : spec.bits;
  return [
    { name: "bits", type: AttrType.INT, i: bits },
    { name: "format", type: AttrType.STRING, s: text(format) },
    { name: "per_channel", type: AttrType.INT, i: spec.perChannel ? 1 : 0 },
    { name: "shuffle", type: AttrType.INT, i: spec.shuffle ? 1 : 0 },
    { name: "codec", type: AttrType.STRING, s: text(spec.lossless) }, // the lossless stage (the op's attribute name)
  ];
}

/** Reads a codec spec back from a QuantizePack / UnpackDequantize node's attributes. */
export function packSpecOf(attrs: { attrInt(n: string, d: number): number; attrString(n: string, d: string): string }): CodecSpec {
  const format = attrs.attrString("format", "quantized");
  const bits = attrs.attrInt("bits", 8);
  return {
    bits: format === "float32" ? "f32" : format === "float16" ? "f16" : (bits as CodecSpec["bits"]),
    perChannel: attrs.attrInt("per_channel", 0) === 1,
    shuffle: attrs.attrInt("shuffle", 0) === 1,
    lossless: attrs.attrString("codec", "none") as CodecSpec["lossless"],
  };
}

function withDynoOpset(model: Model): Model {
  const out = model.clone();
  if (!out.opsets.some((o) => o.domain === DYNO_DOMAIN)) out.opsets.push({ domain: DYNO_DOMAIN, version: DYNO_OPSET });
  return out;
}

/** Device part: every output that crosses the cut leaves as a packed payload. */
export function insertQuantizePack(device: Model, cut: readonly string[], spec: CodecSpec): Model {
  const out = withDynoOpset(device);
  const g = out.graph;
  const outputs = g.outputs.map((v) => v.name);
  g.outputs.length = 0;
  for (const name of outputs) {
    if (!cut.includes(name)) {
      g.outputs.push(g.value(name));
      continue;
    }
    const v = g.value(name);
    if (v.dtype !== DataType.FLOAT) throw new UsageError(`cut tensor "${name}" is not float32; QuantizePack packs float32 activations`);
    const payload = payloadName(name);
    g.addNode("QuantizePack", [name], [payload], { name: `${name}__pack`, domain: DYNO_DOMAIN, attributes: packAttributes(spec) });
    const p = g.value(payload);
    p.dtype = DataType.UINT8;
    p.shape = [`${payload}_bytes`];
    p.decl = { type: tensorTypeDesc(DataType.UINT8, p.shape) };
    g.outputs.push(p);
  }
  verifyOrThrow(g, "insert-pack (device)");
  return out;
}

/** Cloud part: every cut input arrives as a payload and is unpacked to its original name. */
export function insertUnpackDequantize(cloud: Model, cut: readonly string[], spec: CodecSpec): Model {
  const out = withDynoOpset(cloud);
  const g = out.graph;
  const inputs = [...g.inputs];
  g.inputs.length = 0;
  const unpack: [string, string][] = [];
  for (const v of inputs) {
    if (!cut.includes(v.name)) {
      g.inputs.push(v);
      continue;
    }
    const payload = g.value(payloadName(v.name));
    payload.dtype = DataType.UINT8;
    payload.shape = [`${payload.name}_bytes`];
    payload.decl = { type: tensorTypeDesc(DataType.UINT8, payload.shape) };
    g.inputs.push(payload);
    v.decl = undefined;
    unpack.push([payload.name, v.name]);
  }
  // The unpack nodes go first, so the node list stays in topological order.
  const rest = [...g.nodes];
  for (const n of rest) g.removeNode(n);
  for (const [payload, name] of unpack) {
    g.addNode("UnpackDequantize", [payload], [name], { name: `${name}__unpack`, domain: DYNO_DOMAIN, attributes: packAttributes(spec) });
  }
  for (const n of rest) g.copyNode(n);
  for (const [, name] of unpack) {
    const v = g.value(name);
    g.valueInfo.push(name);
    v.decl = { type: tensorTypeDesc(v.dtype ?? DataType.FLOAT, v.shape) };
  }
  verifyOrThrow(g, "insert-pack (cloud)");
  return out;
}
