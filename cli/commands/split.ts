// dyno split MODEL --cut INDEX|TENSOR[,TENSOR...] -o DIR
// dyno split MODEL --cuts all|I,J,K -o DIR
import { analyzeModel } from "../../compiler/pipeline.js";
import { resolveChain, resolveCut, writeIndex, writeSplit } from "../../compiler/split.js";
import { UsageError } from "../../runtime/common/errors.js";
import { parseInputShapes, type Command } from "../args.js";
import { humanBytes, humanCount } from "../format.js";

export const split: Command = {
  name: "split",
  summary: "cut a model into device and cloud parts, or into a chain of segments",
  usage: "split MODEL (--cut INDEX|TENSOR[,TENSOR...] | --cuts all|I,J,K) -o DIR [--input-shape NAME=D1,...]",
  help: [
    "  --cut INDEX|TENSORS     one cut: a candidate index from `dyno inspect`, or tensor names (comma-separated);",
    "                          writes DIR/device.onnx, DIR/cloud.onnx, DIR/cut.json",
    "  --cuts all|I,J,K        a segment chain over these candidate cuts (all: every inner cut);",
    "                          writes DIR/segment-00.onnx ... and DIR/chain.json",
    "  -o, --out DIR           output directory (created)",
    "  --input-shape NAME=D,.. fix an input's dims (repeatable)",
  ].join("\n"),
  options: {
    cut: { type: "string" },
    cuts: { type: "string" },
    out: { type: "string", short: "o" },
    "input-shape": { type: "string", multiple: true },
  },
  async run({ values, positionals }) {
    if (positionals.length !== 1) throw new UsageError(`split: expected one MODEL\nusage: dyno ${split.usage}`);
    const out = values.out as string | undefined;
    if (!out) throw new UsageError(`split: -o DIR is required\nusage: dyno ${split.usage}`);
    if (!values.cut === !values.cuts) throw new UsageError(`split: give exactly one of --cut and --cuts\nusage: dyno ${split.usage}`);
    const a = await analyzeModel(positionals[0]!, { inputShapes: parseInputShapes(values["input-shape"] as string[] | undefined) });
    if (values.cut) {
      const cut = resolveCut(a, values.cut as string);
      const index = writeSplit(a, [cut], out, ["device.onnx", "cloud.onnx"]);
      writeIndex(out, "cut.json", index);
      const c = index.cuts[0]!;
      console.log(`cut ${c.index ?? "(custom)"}: ${c.tensors.map((t) => t.name).join(", ")} — ${humanBytes(c.bytes)} crossing, device ${humanCount(c.deviceMacs)} MACs, cloud ${humanCount(c.cloudMacs)} MACs`);
      for (const p of index.parts) console.log(`wrote ${out}/${p.file} (${humanBytes(p.fileBytes)}, ${humanCount(p.macs)} MACs)`);
      console.log(`wrote ${out}/cut.json`);
    } else {
      const cuts = resolveChain(a, values.cuts as string);
      const names = Array.from({ length: cuts.length + 1 }, (_, i) => `segment-${String(i).padStart(2, "0")}.onnx`);
      const index = writeSplit(a, cuts.map((c) => ({ index: c.index, tensors: c.tensors })), out, names);
      writeIndex(out, "chain.json", index);
      const total = index.parts.reduce((s, p) => s + p.fileBytes, 0);
      console.log(`wrote ${index.parts.length} segments to ${out}/ (${humanBytes(total)} in all) and ${out}/chain.json`);
    }
    return 0;
  },
};
