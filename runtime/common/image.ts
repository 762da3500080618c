// The input as an image file: what a practitioner sends instead of activations (a JPEG or WebP of
// the picture), as a codec of the input cut. The model's input is a tensor made from pixels by the
// manifest's preprocess (x = (pixel * scale - mean[c]) / std[c], in `layout`, channels in
// `channelOrder`); the device turns the tensor back into those pixels, encodes them as an image
// file, and the cloud decodes it and applies the preprocess again.
//
//   device: tensor --toPixels--> RGB or grey pixels --encode (jpeg/webp, quality)--> bytes
//   cloud:  bytes --decode--> pixels --fromPixels--> tensor  (the model's input, lossy as the file is)
//
// The pixel arithmetic is here (any platform); the encoder and decoder are the platform's
// (runtime/node/image.ts: sharp; a browser: none yet, so a browser device does not offer these
// variants).
import type { Manifest } from "./manifest.js";
import { DynoError } from "./errors.js";

export type ImageFormat = "jpeg" | "webp";

/** Interleaved 8-bit pixels, row by row: 1 channel (grey) or 3 (RGB). */
export interface Pixels {
  data: Uint8Array;
  width: number;
  height: number;
  channels: 1 | 3;
}

/** A platform's image encoder and decoder. */
export interface ImageCodec {
  encode(pixels: Pixels, format: ImageFormat, quality: number): Promise<Uint8Array>;
  /** Decodes to `channels` channels (grey or RGB, whatever the file holds). */
  decode(bytes: Uint8Array, channels: 1 | 3): Promise<Pixels>;
}

/** Where the image is in the input tensor: its size, channels and layout, and the preprocess that made it. */
export interface ImageLayout {
  width: number;
  height: number;
  channels: 1 | 3;
  layout: "nchw" | "nhwc";
  /** The model's channels are BGR: swapped to RGB for the file, and back. */
  bgr: boolean;
  scale: number;
  mean: number[];
  std: number[];
}

/**
 * The image inside the model's input, or why there is none: one input of one sample, 1 or 3
 * channels, and a known preprocess (dyno compile writes it from an image folder or a fixture).
 */
export function imageLayout(m: Pick<Manifest, "model" | "preprocess">): ImageLayout | string {
  const p = m.preprocess;
  if (!p) return "the manifest has no preprocess (the pixels the input came from are not known)";
  if (m.model.inputs.length !== 1) return `the model has ${m.model.inputs.length} inputs`;
  const dims = m.model.inputs[0]!.shape.map((d) => (typeof d === "number" ? d : 1));
  if (dims.length !== 4 || dims[0] !== 1) return `the input is [${dims.join(",")}], not one [1, C, H, W] or [1, H, W, C] image`;
  const layout = p.layout ?? (dims[1] === 1 || dims[1] === 3 ? "nchw" : "nhwc");
  const [channels, height, width] = layout === "nchw" ? [dims[1]!, dims[2]!, dims[3]!] : [dims[3]!, dims[1]!, dims[2]!];
  if (channels !== 1 && channels !== 3) return `the input has ${channels} channels (an image file holds 1 or 3)`;
  const per = (xs: number[]) => (xs.length === 1 ? Array(channels).fill(xs[0]) : xs);
  const mean = per(p.mean);
  const std = per(p.std);
  if (mean.length !== channels || std.length !== channels) return `the preprocess has ${p.mean.length} means for ${channels} channels`;
  return { width, height, channels, layout, bgr: channels === 3 && p.channelOrder === "bgr", scale: p.scale, mean, std };
}

/** The file's channel c of the model's channel (RGB in the file; BGR models swap). */
const fileChannel = (l: ImageLayout, c: number) => (l.bgr ? 2 - c : c);

/** The tensor back to its pixels: pixel = (x * std + mean) / scale, rounded and clamped to 0..255. */
export function toPixels(x: Float32Array, l: ImageLayout): Pixels {
  const { width: w, height: h, channels: ch } = l;
  if (x.length !== w * h * ch) throw new DynoError(`an input of ${x.length} values is not a ${w}x${h}x${ch} image`);
  const data = new Uint8Array(w * h * ch);
  for (let c = 0; c < ch; c++) {
    const a = l.std[c]! / l.scale;
    const b = l.mean[c]! / l.scale;
    const fc = fileChannel(l, c);
    for (let i = 0; i < w * h; i++) {
      const v = x[l.layout === "nchw" ? c * w * h + i : i * ch + c]! * a + b;
      data[i * ch + fc] = v <= 0 ? 0 : v >= 255 ? 255 : Math.round(v);
    }
  }
  return { data, width: w, height: h, channels: ch };
}

/** Pixels to the model's input, as the preprocess makes it. */
export function fromPixels(p: Pixels, l: ImageLayout): Float32Array {
  if (p.width !== l.width || p.height !== l.height || p.channels !== l.channels) {
    throw new DynoError(`the image is ${p.width}x${p.height}x${p.channels}, the model's input is ${l.width}x${l.height}x${l.channels}`);
  }
  const { width: w, height: h, channels: ch } = l;
  const x = new Float32Array(w * h * ch);
  for (let c = 0; c < ch; c++) {
    const s = l.scale / l.std[c]!;
    const o = l.mean[c]! / l.std[c]!;
    const fc = fileChannel(l, c);
    for (let i = 0; i < w * h; i++) x[l.layout === "nchw" ? c * w * h + i : i * ch + c] = p.data[i * ch + fc]! * s - o;
  }
  return x;
}

/** The format of an image file by its first bytes (JPEG: FF D8 FF; WebP: RIFF....WEBP), or null. */
export function imageFormatOf(bytes: Uint8Array): ImageFormat | null {
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return "jpeg";
  const ascii = (from: number, s: string) => [...s].every((ch, i) => bytes[from + i] === ch.charCodeAt(0));
  if (bytes.length >= 12 && ascii(0, "RIFF") && ascii(8, "WEBP")) return "webp";
  return null;
}

/** The largest image file accepted for an input of `values` 8-bit values: twice raw, and room for headers. */
export function maxImageBytes(values: number): number {
  return 2 * values + 4096;
}
