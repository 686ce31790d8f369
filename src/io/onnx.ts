// ONNX models: the initializers of ModelProto.graph as a WeightStore, read by walking the protobuf
// by byte range (raw tensor data is never read until asked for), and small graph edits for the
// runner (listing node outputs, adding graph outputs).
import { decodeBF16, decodeF16, decodeF32 } from './dtype.ts';
import { concatBytes, fields, I32, LEN, lenField, packedVarints, SourceCursor, str, varints, withProtoErrors, type Field } from './protobuf.ts';
import { FormatError, type ByteSource, type FileSet } from './source.ts';
import type { StoredDType, StoredTensor, WeightStore } from './store.ts';

// ModelProto.graph; GraphProto fields; TensorProto fields (onnx/onnx.proto).
const MODEL_GRAPH = 7;
const GRAPH = { node: 1, initializer: 5, input: 11, output: 12, valueInfo: 13 } as const;
const TENSOR = { dims: 1, dataType: 2, floatData: 4, int32Data: 5, int64Data: 7, name: 8, rawData: 9, doubleData: 10, externalData: 13, dataLocation: 14 } as const;

/** TensorProto.DataType → stored dtype, byte size, and the typed field that holds it when not raw. */
const DATA_TYPES: Record<number, { dtype: StoredDType; size: number; field: number }> = {
  1: { dtype: 'F32', size: 4, field: TENSOR.floatData },
  2: { dtype: 'U8', size: 1, field: TENSOR.int32Data },
  3: { dtype: 'I8', size: 1, field: TENSOR.int32Data },
  5: { dtype: 'I16', size: 2, field: TENSOR.int32Data },
  6: { dtype: 'I32', size: 4, field: TENSOR.int32Data },
  7: { dtype: 'I64', size: 8, field: TENSOR.int64Data },
  9: { dtype: 'BOOL', size: 1, field: TENSOR.int32Data },
  10: { dtype: 'F16', size: 2, field: TENSOR.int32Data },
  11: { dtype: 'F64', size: 8, field: TENSOR.doubleData },
  16: { dtype: 'BF16', size: 2, field: TENSOR.int32Data },
};
/** More dimensions than any real tensor has: a header that claims more is refused before anything is allocated. */
const MAX_RANK = 64;
const DATA_TYPE_NAMES: Record<number, string> = { 4: 'UINT16', 8: 'STRING', 12: 'UINT32', 13: 'UINT64', 14: 'COMPLEX64', 15: 'COMPLEX128', 17: 'FLOAT8E4M3FN', 18: 'FLOAT8E4M3FNUZ', 19: 'FLOAT8E5M2', 20: 'FLOAT8E5M2FNUZ', 21: 'UINT4', 22: 'INT4' };

export interface OnnxInitializer extends StoredTensor {
  readonly dataType: number;
  readonly source: ByteSource;
  /** Where the values are: raw little-endian bytes, or a typed repeated field inside the TensorProto at [start, end). */
  readonly data: { kind: 'raw'; start: number; end: number } | { kind: 'typed'; start: number; end: number };
}

