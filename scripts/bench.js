#!/usr/bin/env node
// Runs one benchmark: `npm run bench -- NAME [args]` -> node --import tsx bench/NAME.ts [args].
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const [name, ...args] = process.argv.slice(2);
const file = name && `${root}/bench/${name}.ts`;
if (!file || !existsSync(file)) {
  const names = readdirSync(`${root}/bench`).filter((f) => f.endsWith(".ts")).map((f) => f.slice(0, -3));
  console.error(`usage: npm run bench -- NAME [args]   (NAME: ${names.join(", ")})`);
  process.exit(2);
}
const r = spawnSync(process.execPath, ["--import", "tsx", file, ...args], { cwd: root, stdio: "inherit" });
process.exit(r.status ?? 1);
