// NumPy .npy arrays (https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html):
//
//   "\x93NUMPY" | major | minor | header length (uint16 LE in 1.0, uint32 LE in 2.0/3.0) |
//   header: a Python dict literal, e.g. {'descr': '<f4', 'fortran_order': False, 'shape': (8, 3, 32, 32), }
//   padded with spaces and a "\n" | the data, shape[0] * shape[1] * ... items
//
// Only what calibration data needs: little-endian float32/float64/uint8/int32/int64 in C order,
// every dtype read as float32. Works on bytes, so it serves Node and browsers.
import { UsageError } from "../../runtime/common/errors.js";

export interface NpyArray {
  /** The dtype as NumPy names it: "float32", "uint8", ... */
  dtype: string;
  shape: number[];
  data: Float32Array;
}

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // "\x93NUMPY"

/** Item size and reader of every supported `descr` ("|u1" and "<u1" alike: one byte has no order). */
const DTYPES: Record<string, { name: string; size: number; read: (buf: ArrayBuffer) => ArrayLike<number> }> = {
  "<f4": { name: "float32", size: 4, read: (b) => new Float32Array(b) },
  "<f8": { name: "float64", size: 8, read: (b) => new Float64Array(b) },
  "|u1": { name: "uint8", size: 1, read: (b) => new Uint8Array(b) },
  "<u1": { name: "uint8", size: 1, read: (b) => new Uint8Array(b) },
  "<i4": { name: "int32", size: 4, read: (b) => new Int32Array(b) },
  "<i8": { name: "int64", size: 8, read: (b) => Array.from(new BigInt64Array(b), Number) },
};

export function isNpy(bytes: Uint8Array): boolean {
  return MAGIC.every((b, i) => bytes[i] === b);
}

/** Parses a .npy file; errors are UsageErrors naming `source` and what is wrong. */
export function parseNpy(bytes: Uint8Array, source: string): NpyArray {
  if (bytes.length < 10 || !isNpy(bytes)) throw new UsageError(`"${source}" is not a .npy file (bad magic)`);
  const major = bytes[6]!;
  if (major < 1 || major > 3) throw new UsageError(`"${source}": .npy format version ${major}.${bytes[7]} is not supported (1.0, 2.0, 3.0 are)`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerStart = major === 1 ? 10 : 12;
  const headerLength = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const dataStart = headerStart + headerLength;
  if (dataStart > bytes.length) throw new UsageError(`"${source}": .npy header says ${headerLength} bytes, the file is ${bytes.length} bytes`);
  const header = new TextDecoder(major === 3 ? "utf-8" : "latin1").decode(bytes.subarray(headerStart, dataStart));

  const descr = header.match(/'descr'\s*:\s*'([^']*)'/)?.[1];
  const fortran = header.match(/'fortran_order'\s*:\s*(True|False)/)?.[1];
  const shapeText = header.match(/'shape'\s*:\s*\(([^)]*)\)/)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) {
    throw new UsageError(`"${source}": .npy header ${JSON.stringify(header.trim())} lacks descr, fortran_order or shape`);
  }
  const dtype = DTYPES[descr];
  if (!dtype) throw new UsageError(`"${source}": .npy dtype '${descr}' is not supported (little-endian float32, float64, uint8, int32, int64 are)`);
  if (fortran === "True") throw new UsageError(`"${source}": the array is in Fortran order; save it in C order (numpy.ascontiguousarray) first`);
  const shape = shapeText.split(",").map((s) => s.trim()).filter((s) => s !== "").map(Number);
  if (!shape.every((d) => Number.isInteger(d) && d >= 0)) throw new UsageError(`"${source}": .npy shape (${shapeText}) is not a list of sizes`);

  const count = shape.reduce((a, b) => a * b, 1);
  const need = count * dtype.size;
  if (bytes.length - dataStart !== need) {
    throw new UsageError(`"${source}": shape (${shape.join(", ")}) of ${dtype.name} needs ${need} data bytes, the file has ${bytes.length - dataStart}`);
  }
  // Copied out (new Uint8Array copies; Buffer.slice would not): typed arrays need the data
  // aligned to the item size, and the header need not end on such a boundary.
  const aligned = new Uint8Array(bytes.subarray(dataStart)).buffer;
  const values = dtype.read(aligned);
  return { dtype: dtype.name, shape, data: values instanceof Float32Array ? values : Float32Array.from(values) };
}