async function readInitializer(src: ByteSource, files: FileSet | undefined, start: number, end: number): Promise<OnnxInitializer> {
  const cur = new SourceCursor(src, start, end);
  let name = '';
  const dims: number[] = [];
  let dataType = 0;
  let raw: Field | undefined;
  let typed = false;
  let external = false;
  const externalData: Record<string, string> = {};
  for (let f = await cur.next(); f; f = await cur.next()) {
    if (f.no === TENSOR.name) name = new TextDecoder().decode(await cur.read(f));
    else if (f.no === TENSOR.dims) {
      for (const v of f.wire === LEN ? packedVarints(await cur.read(f)) : [f.value]) {
        if (dims.length >= MAX_RANK) throw new FormatError(src.name, `initializer "${name}" has more than ${MAX_RANK} dimensions`);
        dims.push(Number(v));
      }
    }
    else if (f.no === TENSOR.dataType) dataType = Number(f.value);
    else if (f.no === TENSOR.rawData) raw = f;
    else if (f.no === TENSOR.dataLocation) external = f.value === 1n;
    else if (f.no === TENSOR.externalData) {
      const entry = await cur.read(f);
      let key = '';
      let value = '';
      for (const g of fields(entry)) {
        if (g.no === 1) key = str(entry, g);
        if (g.no === 2) value = str(entry, g);
      }
      externalData[key] = value;
    } else if (f.no === TENSOR.floatData || f.no === TENSOR.int32Data || f.no === TENSOR.int64Data || f.no === TENSOR.doubleData) typed = true;
  }
  const type = Object.hasOwn(DATA_TYPES, dataType) ? DATA_TYPES[dataType] : undefined;
  if (!type) throw new FormatError(src.name, `initializer "${name}" has ONNX data type ${DATA_TYPE_NAMES[dataType] ?? dataType}, which NeuroDiff cannot read`);
  const count = dims.reduce((a, b) => a * b, 1);
  if (dims.some((d) => !Number.isSafeInteger(d) || d < 0) || !Number.isSafeInteger(count)) throw new FormatError(src.name, `initializer "${name}" has impossible dimensions ${JSON.stringify(dims)}`);
  const byteLength = count * type.size;
  const base = { name, shape: dims, dtype: type.dtype, byteLength, dataType };
  if (external) {
    const location = externalData.location ?? '';
    const target = files?.get(location);
    if (!target) {
      throw new FormatError(src.name, `initializer "${name}" keeps its data in the external file "${location}", which is not among the files given: add it beside the .onnx file`);
    }
    const offset = Number(externalData.offset ?? 0);
    const length = Number(externalData.length ?? byteLength);
    if (length !== byteLength) throw new FormatError(src.name, `initializer "${name}" claims ${length} bytes of external data but ${type.dtype}${JSON.stringify(dims)} needs ${byteLength}`);
    if (offset + length > target.size) throw new FormatError(target.name, `truncated: initializer "${name}" ends at byte ${offset + length}, the file has ${target.size} bytes`);
    return { ...base, source: target, data: { kind: 'raw', start: offset, end: offset + length } };
  }
  if (raw) {
    if (raw.end - raw.start !== byteLength) throw new FormatError(src.name, `initializer "${name}" has ${raw.end - raw.start} bytes of raw_data but ${type.dtype}${JSON.stringify(dims)} needs ${byteLength}`);
    return { ...base, source: src, data: { kind: 'raw', start: raw.start, end: raw.end } };
  }
  if (!typed && count > 0) throw new FormatError(src.name, `initializer "${name}" has no data`);
  return { ...base, source: src, data: { kind: 'typed', start, end } };
}

