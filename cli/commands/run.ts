// dyno run BUNDLE --cloud URL[,URL...] [--protocol dyno|kserve] [--objective ...] [--max-accuracy-drop 1] [--link 4g|3g|wifi|TRACE.json] [--inputs DATA]
import { perSampleDims } from "../../runtime/common/manifest.js";
import { readFileSync } from "node:fs";
import cliProgress from "cli-progress";
import { UsageError } from "../../runtime/common/errors.js";
import { openBundle } from "../../runtime/node/bundle.js";
import { bundleCalibration, loadCalibration, preprocessOptions, type Calibration } from "../../compiler/bundler/calibration.js";
import { createDevice } from "../../runtime/node/device.js";
import { parseLinkSpec, startLink, type Link } from "../../runtime/emu/link.js";
import { runStream, summarise, type RunSummary } from "../../runtime/device/run.js";
import { OBJECTIVES, POLICIES, type Objective, type PolicyName } from "../../runtime/plan/scheduler.js";
import type { Command } from "../args.js";
import { humanBytes, table } from "../format.js";

export const run: Command = {
  name: "run",
  summary: "run the device side of a bundle against dyno serve, re-planning cut and bits as it goes",
  usage: "run BUNDLE --cloud URL[,URL...] [--protocol dyno|kserve] [--objective latency] [--max-accuracy-drop 1] [--link 4g|3g|wifi|TRACE.json] [--inputs DATA] [-n N]",
  help: [
    "  --cloud URL[,URL...]        the server (http://host:port) started with dyno serve; several, comma-separated:",
    "                              requests spread over them, and one that fails goes to the next (a failed server",
    "                              is left out for 250 ms, doubling up to 8 s, then tried again)",
    "  --protocol dyno|kserve      dyno's own protocol (default) or KServe v2 REST (HTTP; the payloads as UINT8 tensors)",
    "  --gzip                      with --protocol kserve: gzip request bodies when it pays (float payloads of 1 KiB and more)",
    "  --objective O               latency | throughput | cloud-cost | bytes | energy (default latency)",
    "  --policy P                  dyno (default) | device-only | cloud-only | cloud-only-u8 | cloud-only-jpeg |",
    "                              cloud-only-webp | neurosurgeon | jalad",
    "  --variant ID                run this variant every time (an id of the manifest, e.g. c0-b8-zstd, or device-only), no scheduling",
    "  --max-accuracy-drop PP      offer only variants within PP percentage points (default: the bundle's)",
    "  --latency-slo MS, --throughput-slo N   service-level objectives",
    "  --link SPEC                 emulate the link on loopback: 3g, 4g, 5g, wifi, wifi-3g-4g, or a trace .json",
    "  --inputs DATA               DYNOIMG1 images (default: the bundle's calibration data), or random:N",
    "  -n, --count N               inferences (default: all inputs, at most 200)",
    "  --slowdown F                emulate a device F times slower than this machine (default 1)",
    "  --transport ws|http         for --protocol dyno (default ws);  --token-file F: bearer token for the server(s)",
    "  --no-pipeline               one inference at a time (default: the device computes the next while one is in flight)",
    "  --quiet                     no line per inference",
  ].join("\n"),
  options: {
    cloud: { type: "string" },
    protocol: { type: "string" },
    gzip: { type: "boolean" },
    objective: { type: "string" },
    policy: { type: "string" },
    variant: { type: "string" },
    "max-accuracy-drop": { type: "string" },
    "latency-slo": { type: "string" },
    "throughput-slo": { type: "string" },
    link: { type: "string" },
    inputs: { type: "string" },
    count: { type: "string", short: "n" },
    slowdown: { type: "string" },
    transport: { type: "string" },
    "token-file": { type: "string" },
    "no-pipeline": { type: "boolean" },
    quiet: { type: "boolean" },
  },
  async run({ values, positionals }) {
    if (positionals.length !== 1) throw new UsageError(`run: expected one BUNDLE\nusage: dyno ${run.usage}`);
    const cloudUrl = values.cloud as string | undefined;
    if (!cloudUrl) throw new UsageError(`run: --cloud URL is required (start a server with dyno serve BUNDLE)\nusage: dyno ${run.usage}`);
    const objective = (values.objective ?? "latency") as Objective;
    if (!OBJECTIVES.includes(objective)) throw new UsageError(`--objective "${objective}": one of ${OBJECTIVES.join(", ")}`);
    const policy = (values.policy ?? "dyno") as PolicyName;
    if (!POLICIES.includes(policy)) throw new UsageError(`--policy "${policy}": one of ${POLICIES.join(", ")}`);
    const num = (flag: string) => {
      const v = values[flag];
      if (v === undefined) return undefined;
      const n = Number(v);
      if (!(n >= 0) || !Number.isFinite(n)) throw new UsageError(`--${flag} "${v}" is not a non-negative number`);
      return n;
    };
    const transport = (values.transport ?? "ws") as "ws" | "http";
    if (transport !== "ws" && transport !== "http") throw new UsageError(`--transport "${transport}": ws or http`);
    const protocol = (values.protocol ?? "dyno") as "dyno" | "kserve";
    if (protocol !== "dyno" && protocol !== "kserve") throw new UsageError(`--protocol "${protocol}": dyno or kserve`);
    if (protocol === "kserve" && values.transport === "ws") throw new UsageError("--protocol kserve is HTTP only: drop --transport ws");
    if (values.gzip && protocol !== "kserve") throw new UsageError("--gzip is for --protocol kserve (dyno serve's native protocol takes no compressed bodies)");
    const cloudUrls = cloudUrl.split(",").map((u) => u.trim()).filter((u) => u !== "");
    if (cloudUrls.length === 0) throw new UsageError(`run: --cloud "${cloudUrl}" names no URL`);
    if (values.link && cloudUrls.length > 1) throw new UsageError("--link emulates the device's one link to one server: give one --cloud URL with it");
    const bundle = openBundle(positionals[0]!);
    const m = bundle.manifest;
    const token = values["token-file"] ? readFileSync(values["token-file"] as string, "utf8").trim() : undefined;
    const cal = await inputsFor(m, values.inputs as string | undefined);
    const count = Math.min(num("count") ?? Math.min(cal.count, 200), 1e6);

    let link: Link | null = null;
    let url: string | string[] = cloudUrls;
    if (values.link) {
      const trace = parseLinkSpec(values.link as string);
      const target = new URL(cloudUrls[0]!.replace(/^ws/, "http"));
      link = await startLink({ target: { host: target.hostname, port: Number(target.port || 80) }, shape: trace });
      url = `http://127.0.0.1:${link.port}`;
      console.log(link.describe());
    }
    const slowdown = num("slowdown") ?? 1;
    if (slowdown !== 1) console.log(`device: emulated, ${slowdown}x slower than this machine (onnxruntime-node cpu, 1 thread)`);
    const device = await createDevice({
      bundle, cloud: url, token, transport: protocol === "kserve" ? "http" : transport, protocol, gzip: values.gzip === true, policy, objective, slowdown, variant: values.variant as string | undefined,
      slo: { maxAccuracyDrop: num("max-accuracy-drop"), latencyMs: num("latency-slo"), throughputPerS: num("throughput-slo") },
    });
    const bar = process.stderr.isTTY ? new cliProgress.SingleBar({ format: "{bar} {value}/{total} | {variant}", hideCursor: true, clearOnComplete: true }, cliProgress.Presets.shades_classic) : null;
    bar?.start(count, 0, { variant: "" });
    const print = (line: string) => {
      if (bar) {
        process.stderr.write("\r\x1b[K");
        console.log(line);
      } else console.log(line);
    };
    if (!values.quiet) print("    #  variant              kind         device ms  bytes     link ms  cloud ms  total ms");
    let summary: RunSummary;
    try {
      const input = (i: number) => cal.batch(i % cal.count, 1);
      const label = (i: number) => {
        const l = cal.labels?.[i % cal.count];
        return typeof l === "number" ? l : null;
      };
      if (values["no-pipeline"]) {
        const results = [];
        const t0 = performance.now();
        for (let i = 0; i < count; i++) {
          const r = await device.infer(input(i));
          results.push(r);
          report(r, i);
        }
        summary = { ...summarise(results, (performance.now() - t0) / 1000, label), probes: device.probes };
      } else {
        ({ summary } = await runStream(device, input, { count, label, onResult: (r, i) => report(r, i) }));
      }
    } finally {
      bar?.stop();
      await device.close();
      await link?.close();
    }
    function report(r: Awaited<ReturnType<typeof device.infer>>, i: number) {
      bar?.update(i + 1, { variant: r.variant });
      if (values.quiet) return;
      const t = r.timings;
      print(`${String(i).padStart(5)}  ${r.variant.padEnd(20)} ${(r.kind + (r.fellBack ? "*" : "")).padEnd(12)} ${t.deviceMs.toFixed(1).padStart(9)}  ${humanBytes(t.bytes).padEnd(9)} ${t.transferMs.toFixed(1).padStart(7)}  ${t.cloudMs.toFixed(1).padStart(8)}  ${t.totalMs.toFixed(1).padStart(8)}`);
    }
    printSummary(summary);
    return 0;
  },
};

