// The page of `dyno serve --page` (built to dist/browser/app.js): the device half runs here on
// onnxruntime-web, the cloud half on the server; the scheduler picks cut and bits before every
// inference from what this page measures. No framework: a loop, a few elements, one SVG.
//
// window.dynoPage is the page's state, read by test/browser.test.ts and handy in the console.
import { createDevice, fetchBundle, hasWebGpu, type Device, type Inference } from "../index.js";
import type { Bundle } from "../../common/bundle.js";
import type { Objective } from "../../plan/scheduler.js";
import { argmax } from "../../common/stats.js";

interface Config {
  model: string;
  input: { name: string; dims: number[] };
  preprocess: { scale: number; mean: number[]; std: number[]; layout?: "nchw" | "nhwc"; channelOrder: "rgb" | "bgr" } | null;
  slowdown: number;
  direct: string;
  links: { name: string; url: string; bandwidthMbps: number; rttMs: number }[];
  samples: { label: unknown }[];
  classNames: string[] | null;
  variants: { id: string; cut: number; bits: number | string; lossless: string }[];
  cuts: { id: number; kind: string; deviceSegments: number }[];
  segments: number;
}

export interface PageResult {
  n: number;
  /** The sample index (-1: a dropped image). */
  sample: number;
  link: string;
  variant: string;
  kind: Inference["kind"];
  fellBack: boolean;
  deviceSegments: number;
  deviceMs: number;
  transferMs: number;
  cloudMs: number;
  totalMs: number;
  bytes: number;
  top1: number;
  /** The first output's values (kept for the first 64 results, for checks). */
  output: number[] | null;
}

const state = {
  ready: false,
  error: null as string | null,
  /** "wasm", or "webgpu" when the page was opened with #ep=webgpu and the browser has an adapter. */
  backend: "wasm",
  link: "direct",
  objective: "latency" as Objective,
  running: true,
  results: [] as PageResult[],
  /** Run these samples in order first (tests), then cycle through all. */
  queue: [] as number[],
  /** Run this variant every time (an id, "device-only", "cloud-only"), or let the scheduler pick (null). */
  pinned: null as string | null,
  pin: (id: string | null) => void (state.pinned = id),
  setLink: (name: string) => selectLink(name),
  setObjective: (o: Objective) => selectObjective(o),
  pause: () => void (state.running = false),
  resume: () => void ((state.running = true), loop()),
};
(globalThis as unknown as { dynoPage: typeof state }).dynoPage = state;

const $ = (id: string) => document.getElementById(id)!;
const token = new URLSearchParams(location.hash.slice(1)).get("token") ?? undefined;
const auth: Record<string, string> = token ? { Authorization: `Bearer ${token}` } : {};

let config: Config;
let bundle: Bundle;
let device: Device | null = null;
let samples: Float32Array[] = [];
let dropped: Float32Array | null = null;
let next = 0;
let looping = false;
const size = () => config.input.dims.reduce((a, b) => a * b, 1);

async function main() {
  const res = await fetch("config.json", { headers: auth });
  if (res.status === 401) throw new Error("the server wants a token: open this page with #token=... (dyno serve prints the URL)");
  if (!res.ok) throw new Error(`config.json: HTTP ${res.status}`);
  config = (await res.json()) as Config;
  $("model").textContent = `${config.model} · input ${config.input.name} [${config.input.dims.join("×")}]`;
  samples = await Promise.all(config.samples.map(async (_, i) => {
    const r = await fetch(`samples/${i}`, { headers: auth });
    if (!r.ok) throw new Error(`samples/${i}: HTTP ${r.status}`);
    return new Float32Array(await r.arrayBuffer());
  }));
  bundle = await fetchBundle(new URL("bundle/", location.href).href, { token });
  const links = $("links");
  for (const l of [{ name: "direct", bandwidthMbps: 0, rttMs: 0 }, ...config.links]) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = l.name;
    b.title = l.name === "direct" ? "straight to the server" : `${l.bandwidthMbps} Mbit/s, ${l.rttMs} ms RTT (emulated)`;
    b.dataset.link = l.name;
    b.onclick = () => selectLink(l.name);
    links.append(b);
  }
  const wanted = new URLSearchParams(location.hash.slice(1)).get("link");
  state.link = wanted && config.links.some((l) => l.name === wanted) ? wanted : "direct";
  pressed();
  ($("objective") as HTMLSelectElement).onchange = (e) => selectObjective((e.target as HTMLSelectElement).value as Objective);
  $("run").onclick = () => (state.running ? state.pause() : state.resume(), ($("run").textContent = state.running ? "pause" : "run"));
  setupDrop();
  await openDevice();
  state.ready = true;
  void loop();
}

