// Writing partitions: `dyno split` for one cut (device.onnx + cloud.onnx + cut.json) and for a
// segment chain (segment-NN.onnx + chain.json). Both index files share one schema (SplitIndex),
// read back by `dyno verify`.
import { mkdirSync, statSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { UsageError } from "../runtime/common/errors.js";
import { byteSize, dtypeName } from "./ir/dtype.js";
import type { Model } from "./ir/graph.js";
import { saveModel } from "./onnx/export.js";
import { computeCosts, numel } from "./passes/costs.js";
import type { CandidateCut } from "./passes/find-cuts.js";
import { partitionChain } from "./passes/partition.js";
import type { Analysis } from "./pipeline.js";

export interface SplitTensor {
  name: string;
  dtype: string;
  shape: (number | string | null)[];
  bytes: number;
}

export interface SplitIndex {
  format: "dyno-split";
  version: 1;
  model: string;
  cuts: { index: number | null; tensors: SplitTensor[]; bytes: number; deviceMacs: number; cloudMacs: number }[];
  parts: { file: string; inputs: string[]; outputs: string[]; macs: number; parameterBytes: number; fileBytes: number }[];
}

/** A cut given as a candidate index ("7") or tensor names ("a,b"); `findCuts` facts resolve it. */
export function resolveCut(a: Analysis, spec: string): { index: number | null; tensors: string[] } {
  const s = spec.trim();
  if (/^\d+$/.test(s)) {
    const cut = a.cuts.cuts[Number(s)];
    if (!cut) throw new UsageError(`cut index ${s} does not exist: "${a.model.source}" has cuts 0..${a.cuts.cuts.length - 1} (see dyno inspect)`);
    return { index: cut.index, tensors: cut.tensors };
  }
  const tensors = s.split(",").map((t) => t.trim()).filter(Boolean);
  const match = a.cuts.cuts.find((c) => c.tensors.length === tensors.length && c.tensors.every((t) => tensors.includes(t)));
  return { index: match?.index ?? null, tensors };
}

export function writeSplit(a: Analysis, cuts: { index: number | null; tensors: string[] }[], dir: string, names: string[]): SplitIndex {
  const parts = partitionChain(a.model, cuts.map((c) => c.tensors));
  mkdirSync(dir, { recursive: true });
  const g = a.model.graph;
  const spec = (name: string): SplitTensor => {
    const v = g.value(name);
    return { name, dtype: dtypeName(v.dtype ?? 0), shape: v.shape ?? [], bytes: byteSize(v.dtype ?? 0, numel(v.shape)) };
  };
  const index: SplitIndex = {
    format: "dyno-split",
    version: 1,
    model: basename(a.model.source),
    cuts: cuts.map((c) => {
      const found = c.index !== null ? a.cuts.cuts[c.index] : undefined;
      const tensors = c.tensors.map(spec);
      return {
        index: c.index,
        tensors,
        bytes: tensors.reduce((s, t) => s + t.bytes, 0),
        deviceMacs: found?.deviceMacs ?? macsBefore(parts, cuts.indexOf(c)),
        cloudMacs: found?.cloudMacs ?? a.cuts.totalMacs - macsBefore(parts, cuts.indexOf(c)),
      };
    }),
    parts: parts.map((p, i) => {
      const file = names[i]!;
      const path = join(dir, file);
      saveModel(p, path);
      const costs = computeCosts(p);
      return {
        file,
        inputs: p.graph.inputs.filter((v) => !p.graph.isInitializer(v.name)).map((v) => v.name),
        outputs: p.graph.outputs.map((v) => v.name),
        macs: costs.totalMacs,
        parameterBytes: costs.totalParamBytes,
        fileBytes: statSync(path).size,
      };
    }),
  };
  return index;
}

function macsBefore(parts: Model[], cutIndex: number): number {
  return parts.slice(0, cutIndex + 1).reduce((s, p) => s + computeCosts(p).totalMacs, 0);
}

export function writeIndex(dir: string, file: string, index: SplitIndex): void {
  writeFileSync(join(dir, file), JSON.stringify(index, null, 2) + "\n");
}

/** Cuts for a chain: "all" (every inner candidate cut) or "i,j,k" (candidate indices, ascending). */
export function resolveChain(a: Analysis, spec: string): CandidateCut[] {
  const all = a.cuts.cuts;
  if (spec === "all") return all.filter((c) => c.kind === "inner");
  const picked = spec.split(",").map((s) => {
    const t = s.trim();
    const cut = /^\d+$/.test(t) ? all[Number(t)] : undefined;
    if (!cut) throw new UsageError(`--cuts: "${t}" is not a cut index of "${a.model.source}" (0..${all.length - 1})`);
    return cut;
  });
  for (let i = 1; i < picked.length; i++) {
    if (picked[i]!.position <= picked[i - 1]!.position) throw new UsageError(`--cuts: indices must be strictly increasing (got ${spec})`);
  }
  return picked;
}
