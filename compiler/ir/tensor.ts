// Constant tensors (initializers, tensor attributes). A Tensor keeps its data in the form the
// file had it — raw little-endian bytes, typed value lists, or a reference into an external data
// file — so that a model saved back is the model that was loaded. Accessors decode on demand;
// external data is read only when asked for, by offset and length, never as a whole file.
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { isAbsolute, join, normalize } from "node:path";
import { ModelError } from "../../runtime/common/errors.js";
import { byteSize, DataType, dtypeName } from "./dtype.js";

export interface KeyValue {
  key: string;
  value: string;
}

/** Where a tensor's bytes live when they are not in the model file. */
export interface ExternalRef {
  /** The external_data entries as written (location, offset, length, checksum, ...). */
  entries: KeyValue[];
  /** Directory the location is relative to (the model file's directory). */
  baseDir: string;
}

/** The data-bearing fields of a TensorProto, as present in the file. */
export interface TensorData {
  raw?: Uint8Array;
  floats?: number[]; // float_data: float32, complex64 (pairs), and 16-bit types as int32 bit patterns
  int32s?: number[]; // int32_data: int32, int16, int8, uint16, uint8, bool, float16/bfloat16 bits, 4-bit/8-bit floats
  int64s?: bigint[];
  uint64s?: bigint[];
  doubles?: number[];
  strings?: Uint8Array[];
  external?: ExternalRef;
}

export class Tensor {
  constructor(
    public readonly name: string,
    public readonly dtype: DataType,
    public readonly dims: readonly number[],
    public readonly data: TensorData,
    /** Fields carried through untouched (doc_string, segment, metadata_props, data_location). */
    public readonly extra: Readonly<Record<string, unknown>> = {},
  ) {}

  static fromBytes(name: string, dtype: DataType, dims: readonly number[], raw: Uint8Array): Tensor {
    return new Tensor(name, dtype, dims, { raw });
  }

  static fromFloat32(name: string, dims: readonly number[], values: Float32Array): Tensor {
    return Tensor.fromBytes(name, DataType.FLOAT, dims, new Uint8Array(values.buffer, values.byteOffset, values.byteLength).slice());
  }

  static fromInt64(name: string, dims: readonly number[], values: readonly (number | bigint)[]): Tensor {
    const out = new BigInt64Array(values.length);
    values.forEach((v, i) => (out[i] = BigInt(v)));
    return Tensor.fromBytes(name, DataType.INT64, dims, new Uint8Array(out.buffer));
  }

  withName(name: string): Tensor {
    return new Tensor(name, this.dtype, this.dims, this.data, this.extra);
  }

  get size(): number {
    return this.dims.reduce((a, b) => a * b, 1);
  }

  /** Bytes the data takes in memory (and in raw_data form). */
  get byteLength(): number {
    if (this.dtype === DataType.STRING) return (this.data.strings ?? []).reduce((a, s) => a + s.length, 0);
    return byteSize(this.dtype, this.size);
  }

  get isExternal(): boolean {
    return this.data.external !== undefined;
  }

  /** The tensor's data as little-endian raw bytes (what raw_data would hold). */
  bytes(): Uint8Array {
    const d = this.data;
    if (d.raw) return d.raw;
    if (d.external) return readExternal(this, d.external);
    const n = this.size;
    switch (this.dtype) {
      case DataType.FLOAT:
        return asBytes(Float32Array.from(d.floats ?? []));
      case DataType.COMPLEX64:
        return asBytes(Float32Array.from(d.floats ?? []));
      case DataType.DOUBLE:
      case DataType.COMPLEX128:
        return asBytes(Float64Array.from(d.doubles ?? []));
      case DataType.INT64:
        return asBytes(BigInt64Array.from(d.int64s ?? []));
      case DataType.UINT64:
        return asBytes(BigUint64Array.from(d.uint64s ?? []));
      case DataType.UINT32:
        return asBytes(Uint32Array.from((d.uint64s ?? []).map(Number)));
      case DataType.INT32:
        return asBytes(Int32Array.from(d.int32s ?? []));
      case DataType.INT16:
        return asBytes(Int16Array.from(d.int32s ?? []));
      case DataType.UINT16:
      case DataType.FLOAT16:
      case DataType.BFLOAT16:
        return asBytes(Uint16Array.from(d.int32s ?? []));
      case DataType.INT8:
        return asBytes(Int8Array.from(d.int32s ?? []));
      case DataType.UINT8:
      case DataType.BOOL:
      case DataType.FLOAT8E4M3FN:
      case DataType.FLOAT8E4M3FNUZ:
      case DataType.FLOAT8E5M2:
      case DataType.FLOAT8E5M2FNUZ:
      case DataType.FLOAT8E8M0:
        return Uint8Array.from(d.int32s ?? []);
      default: {
        // Sub-byte types (int4, uint4, float4, int2, uint2) store packed bytes in int32_data.
        const packed = Uint8Array.from(d.int32s ?? []);
        if (packed.length !== byteSize(this.dtype, n)) {
          throw new ModelError(`tensor "${this.name}": cannot decode ${dtypeName(this.dtype)} data from typed fields`);
        }
        return packed;
      }
    }
  }