function linkUrl(name: string): string {
  return name === "direct" ? config.direct : config.links.find((l) => l.name === name)!.url;
}

async function openDevice() {
  const old = device;
  device = null;
  await old?.close();
  const ep = new URLSearchParams(location.hash.slice(1)).get("ep") === "webgpu" && (await hasWebGpu()) ? "webgpu" : "wasm";
  device = await createDevice({ bundle, cloud: linkUrl(state.link), token, objective: state.objective, slowdown: config.slowdown, timeoutMs: 10_000, backend: { executionProvider: ep } });
  state.backend = ep;
  const isolated = (globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated ? "cross-origin isolated" : "not isolated";
  $("status").textContent = `device half: onnxruntime-web (${ep}) in this browser, ${isolated}, emulated ${config.slowdown}× slower; cloud half: the server, over the link you pick.`;
}

function selectLink(name: string) {
  if (name !== "direct" && !config.links.some((l) => l.name === name)) throw new Error(`no link "${name}"`);
  state.link = name;
  pressed();
  device?.setCloud(linkUrl(name));
  log(`link → ${name}`);
}

async function selectObjective(o: Objective) {
  state.objective = o;
  ($("objective") as HTMLSelectElement).value = o;
  log(`objective → ${o}`);
  const wasRunning = state.running;
  state.running = false;
  while (looping) await new Promise((r) => setTimeout(r, 10));
  await openDevice();
  state.running = wasRunning;
  void loop();
}

function pressed() {
  for (const b of Array.from($("links").querySelectorAll("button"))) b.setAttribute("aria-pressed", String(b.dataset.link === state.link));
}

async function loop() {
  if (looping) return;
  looping = true;
  try {
    while (state.running && device) {
      const sample = dropped ? -1 : state.queue.length ? state.queue.shift()! : next++ % samples.length;
      const input = sample === -1 ? dropped! : samples[sample]!;
      const link = state.link;
      const r = await device.infer(input, state.pinned === null ? undefined : { variant: state.pinned });
      show(r, sample, input, link);
      await new Promise((res) => setTimeout(res, 0));
    }
  } catch (e) {
    fail(e);
  } finally {
    looping = false;
  }
}

let lastVariant = "";
function show(r: Inference, sample: number, input: Float32Array, link: string) {
  const out = Object.values(r.outputs)[0]!;
  const top1 = argmax(out.data);
  const v = config.variants.find((x) => x.id === r.variant);
  const cut = v ? config.cuts.find((c) => c.id === v.cut)! : null;
  const deviceSegments = r.kind === "device-only" ? config.segments : cut?.deviceSegments ?? 0;
  const t = r.timings;
  const res: PageResult = {
    n: state.results.length, sample, link, variant: r.variant, kind: r.kind, fellBack: r.fellBack, deviceSegments,
    deviceMs: t.deviceMs, transferMs: t.transferMs, cloudMs: t.cloudMs, totalMs: t.totalMs, bytes: t.bytes, top1,
    output: state.results.length < 64 ? Array.from(out.data) : null,
  };
  state.results.push(res);
  $("variant").textContent = r.kind === "device-only" ? "device only" : r.variant;
  $("plan").textContent = r.kind === "device-only" ? `all ${config.segments} segments here${r.fellBack ? ` (fell back: ${r.fallback ?? "cloud failed"})` : ""}`
    : `${deviceSegments} of ${config.segments} segments here, ${v?.bits === "f32" ? "float32" : `${v?.bits}-bit`}${v && v.lossless !== "none" ? ` + ${v.lossless}` : ""}`;
  $("device-ms").textContent = `${t.deviceMs.toFixed(1)} ms`;
  $("link-ms").textContent = r.kind === "device-only" ? "–" : `${t.transferMs.toFixed(1)} ms`;
  $("cloud-ms").textContent = r.kind === "device-only" ? "–" : `${t.cloudMs.toFixed(1)} ms`;
  $("bytes").textContent = r.kind === "device-only" ? "0 B" : human(t.bytes);
  $("prediction").textContent = config.classNames?.[top1] ?? `class ${top1}`;
  const label = sample >= 0 ? config.samples[sample]?.label : null;
  $("truth").textContent = typeof label === "number" ? `label: ${config.classNames?.[label] ?? label}${label === top1 ? " ✓" : ""}` : sample === -1 ? "your image" : "";
  $("reason").textContent = r.choice.reason;
  if (r.variant !== lastVariant) {
    log(`${res.n}: ${lastVariant || "start"} → ${r.variant} (${link}; ${r.choice.reason})`);
    lastVariant = r.variant;
  }
  drawThumb(input);
  chart();
}

function log(text: string) {
  const li = document.createElement("li");
  li.textContent = text;
  $("switches").prepend(li);
  while ($("switches").childElementCount > 50) $("switches").lastElementChild!.remove();
}

function human(b: number): string {
  return b < 1024 ? `${b} B` : b < 1 << 20 ? `${(b / 1024).toFixed(1)} KiB` : `${(b / (1 << 20)).toFixed(2)} MiB`;
}

const WINDOW = 240;
function chart() {
  const svg = $("chart");
  const rows = state.results.slice(-WINDOW);
  const W = 720, H = 220, top = 10, cutH = 50, msH = H - cutH - top - 16;
  const maxMs = Math.max(1, ...rows.map((r) => r.deviceMs + (r.kind === "device-only" ? 0 : r.transferMs + r.cloudMs)));
  const bw = W / WINDOW;
  const parts: string[] = [];
  rows.forEach((r, i) => {
    let y = top + msH;
    for (const [ms, color] of [[r.deviceMs, "var(--device)"], [r.kind === "device-only" ? 0 : r.transferMs, "var(--link)"], [r.kind === "device-only" ? 0 : r.cloudMs, "var(--cloud)"]] as const) {
      const h = (ms / maxMs) * msH;
      y -= h;
      parts.push(`<rect x="${(i * bw).toFixed(1)}" y="${y.toFixed(1)}" width="${(bw * 0.85).toFixed(1)}" height="${h.toFixed(1)}" fill="${color}"/>`);
    }
  });
  const cutY = (s: number) => H - 8 - (s / Math.max(1, config.segments)) * (cutH - 8);
  const pts = rows.map((r, i) => `${(i * bw + bw / 2).toFixed(1)},${cutY(r.deviceSegments).toFixed(1)}`).join(" ");
  parts.push(`<polyline points="${pts}" fill="none" stroke="var(--cut)" stroke-width="1.5"/>`);
  parts.push(`<text x="4" y="${top + 10}" font-size="11" fill="#555">${maxMs.toFixed(0)} ms</text>`);
  parts.push(`<text x="4" y="${H - cutH + 6}" font-size="11" fill="#555">cut: 0 … ${config.segments} segments on the device</text>`);
  parts.push(`<line x1="0" x2="${W}" y1="${H - cutH - 4}" y2="${H - cutH - 4}" stroke="#ddd"/>`);
  svg.innerHTML = parts.join("");
}

/** The input as a picture: the manifest's preprocessing undone (NCHW or NHWC, 1 or 3 channels). */
function drawThumb(x: Float32Array) {
  const d = config.input.dims;
  if (d.length !== 4) return;
  const nhwc = config.preprocess?.layout === "nhwc" || (config.preprocess?.layout === undefined && d[3] === 3);
  const [c, h, w] = nhwc ? [d[3]!, d[1]!, d[2]!] : [d[1]!, d[2]!, d[3]!];
  if (c !== 1 && c !== 3) return;
  const canvas = $("thumb") as HTMLCanvasElement;
  canvas.width = w;
  canvas.height = h;
  const ctx = canvas.getContext("2d")!;
  const img = ctx.createImageData(w, h);
  const p = config.preprocess;
  let lo = Infinity, hi = -Infinity;
  if (!p) for (const v of x) (lo = Math.min(lo, v)), (hi = Math.max(hi, v));
  for (let yy = 0; yy < h; yy++) for (let xx = 0; xx < w; xx++) for (let k = 0; k < 3; k++) {
    const ch = c === 1 ? 0 : p?.channelOrder === "bgr" ? 2 - k : k;
    const v = x[nhwc ? (yy * w + xx) * c + ch : ch * h * w + yy * w + xx]!;
    const pixel = p ? (v * (p.std[ch] ?? 1) + (p.mean[ch] ?? 0)) / p.scale : ((v - lo) / (hi - lo || 1)) * 255;
    img.data[(yy * w + xx) * 4 + k] = Math.max(0, Math.min(255, pixel));
  }
  for (let i = 3; i < img.data.length; i += 4) img.data[i] = 255;
  ctx.putImageData(img, 0, 0);
}

/** A dropped or picked image becomes the input: resized to the model's, preprocessed as the manifest says. */
function setupDrop() {
  const zone = $("drop");
  const take = async (file: File | undefined) => {
    if (!file) return;
    try {
      dropped = await imageInput(file);
      log(`input → ${file.name}`);
    } catch (e) {
      fail(e);
    }
  };
  zone.addEventListener("dragover", (e) => (e.preventDefault(), zone.classList.add("over")));
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => (e.preventDefault(), zone.classList.remove("over"), void take(e.dataTransfer?.files[0])));
  ($("file") as HTMLInputElement).onchange = (e) => void take((e.target as HTMLInputElement).files?.[0]);
}

