// dyno's device runtime for browsers (built to dist/browser/dyno.js by `npm run build`):
//
//   import { createDevice } from "/dyno/dyno.js";
//   const device = await createDevice({ bundle: "/bundle/", cloud: location.origin, token });
//   const r = await device.infer(input);    // Float32Array of the model input's size
//   r.variant, r.timings.deviceMs, r.timings.bytes, r.outputs
export { createDevice, localStorageProfiles, type WebDeviceOptions } from "./device.js";
export { fetchBundle } from "./bundle.js";
export { hasWebGpu, webBackend, type WebBackendOptions } from "./backend.js";
export { connectCloud, CloudError, globalSocket, type CloudClient, type CloudOptions } from "../device/client.js";
export type { Device, Inference, InferOptions } from "../device/device.js";
export type { Manifest, Variant } from "../common/manifest.js";
export { Executor, measureProfile } from "../exec/executor.js";
export { chooseVariant, predictAll } from "../plan/scheduler.js";
