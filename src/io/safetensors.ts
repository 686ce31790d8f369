// safetensors: an 8-byte little-endian header length, a JSON header naming each tensor's dtype,
// shape and byte range, then the raw data. Tensors are read by byte range, one at a time.
import { decodeBF16, decodeF16, decodeF32 } from './dtype.ts';
import { FormatError, readJson, type ByteSource, type FileSet } from './source.ts';
import { rowRange, type StoredDType, type StoredTensor, type WeightStore } from './store.ts';

const BYTES = new Map<string, number>(Object.entries({ F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 }));
const MAX_HEADER = 100 * 1024 * 1024;

export interface SafetensorsEntry extends StoredTensor {
  readonly source: ByteSource;
  /** Absolute byte offset of the tensor's data in its file. */
  readonly offset: number;
}

export interface SafetensorsFile {
  readonly source: ByteSource;
  readonly metadata: Readonly<Record<string, string>>;
  readonly entries: ReadonlyMap<string, SafetensorsEntry>;
}

export async function readSafetensorsHeader(source: ByteSource): Promise<SafetensorsFile> {
  if (source.size < 8) throw new FormatError(source.name, `too short to be a safetensors file (${source.size} bytes)`);
  const lenBytes = await source.read(0, 8);
  const headerLen = Number(new DataView(lenBytes.buffer, lenBytes.byteOffset, 8).getBigUint64(0, true));
  if (headerLen > MAX_HEADER) {
    throw new FormatError(source.name, `not a safetensors file: its header length ${headerLen} is over the ${MAX_HEADER / 1024 / 1024} MiB limit on safetensors headers`);
  }
  if (8 + headerLen > source.size) {
    throw new FormatError(source.name, `not a safetensors file, or truncated: its header length ${headerLen} runs past the end of the file (${source.size} bytes)`);
  }
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(await source.read(8, headerLen)));
  } catch (e) {
    throw new FormatError(source.name, `safetensors header is not valid JSON (${(e as Error).message})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    throw new FormatError(source.name, 'safetensors header is not a JSON object');
  }
  const dataStart = 8 + headerLen;
  const dataLen = source.size - dataStart;
  const entries = new Map<string, SafetensorsEntry>();
  const ranges: Array<{ name: string; begin: number; end: number }> = [];
  let metadata: Record<string, string> = {};
  for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (raw !== null && (typeof raw !== 'object' || Array.isArray(raw) || !Object.values(raw).every((v) => typeof v === 'string'))) {
        throw new FormatError(source.name, 'safetensors "__metadata__" must map names to strings');
      }
      metadata = (raw ?? {}) as Record<string, string>;
      continue;
    }
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new FormatError(source.name, `tensor "${name}" is described by ${JSON.stringify(raw)}, not an object`);
    const e = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    const size = typeof e.dtype === 'string' ? BYTES.get(e.dtype) : undefined;
    if (size === undefined) throw new FormatError(source.name, `tensor "${name}" has unsupported dtype ${JSON.stringify(e.dtype)} (supported: ${[...BYTES.keys()].join(', ')})`);
    const dtype = e.dtype as StoredDType;
    if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new FormatError(source.name, `tensor "${name}" has an invalid shape ${JSON.stringify(e.shape)}`);
    }
    const shape = e.shape as number[];
    const offs = e.data_offsets;
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((o) => Number.isSafeInteger(o) && o >= 0)) {
      throw new FormatError(source.name, `tensor "${name}" has invalid data_offsets ${JSON.stringify(offs)}`);
    }
    const [begin, end] = offs as [number, number];
    const expected = shape.reduce((a, b) => a * b, 1) * size;
    if (end < begin || end - begin !== expected) {
      throw new FormatError(source.name, `tensor "${name}" has data_offsets [${begin}, ${end}] (${end - begin} bytes) but ${dtype}[${shape.join(', ')}] needs ${expected}: the header lies about sizes`);
    }
    if (end > dataLen) {
      throw new FormatError(source.name, `tensor "${name}" ends at byte ${dataStart + end} but the file has ${source.size} bytes: the file is truncated`);
    }
    entries.set(name, { name, shape, dtype, byteLength: expected, source, offset: dataStart + begin });
    ranges.push({ name, begin, end });
  }
  checkLayout(source, ranges, dataLen, headerLen);
  return { source, metadata, entries };
}

/**
 * The tensors' byte ranges must tile the data region exactly, as the safetensors format requires:
 * in order, without overlap (two tensors sharing bytes) or gaps, ending at the end of the file. A
 * header length off by some bytes shows here, since the data region then starts in the wrong place.
 */
function checkLayout(source: ByteSource, ranges: Array<{ name: string; begin: number; end: number }>, dataLen: number, headerLen: number): void {
  ranges.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let at = 0;
  let prev: string | undefined;
  for (const r of ranges) {
    if (r.begin < at) throw new FormatError(source.name, `tensors "${prev}" and "${r.name}" overlap (bytes ${r.begin}..${at} of the data): each tensor must have its own bytes`);
    if (r.begin > at) throw new FormatError(source.name, `${r.begin - at} bytes of the data before tensor "${r.name}" belong to no tensor: the header's data_offsets leave a gap`);
    at = r.end;
    prev = r.name;
  }
  if (at !== dataLen) {
    throw new FormatError(
      source.name,
      `the tensors cover ${at} bytes of data but ${dataLen} follow the header (header length ${headerLen}): the header length or the data_offsets are wrong, or the file has trailing bytes`,
    );
  }
}