async function imageInput(file: File): Promise<Float32Array> {
  const d = config.input.dims;
  if (d.length !== 4) throw new Error(`the model input [${d.join("×")}] is not an image`);
  const nhwc = config.preprocess?.layout === "nhwc" || (config.preprocess?.layout === undefined && d[3] === 3);
  const [c, h, w] = nhwc ? [d[3]!, d[1]!, d[2]!] : [d[1]!, d[2]!, d[3]!];
  const bitmap = await createImageBitmap(file);
  const canvas = new OffscreenCanvas(w, h);
  const ctx = canvas.getContext("2d")!;
  ctx.drawImage(bitmap, 0, 0, w, h);
  const rgba = ctx.getImageData(0, 0, w, h).data;
  const p = config.preprocess ?? { scale: 1 / 255, mean: [0, 0, 0], std: [1, 1, 1], channelOrder: "rgb" as const };
  const x = new Float32Array(size());
  for (let yy = 0; yy < h; yy++) for (let xx = 0; xx < w; xx++) for (let ch = 0; ch < c; ch++) {
    const src = c === 1 ? 0 : p.channelOrder === "bgr" ? 2 - ch : ch;
    const v = (rgba[(yy * w + xx) * 4 + src]! * p.scale - (p.mean[ch] ?? 0)) / (p.std[ch] ?? 1);
    x[nhwc ? (yy * w + xx) * c + ch : ch * h * w + yy * w + xx] = v;
  }
  return x;
}

function fail(e: unknown) {
  state.error = e instanceof Error ? e.message : String(e);
  $("status").textContent = `error: ${state.error}`;
  console.error(e);
}

main().catch(fail);
