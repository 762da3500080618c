// The direction of imports (docs/layout.md): each folder of the runtime may import only the
// layers below it, the device side and the shared layer never touch Node, onnxruntime-node or
// `ws`, and the runtime never imports the compiler. The checker reads every source file's
// static imports, re-exports and dynamic imports; it is run on the tree, and on files with a
// forbidden import added, to show that it fails.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, normalize, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { suite } from "uvu";
import * as assert from "uvu/assert";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

interface Rule {
  /** Folders (with a trailing slash) or files of the repository this rule governs. */
  layer: string;
  /** Repository folders or files it may import from (its own layer always). */
  may: string[];
  /** Packages it may import ("node:" for all of Node's built-ins). */
  packages: string[];
  /** Packages it may import for types only (erased from builds). */
  typePackages?: string[];
  /** Dynamic imports it may make: built-ins a browser path never reaches. */
  dynamic?: string[];
}

const BROWSER_SAFE = ["zod"];
const KERNEL_PACKAGES = ["lz4js", "fflate", "@bokuweb/zstd-wasm"];

/** Most specific layer first. */
export const RULES: Rule[] = [
  { layer: "runtime/common/", may: ["kernels/format.ts"], packages: BROWSER_SAFE },
  { layer: "runtime/plan/", may: ["runtime/common/"], packages: [] },
  { layer: "runtime/exec/", may: ["runtime/common/", "kernels/"], packages: [], typePackages: ["onnxruntime-common"] },
  { layer: "runtime/device/", may: ["runtime/common/", "runtime/plan/", "runtime/exec/", "kernels/"], packages: [], typePackages: ["onnxruntime-common"] },
  { layer: "runtime/web/", may: ["runtime/common/", "runtime/plan/", "runtime/exec/", "runtime/device/", "kernels/"], packages: ["onnxruntime-web"], typePackages: ["onnxruntime-common"] },
  { layer: "runtime/emu/", may: ["runtime/common/", "runtime/node/waker.ts"], packages: ["node:", ...BROWSER_SAFE] },
  { layer: "runtime/node/", may: ["runtime/common/", "runtime/plan/", "runtime/exec/", "runtime/device/", "kernels/"], packages: ["node:", "onnxruntime-node", "ws", "sharp"], typePackages: ["onnxruntime-common"] },
  { layer: "runtime/cloud/", may: ["runtime/common/", "runtime/plan/", "runtime/exec/", "runtime/node/", "kernels/"], packages: ["node:", "onnxruntime-node", "ws", "tsx", "sharp", ...BROWSER_SAFE] },
  { layer: "kernels/", may: [], packages: KERNEL_PACKAGES, dynamic: ["node:fs"] },
  { layer: "compiler/bundler/", may: ["compiler/", "runtime/common/", "runtime/plan/", "runtime/exec/", "runtime/node/", "kernels/"], packages: ["node:", "onnxruntime-node", "sharp"] },
  { layer: "compiler/", may: ["runtime/common/", "kernels/"], packages: ["node:", "onnxruntime-node", "protobufjs"] },
];

