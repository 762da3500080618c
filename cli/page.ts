// The page of `dyno serve BUNDLE --page`: the browser device (dist/browser, built by
// `npm run build`) running the bundle's device half against this server, with emulated links to
// pick from. Routes, all under /page/:
//
//   /page/                 index.html and the device runtime's files (static, no token)
//   /page/config.json      the model, the links, the samples (token)
//   /page/bundle/FILE      manifest.json and the files it lists (token)
//   /page/samples/I        sample I as float32 bytes, the model input's layout (token)
//
// Every answer carries the headers that make the page cross-origin isolated (COOP same-origin,
// COEP require-corp), so onnxruntime-web may use SharedArrayBuffer. Each link is a shaping TCP
// proxy (runtime/emu/link.ts) in front of this server on the same host: the page's WebSocket
// goes through the one picked, so a link change is a real change of what the device measures.
// The proxies listen on 127.0.0.1 (emulation on this machine); a page on another host uses the
// direct link.
import { perSampleDims } from "../runtime/common/manifest.js";
import { existsSync, readFileSync, statSync } from "node:fs";
import type http from "node:http";
import { extname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";
import type { Calibration } from "../compiler/bundler/calibration.js";
import { bearerOf, tokenCheck } from "../runtime/cloud/server.js";
import { DynoError } from "../runtime/common/errors.js";
import { startLink, PRESETS, type Link } from "../runtime/emu/link.js";
import type { NodeBundle } from "../runtime/node/bundle.js";

export const PAGE_LINKS = ["wifi", "4g", "3g"] as const;

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".wasm": "application/wasm",
  ".map": "application/json",
  ".json": "application/json",
  ".svg": "image/svg+xml",
};

const ISOLATED = {
  "Cross-Origin-Opener-Policy": "same-origin",
  "Cross-Origin-Embedder-Policy": "require-corp",
  "Cross-Origin-Resource-Policy": "same-origin",
} as const;

export interface PageOptions {
  bundle: NodeBundle;
  /** The server's token (the page reads it from its URL's #token=...). */
  token?: string;
  /** The page's inputs (its samples). */
  inputs: Calibration;
  /** Class names by index, when known, for the prediction. */
  classNames?: string[];
  /** The emulated device is this many times slower than the browser's measured profile. */
  slowdown: number;
  /** Where the built browser runtime is (default: dist/browser of this checkout). */
  browserDir?: string;
}

export interface Page {
  routes(req: http.IncomingMessage, res: http.ServerResponse): Promise<boolean>;
  /** Starts the link proxies in front of the server's port (after it listens). */
  start(host: string, port: number): Promise<void>;
  links(): { name: string; url: string; bandwidthMbps: number; rttMs: number }[];
  close(): Promise<void>;
}

/** dist/browser of this checkout, whether this file runs from the sources or from dist/cli. */
function browserDirOf(): string {
  const here = fileURLToPath(new URL(".", import.meta.url));
  for (const rel of ["../dist/browser", "../browser"]) {
    const dir = normalize(join(here, rel));
    if (existsSync(join(dir, "dyno.js"))) return dir;
  }
  return normalize(join(here, "../dist/browser"));
}

