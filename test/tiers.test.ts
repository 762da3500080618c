// The three-tier planner (runtime/plan/tiers.ts): exhaustive over the device's variant, the
// edge's and the tiling; chains the manifest marks inadmissible are never planned; partial
// re-adjustment keeps the boundary away from the change and is never better than a full plan.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import type { Manifest } from "../runtime/common/manifest.js";
import { planTiers, readjust, tierSpace, type TierSetting } from "../runtime/plan/tiers.js";
import { rng } from "../runtime/common/random.js";

// Four segments; cuts 0 (input), 1, 2, 3 (inner), 4 (output). Bytes shrink with depth.
const cutBytes = [600_000, 400_000, 100_000, 10_000, 40];
function manifest(chains?: { variants: string[]; drop: number }[]): Manifest {
  const cuts = cutBytes.map((bytes, i) => ({ id: i, kind: i === 0 ? "input" : i === 4 ? "output" : "inner", deviceSegments: i, bytes, tensors: [] }));
  const variants = cuts.flatMap((c) =>
    c.kind === "output"
      ? [{ id: `c${c.id}-f32-none`, cut: c.id, codec: { bits: "f32" as const }, wire: { meanBytes: c.bytes }, accuracy: { drop: 0 }, admissible: true }]
      : [8, 4, "f32" as const].map((b) => ({ id: `c${c.id}-${typeof b === "number" ? `b${b}-zstd` : "f32-none"}`, cut: c.id, codec: { bits: b }, wire: { meanBytes: typeof b === "number" ? (c.bytes * b) / 32 / 2 : c.bytes }, accuracy: { drop: b === 4 ? 0.8 : 0 }, admissible: true })),
  );
  return {
    segments: [0, 1, 2, 3].map((index) => ({ index })),
    cuts,
    variants,
    ...(chains ? { tiers: { names: ["device", "edge", "cloud"], chains: chains.map((c) => ({ variants: c.variants, accuracy: { value: 0, drop: c.drop }, admissible: c.drop <= 1 })) } } : {}),
  } as unknown as Manifest;
}

const setting = (de: number, ec: number, tilings: TierSetting["tilings"] = []): TierSetting => ({
  segmentMs: { device: [40, 40, 40, 40], edge: [4, 4, 4, 4], cloud: [1, 1, 1, 1] },
  links: { deviceEdge: { bandwidthMbps: de, rttMs: 2 }, edgeCloud: { bandwidthMbps: ec, rttMs: 20 } },
  tilings,
});

const t = suite("three-tier planner");

t("the best plan over every (device variant, edge variant, tiling): a brute force agrees", () => {
  const m = manifest();
  const space = tierSpace(m);
  const rand = rng(7);
  for (let k = 0; k < 50; k++) {
    const s = setting(1 + rand() * 200, 1 + rand() * 500, [{ from: 1, to: 3, grid: "2x2", workers: 4, spanMs: 2 + rand() * 6 }]);
    const { plan, evaluated } = planTiers(space, s);
    assert.ok(evaluated > 30);
    // Brute force: every plan the planner may take, its latency by the formula written out here.
    let best = Infinity;
    const at = (id: string) => m.variants.find((v) => v.id === id)!;
    for (const a of m.variants) {
      if (a.cut === 4) {
        best = Math.min(best, 160);
        continue;
      }
      const dev = a.cut * 40 + (a.wire.meanBytes * 8) / (s.links.deviceEdge.bandwidthMbps * 1e3) + 2;
      best = Math.min(best, dev + (4 - a.cut) * 4); // the edge finishes
      for (const b of m.variants) {
        if (b.cut === 4 || b.cut < a.cut || (b.cut === a.cut && b.id !== a.id)) continue;
        const edge = Math.min((b.cut - a.cut) * 4, b.cut === 3 && a.cut <= 1 && b.id !== a.id ? (1 - a.cut) * 4 + s.tilings![0]!.spanMs : Infinity);
        best = Math.min(best, dev + edge + (at(b.id).wire.meanBytes * 8) / (s.links.edgeCloud.bandwidthMbps * 1e3) + 20 + (4 - b.cut) * 1);
      }
    }
    assert.ok(Math.abs(plan.latencyMs - best) < 1e-6, `step ${k}: planned ${plan.latencyMs}, brute force ${best}`);
  }
});

