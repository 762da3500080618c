// dyno inspect MODEL [--input-shape NAME=D,...] [--json]
import { dtypeName } from "../../compiler/ir/dtype.js";
import type { Value } from "../../compiler/ir/graph.js";
import { analyzeModel, type Analysis } from "../../compiler/pipeline.js";
import { fmt } from "../../compiler/passes/infer-shapes.js";
import { parseInputShapes, type Command } from "../args.js";
import { humanBytes, humanCount, table } from "../format.js";
import { UsageError } from "../../runtime/common/errors.js";
import { writeFileSync } from "node:fs";
import { basename } from "node:path";
import { cutPlotSvg } from "../plot.js";

export const inspect: Command = {
  name: "inspect",
  summary: "per-node shapes, MACs and output bytes of an ONNX model",
  usage: "inspect MODEL [--input-shape NAME=D1,D2,...] [--json]",
  help: [
    "  --input-shape NAME=D1,D2,...   fix an input's dims (repeatable), e.g. input=1,3,224,224",
    "  --json                         print the same data as JSON",
    "  --plot FILE.svg                draw bytes crossing and device MACs per candidate cut",
  ].join("\n"),
  options: {
    "input-shape": { type: "string", multiple: true },
    json: { type: "boolean" },
    plot: { type: "string" },
  },
  async run({ values, positionals }) {
    if (positionals.length !== 1) throw new UsageError(`inspect: expected one MODEL, got ${positionals.length}\nusage: dyno ${inspect.usage}`);
    const analysis = await analyzeModel(positionals[0]!, { inputShapes: parseInputShapes(values["input-shape"] as string[] | undefined) });
    const report = inspectReport(analysis);
    if (values.json) console.log(JSON.stringify(report, null, 2));
    else console.log(renderInspect(report));
    if (values.plot) {
      const file = values.plot as string;
      const inputBytes = report.cuts[0]?.bytes ?? 0;
      const points = report.cuts.map((c) => ({ index: c.index, bytes: c.bytes, devicePercent: c.deviceMacsPercent, dominated: c.dominated, label: c.tensors.join(", ") }));
      writeFileSync(file, cutPlotSvg(`${basename(report.model)}: bytes crossing and device MACs per cut`, points, inputBytes));
      if (!values.json) console.log(`plot        ${file}`);
    }
    return 0;
  },
};

export interface TensorInfo {
  name: string;
  dtype: string;
  shape: (number | string | null)[] | null;
}

function info(v: Value): TensorInfo {
  return { name: v.name, dtype: v.dtype === undefined ? "unknown" : dtypeName(v.dtype), shape: v.shape ?? null };
}

export function inspectReport(a: Analysis) {
  const g = a.model.graph;
  let cumulative = 0;
  const total = a.costs.totalMacs || 1;
  return {
    model: a.model.source,
    irVersion: a.model.irVersion,
    producer: [a.model.extra.producer_name, a.model.extra.producer_version].filter(Boolean).join(" ") || undefined,
    opsets: a.model.opsets.map((o) => ({ domain: o.domain || "ai.onnx", version: o.version })),
    inputs: g.inputs.filter((v) => !g.isInitializer(v.name)).map(info),
    outputs: g.outputs.map(info),
    nodeCount: g.nodes.length,
    parameters: a.costs.totalParams,
    parameterBytes: a.costs.totalParamBytes,
    totalMacs: a.costs.totalMacs,
    costsAssume: "symbolic dims = 1 (one input per inference)",
    shapesFromOnnxruntime: a.observed,
    unsupportedOps: a.unsupportedOps,
    cuts: a.cuts.cuts.map((c) => ({
      index: c.index,
      kind: c.kind,
      tensors: c.tensors,
      bytes: c.bytes,
      deviceMacs: c.deviceMacs,
      deviceMacsPercent: Number(((100 * c.deviceMacs) / total).toFixed(2)),
      cloudMacs: c.cloudMacs,
      dominated: c.dominated,
    })),
    nodes: a.costs.nodes.map((c, index) => {
      cumulative += c.macs;
      return {
        index,
        name: c.node.name,
        op: c.node.domain ? `${c.node.domain}.${c.node.opType}` : c.node.opType,
        outputs: c.node.outputs.filter((v): v is Value => v !== null).map(info),
        macs: c.macs,
        cumulativeMacsPercent: Number(((100 * cumulative) / total).toFixed(2)),
        outputBytes: c.outputBytes,
        paramBytes: c.paramBytes,
      };
    }),
  };
}

export type InspectReport = ReturnType<typeof inspectReport>;

export function renderInspect(r: InspectReport): string {
  const rows = r.nodes.map((n) => [
    n.index,
    n.name || "-",
    n.op,
    n.outputs.map((o) => `[${fmt(o.shape ?? undefined)}]`).join(" "),
    humanCount(n.macs),
    `${n.cumulativeMacsPercent.toFixed(1)}%`,
    humanBytes(n.outputBytes),
  ]);
  const cutRows = r.cuts.map((c) => [c.index, c.kind, shorten(c.tensors), humanBytes(c.bytes), `${c.deviceMacsPercent.toFixed(1)}%`, c.dominated ? "dominated" : ""]);
  const t = (x: TensorInfo) => `${x.name} ${x.dtype}[${fmt(x.shape ?? undefined)}]`;
  const lines = [
    table(["#", "name", "op", "output shape", "MACs", "cum MACs", "out bytes"], rows),
    "",
    "candidate cuts (float32 bytes crossing; dominated: another cut has fewer bytes and no more device work)",
    table(["cut", "kind", "tensors", "bytes", "device MACs", ""], cutRows),
    "",
    `model       ${r.model}${r.producer ? ` (${r.producer})` : ""}, IR ${r.irVersion}, ${r.nodeCount} nodes`,
    `inputs      ${r.inputs.map(t).join(", ")}`,
    `outputs     ${r.outputs.map(t).join(", ")}`,
    `opsets      ${r.opsets.map((o) => `${o.domain} ${o.version}`).join(", ")}`,
    `parameters  ${humanCount(r.parameters)} (${humanBytes(r.parameterBytes)})`,
    `total MACs  ${humanCount(r.totalMacs)} per input (${r.costsAssume})`,
  ];
  if (r.shapesFromOnnxruntime.length) {
    lines.push(`note        ${r.shapesFromOnnxruntime.length} shape(s) observed with onnxruntime (no static rule${r.unsupportedOps.length ? ` for ${r.unsupportedOps.join(", ")}` : ""})`);
  }
  return lines.join("\n");
}

function shorten(names: string[]): string {
  const shown = names.slice(0, 2).join(", ");
  const text = names.length > 2 ? `${shown} (+${names.length - 2})` : shown;
  return text.length > 70 ? `${text.slice(0, 67)}...` : text;
}