export async function readEntryF32(e: SafetensorsEntry, signal?: AbortSignal): Promise<Float32Array> {
  return decodeFloats(e, await e.source.read(e.offset, e.byteLength, signal));
}

/** Rows [rowStart, rowEnd) of the first dimension as float32, reading only their bytes. */
export async function readEntryRowsF32(e: SafetensorsEntry, rowStart: number, rowEnd: number, signal?: AbortSignal): Promise<Float32Array> {
  const rowBytes = entryRowBytes(e);
  return decodeFloats(e, await e.source.read(e.offset + rowStart * rowBytes, (rowEnd - rowStart) * rowBytes, signal));
}

/** Rows of an F16 or BF16 tensor as their stored bit patterns (a view of the read bytes when aligned). */
export async function readEntryRowsHalf(e: SafetensorsEntry, rowStart: number, rowEnd: number, signal?: AbortSignal): Promise<Uint16Array> {
  if (e.dtype !== 'F16' && e.dtype !== 'BF16') throw new FormatError(e.source.name, `tensor "${e.name}" is ${e.dtype}, not F16 or BF16`);
  const rowBytes = entryRowBytes(e);
  const bytes = await e.source.read(e.offset + rowStart * rowBytes, (rowEnd - rowStart) * rowBytes, signal);
  if (bytes.byteOffset % 2 === 0) return new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2);
  return new Uint16Array(bytes.slice().buffer);
}

function entryRowBytes(e: SafetensorsEntry): number {
  return e.shape.length === 0 ? e.byteLength : e.shape[0] === 0 ? 0 : e.byteLength / e.shape[0]!;
}

function decodeFloats(e: SafetensorsEntry, bytes: Uint8Array): Float32Array {
  const count = bytes.byteLength / BYTES.get(e.dtype)!;
  switch (e.dtype) {
    case 'F32':
      return decodeF32(bytes, count);
    case 'F16':
      return decodeF16(bytes, count);
    case 'BF16':
      return decodeBF16(bytes, count);
    case 'F64': {
      const out = new Float32Array(count);
      const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      for (let i = 0; i < count; i++) out[i] = v.getFloat64(i * 8, true);
      return out;
    }
    default:
      throw new FormatError(e.source.name, `tensor "${e.name}" is ${e.dtype}, not a floating-point tensor`);
  }
}