/** The values of an initializer as float32 (integer types converted). */
export async function readInitializerF32(t: OnnxInitializer, signal?: AbortSignal): Promise<Float32Array> {
  const count = t.shape.reduce((a, b) => a * b, 1);
  const type = DATA_TYPES[t.dataType]!;
  let bytes: Uint8Array;
  if (t.data.kind === 'raw') bytes = await t.source.read(t.data.start, t.data.end - t.data.start, signal);
  else {
    // Values in a typed repeated field: floats and doubles are fixed-width, integers (and the bit
    // patterns of f16/bf16) are varints, one int32 per value.
    const proto = await t.source.read(t.data.start, t.data.end - t.data.start, signal);
    const chunks: Uint8Array[] = [];
    const ints: bigint[] = [];
    // Bounded by the declared shape: a field holding more values than the shape needs is refused below.
    for (const f of fields(proto)) {
      if (f.no !== type.field) continue;
      if (type.field === TENSOR.floatData || type.field === TENSOR.doubleData) chunks.push(proto.subarray(f.start, f.end));
      else {
        for (const x of varints(proto, f)) ints.push(x);
        if (ints.length > count) throw new FormatError(t.source.name, `initializer "${t.name}" holds more values than its shape ${JSON.stringify(t.shape)} needs (${count})`);
      }
    }
    if (type.field === TENSOR.floatData || type.field === TENSOR.doubleData) bytes = concatBytes(chunks);
    else {
      bytes = new Uint8Array(count * type.size);
      const v = new DataView(bytes.buffer);
      ints.forEach((x, i) => {
        if (type.size === 8) v.setBigInt64(i * 8, BigInt.asIntN(64, x), true);
        else if (type.size === 4) v.setInt32(i * 4, Number(BigInt.asIntN(32, x)), true);
        else if (type.size === 2) v.setUint16(i * 2, Number(x & 0xffffn), true);
        else v.setUint8(i, Number(x & 0xffn));
      });
    }
    if (bytes.length !== count * type.size) throw new FormatError(t.source.name, `initializer "${t.name}" holds ${bytes.length / type.size} values, its shape ${JSON.stringify(t.shape)} needs ${count}`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  switch (t.dtype) {
    case 'F32':
      return decodeF32(bytes, count);
    case 'F16':
      return decodeF16(bytes, count);
    case 'BF16':
      return decodeBF16(bytes, count);
    default: {
      const out = new Float32Array(count);
      const get: (i: number) => number =
        t.dtype === 'F64' ? (i) => view.getFloat64(i * 8, true)
        : t.dtype === 'I64' ? (i) => Number(view.getBigInt64(i * 8, true))
        : t.dtype === 'I32' ? (i) => view.getInt32(i * 4, true)
        : t.dtype === 'I16' ? (i) => view.getInt16(i * 2, true)
        : t.dtype === 'I8' ? (i) => view.getInt8(i)
        : (i) => view.getUint8(i);
      for (let i = 0; i < count; i++) out[i] = get(i);
      return out;
    }
  }
}

/** Byte ranges of ModelProto.graph (it may legally appear more than once; protobuf merges them). */
async function graphRanges(src: ByteSource): Promise<Field[]> {
  const cur = new SourceCursor(src, 0, src.size);
  const graphs: Field[] = [];
  for (let f = await cur.next(); f; f = await cur.next()) if (f.no === MODEL_GRAPH && f.wire === LEN) graphs.push(f);
  return graphs;
}

export interface OnnxModel {
  readonly initializers: ReadonlyMap<string, OnnxInitializer>;
  /** The graph's nodes in file order (topological, as the format requires). */
  readonly nodes: readonly OnnxNode[];
}

/**
 * The initializers and nodes of an .onnx file, walked by byte range: initializer data (inline or in
 * the external files that `files` supplies) is located, never read.
 */
export async function readOnnxModel(src: ByteSource, files?: FileSet): Promise<OnnxModel> {
  const initializers = new Map<string, OnnxInitializer>();
  const nodes: OnnxNode[] = [];
  await withProtoErrors(src.name, 'not a readable ONNX model', async () => {
    const graphs = await graphRanges(src);
    if (graphs.length === 0) throw new FormatError(src.name, 'not an ONNX model: no graph in the ModelProto');
    for (const g of graphs) {
      const cur = new SourceCursor(src, g.start, g.end);
      for (let f = await cur.next(); f; f = await cur.next()) {
        if (f.wire !== LEN) continue;
        if (f.no === GRAPH.initializer) {
          const t = await readInitializer(src, files, f.start, f.end);
          initializers.set(t.name, t);
        } else if (f.no === GRAPH.node) nodes.push(parseNode(await cur.read(f)));
      }
    }
  });
  return { initializers, nodes };
}

/**
 * The names of the external data files an .onnx file refers to that would lie in its own folder
 * (a location with a path separator or "..", or an absolute one, is not a companion: it is refused
 * when read).
 */
export async function externalDataLocations(src: ByteSource): Promise<string[]> {
  const found = new Set<string>();
  await withProtoErrors(src.name, 'not a readable ONNX model', async () => {
    for (const g of await graphRanges(src)) {
      const cur = new SourceCursor(src, g.start, g.end);
      for (let f = await cur.next(); f; f = await cur.next()) {
        if (f.no !== GRAPH.initializer || f.wire !== LEN) continue;
        const t = new SourceCursor(src, f.start, f.end);
        for (let h = await t.next(); h; h = await t.next()) {
          if (h.no !== TENSOR.externalData || h.wire !== LEN) continue;
          const entry = await t.read(h);
          let key = '';
          let value = '';
          for (const e of fields(entry)) {
            if (e.no === 1) key = str(entry, e);
            if (e.no === 2) value = str(entry, e);
          }
          if (key === 'location' && value && !/[\\/]/.test(value) && value !== '..' && value !== '.') found.add(value);
        }
      }
    }
  });
  return [...found].sort();
}

/**
 * The initializers of an .onnx file as a WeightStore, under their ONNX names. `files` supplies the
 * external data files that large exports keep beside the model.
 */
export async function readOnnxInitializers(src: ByteSource, files?: FileSet): Promise<WeightStore & { tensors: ReadonlyMap<string, OnnxInitializer> }> {
  const tensors = (await readOnnxModel(src, files)).initializers;
  return {
    label: src.name,
    tensors,
    async readF32(name, signal) {
      const t = tensors.get(name);
      if (!t) throw new FormatError(src.name, `no initializer named "${name}"`);
      return readInitializerF32(t, signal);
    },
  };
}

export type OnnxAttribute = { readonly kind: 'int'; readonly value: number } | { readonly kind: 'float'; readonly value: number } | { readonly kind: 'string'; readonly value: string } | { readonly kind: 'ints'; readonly value: readonly number[] } | { readonly kind: 'other' };

export interface OnnxNode {
  readonly name: string;
  readonly opType: string;
  /** "" for the default ONNX domain, "com.microsoft" for onnxruntime's contrib ops. */
  readonly domain: string;
  readonly inputs: readonly string[];
  readonly outputs: readonly string[];
  readonly attributes: ReadonlyMap<string, OnnxAttribute>;
  /** NodeProto.metadata_props: PyTorch 2's exporter writes pkg.torch.onnx.name_scopes and class_hierarchy. */
  readonly metadata: ReadonlyMap<string, string>;
}

// NodeProto fields; AttributeProto fields (onnx/onnx.proto).
const NODE = { input: 1, output: 2, name: 3, opType: 4, attribute: 5, domain: 7, metadata: 9 } as const;
const ATTR = { name: 1, f: 2, i: 3, s: 4, ints: 8 } as const;

function parseAttribute(buf: Uint8Array, start: number, end: number): [string, OnnxAttribute] {
  let name = '';
  let attr: OnnxAttribute = { kind: 'other' };
  const ints: number[] = [];
  for (const h of fields(buf, start, end)) {
    if (h.no === ATTR.name) name = str(buf, h);
    else if (h.no === ATTR.i) attr = { kind: 'int', value: Number(BigInt.asIntN(64, h.value)) };
    else if (h.no === ATTR.f && h.wire === I32) attr = { kind: 'float', value: new DataView(buf.buffer, buf.byteOffset + h.start, 4).getFloat32(0, true) };
    else if (h.no === ATTR.s) attr = { kind: 'string', value: str(buf, h) };
    else if (h.no === ATTR.ints) for (const v of varints(buf, h)) ints.push(Number(BigInt.asIntN(64, v)));
  }
  if (ints.length > 0) attr = { kind: 'ints', value: ints };
  return [name, attr];
}

/** A NodeProto held in memory at [start, end). */
export function parseNode(buf: Uint8Array, start = 0, end = buf.length): OnnxNode {
  const inputs: string[] = [];
  const outputs: string[] = [];
  const attributes = new Map<string, OnnxAttribute>();
  const metadata = new Map<string, string>();
  let name = '';
  let opType = '';
  let domain = '';
  for (const h of fields(buf, start, end)) {
    if (h.no === NODE.input) inputs.push(str(buf, h));
    else if (h.no === NODE.output) outputs.push(str(buf, h));
    else if (h.no === NODE.name) name = str(buf, h);
    else if (h.no === NODE.opType) opType = str(buf, h);
    else if (h.no === NODE.domain) domain = str(buf, h);
    else if (h.no === NODE.attribute && h.wire === LEN) {
      const [k, v] = parseAttribute(buf, h.start, h.end);
      attributes.set(k, v);
    } else if (h.no === NODE.metadata && h.wire === LEN) {
      let key = '';
      let value = '';
      for (const g of fields(buf, h.start, h.end)) {
        if (g.no === 1) key = str(buf, g);
        if (g.no === 2) value = str(buf, g);
      }
      metadata.set(key, value);
    }
  }
  return { name, opType, domain, inputs, outputs, attributes, metadata };
}

export interface OnnxGraphInfo {
  readonly inputs: readonly string[];
  readonly outputs: readonly string[];
  readonly nodes: readonly OnnxNode[];
  readonly initializers: ReadonlySet<string>;
}

function graphField(model: Uint8Array, name: string): Field {
  let graph: Field | undefined;
  for (const f of fields(model)) if (f.no === MODEL_GRAPH && f.wire === LEN) graph = f;
  if (!graph) throw new FormatError(name, 'not an ONNX model: no graph in the ModelProto');
  return graph;
}

/** The graph's inputs, outputs and nodes, from a model held in memory. */
export async function onnxGraphInfo(model: Uint8Array, name = 'model.onnx'): Promise<OnnxGraphInfo> {
  return withProtoErrors(name, 'not a readable ONNX model', async () => {
    const g = graphField(model, name);
    const inputs: string[] = [];
    const outputs: string[] = [];
    const nodes: OnnxNode[] = [];
    const initializers = new Set<string>();
    const nameOf = (f: Field) => {
      for (const h of fields(model, f.start, f.end)) if (h.no === 1) return str(model, h);
      return '';
    };
    for (const f of fields(model, g.start, g.end)) {
      if (f.no === GRAPH.input) inputs.push(nameOf(f));
      else if (f.no === GRAPH.output) outputs.push(nameOf(f));
      else if (f.no === GRAPH.initializer) {
        for (const h of fields(model, f.start, f.end)) if (h.no === TENSOR.name) initializers.add(str(model, h));
      } else if (f.no === GRAPH.node) nodes.push(parseNode(model, f.start, f.end));
    }
    return { inputs: inputs.filter((n) => !initializers.has(n)), outputs, nodes, initializers };
  });
}

/**
 * A copy of the model whose graph also outputs the named intermediate values (ValueInfoProto with
 * a name and no type: onnxruntime infers it). The graph message is rewritten with its new length.
 */
export function addGraphOutputs(model: Uint8Array, names: readonly string[], name = 'model.onnx'): Uint8Array {
  const g = graphField(model, name);
  const extra = names.map((n) => lenField(GRAPH.output, lenField(1, n)));
  const graph = concatBytes([model.subarray(g.start, g.end), ...extra]);
  return concatBytes([model.subarray(0, g.tag), lenField(MODEL_GRAPH, graph), model.subarray(g.end)]);
}

/** The .onnx file of a folder, if it has one. */
export function onnxFile(files: FileSet): ByteSource | undefined {
  const names = [...files.keys()].filter((n) => n.endsWith('.onnx')).sort();
  if (names.length > 1) throw new FormatError(names.join(', '), 'more than one .onnx file: give one model at a time');
  return names[0] === undefined ? undefined : files.get(names[0]);
}
