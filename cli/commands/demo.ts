// dyno demo (npm start): the main job on the embedded default model. Compiles (or reuses) the
// default fixture's bundle, starts the cloud server, runs an emulated slow device over an
// emulated link whose bandwidth steps Wi-Fi -> 3G -> 4G, prints how cut and bits adapt, compares
// throughput with device-only and cloud-only on each link, and shuts everything down.
import { perSampleDims } from "../../runtime/common/manifest.js";
import { loadCalibration } from "../../compiler/bundler/calibration.js";
import { createDevice } from "../../runtime/node/device.js";
import { startLink, PRESETS, type LinkTrace } from "../../runtime/emu/link.js";
import { runStream } from "../../runtime/device/run.js";
import type { Objective, PolicyName } from "../../runtime/plan/scheduler.js";
import { startServer } from "../../runtime/cloud/server.js";
import type { Command } from "../args.js";
import { cachedBundle, fixture } from "../bundle-cache.js";
import { humanBytes, table } from "../format.js";

export const demo: Command = {
  name: "demo",
  summary: "the main demo: compile, serve, and adapt cut and bits over a Wi-Fi -> 3G -> 4G link (npm start)",
  usage: "demo [--model NAME] [--step-seconds S] [--slowdown F] [--objective throughput]",
  help: [
    "  --model NAME        a fixture of models/fixtures.json (default: its default)",
    "  --step-seconds S    seconds per link step (default 10)",
    "  --slowdown F        the emulated device is F times slower than this machine (default 20)",
    "  --objective O       what the scheduler optimises (default throughput)",
    "  --bundle DIR        where the bundle is kept between runs (default .dyno/<model>.bundle)",
  ].join("\n"),
  options: {
    model: { type: "string" },
    "step-seconds": { type: "string" },
    slowdown: { type: "string" },
    objective: { type: "string" },
    bundle: { type: "string" },
  },
  async run({ values }) {
    const fx = fixture(values.model as string | undefined);
    const modelPath = fx.path;
    const stepSeconds = Number(values["step-seconds"] ?? 10);
    const slowdown = Number(values.slowdown ?? 20);
    const objective = (values.objective ?? "throughput") as Objective;
    const t0 = performance.now();

    // 1. The bundle: reuse it when it was compiled from this model by this dyno.
    const { bundle } = await cachedBundle(fx, values.bundle as string | undefined);
    const m = bundle.manifest;
    const perSample = perSampleDims(m.model.inputs[0]!.shape);
    const data = await loadCalibration(modelPath, { inputDims: perSample });
    const input = (i: number) => data.batch(i % data.count, 1);
    const label = (i: number) => data.labels![i % data.count] as number;

    // 2. Cloud, link, device.
    const server = await startServer({ bundle, port: 0 });
    const trace: LinkTrace = {
      name: "wifi-3g-4g",
      steps: ["wifi", "3g", "4g"].map((p, k) => ({ ...PRESETS[p]!.steps[0]!, at: k * stepSeconds, name: p })),
    };
    const link = await startLink({ target: { host: server.host, port: server.port }, shape: trace });
    console.log(`cloud   dyno serve on ${server.url} (onnxruntime-node, this machine)`);
    console.log(link.describe());
    console.log(`device  emulated: ${slowdown}x slower than this machine; objective ${objective}; accuracy within ${m.calibration.maxAccuracyDrop} pp`);
    const open = (policy: PolicyName) => createDevice({ bundle, cloud: `http://127.0.0.1:${link.port}`, policy, objective, slowdown, timeoutMs: 5000 });

    try {
      // 3. dyno over the trace: print every change of variant.
      console.log("");
      console.log("adapting (a line whenever the link or the chosen variant changes):");
      const device = await open("dyno");
      let last = "";
      let lastStep = "";
      const { summary } = await runStream(device, input, {
        durationMs: stepSeconds * 3 * 1000,
        label,
        onResult: (r, i, ms) => {
          const step = link.current().name ?? "";
          if (r.variant === last && step === lastStep) return;
          last = r.variant;
          lastStep = step;
          const v = m.variants.find((x) => x.id === r.variant);
          const cut = m.cuts.find((c) => c.id === v?.cut);
          const what = r.kind === "device-only" ? "device-only" : r.kind === "cloud-only" ? `cloud-only, input as ${v?.codec.bits}` : `cut ${cut?.id} (${cut?.tensors.length} tensor${cut?.tensors.length === 1 ? "" : "s"}), ${typeof v?.codec.bits === "number" ? `${v?.codec.bits}-bit` : v?.codec.bits} ${v?.codec.lossless}`;
          console.log(`  t=${(ms / 1000).toFixed(1).padStart(5)}s  #${String(i).padStart(4)}  link ${step.padEnd(4)}  ${what.padEnd(38)} ${humanBytes(r.timings.bytes).padStart(9)}  ${r.timings.totalMs.toFixed(1).padStart(6)} ms   ${r.choice.kept ? "" : r.choice.reason.replace(/^dyno\/\w+: /, "")}`);
        },
      });
      await device.close();
      console.log(`  ${summary.count} inferences, top-1 ${(100 * summary.top1!).toFixed(1)}%, ${summary.fellBack} finished locally after a cloud failure`);

      // 4. Throughput on each link: dyno against device-only and cloud-only.
      console.log("");
      console.log(`throughput on each link (${Math.max(0.5, stepSeconds / 4).toFixed(0)} s per strategy, pipelined):`);
      const rows: (string | number)[][] = [];
      for (const preset of ["wifi", "3g", "4g"]) {
        link.setShape(preset);
        const tp: Record<string, { tput: number; bytes: number }> = {};
        for (const policy of ["device-only", "cloud-only", "dyno"] as PolicyName[]) {
          const d = await open(policy);
          const r = await runStream(d, input, { durationMs: Math.max(0.5, stepSeconds / 4) * 1000 });
          await d.close();
          tp[policy] = { tput: r.summary.throughputPerS, bytes: r.summary.bytesPerInference };
        }
        rows.push([
          preset,
          tp["device-only"]!.tput.toFixed(1),
          tp["cloud-only"]!.tput.toFixed(1),
          tp.dyno!.tput.toFixed(1),
          `${(tp.dyno!.tput / tp["device-only"]!.tput).toFixed(2)}x`,
          `${(tp.dyno!.tput / tp["cloud-only"]!.tput).toFixed(2)}x`,
          `${humanBytes(Math.round(tp["cloud-only"]!.bytes))} -> ${humanBytes(Math.round(tp.dyno!.bytes))}`,
        ]);
      }
      console.log(table(["link", "device-only /s", "cloud-only /s", "dyno /s", "vs device-only", "vs cloud-only", "bytes/inference (cloud-only -> dyno)"], rows));
    } finally {
      await link.close();
      await server.close();
    }
    console.log(`done in ${((performance.now() - t0) / 1000).toFixed(0)} s; everything shut down.`);
    return 0;
  },
};