/** A store over one or more safetensors files (shards). */
export function safetensorsStore(files: readonly SafetensorsFile[], label: string): WeightStore {
  const tensors = new Map<string, SafetensorsEntry>();
  for (const f of files) {
    for (const [name, e] of f.entries) {
      if (tensors.has(name)) throw new FormatError(f.source.name, `tensor "${name}" appears in more than one shard`);
      tensors.set(name, e);
    }
  }
  const store: WeightStore = {
    label,
    tensors,
    async readF32(name, signal) {
      const e = tensors.get(name);
      if (!e) throw new FormatError(label, `no tensor named "${name}"`);
      return readEntryF32(e, signal);
    },
    async readRows(name, rowStart, rowEnd, signal) {
      rowRange(store, name, rowStart, rowEnd);
      return readEntryRowsF32(tensors.get(name)!, rowStart, rowEnd, signal);
    },
    async readRowsHalf(name, rowStart, rowEnd, signal) {
      rowRange(store, name, rowStart, rowEnd);
      return readEntryRowsHalf(tensors.get(name)!, rowStart, rowEnd, signal);
    },
  };
  return store;
}

/**
 * The weights of a Hugging Face folder: `model.safetensors`, or the shards listed in
 * `model.safetensors.index.json`. `prefix` selects other file names (e.g. "adapter_model").
 */
export async function openSafetensorsFolder(files: FileSet, prefix = 'model'): Promise<WeightStore> {
  const index = files.get(`${prefix}.safetensors.index.json`);
  if (index) {
    const json = await readJson(index);
    const weightMap = typeof json === 'object' && json !== null && !Array.isArray(json) && Object.hasOwn(json, 'weight_map') ? (json as { weight_map: unknown }).weight_map : undefined;
    if (typeof weightMap !== 'object' || weightMap === null || Array.isArray(weightMap)) throw new FormatError(index.name, 'has no "weight_map" object (tensor name → shard file)');
    const shardNames = new Set<string>();
    for (const [tensor, shard] of Object.entries(weightMap)) {
      if (typeof shard !== 'string') throw new FormatError(index.name, `maps tensor "${tensor}" to ${JSON.stringify(shard)}, not a shard file name`);
      if (shard.startsWith('/') || shard.startsWith('\\') || /^[A-Za-z]:/.test(shard) || shard.split(/[\\/]/).includes('..')) {
        throw new FormatError(index.name, `names shard "${shard}", a path outside the model's folder: refused`);
      }
      shardNames.add(shard);
    }
    const shards: SafetensorsFile[] = [];
    for (const shard of [...shardNames].sort()) {
      const src = files.get(shard);
      if (!src) throw new FormatError(index.name, `names shard "${shard}", which is not in the folder`);
      shards.push(await readSafetensorsHeader(src));
    }
    const store = safetensorsStore(shards, index.name);
    for (const name of Object.keys(weightMap)) {
      if (!store.tensors.has(name)) throw new FormatError(index.name, `lists tensor "${name}", which is in none of the shards`);
    }
    return store;
  }
  const single = files.get(`${prefix}.safetensors`);
  if (single) return safetensorsStore([await readSafetensorsHeader(single)], single.name);
  const any = [...files.keys()].filter((n) => n.endsWith('.safetensors')).sort();
  if (any.length === 0) throw new FormatError('folder', `no ${prefix}.safetensors or ${prefix}.safetensors.index.json found (files: ${[...files.keys()].join(', ') || 'none'})`);
  const shards: SafetensorsFile[] = [];
  for (const n of any) shards.push(await readSafetensorsHeader(files.get(n)!));
  return safetensorsStore(shards, any.join(', '));
}

/** Serialises named float32 (or float16 / bfloat16 bit patterns, dtype 'BF16') tensors as a safetensors file. */
export function writeSafetensors(
  tensors: ReadonlyArray<{ name: string; shape: readonly number[]; data: Float32Array | Uint16Array | Int32Array; dtype?: 'F32' | 'F16' | 'BF16' | 'I32' }>,
  metadata: Record<string, string> = {},
): Uint8Array {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  let offset = 0;
  for (const t of tensors) {
    const dtype = t.dtype ?? (t.data instanceof Uint16Array ? 'F16' : t.data instanceof Int32Array ? 'I32' : 'F32');
    header[t.name] = { dtype, shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  let json = JSON.stringify(header);
  while ((8 + new TextEncoder().encode(json).length) % 8 !== 0) json += ' ';
  const jsonBytes = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + jsonBytes.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(jsonBytes.length), true);
  out.set(jsonBytes, 8);
  let pos = 8 + jsonBytes.length;
  for (const t of tensors) {
    out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), pos);
    pos += t.data.byteLength;
  }
  return out;
}