export function createPage(o: PageOptions): Page {
  const dir = o.browserDir ?? browserDirOf();
  if (!existsSync(join(dir, "dyno.js")) || !existsSync(join(dir, "index.html"))) {
    throw new DynoError(`--page needs the browser runtime in ${dir} (dyno.js, index.html): run npm run build`);
  }
  const m = o.bundle.manifest;
  const files = new Map([m.weights, ...m.segments.map((s) => s.graph)].map((f) => [f.file, f]));
  const check = tokenCheck(o.token);
  const authorized = (req: http.IncomingMessage) => check(bearerOf(req));
  const dims = perSampleDims(m.model.inputs[0]!.shape);
  const size = dims.reduce((a, b) => a * b, 1);
  const count = Math.min(o.inputs.count, 64);
  const links: { name: string; link: Link }[] = [];
  let serverUrl = "";

  const send = (res: http.ServerResponse, status: number, type: string, body: string | Uint8Array, extra: Record<string, string> = {}) => {
    res.writeHead(status, { "Content-Type": type, "Content-Length": Buffer.byteLength(body), "Cache-Control": "no-store", ...ISOLATED, ...extra });
    res.end(body);
  };
  const json = (res: http.ServerResponse, status: number, body: unknown) => send(res, status, "application/json", JSON.stringify(body));

  const linkList = () => links.map(({ name, link }) => ({ name, url: `http://${link.host}:${link.port}`, bandwidthMbps: link.current().bandwidthMbps, rttMs: link.current().rttMs }));
  const config = () => ({
    model: m.model.name,
    input: { name: m.model.inputs[0]!.name, dims },
    preprocess: m.preprocess,
    slowdown: o.slowdown,
    direct: serverUrl,
    links: linkList(),
    samples: Array.from({ length: count }, (_, i) => ({ label: o.inputs.labels?.[i] ?? null })),
    classNames: o.classNames ?? null,
    variants: m.variants.map((v) => ({ id: v.id, cut: v.cut, bits: v.codec.bits, lossless: v.codec.lossless })),
    cuts: m.cuts.map((c) => ({ id: c.id, kind: c.kind, deviceSegments: c.deviceSegments, tensors: c.tensors.map((t) => t.name) })),
    segments: m.segments.length,
  });

  return {
    async routes(req, res) {
      const path = (req.url ?? "/").split("?")[0]!;
      if (path === "/page") {
        res.writeHead(301, { Location: "/page/", ...ISOLATED });
        res.end();
        return true;
      }
      if (!path.startsWith("/page/")) return false;
      if (req.method !== "GET" && req.method !== "HEAD") {
        send(res, 405, "text/plain", "GET only", { Allow: "GET, HEAD" });
        return true;
      }
      const rest = decodeURIComponent(path.slice("/page/".length));
      if (rest === "config.json" || rest.startsWith("bundle/") || rest.startsWith("samples/")) {
        if (!authorized(req)) {
          send(res, 401, "application/json", JSON.stringify({ error: "missing or wrong bearer token (open the page with #token=...)" }), { "WWW-Authenticate": 'Bearer realm="dyno"' });
          return true;
        }
        if (rest === "config.json") return json(res, 200, config()), true;
        if (rest.startsWith("samples/")) {
          const i = Number(rest.slice("samples/".length));
          if (!Number.isInteger(i) || i < 0 || i >= count) return json(res, 404, { error: `no sample "${rest.slice(8)}" (0 to ${count - 1})` }), true;
          const x = o.inputs.batch(i, 1);
          send(res, 200, "application/octet-stream", new Uint8Array(x.buffer, x.byteOffset, size * 4));
          return true;
        }
        const file = rest.slice("bundle/".length);
        if (file === "manifest.json") return send(res, 200, "application/json", readFileSync(o.bundle.path("manifest.json"))), true;
        const ref = files.get(file);
        if (!ref) return json(res, 404, { error: `the bundle has no file "${file}"` }), true;
        send(res, 200, "application/octet-stream", readFileSync(o.bundle.path(ref)));
        return true;
      }
      // Static: the built runtime and the page, nothing outside dist/browser.
      const rel = rest === "" ? "index.html" : rest;
      const full = normalize(join(dir, rel));
      const type = TYPES[extname(full)];
      if (!full.startsWith(normalize(dir + "/")) || !type || !existsSync(full) || !statSync(full).isFile()) {
        return json(res, 404, { error: `no page file "${rel}"` }), true;
      }
      send(res, 200, type, readFileSync(full));
      return true;
    },
    async start(host, port) {
      serverUrl = `http://${host.includes(":") ? `[${host}]` : host}:${port}`;
      for (const name of PAGE_LINKS) links.push({ name, link: await startLink({ target: { host, port }, shape: PRESETS[name]! }) });
    },
    links: linkList,
    async close() {
      await Promise.all(links.splice(0).map(({ link }) => link.close()));
    },
  };
}
