// What the emulation costs the cloud. The demo, the e2e bench and the acceptance test run the
// emulated device, the link proxy and `dyno serve` on one machine, so every CPU cycle the
// emulation burns is one the cloud does not get. This runs the same pinned variants three ways,
// one after the other and then again in reverse order (so a drift in the machine's load falls on
// every mode alike):
//
//   none    the device (not slowed) talks to the server directly: the cloud's own cost
//   spin    link proxy (Wi-Fi) + device 20x slower, waking through the platform-free spin waker
//   thread  the same, waking through Node's timer thread (runtime/node/waker.ts, the default)
//
// and prints the throughput, the cloud's compute per inference as the server reports it, and the
// process's CPU seconds per second (all threads: device, proxy, server and its worker).
//
//   npm run bench -- emulation [--seconds 3] [--model NAME]
import { parseArgs } from "node:util";
import { cachedBundle, fixture } from "../cli/bundle-cache.js";
import { table } from "../cli/format.js";
import { loadCalibration } from "../compiler/bundler/calibration.js";
import { setWaker, spinWaker } from "../runtime/common/clock.js";
import { perSampleDims } from "../runtime/common/manifest.js";
import { startServer } from "../runtime/cloud/server.js";
import { runStream } from "../runtime/device/run.js";
import { startLink } from "../runtime/emu/link.js";
import { createDevice } from "../runtime/node/device.js";
import { usePreciseTimers } from "../runtime/node/waker.js";

const { values } = parseArgs({ options: { seconds: { type: "string", default: "3" }, model: { type: "string" } } });
const seconds = Number(values.seconds);
const fx = fixture(values.model);
const { bundle } = await cachedBundle(fx);
const m = bundle.manifest;
const data = await loadCalibration(fx.path, { inputDims: perSampleDims(m.model.inputs[0]!.shape) });
const input = (i: number) => data.batch(i % data.count, 1);
const inputCut = m.cuts.find((c) => c.kind === "input")!;
const variants = [
  m.variants.find((v) => v.cut === inputCut.id && v.codec.bits === "f32")!.id,
  m.variants.find((v) => v.cut === inputCut.id && v.codec.bits === 4 && v.codec.lossless === "zstd")?.id,
].filter((v): v is string => v !== undefined);

type Mode = "none" | "spin" | "thread";
const server = await startServer({ bundle, port: 0 });
const link = await startLink({ target: { port: server.port }, shape: "wifi" });

async function once(mode: Mode, variant: string) {
  const cloud = mode === "none" ? server.url : `http://127.0.0.1:${link.port}`;
  const d = await createDevice({ bundle, cloud, variant, slowdown: mode === "none" ? 1 : 20, timeoutMs: 10_000 });
  if (mode === "spin") setWaker(spinWaker);
  else usePreciseTimers();
  await runStream(d, input, { count: 20 });
  const c0 = process.cpuUsage();
  const { summary } = await runStream(d, input, { durationMs: seconds * 1000 });
  const cpu = process.cpuUsage(c0);
  await d.close();
  usePreciseTimers();
  return { tput: summary.throughputPerS, cloudMs: summary.cloudSecondsPerInference * 1000, cpu: (cpu.user + cpu.system) / 1e6 / summary.seconds };
}

console.log(`${fx.name}: the cloud's cost with and without the emulation; ${link.describe()}; ${seconds} s per run, each mode twice (ABC, CBA)`);
const rows: (string | number)[][] = [];
try {
  for (const variant of variants) {
    const acc: Record<Mode, { tput: number; cloudMs: number; cpu: number }[]> = { none: [], spin: [], thread: [] };
    const order: Mode[] = ["none", "spin", "thread"];
    for (const mode of [...order, ...order.slice().reverse()]) acc[mode].push(await once(mode, variant));
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const base = mean(acc.none.map((r) => r.cloudMs));
    for (const mode of order) {
      const r = acc[mode];
      const cloudMs = mean(r.map((x) => x.cloudMs));
      rows.push([variant, mode, mean(r.map((x) => x.tput)).toFixed(1), cloudMs.toFixed(3), mode === "none" ? "1.00x" : `${(cloudMs / base).toFixed(2)}x`, mean(r.map((x) => x.cpu)).toFixed(2)]);
    }
  }
} finally {
  await link.close();
  await server.close();
}
console.log(table(["variant", "mode", "inferences/s", "cloud ms/inference", "vs none", "CPU s/s (process)"], rows));