/** What a file imports: repository paths (resolved, .js -> .ts) and packages, with how. */
export function importsOf(file: string, text: string): { spec: string; target: string; typeOnly: boolean; dynamic: boolean }[] {
  const out: { spec: string; target: string; typeOnly: boolean; dynamic: boolean }[] = [];
  const code = text.replace(/\/\*[\s\S]*?\*\//g, "").replace(/^\s*\/\/.*$/gm, "");
  const statics = /^\s*(import|export)\s+(type\s+)?(?:[^"';]*?\sfrom\s+)?["']([^"']+)["']/gm;
  for (let m; (m = statics.exec(code)); ) out.push(resolveSpec(file, m[3]!, !!m[2], false));
  const dynamics = /\bimport\(\s*["']([^"']+)["']\s*\)/g;
  for (let m; (m = dynamics.exec(code)); ) out.push(resolveSpec(file, m[1]!, false, true));
  return out;
}

function resolveSpec(file: string, spec: string, typeOnly: boolean, dynamic: boolean) {
  const target = spec.startsWith(".") ? normalize(join(dirname(file), spec)).replace(/\.js$/, ".ts") : spec;
  return { spec, target, typeOnly, dynamic };
}

const packageOf = (spec: string) => (spec.startsWith("node:") ? "node:" : spec.startsWith("@") ? spec.split("/").slice(0, 2).join("/") : spec.split("/")[0]!);

/** Every import that breaks a rule, as "file: imports spec (why)". */
export function violations(files: Map<string, string>): string[] {
  const found: string[] = [];
  for (const [file, text] of files) {
    const rule = RULES.find((r) => (r.layer.endsWith("/") ? file.startsWith(r.layer) : file === r.layer));
    if (!rule) continue;
    for (const imp of importsOf(file, text)) {
      if (imp.spec.startsWith(".")) {
        const ok = imp.target.startsWith(rule.layer) || rule.may.some((p) => (p.endsWith("/") ? imp.target.startsWith(p) : imp.target === p));
        if (!ok) found.push(`${file}: imports ${imp.spec} (${imp.target}: not a layer ${rule.layer} may use)`);
        continue;
      }
      const pkg = packageOf(imp.spec);
      if (rule.packages.includes(pkg)) continue;
      if (imp.typeOnly && rule.typePackages?.includes(pkg)) continue;
      if (imp.dynamic && rule.dynamic?.includes(imp.spec)) continue;
      found.push(`${file}: imports ${imp.spec}${imp.typeOnly ? " (types)" : ""} (package ${pkg} is not allowed in ${rule.layer})`);
    }
  }
  return found;
}

function sources(dir: string, acc = new Map<string, string>()): Map<string, string> {
  for (const name of readdirSync(join(ROOT, dir))) {
    const rel = join(dir, name);
    if (name === "node_modules" || name === "build" || name === "assembly") continue;
    if (statSync(join(ROOT, rel)).isDirectory()) sources(rel, acc);
    else if (name.endsWith(".ts") && !name.endsWith(".d.ts")) acc.set(relative("", rel), readFileSync(join(ROOT, rel), "utf8"));
  }
  return acc;
}

const s = suite("layout: the direction of imports");

s("the tree keeps every rule: runtime never imports the compiler, the device and shared layers never import Node, onnxruntime-node or ws", () => {
  const files = new Map([...sources("runtime"), ...sources("compiler"), ...sources("kernels")]);
  assert.ok(files.size > 60, `read ${files.size} files`);
  const governed = [...files.keys()].filter((f) => RULES.some((r) => f.startsWith(r.layer)));
  assert.is(governed.length, files.size, "every source file is under a rule");
  const bad = violations(files);
  assert.equal(bad, [], bad.join("\n"));
});

s("a forbidden import added anywhere is caught", () => {
  const cases: [string, string][] = [
    ["runtime/device/x.ts", `import { readFileSync } from "node:fs";`],
    ["runtime/device/x.ts", `import ort from "onnxruntime-node";`],
    ["runtime/device/x.ts", `import { WebSocketServer } from "ws";`],
    ["runtime/common/x.ts", `export { startServer } from "../cloud/server.js";`],
    ["runtime/exec/x.ts", `import type { Model } from "../../compiler/ir/graph.js";`],
    ["runtime/plan/x.ts", `import { Executor } from "../exec/executor.js";`],
    ["runtime/device/x.ts", `const fs = await import("node:fs");`],
    ["runtime/exec/x.ts", `import { Tensor } from "onnxruntime-common";`],
    ["compiler/passes/x.ts", `import { openBundle } from "../../runtime/node/bundle.js";`],
    ["runtime/web/x.ts", `import {\n  createDevice,\n} from "../node/device.js";`],
  ];
  for (const [file, text] of cases) {
    assert.is(violations(new Map([[file, text]])).length, 1, `${file}: ${text}`);
  }
  // Allowed: type-only onnxruntime-common below the backends, the kernels' guarded node:fs.
  assert.equal(violations(new Map([["runtime/exec/x.ts", `import type { Tensor } from "onnxruntime-common";`], ["kernels/x.ts", `const fs = await import("node:fs");`]])), []);
  // Comments do not count.
  assert.equal(violations(new Map([["runtime/device/x.ts", `// import fs from "node:fs";\n/* import ws from "ws"; */`]])), []);
});

s.run();
