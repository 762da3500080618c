// The scheduler's acceptance, on what a user runs: `npm start` (dyno demo, its defaults: 10 s
// per link step, a device 20x slower than this machine, the throughput objective), read back
// from its output (about 2 minutes).
//
//   - on every link, dyno's throughput (a fresh device) is at least 0.95x the better of
//     device-only and cloud-only (five runs, two with a CPU hog: 1.12-1.45x on Wi-Fi,
//     1.11-1.14x on 3G, 2.17-2.49x on 4G);
//   - over the trace dyno finishes at least 85% of what the oracle does (each step's best fixed
//     variant pinned from its start, over the same trace): measured 94.5-99.1% in those runs,
//     and 88.3-98.9% in the test's own runs (a fresh clone: on Wi-Fi the device can settle on a
//     variant 10-15% slower than the best, measured in the first second, when the process is
//     slower than it is later). The bound sits below the lowest of ten runs;
//   - per step at most 12 switches of variant, and at most 8 trials (deliberate exploration, two
//     switches each): measured 2-11 switches;
//   - nothing finished locally after a cloud failure.
//
// Robust by design: every comparison is between strategies measured in the same process on the
// same emulated link, one after another, after a warm-up; the bounds sit well inside what five
// runs (two with a CPU hog on one core) measured.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { runDynoAsync } from "./fixtures.js";

const accept = suite("acceptance: npm start, as a user runs it");
const dir = mkdtempSync(join(tmpdir(), "dyno-accept-"));
accept.after(() => rmSync(dir, { recursive: true, force: true }));

accept("dyno beats the better fixed policy on every link, reaches 85% of the oracle over the trace, and switches a few times per step", async () => {
  const r = await runDynoAsync(["demo", "--bundle", join(dir, "bundle")], { timeoutMs: 300_000 });
  assert.is(r.code, 0, r.stderr);
  const out = r.stdout;
  const failures: string[] = [];
  for (const link of ["wifi", "3g", "4g"]) {
    const row = new RegExp(`^${link}\\s+([\\d.]+)\\s+([\\d.]+)\\s+([\\d.]+)\\s+([\\d.]+)x`, "m").exec(out);
    assert.ok(row, `no row for ${link} in:\n${out}`);
    const [deviceOnly, cloudOnly, dyno] = [Number(row![1]), Number(row![2]), Number(row![3])];
    const ratio = dyno / Math.max(deviceOnly, cloudOnly);
    if (!(ratio >= 0.95)) failures.push(`${link}: dyno ${dyno}/s is ${ratio.toFixed(2)}x the better of device-only ${deviceOnly}/s and cloud-only ${cloudOnly}/s`);
  }
  const steps = [...out.matchAll(/^\s+(\d)\s+(wifi|3g|4g)\s+([\d.]+)\s+([\d.]+) \S+\s+([\d.]+)x\s+(\d+)\s+(\d+)/gm)];
  assert.is(steps.length, 3, `three steps in the trace table:\n${out}`);
  for (const s of steps) {
    const [switches, trials] = [Number(s[6]), Number(s[7])];
    if (switches > 12) failures.push(`step ${s[1]} (${s[2]}): ${switches} switches`);
    if (trials > 8) failures.push(`step ${s[1]} (${s[2]}): ${trials} trials`);
  }
  const whole = /the whole trace: dyno (\d+) inferences, the oracle (\d+): ([\d.]+)%/.exec(out);
  assert.ok(whole, out);
  if (!(Number(whole![3]) >= 85)) failures.push(`over the trace dyno finished ${whole![3]}% of the oracle's inferences`);
  assert.match(out, /\d+ inferences, top-1 \d+\.\d%, 0 finished locally after a cloud failure/);
  assert.match(out, /link: emulated trace wifi-3g-4g/);
  assert.match(out, /device\s+emulated: 20x slower/);
  assert.match(out, /everything shut down/);
  console.log(`\n  acceptance: ${out.split("\n").filter((l) => /^(wifi|3g|4g) |^\s+\d\s+(wifi|3g|4g)|the whole trace/.test(l)).join("\n  ")}`);
  assert.equal(failures, [], `${failures.join("\n")}\n\n${out}`);
});

accept("a second run reuses the bundle; --step-seconds shortens the steps", async () => {
  const r = await runDynoAsync(["demo", "--step-seconds", "1", "--bundle", join(dir, "bundle")], { timeoutMs: 120_000 });
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stdout, /\(reused\)/);
  assert.match(r.stdout, /1 s: 3g 2 Mbit\/s/);
  for (const link of ["wifi", "3g", "4g"]) assert.match(r.stdout, new RegExp(`^${link}\\s+[\\d.]+\\s+[\\d.]+\\s+[\\d.]+\\s+[\\d.]+x`, "m"));
});

accept.run();
