// Public surface of the kernels: encode/decode (same bytes in Node and browsers) and loading.
export { encode, decode, decodeInto, decodeWithShape, DEFAULTS, type Bits, type EncodeOptions, type DecodeOptions, type Decoded } from "./codec.js";
export { initKernels, type WasmSource } from "./wasm.js";
export { initZstd, CODECS, type Codec } from "./lossless.js";
export { readHeader, VERSION as PAYLOAD_VERSION, type Header } from "./format.js";
