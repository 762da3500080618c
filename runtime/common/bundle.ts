// A bundle as every side sees it: the validated manifest, its variants by id, and its files'
// bytes. Where the files come from is the opener's business: a directory on Node
// (runtime/node/bundle.ts: openBundle), a URL in a browser (runtime/web/bundle.ts: fetchBundle).
// Both check every file against the size and SHA-256 the manifest records.
import { DynoError } from "./errors.js";
import type { FileRef, Manifest, Variant } from "./manifest.js";

export class BundleError extends DynoError {
  override name = "BundleError";
}

export interface Bundle {
  /** Where it came from (a directory, a URL), for messages. */
  readonly label: string;
  readonly manifest: Manifest;
  variant(id: string): Variant;
  /** A file of the bundle, checked against its manifest entry. */
  read(file: FileRef): Promise<Uint8Array>;
}

/** `variant(id)` for a manifest: the variant, or a BundleError naming some that exist. */
export function variantLookup(manifest: Manifest, label: string): (id: string) => Variant {
  const byId = new Map(manifest.variants.map((v) => [v.id, v]));
  return (id) => {
    const v = byId.get(id);
    if (!v) throw new BundleError(`bundle "${label}" has no variant "${id}" (variants: ${[...byId.keys()].slice(0, 8).join(", ")}${byId.size > 8 ? ", ..." : ""})`);
    return v;
  };
}

/** A file's bytes against its manifest entry: size, then SHA-256 (`sha256hex` computes it). */
export async function checkFile(label: string, f: FileRef, bytes: Uint8Array, sha256hex: (b: Uint8Array) => Promise<string> | string): Promise<Uint8Array> {
  if (bytes.length !== f.bytes) throw new BundleError(`bundle "${label}": file "${f.file}" is ${bytes.length} bytes, the manifest says ${f.bytes} (tampered or truncated)`);
  if ((await sha256hex(bytes)) !== f.sha256) throw new BundleError(`bundle "${label}": file "${f.file}" does not match its SHA-256 in the manifest (tampered)`);
  return bytes;
}
