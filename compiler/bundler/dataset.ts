// Labelled image sets in the DYNOIMG1 format (models/README.md): magic "DYNOIMG1", uint32 LE
// count, channels, height, width, then uint8 labels[count], then uint8 pixels (NCHW).
// Works on bytes, so the same reader serves Node and browsers.
import { DynoError } from "../../runtime/common/errors.js";

export interface Preprocess {
  scale: number;
  mean: number[];
  std: number[];
}

export interface ImageSet {
  count: number;
  channels: number;
  height: number;
  width: number;
  labels: Uint8Array;
  pixels: Uint8Array;
}

const MAGIC = "DYNOIMG1";

export function parseImageSet(bytes: Uint8Array, source = "dataset"): ImageSet {
  if (bytes.length < 24 || new TextDecoder().decode(bytes.subarray(0, 8)) !== MAGIC) {
    throw new DynoError(`"${source}" is not a DYNOIMG1 image set (bad magic)`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const [count, channels, height, width] = [8, 12, 16, 20].map((o) => view.getUint32(o, true)) as [number, number, number, number];
  const per = channels * height * width;
  const need = 24 + count + count * per;
  if (per === 0 || bytes.length !== need) {
    throw new DynoError(`"${source}": header says ${count} images of ${channels}x${height}x${width} (${need} bytes), the file has ${bytes.length}`);
  }
  return { count, channels, height, width, labels: bytes.subarray(24, 24 + count), pixels: bytes.subarray(24 + count, need) };
}

/** Images [start, start+n) as one float32 NCHW batch: x = (pixel * scale - mean[c]) / std[c]. */
export function imageBatch(set: ImageSet, start: number, n: number, p: Preprocess): Float32Array {
  const per = set.channels * set.height * set.width;
  const plane = set.height * set.width;
  const end = Math.min(set.count, start + n);
  const out = new Float32Array((end - start) * per);
  for (let i = start; i < end; i++) {
    for (let c = 0; c < set.channels; c++) {
      const mean = p.mean[c] ?? p.mean[0]!;
      const inv = 1 / (p.std[c] ?? p.std[0]!);
      const src = i * per + c * plane;
      const dst = (i - start) * per + c * plane;
      for (let k = 0; k < plane; k++) out[dst + k] = (set.pixels[src + k]! * p.scale - mean) * inv;
    }
  }
  return out;
}
