// Opening a bundle in a browser: manifest.json and the files it lists fetched from a base URL
// (with the bearer token when given), each checked against its size and SHA-256 (WebCrypto).
import { BundleError, checkFile, variantLookup, type Bundle } from "../common/bundle.js";
import { parseManifest, type FileRef } from "../common/manifest.js";

async function sha256(bytes: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

export async function fetchBundle(url: string, options: { token?: string } = {}): Promise<Bundle> {
  const base = url.endsWith("/") ? url : `${url}/`;
  const headers: Record<string, string> = options.token ? { Authorization: `Bearer ${options.token}` } : {};
  const get = async (file: string) => {
    const res = await fetch(new URL(file, base), { headers });
    if (!res.ok) throw new BundleError(`bundle "${base}": GET ${file} answered HTTP ${res.status}`);
    return new Uint8Array(await res.arrayBuffer());
  };
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder().decode(await get("manifest.json")));
  } catch (e) {
    if (e instanceof BundleError) throw e;
    throw new BundleError(`"${base}manifest.json" is not valid JSON: ${(e as Error).message}`);
  }
  const manifest = parseManifest(json, `${base}manifest.json`);
  const files = new Map<string, Promise<Uint8Array>>();
  return {
    label: base,
    manifest,
    variant: variantLookup(manifest, base),
    read(f: FileRef) {
      if (!files.has(f.file)) files.set(f.file, get(f.file).then((b) => checkFile(base, f, b, sha256)));
      return files.get(f.file)!;
    },
  };
}
