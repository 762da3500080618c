// Opening a bundle on Node: the manifest validated against its schema, every file checked
// against the size and SHA-256 the manifest records (a tampered or truncated bundle is refused,
// naming the file), and a directory or device where a file should be refused as such.
import { createHash } from "node:crypto";
import { existsSync, readFileSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { BundleError, checkFile, variantLookup, type Bundle } from "../common/bundle.js";
import { parseManifest, type FileRef } from "../common/manifest.js";

export { BundleError };

/** A bundle in a directory: its files have paths (onnxruntime-node opens graphs from them). */
export interface NodeBundle extends Bundle {
  dir: string;
  path(file: FileRef | string): string;
}

const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

export function openBundle(dir: string, options: { checksums?: boolean } = {}): NodeBundle {
  const root = resolve(dir);
  const manifestPath = join(root, "manifest.json");
  if (!existsSync(manifestPath)) throw new BundleError(`"${dir}" is not a bundle: no manifest.json (make one with dyno compile)`);
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(manifestPath, "utf8"));
  } catch (e) {
    throw new BundleError(`"${manifestPath}" is not valid JSON: ${(e as Error).message}`);
  }
  const manifest = parseManifest(json, manifestPath);
  const files: FileRef[] = [manifest.weights, ...manifest.segments.map((s) => s.graph)];
  for (const f of files) {
    const path = join(root, f.file);
    if (!existsSync(path)) throw new BundleError(`bundle "${dir}": file "${f.file}" listed in the manifest is missing`);
    const st = statSync(path);
    if (!st.isFile()) throw new BundleError(`bundle "${dir}": file "${f.file}" listed in the manifest is ${st.isDirectory() ? "a directory" : "a special file"}, not a file`);
    const size = st.size;
    if (size !== f.bytes) throw new BundleError(`bundle "${dir}": file "${f.file}" is ${size} bytes, the manifest says ${f.bytes} (tampered or truncated)`);
    if (options.checksums !== false && sha256(readFileSync(path)) !== f.sha256) {
      throw new BundleError(`bundle "${dir}": file "${f.file}" does not match its SHA-256 in the manifest (tampered)`);
    }
  }
  return {
    label: dir,
    dir: root,
    manifest,
    path: (f) => join(root, typeof f === "string" ? f : f.file),
    variant: variantLookup(manifest, dir),
    read: async (f) => checkFile(dir, f, readFileSync(join(root, f.file)), sha256),
  };
}
