// The device on Node: runtime/device/device.ts given a bundle directory, onnxruntime-node, the
// `ws` WebSocket and a profile cache in ~/.cache/dyno (or `profile.cacheDir`).
import { createDevice as create, type Device, type DeviceOptions } from "../device/device.js";
import { nodeBackend } from "./backend.js";
import { openBundle, type NodeBundle } from "./bundle.js";
import { nodeSocket, zlibGzip } from "./client.js";
import { fileProfileCache } from "./executor.js";
import { usePreciseTimers } from "./waker.js";

export * from "../device/device.js";

export interface NodeDeviceOptions extends Omit<DeviceOptions, "bundle" | "backend" | "profile"> {
  /** A bundle directory, or one opened with openBundle. */
  bundle: string | NodeBundle;
  /** false: plan from the bundle's profile alone; else profile on first start, cached in cacheDir. */
  profile?: false | { cacheDir?: string };
}

export function createDevice(options: NodeDeviceOptions): Promise<Device> {
  // The emulated slow device sleeps to a fraction of a millisecond: in a timer thread, not a spin.
  usePreciseTimers();
  const bundle = typeof options.bundle === "string" ? openBundle(options.bundle) : options.bundle;
  const profile = options.profile === false ? false : { cache: fileProfileCache(options.profile?.cacheDir) };
  return create({ socket: nodeSocket, gzipper: zlibGzip, ...options, bundle, backend: nodeBackend, profile });
}