/** --inputs DATA, else the bundle's calibration data, else `fallback` (random:N). */
export async function inputsFor(m: ReturnType<typeof openBundle>["manifest"], inputs: string | undefined, fallback = "random:64"): Promise<Calibration> {
  const inputDims = perSampleDims(m.model.inputs[0]!.shape);
  if (inputs) return loadCalibration("", { calib: inputs, inputDims, ...preprocessOptions(m.preprocess) });
  return (await bundleCalibration(m)) ?? loadCalibration("", { calib: fallback, inputDims });
}

export function printSummary(s: RunSummary): void {
  console.log(table(["metric", "value"], [
    ["inferences", s.count],
    ["throughput", `${s.throughputPerS.toFixed(1)} /s`],
    ["latency p50 / p95", `${s.latencyP50Ms.toFixed(1)} / ${s.latencyP95Ms.toFixed(1)} ms`],
    ["bytes sent per inference", humanBytes(Math.round(s.bytesPerInference))],
    ["cloud seconds per inference", s.cloudSecondsPerInference.toFixed(5)],
    ["top-1", s.top1 === null ? "-" : `${(100 * s.top1).toFixed(2)}%`],
    ["finished on the device after a cloud failure", s.fellBack],
    ...(s.probes ? [["bandwidth probes", `${s.probes.probes} (${humanBytes(s.probes.bytes)}, ${s.probes.ms.toFixed(0)} ms)`]] : []),
  ]));
  console.log(`variants: ${Object.entries(s.variants).sort((a, b) => b[1] - a[1]).map(([v, n]) => `${v} x${n}`).join(", ")}`);
}
