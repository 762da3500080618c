// dyno export-variant BUNDLE ID -o DIR: a variant's self-describing graphs, assembled from the
// bundle's segments (the bundle stores no per-variant files; docs/compile.md).
import { join } from "node:path";
import { UsageError } from "../../runtime/common/errors.js";
import { saveModel } from "../../compiler/onnx/export.js";
import { isImageCodec } from "../../runtime/common/manifest.js";
import { openBundle } from "../../runtime/node/bundle.js";
import { variantGraphs } from "../../compiler/bundler/variant-graphs.js";
import type { Command } from "../args.js";
import { humanBytes } from "../format.js";
import { statSync } from "node:fs";

export const exportVariant: Command = {
  name: "export-variant",
  summary: "write a variant's device and cloud graphs (ai.dyno pack/unpack at its cut) as ONNX files",
  usage: "export-variant BUNDLE ID -o DIR",
  help: [
    "  ID                  a variant id of the bundle's manifest (e.g. c12-b4-zstd)",
    "  -o, --out DIR       writes DIR/ID.device.onnx and DIR/ID.cloud.onnx, weights inline",
    "                      (a device-only variant has no graphs: nothing crosses)",
  ].join("\n"),
  options: { out: { type: "string", short: "o" } },
  async run({ values, positionals }) {
    if (positionals.length !== 2) throw new UsageError(`export-variant: expected BUNDLE and ID\nusage: dyno ${exportVariant.usage}`);
    const out = values.out as string | undefined;
    if (!out) throw new UsageError(`export-variant: -o DIR is required\nusage: dyno ${exportVariant.usage}`);
    const [dir, id] = positionals as [string, string];
    const bundle = openBundle(dir);
    const v = bundle.variant(id);
    const graphs = variantGraphs(bundle, v);
    if (isImageCodec(v.codec)) throw new UsageError(`variant ${id} sends the input as a ${v.codec.bits} file: no ONNX op encodes one, so it has no device and cloud graphs (the cloud's graph is the model itself, after decoding the file)`);
    if (!graphs.device || !graphs.cloud) throw new UsageError(`variant ${id} is device-only: nothing crosses, so it has no device and cloud graphs (the model itself is the device's)`);
    for (const [side, model] of [["device", graphs.device], ["cloud", graphs.cloud]] as const) {
      const path = join(out, `${id}.${side}.onnx`);
      saveModel(model, path);
      console.log(`${path}  ${humanBytes(statSync(path).size)}  ${model.graph.nodes.length} nodes`);
    }
    return 0;
  },
};
