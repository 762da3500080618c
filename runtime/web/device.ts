// The device in a browser: runtime/device/device.ts given a bundle URL (or an opened bundle),
// onnxruntime-web, the page's WebSocket (the token rides in a subprotocol) and a profile cache
// in localStorage.
import type { Bundle } from "../common/bundle.js";
import type { Profile } from "../common/manifest.js";
import { globalSocket } from "../device/client.js";
import { createDevice as create, type Device, type DeviceOptions, type ProfileCache } from "../device/device.js";
import { webBackend, type WebBackendOptions } from "./backend.js";
import { fetchBundle } from "./bundle.js";

export interface WebDeviceOptions extends Omit<DeviceOptions, "bundle" | "backend" | "profile"> {
  /** The bundle's base URL (its manifest.json is there), or one opened with fetchBundle. */
  bundle: string | Bundle;
  /** onnxruntime-web's execution provider and .wasm location. */
  backend?: WebBackendOptions;
  /** false: plan from the bundle's profile alone; else profile on first start, kept in localStorage. */
  profile?: false;
}

/** Profiles in localStorage (absent, or full: measured again next time). */
export const localStorageProfiles: ProfileCache = {
  async get(key) {
    const text = globalThis.localStorage?.getItem(`dyno-profile-${key}`);
    return text ? (JSON.parse(text) as Profile) : null;
  },
  async set(key, profile) {
    try {
      globalThis.localStorage?.setItem(`dyno-profile-${key}`, JSON.stringify(profile));
    } catch {
      /* quota or privacy mode: not kept */
    }
  },
};

export async function createDevice(options: WebDeviceOptions): Promise<Device> {
  const bundle = typeof options.bundle === "string" ? await fetchBundle(options.bundle, { token: options.token }) : options.bundle;
  const backend = await webBackend(options.backend);
  return create({ socket: globalSocket, ...options, bundle, backend, profile: options.profile === false ? false : { cache: localStorageProfiles } });
}