t("links decide where the boundaries go; a fast tiling is used; inadmissible chains are never planned", () => {
  const space = tierSpace(manifest());
  // A slow backbone: nothing big crosses it.
  const slow = planTiers(space, setting(100, 0.05)).plan;
  assert.ok(slow.backboneBytes <= 1000, `backbone ${slow.backboneBytes} B over a 50 kbit/s backbone (${slow.device} > ${slow.edge})`);
  // A fast device-edge link and a slow device: the device sends early.
  const early = planTiers(space, setting(1000, 100)).plan;
  assert.is(early.device.startsWith("c0-"), true, `device sends the input (${early.device})`);
  // A tiling 10x faster than the untiled span is taken.
  // (the edge's last segment is slow, so that the cloud finishes)
  const fast = setting(1000, 100, [{ from: 0, to: 3, grid: "2x2", workers: 4, spanMs: 1.2 }]);
  const tiled = planTiers(space, { ...fast, segmentMs: { ...fast.segmentMs, edge: [4, 4, 4, 40] } }).plan;
  assert.is(tiled.grid, "2x2 on 4");
  assert.is(tiled.edge?.startsWith("c3-"), true);
  // Chains: 4 bits at both crossings compound past the drop allowed; the planner avoids them.
  const m = manifest([...["c0", "c1", "c2"].flatMap((a) => ["c1", "c2", "c3"].filter((b) => b > a).flatMap((b) => [8, 4, "f32"].flatMap((x) => [8, 4, "f32"].map((y) => {
    const id = (c: string, bits: number | string) => `${c}-${typeof bits === "number" ? `b${bits}-zstd` : "f32-none"}`;
    return { variants: [id(a, x), id(b, y)], drop: (x === 4 ? 0.8 : 0) + (y === 4 ? 0.8 : 0) };
  }))))]);
  const chained = tierSpace(m);
  for (const [de, ec] of [[10, 1], [100, 5], [1000, 0.5], [5, 50]] as const) {
    const p = planTiers(chained, setting(de, ec)).plan;
    if (p.edge && p.edge !== p.device) assert.not.ok(p.device.includes("-b4-") && p.edge.includes("-b4-"), `${p.device} > ${p.edge} compounds two 4-bit crossings`);
    assert.ok(p.profiled);
  }
});

t("each objective's plan is the best by its own measure: latency, throughput (pipelined), backbone bytes", () => {
  const space = tierSpace(manifest());
  const rand = rng(5);
  for (let k = 0; k < 30; k++) {
    const s = setting(0.5 + rand() * 300, 0.5 + rand() * 300);
    const lat = planTiers(space, s, {}, "latency").plan;
    const thr = planTiers(space, s, {}, "throughput").plan;
    const bb = planTiers(space, s, {}, "backbone-bytes").plan;
    for (const p of [thr, bb]) assert.ok(lat.latencyMs <= p.latencyMs + 1e-9, `step ${k}: latency plan ${lat.latencyMs} vs ${p.latencyMs}`);
    for (const p of [lat, bb]) assert.ok(thr.throughputPerS >= p.throughputPerS - 1e-9, `step ${k}: throughput plan ${thr.throughputPerS} vs ${p.throughputPerS}`);
    for (const p of [lat, thr]) assert.ok(bb.backboneBytes <= p.backboneBytes, `step ${k}: backbone plan ${bb.backboneBytes} vs ${p.backboneBytes}`);
    assert.is(bb.backboneBytes, 0, "the edge or the device can always finish: no backbone bytes at all");
  }
});

t("partial re-adjustment keeps the other boundary, costs fewer evaluations, and is never better than a full plan", () => {
  const space = tierSpace(manifest());
  const rand = rng(11);
  let s = setting(50, 50);
  let plan = planTiers(space, s).plan;
  for (let k = 0; k < 100; k++) {
    const which = rand() < 0.5 ? "device-edge" : "edge-cloud";
    const bw = Math.exp(Math.log(0.5) + rand() * Math.log(1000));
    s = which === "device-edge" ? { ...s, links: { ...s.links, deviceEdge: { ...s.links.deviceEdge, bandwidthMbps: bw } } } : { ...s, links: { ...s.links, edgeCloud: { ...s.links.edgeCloud, bandwidthMbps: bw } } };
    const full = planTiers(space, s);
    const part = readjust(space, s, plan, which);
    assert.ok(part.plan.latencyMs >= full.plan.latencyMs - 1e-9, `step ${k}: partial ${part.plan.latencyMs} beats full ${full.plan.latencyMs}`);
    assert.ok(part.evaluated <= full.evaluated);
    const relayOrLocal = plan.edge === plan.device || plan.device.startsWith("c4-");
    const kept = which === "edge-cloud" ? part.plan.device === plan.device : relayOrLocal || part.plan.edge === plan.edge;
    assert.ok(kept, `step ${k}: a ${which} change moved the other boundary (${plan.device} > ${plan.edge} to ${part.plan.device} > ${part.plan.edge})`);
    plan = part.plan;
  }
});

t.run();