  /** Values as float64 numbers (for constants read by shape inference and tests). */
  toNumbers(): number[] {
    const b = this.bytes();
    const buf = aligned(b);
    switch (this.dtype) {
      case DataType.FLOAT: return Array.from(new Float32Array(buf, 0, this.size));
      case DataType.DOUBLE: return Array.from(new Float64Array(buf, 0, this.size));
      case DataType.INT64: return Array.from(new BigInt64Array(buf, 0, this.size), clampBig);
      case DataType.UINT64: return Array.from(new BigUint64Array(buf, 0, this.size), clampBig);
      case DataType.INT32: return Array.from(new Int32Array(buf, 0, this.size));
      case DataType.UINT32: return Array.from(new Uint32Array(buf, 0, this.size));
      case DataType.INT16: return Array.from(new Int16Array(buf, 0, this.size));
      case DataType.UINT16: return Array.from(new Uint16Array(buf, 0, this.size));
      case DataType.INT8: return Array.from(new Int8Array(buf, 0, this.size));
      case DataType.UINT8:
      case DataType.BOOL: return Array.from(new Uint8Array(buf, 0, this.size));
      case DataType.FLOAT16: return Array.from(new Uint16Array(buf, 0, this.size), halfToFloat);
      default:
        throw new ModelError(`tensor "${this.name}": cannot read ${dtypeName(this.dtype)} values as numbers`);
    }
  }

  toFloat32(): Float32Array {
    if (this.dtype === DataType.FLOAT) return new Float32Array(aligned(this.bytes()), 0, this.size);
    return Float32Array.from(this.toNumbers());
  }
}

function asBytes(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** An ArrayBuffer holding exactly these bytes, starting at offset 0 (typed views need alignment). */
function aligned(b: Uint8Array): ArrayBuffer {
  if (b.byteOffset === 0 && b.byteLength === b.buffer.byteLength && b.buffer instanceof ArrayBuffer) return b.buffer;
  // Not b.slice(): on a Node Buffer (what protobufjs decodes bytes to) slice() is a view, not a copy.
  return new Uint8Array(b).buffer;
}

/** int64 values such as INT64_MAX in Slice ends saturate to ±Infinity-like safe bounds. */
function clampBig(v: bigint): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) return Number.MAX_SAFE_INTEGER;
  if (v < BigInt(Number.MIN_SAFE_INTEGER)) return Number.MIN_SAFE_INTEGER;
  return Number(v);
}

export function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * 2 ** -14 * (f / 1024);
  if (e === 31) return f ? NaN : s * Infinity;
  return s * 2 ** (e - 15) * (1 + f / 1024);
}

export function externalEntry(ref: ExternalRef, key: string): string | undefined {
  return ref.entries.find((e) => e.key === key)?.value;
}

/** The path of an external data file, refusing locations that escape the model's directory. */
export function externalPath(tensorName: string, ref: ExternalRef): string {
  const location = externalEntry(ref, "location");
  if (!location) throw new ModelError(`tensor "${tensorName}": external data has no location`);
  const rel = normalize(location);
  if (isAbsolute(rel) || rel.startsWith("..")) {
    throw new ModelError(`tensor "${tensorName}": external data location "${location}" is outside the model's directory`);
  }
  return join(ref.baseDir, rel);
}

function readExternal(t: Tensor, ref: ExternalRef): Uint8Array {
  const path = externalPath(t.name, ref);
  const offset = Number(externalEntry(ref, "offset") ?? 0);
  const declared = externalEntry(ref, "length");
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (e) {
    throw new ModelError(`tensor "${t.name}": external data file "${path}" cannot be opened (${(e as NodeJS.ErrnoException).code ?? e})`);
  }
  try {
    const fileSize = fstatSync(fd).size;
    const length = declared !== undefined ? Number(declared) : fileSize - offset;
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > fileSize) {
      throw new ModelError(`tensor "${t.name}": external data [${offset}, +${length}) lies outside "${path}" (${fileSize} bytes)`);
    }
    const expected = t.byteLength;
    if (t.dtype !== DataType.STRING && length !== expected) {
      throw new ModelError(`tensor "${t.name}": external data holds ${length} bytes, ${dtypeName(t.dtype)}[${t.dims.join(",")}] needs ${expected}`);
    }
    const out = new Uint8Array(length);
    let done = 0;
    while (done < length) {
      const n = readSync(fd, out, done, Math.min(length - done, 1 << 30), offset + done);
      if (n === 0) break;
      done += n;
    }
    if (done !== length) throw new ModelError(`tensor "${t.name}": external data file "${path}" ended early`);
    return out;
  } finally {
    closeSync(fd);
  }
}
