// Joining a segment chain back into one model (a transform): the inverse of partitionChain.
//
//   segment-00: input -> a        segment-01: a -> b        segment-02: b -> out
//   joined:     input -> a -> b -> out           (a, b internal; out the only output)
//
// A bundle stores the chain once, not one graph per variant; a variant's device and cloud graphs
// are assembled from it on demand (`dyno export-variant`, `dyno verify`). Segments may each carry
// a copy of the same static values (shape arithmetic recomputed on each side, small constants
// inline): a value already produced or stored by an earlier segment is the same value, so the
// later copy is dropped.
import { GraphError } from "../../runtime/common/errors.js";
import { Graph, Model, copyValueFacts } from "../ir/graph.js";
import { verifyOrThrow } from "../ir/order.js";

/** The segments, run in order, as one model: the first segment's inputs, the last one's outputs. */
export function joinSegments(segments: readonly Model[]): Model {
  if (segments.length === 0) throw new GraphError("join-segments: no segments to join");
  const first = segments[0]!;
  const last = segments[segments.length - 1]!;
  const g = new Graph();
  g.name = first.graph.name.replace(/_segment_?\d+$/, "") || first.graph.name;
  const available = new Set<string>();
  for (const v of first.graph.inputs) {
    if (first.graph.isInitializer(v.name)) continue;
    const w = g.value(v.name);
    copyValueFacts(v, w);
    g.inputs.push(w);
    available.add(v.name);
  }
  for (const [i, s] of segments.entries()) {
    const sg = s.graph;
    for (const v of sg.inputs) {
      if (!sg.isInitializer(v.name) && !available.has(v.name)) {
        throw new GraphError(`join-segments: segment ${i} reads "${v.name}", which no earlier segment produces`);
      }
    }
    for (const [name, t] of sg.initializers) {
      if (available.has(name)) continue;
      g.addInitializer(t);
      available.add(name);
    }
    for (const n of sg.nodes) {
      const outs = n.outputs.filter((v) => v !== null).map((v) => v!.name);
      if (outs.length > 0 && outs.every((o) => available.has(o))) continue;
      g.copyNode(n);
      outs.forEach((o) => available.add(o));
    }
    for (const v of sg.values.values()) if (v.dtype !== undefined && g.has(v.name)) copyValueFacts(v, g.value(v.name));
  }
  for (const v of last.graph.outputs) {
    const w = g.value(v.name);
    copyValueFacts(v, w);
    g.outputs.push(w);
  }
  const opsets = new Map<string, number>();
  for (const s of segments) for (const o of s.opsets) opsets.set(o.domain, Math.max(opsets.get(o.domain) ?? 0, o.version));
  const out = new Model(g, [...opsets].map(([domain, version]) => ({ domain, version })), Math.max(...segments.map((s) => s.irVersion)), { ...first.extra }, first.source.replace(/segment-\d+\.onnx$/, "joined"));
  verifyOrThrow(g, "join-segments");
  return out;
}
