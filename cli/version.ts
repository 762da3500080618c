// The package version (cli/ runs from the sources under tsx and from dist/cli/ when built).
import { readFileSync } from "node:fs";

export function dynoVersion(): string {
  for (const rel of ["../package.json", "../../package.json"]) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(rel, import.meta.url), "utf8")) as { name?: string; version: string };
      if (pkg.name === "dyno") return pkg.version;
    } catch {
      /* try the next location */
    }
  }
  return "unknown";
}
