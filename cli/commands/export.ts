// dyno export BUNDLE --format triton -o REPO [--max-batch N]: a Triton / KServe model repository,
// one ensemble per cut, its codes unpacked with standard ONNX ops (compiler/bundler/triton.ts).
import { UsageError } from "../../runtime/common/errors.js";
import { openBundle } from "../../runtime/node/bundle.js";
import { join } from "node:path";
import { DEFAULT_MAX_BATCH, tritonRepository, writeTritonRepository, type TritonTensor } from "../../compiler/bundler/triton.js";
import type { Command } from "../args.js";
import { humanBytes } from "../format.js";

const FORMATS = ["triton"];

export const exportCommand: Command = {
  name: "export",
  summary: "write a bundle's cloud parts as a Triton / KServe model repository (standard ONNX ops only)",
  usage: "export BUNDLE --format triton -o REPO [--max-batch N]",
  help: [
    "  --format triton     a Triton model repository (onnxruntime backend and ensembles): per cut an",
    "                      ensemble named as dyno serve's KServe models, NAME (the whole model, FP32",
    "                      input) and NAME.c<id> per inner cut (inputs bits, T__codes, T__ranges per cut",
    "                      tensor T), with its steps NAME.c<id>.unpack (standard ONNX ops) and the",
    "                      bundle's segments NAME.segment-<kk>: REPO/<model>/config.pbtxt, REPO/<model>/1/",
    "                      model.onnx (docs/serving.md)",
    "  -o, --out REPO      the repository directory (new or empty)",
    `  --max-batch N       max_batch_size when every tensor has a symbolic batch (default ${DEFAULT_MAX_BATCH}; 0: no batching)`,
  ].join("\n"),
  options: {
    format: { type: "string" },
    out: { type: "string", short: "o" },
    "max-batch": { type: "string" },
  },
  async run({ values, positionals }) {
    if (positionals.length !== 1) throw new UsageError(`export: expected one BUNDLE\nusage: dyno ${exportCommand.usage}`);
    const format = values.format as string | undefined;
    if (!format) throw new UsageError(`export: --format is required (${FORMATS.join(", ")})\nusage: dyno ${exportCommand.usage}`);
    if (!FORMATS.includes(format)) throw new UsageError(`export: unknown format "${format}" (formats: ${FORMATS.join(", ")})`);
    const out = values.out as string | undefined;
    if (!out) throw new UsageError(`export: -o REPO is required\nusage: dyno ${exportCommand.usage}`);
    const maxBatchText = (values["max-batch"] as string | undefined) ?? String(DEFAULT_MAX_BATCH);
    if (!/^\d+$/.test(maxBatchText)) throw new UsageError(`export: --max-batch "${maxBatchText}" is not a non-negative integer`);
    const bundle = openBundle(positionals[0]!);
    const repo = tritonRepository(bundle, { maxBatch: Number(maxBatchText) });
    const written = writeTritonRepository(repo, out, bundle.manifest);
    const shape = (t: TritonTensor) => `${t.name} ${t.dataType.replace(/^TYPE_/, "")} [${t.dims.join(",")}]`;
    for (const w of written) {
      const m = w.model;
      if (m.steps) {
        const steps = m.steps.length > 2 ? `${m.steps[0]!.model} -> ... -> ${m.steps.at(-1)!.model} (${m.steps.length} steps)` : m.steps.map((s) => s.model).join(" -> ");
        console.log(`${m.name}  ensemble: ${steps}; inputs ${m.inputs.map(shape).join(", ")}`);
      } else console.log(`${join(w.dir, "1", "model.onnx")}  ${humanBytes(w.bytes)}`);
    }
    console.log(`max_batch_size ${repo.maxBatchSize}${repo.maxBatchSize ? " (dims above without the batch)" : ""}`);
    console.log("");
    const width = Math.max(...repo.variants.map((n) => n.variant.id.length));
    for (const n of repo.variants) console.log(`${n.variant.id.padEnd(width)}  ${n.model ? "-> " : ""}${n.note}`);
    const cuts = written.filter((w) => w.model.cut).length;
    const served = repo.variants.filter((n) => n.model).length;
    console.log(`\nwrote ${written.length} models to ${out} (${cuts} cut models and their steps); ${served} of ${repo.variants.length} variants served, ${repo.variants.length - served} not exported (why: above)`);
    return 0;
  },
};
