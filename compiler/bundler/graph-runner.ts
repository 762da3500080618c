// Runs any ONNX graph that contains ai.dyno nodes (a bundle's variant graphs, docs/ops.md):
// onnxruntime sessions for the standard-op regions, the WASM kernels for QuantizePack and
// UnpackDequantize. Regions are found by how many ai.dyno nodes lie on a node's paths from the
// inputs: region r holds the standard nodes behind r of them, so the regions run in order with
// the dyno steps between them. (The executor runs bundles faster from shared segment sessions;
// this runner is what proves the variant graphs themselves compute the same.)
import { encodeOptions } from "../../runtime/exec/executor.js";
import ort from "onnxruntime-node";
import { DynoError } from "../../runtime/common/errors.js";
import { Graph, Model, tensorTypeDesc, type Node } from "../ir/graph.js";
import { topoSort } from "../ir/order.js";
import { serializeModel } from "../onnx/export.js";
import { DYNO_DOMAIN, packSpecOf } from "../passes/insert-pack.js";
import { inferShapes } from "../passes/infer-shapes.js";
import { decodeWithShape, encode, initKernels } from "../../kernels/index.js";
import { openSession } from "../../runtime/node/session.js";

type Step = { kind: "region"; session: ort.InferenceSession } | { kind: "dyno"; node: Node };

export class DynoGraphRunner {
  private constructor(private readonly steps: Step[], private readonly outputs: string[]) {}

  static async open(loaded: Model, options: { optimize?: boolean } = {}): Promise<DynoGraphRunner> {
    await initKernels();
    // Types for every value: a region's inputs must be declared with their real dtype and shape.
    const model = inferShapes(loaded).model;
    const g = model.graph;
    const order = topoSort(g);
    const depth = new Map<Node, number>();
    for (const n of order) {
      let d = 0;
      for (const v of n.reads) if (v.producer) d = Math.max(d, depth.get(v.producer)! + (v.producer.domain === DYNO_DOMAIN ? 1 : 0));
      depth.set(n, d);
    }
    for (const n of order) if (n.domain !== "" && n.domain !== "ai.onnx" && n.domain !== DYNO_DOMAIN) throw new DynoError(`node ${n.label}: domain "${n.domain}" is neither ONNX nor ai.dyno`);
    const steps: Step[] = [];
    const maxDepth = Math.max(0, ...depth.values());
    for (let r = 0; r <= maxDepth; r++) {
      const nodes = order.filter((n) => depth.get(n) === r && n.domain !== DYNO_DOMAIN);
      if (nodes.length) steps.push({ kind: "region", session: await openSession(serializeModel(region(model, nodes)), { optimize: options.optimize }) });
      for (const n of order) if (depth.get(n) === r && n.domain === DYNO_DOMAIN) steps.push({ kind: "dyno", node: n });
    }
    return new DynoGraphRunner(steps, g.outputs.map((v) => v.name));
  }

  async run(feeds: Record<string, ort.Tensor>): Promise<Record<string, ort.Tensor>> {
    const pool: Record<string, ort.Tensor> = { ...feeds };
    for (const step of this.steps) {
      if (step.kind === "region") {
        const s = step.session;
        Object.assign(pool, await s.run(Object.fromEntries(s.inputNames.map((n) => [n, pool[n]!]))));
        continue;
      }
      const n = step.node;
      const spec = packSpecOf(n);
      const x = pool[n.inputs[0]!.name];
      if (!x) throw new DynoError(`${n.label}: input "${n.inputs[0]!.name}" is not available`);
      if (n.opType === "QuantizePack") {
        const bytes = encode(x.data as Float32Array, x.dims as number[], encodeOptions(spec));
        pool[n.outputs[0]!.name] = new ort.Tensor("uint8", bytes, [bytes.length]);
      } else if (n.opType === "UnpackDequantize") {
        const d = decodeWithShape(x.data as Uint8Array);
        pool[n.outputs[0]!.name] = new ort.Tensor("float32", d.data, d.shape);
      } else throw new DynoError(`${n.label}: unknown ai.dyno op "${n.opType}" (docs/ops.md lists QuantizePack and UnpackDequantize)`);
    }
    return Object.fromEntries(this.outputs.map((o) => [o, pool[o]!]));
  }

  async release(): Promise<void> {
    for (const s of this.steps) if (s.kind === "region") await s.session.release();
  }
}

/** A standalone model of `nodes`: inputs are what they read from elsewhere, outputs what others read. */
function region(model: Model, nodes: Node[]): Model {
  const src = model.graph;
  const inside = new Set(nodes);
  const g = new Graph();
  g.name = `${src.name}_region`;
  const produced = new Set(nodes.flatMap((n) => n.outputs.filter((v) => v !== null).map((v) => v!.name)));
  const inputs = new Set<string>();
  for (const n of nodes) {
    for (const v of n.reads) {
      if (produced.has(v.name)) continue;
      if (src.initializers.has(v.name) && !src.inputs.includes(v)) g.addInitializer(src.initializers.get(v.name)!);
      else inputs.add(v.name);
    }
  }
  for (const name of inputs) {
    const s = src.value(name);
    const v = g.value(name);
    v.dtype = s.dtype;
    v.shape = s.shape;
    if (s.dtype === undefined) throw new DynoError(`value "${name}" crosses between regions with an unknown type`);
    v.decl = s.decl ?? { type: tensorTypeDesc(s.dtype, s.shape) };
    g.inputs.push(v);
  }
  for (const n of nodes) g.copyNode(n);
  const graphOutputs = new Set(src.outputs.map((v) => v.name));
  for (const name of produced) {
    const s = src.value(name);
    if (!graphOutputs.has(name) && !s.uses.some((u) => !inside.has(u.node))) continue;
    const v = g.value(name);
    v.decl = { type: s.dtype !== undefined ? tensorTypeDesc(s.dtype, s.shape) : undefined };
    g.outputs.push(v);
  }
  return new Model(g, model.opsets.filter((o) => o.domain !== DYNO_DOMAIN), model.irVersion, { ...model.extra }, `${model.source}#region`);
}
