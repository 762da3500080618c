#!/usr/bin/env node
// `npm start`: the main demo on the embedded default model (models/fixtures.json "default").
// Until the runtime lands it inspects the default fixture: per-node costs, the candidate cuts,
// and their plot (written to dyno-cuts.svg).
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { spawnSync } from "node:child_process";

const root = fileURLToPath(new URL("..", import.meta.url));
const index = JSON.parse(readFileSync(`${root}models/fixtures.json`, "utf8"));
const model = index.models.find((m) => m.name === index.default) ?? index.models[0];
const r = spawnSync(process.execPath, [`${root}bin/dyno.js`, "inspect", `${root}models/${model.file}`, "--plot", "dyno-cuts.svg"], { stdio: "inherit" });
process.exit(r.status ?? 1);
