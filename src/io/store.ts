// A read-only store of named tensors, whatever the file format. Tensors are read one at a time,
// by byte range, and converted to float32 on the way out, so callers can stream through a model
// larger than memory. Stores that can also read a range of rows let a tensor larger than one
// ArrayBuffer (Gemma-2-2B's embedding is 2.4 GB as float32) be streamed in chunks.
import { FormatError } from './source.ts';

/** GGUF's block formats (Q8_0…); QINT8/QINT4: ONNX integer weights with a scale and zero point, read dequantized. */
export type StoredDType = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL' | 'Q8_0' | 'Q4_0' | 'Q4_K' | 'Q6_K' | 'QINT8' | 'QINT4';

export interface StoredTensor {
  readonly name: string;
  readonly shape: readonly number[];
  readonly dtype: StoredDType;
  /** Bytes the tensor takes in its file. */
  readonly byteLength: number;
}

export interface WeightStore {
  /** What the store was read from, for messages ("model.safetensors", "stories260K.gguf"). */
  readonly label: string;
  readonly tensors: ReadonlyMap<string, StoredTensor>;
  /** The tensor's values as float32, in row-major order of `shape`. */
  readF32(name: string, signal?: AbortSignal): Promise<Float32Array>;
  /**
   * Rows [rowStart, rowEnd) along the first dimension as float32, reading only those rows' bytes.
   * Optional: readRowsF32 falls back to a whole-tensor read where a store lacks it.
   */
  readRows?(name: string, rowStart: number, rowEnd: number, signal?: AbortSignal): Promise<Float32Array>;
  /**
   * Rows of an F16 or BF16 tensor as the stored 16-bit patterns (the tensor's dtype says which), with
   * no float32 copy. The result may share memory with the source: do not modify it.
   */
  readRowsHalf?(name: string, rowStart: number, rowEnd: number, signal?: AbortSignal): Promise<Uint16Array>;
}

/** Largest tensor, in float32 bytes, that readRowsF32 reads whole when the store cannot read rows. */
export const WHOLE_READ_MAX_BYTES = 512 * 1024 * 1024;

/** Rows of the first dimension (1 for a scalar) and values per row. */
export function rowLayout(t: StoredTensor): { rows: number; rowLength: number } {
  let rowLength = 1;
  for (const d of t.shape.slice(1)) rowLength *= d;
  return { rows: t.shape[0] ?? 1, rowLength };
}

/** The tensor, after checking that [rowStart, rowEnd) is a range of its rows. */
export function rowRange(store: WeightStore, name: string, rowStart: number, rowEnd: number): StoredTensor {
  const t = store.tensors.get(name);
  if (!t) throw missingTensor(store, name);
  const { rows } = rowLayout(t);
  if (!(Number.isInteger(rowStart) && Number.isInteger(rowEnd) && rowStart >= 0 && rowStart <= rowEnd && rowEnd <= rows)) {
    throw new RangeError(`${store.label}: rows [${rowStart}, ${rowEnd}) are not within the ${rows} rows of "${name}"`);
  }
  return t;
}

/**
 * Rows [rowStart, rowEnd) of a tensor as float32: by byte range where the store can, otherwise sliced
 * from a whole-tensor read, which is refused above `maxWholeBytes` of float32.
 */
export async function readRowsF32(
  store: WeightStore,
  name: string,
  rowStart: number,
  rowEnd: number,
  opts: { signal?: AbortSignal; maxWholeBytes?: number } = {},
): Promise<Float32Array> {
  const t = rowRange(store, name, rowStart, rowEnd);
  if (store.readRows) return store.readRows(name, rowStart, rowEnd, opts.signal);
  const { rows, rowLength } = rowLayout(t);
  const bytes = rows * rowLength * 4;
  const limit = opts.maxWholeBytes ?? WHOLE_READ_MAX_BYTES;
  if (bytes > limit) {
    throw new FormatError(store.label, `tensor "${name}" is ${formatBytes(bytes)} as float32, and this format is read one whole tensor at a time (limit ${formatBytes(limit)})`);
  }
  const all = await store.readF32(name, opts.signal);
  return rowStart === 0 && rowEnd === rows ? all : all.slice(rowStart * rowLength, rowEnd * rowLength);
}

export function formatBytes(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} GB`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)} MB`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} kB`;
  return `${n} bytes`;
}

export function totalBytes(store: WeightStore): number {
  let n = 0;
  for (const t of store.tensors.values()) n += t.byteLength;
  return n;
}

export function missingTensor(store: WeightStore, name: string): Error {
  return new Error(`${store.label}: no tensor named "${name}"`);
}
