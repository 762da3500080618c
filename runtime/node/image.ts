// Image files on Node: sharp (libvips, with libjpeg-turbo and libwebp) encodes the device's
// pixels and decodes them in the cloud (runtime/common/image.ts has the pixel arithmetic). sharp
// is already how `dyno compile` reads image folders; its decoding is deterministic for a given
// file, so the device, the cloud and the compiler's accuracy profile see the same pixels.
import sharp from "sharp";
import { DynoError } from "../common/errors.js";
import type { ImageCodec, ImageFormat, Pixels } from "../common/image.js";

export const sharpImages: ImageCodec = {
  async encode(p: Pixels, format: ImageFormat, quality: number): Promise<Uint8Array> {
    const img = sharp(Buffer.from(p.data.buffer, p.data.byteOffset, p.data.byteLength), { raw: { width: p.width, height: p.height, channels: p.channels } });
    const out = format === "jpeg" ? img.jpeg({ quality }) : img.webp({ quality });
    return new Uint8Array(await out.toBuffer());
  },
  async decode(bytes: Uint8Array, channels: 1 | 3): Promise<Pixels> {
    let r: { data: Buffer; info: { width: number; height: number; channels: number } };
    try {
      r = await sharp(bytes, { failOn: "error" }).removeAlpha().toColourspace(channels === 1 ? "b-w" : "srgb").raw().toBuffer({ resolveWithObject: true });
    } catch (e) {
      throw new DynoError(`the image does not decode: ${(e as Error).message}`);
    }
    if (r.info.channels !== channels) throw new DynoError(`the image decodes to ${r.info.channels} channels, the input has ${channels}`);
    return { data: new Uint8Array(r.data.buffer, r.data.byteOffset, r.data.byteLength), width: r.info.width, height: r.info.height, channels };
  },
};
