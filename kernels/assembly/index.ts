// The dyno kernels, one WebAssembly module with SIMD128. Every kernel works on raw pointers into
// this module's memory; kernels/wasm.ts lays the buffers out and grows the memory, so nothing here
// allocates. The TypeScript reference of each kernel is in kernels/reference.ts.
export { f32_minmax__simd128, f32_minmax_channels__simd128 } from "./range/f32_minmax";
export {
  f32_quantize_u8__simd128, f32_quantize_u16__simd128,
  f32_quantize_u8_channels__simd128, f32_quantize_u16_channels__simd128,
  f32_quantize_pack_u4__simd128,
} from "./quantize/f32_quantize";
export {
  u8_dequantize_f32__simd128, u16_dequantize_f32__simd128,
  u8_dequantize_f32_channels__simd128, u16_dequantize_f32_channels__simd128,
  u4_unpack_dequantize_f32__simd128,
} from "./dequantize/u8_dequantize";
export {
  u8_pack_ub__scalar, u8_unpack_ub__scalar,
  u8_pack_u4__simd128, u8_pack_u2__simd128, u8_pack_u1__simd128,
  u8_unpack_u4__simd128, u8_unpack_u2__simd128, u8_unpack_u1__simd128,
} from "./pack/u8_pack";
export {
  u8_bitshuffle__simd128, u8_bitunshuffle__simd128,
  u16_bitshuffle__simd128, u16_bitunshuffle__simd128,
} from "./shuffle/bitshuffle";
export { f32_to_f16__simd128, f16_to_f32__simd128 } from "./float16/f32_f16";

/** First free byte after the module's static data: kernels/wasm.ts lays its buffers out from here. */
export function heap_base(): usize {
  return __heap_base;
}
