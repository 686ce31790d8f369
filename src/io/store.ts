// A read-only store of named tensors, whatever the file format. Tensors are read one at a time,
// by byte range, and converted to float32 on the way out, so callers can stream through a model
// larger than memory.

export type StoredDType = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL' | 'Q8_0' | 'Q4_0' | 'Q4_K' | 'Q6_K';

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
}

export function totalBytes(store: WeightStore): number {
  let n = 0;
  for (const t of store.tensors.values()) n += t.byteLength;
  return n;
}

export function missingTensor(store: WeightStore, name: string): Error {
  return new Error(`${store.label}: no tensor named "${name}"`);
}
