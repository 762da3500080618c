// The executor on onnxruntime-node, and its device profile cached in ~/.cache/dyno.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import type { Profile } from "../common/manifest.js";
import type { ProfileCache } from "../device/device.js";
import { Executor } from "../exec/executor.js";
import { nodeBackend } from "./backend.js";
import type { NodeBundle } from "./bundle.js";

export { Executor };

/** Executor.open on onnxruntime-node. */
export function openExecutor(bundle: NodeBundle, options: { segments?: number[]; threads?: number; optimize?: boolean } = {}): Promise<Executor> {
  return Executor.open(bundle, { backend: nodeBackend, ...options });
}

/** Profiles as JSON files in `dir` (default ~/.cache/dyno), one per bundle, backend and machine. */
export function fileProfileCache(dir = join(homedir(), ".cache", "dyno")): ProfileCache {
  const file = (key: string) => join(dir, `profile-${key.replace(/[^\w.-]/g, "_")}.json`);
  return {
    async get(key) {
      const path = file(key);
      if (!existsSync(path)) return null;
      try {
        return JSON.parse(readFileSync(path, "utf8")) as Profile;
      } catch {
        return null; // re-measured and written again
      }
    },
    async set(key, profile) {
      mkdirSync(dir, { recursive: true });
      writeFileSync(file(key), JSON.stringify(profile, null, 1));
    },
  };
}
