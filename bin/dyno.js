#!/usr/bin/env node
// The `dyno` command: runs the compiled CLI (`npm run build` writes dist/).
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const main = new URL("../dist/cli/main.js", import.meta.url);
if (!existsSync(fileURLToPath(main))) {
  console.error("dyno: dist/ is missing; run `npm run build` (npm install runs it too)");
  process.exit(1);
}
const { runCli } = await import(main.href);
process.exitCode = await runCli(process.argv.slice(2));
