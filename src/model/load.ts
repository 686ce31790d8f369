// Loading: config → converter → tensors streamed from the store to the backend. A matrix in its
// stored orientation is read in row chunks of about `chunkBytes` into a tensor from
// backend.createEmpty (on WebGPU, row blocks when it exceeds one storage binding). By default
// (dtype 'stored') matrices keep their stored precision: F32 stays f32, F16 f16, BF16 bf16 where the
// backend holds bfloat16 (the CPU backend) and f16 elsewhere, and GGUF's quantized blocks become f16,
// so a model takes about its file's size; 16-bit checkpoints move as their bit patterns, never widened
// to float32 on the host. So the host holds one chunk (plus its 16-bit copy) at a time. Vectors and matrices that must be transposed (GPT-2's
// Conv1D) are small: they are read whole, transformed and uploaded with fromArray.
//
// f16 storage of values beyond float16's range (|x| ≥ 65520) would turn them into infinities: such a
// tensor is kept in float32 instead (reloaded from the file), and onWarning says so.
import { bf16ToF16, f16Overflow, rowChunks } from '../io/chunks.ts';
import { checkFinite, type FiniteOptions } from '../io/finite.ts';
import { openSafetensorsFolder } from '../io/safetensors.ts';
import { FormatError, readJson, type FileSet } from '../io/source.ts';
import { Bf16Bits } from '../io/chunks.ts';
import { formatBytes, readRowsF32, rowLayout, WHOLE_READ_MAX_BYTES, type StoredTensor, type WeightStore } from '../io/store.ts';
import type { Backend, StorageType, Tensor } from './backend.ts';
import { parseConfig, type ModelConfig } from './config.ts';
import { convertNames, type WeightSource, type WeightSpec } from './convert.ts';
import { mergeLora, type LoraAdapter, type LoraFactors, type LoraTarget } from './lora.ts';
import { Transformer } from './transformer.ts';

export const DEFAULT_CHUNK_BYTES = 64 * 1024 * 1024;

export interface LoadOptions extends FiniteOptions {
  signal?: AbortSignal;
  /**
   * Called as checkpoint bytes reach the backend: when a checkpoint tensor is complete, and within a
   * large one after about every `chunkBytes`.
   */
  onProgress?: (bytesDone: number, bytesTotal: number, tensorName: string) => void;
  /** Storage of matrices on the backend (vectors stay f32): their stored precision (see above), or all f32 or all f16. Default 'stored'. */
  dtype?: LoadDType;
  /** A PEFT LoRA adapter merged into the weights as they load. */
  adapter?: LoraAdapter;
  /** File bytes read per step when streaming a matrix. Default DEFAULT_CHUNK_BYTES (64 MiB). */
  chunkBytes?: number;
  /** Refuse to load (MemoryBudgetError) when the weights, as residentBytes counts them, need more bytes. */
  memoryBudgetBytes?: number;
  /** Told when a tensor asked for as f16 is kept in f32 (values beyond float16's range). Default console.warn. */
  onWarning?: (message: string) => void;
}

export class MemoryBudgetError extends Error {
  constructor(
    readonly label: string,
    readonly neededBytes: number,
    readonly budgetBytes: number,
  ) {
    super(`${label}: needs ${gigabytes(neededBytes)} GB for its weights, budget ${gigabytes(budgetBytes)} GB`);
    this.name = 'MemoryBudgetError';
  }
}

export type LoadDType = 'stored' | 'f32' | 'f16';

/** How a matrix is held once loaded (before any fallback to f32 for values beyond float16's range). */
export function residentType(stored: StoredTensor, dtype: LoadDType, bf16: boolean): StorageType {
  if (dtype !== 'stored') return dtype;
  if (stored.dtype === 'F32' || stored.dtype === 'F64') return 'f32';
  return stored.dtype === 'BF16' && bf16 ? 'bf16' : 'f16';
}

/** Bytes a store's tensors take once loaded: matrices as residentType holds them, vectors as float32. */
export function residentBytes(store: WeightStore, dtype: LoadDType, bf16: boolean): number {
  let bytes = 0;
  for (const t of store.tensors.values()) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    bytes += n * (t.shape.length >= 2 && residentType(t, dtype, bf16) !== 'f32' ? 2 : 4);
  }
  return bytes;
}

/** Throws a MemoryBudgetError when the store's weights, once loaded (residentBytes), exceed `budgetBytes`. */
export function checkMemoryBudget(store: WeightStore, config: ModelConfig, dtype: LoadDType, bf16: boolean, budgetBytes: number | undefined): void {
  if (budgetBytes === undefined) return;
  const needed = residentBytes(store, dtype, bf16);
  if (needed > budgetBytes) throw new MemoryBudgetError(`${store.label} (${config.modelType}, ${dtype})`, needed, budgetBytes);
}

/** A Hugging Face folder: config.json and model.safetensors (or shards). */
export async function loadModel(files: FileSet, backend: Backend, opts: LoadOptions = {}): Promise<Transformer> {
  const configFile = files.get('config.json');
  if (!configFile) throw new FormatError('folder', `no config.json (files: ${[...files.keys()].join(', ') || 'none'})`);
  const config = await readJson(configFile);
  const store = checkFinite(await openSafetensorsFolder(files), opts);
  return loadModelFromStore(store, config, backend, opts, configFile.name);
}

/** Any weight store with Hugging Face tensor names, plus its (possibly synthesized) config.json object. */
export async function loadModelFromStore(store: WeightStore, rawConfig: unknown, backend: Backend, opts: LoadOptions = {}, configLabel = 'config.json'): Promise<Transformer> {
  const config = parseConfig(rawConfig, configLabel);
  const dtype = opts.dtype ?? 'stored';
  checkMemoryBudget(store, config, dtype, backend.bf16, opts.memoryBudgetBytes);
  checkLayerCount(store, config, configLabel);
  const specs = convertNames(config, new Set(store.tensors.keys()));
  checkSpecs(store, config, specs);
  checkUnused(store, config, specs, configLabel);
  const adapter = opts.adapter;
  if (adapter) checkAdapterTargets(store, specs, adapter);

  const loader = new Loader(store, backend, opts, specs);
  const weights = new Map<string, Tensor>();
  const sources = new Map<string, WeightSource>();
  try {
    // Specs of one fused tensor are adjacent, so one whole read serves them all.
    let whole: { name: string; data: Float32Array } | undefined;
    const lastPart = new Map(specs.map((s, i) => [s.source.name, i]));
    for (const [i, spec] of specs.entries()) {
      opts.signal?.throwIfAborted();
      const src = spec.source;
      if (spec.shape.length >= 2 && !src.transpose) {
        weights.set(spec.canonical, await loader.streamMatrix(spec, dtype));
      } else {
        if (whole?.name !== src.name) whole = { name: src.name, data: await loader.readWhole(src.name) };
        weights.set(spec.canonical, loader.uploadWhole(spec, whole.data, spec.shape.length >= 2 ? loader.storage(src.name, dtype, false) : 'f32'));
        if (lastPart.get(src.name) === i) await loader.uploadedWhole(src.name);
      }
      sources.set(spec.canonical, src);
    }
  } catch (e) {
    for (const t of weights.values()) backend.dispose(t);
    throw e;
  }
  return new Transformer(config, backend, weights, sources, adapter);
}

class Loader {
  private bytesDone = 0;
  private bytesTotal = 0;
  private unreported = 0;
  private unsynced = 0;
  private readonly doneByTensor = new Map<string, number>();
  private readonly chunkBytes: number;

  constructor(
    private readonly store: WeightStore,
    private readonly backend: Backend,
    private readonly opts: LoadOptions,
    specs: readonly WeightSpec[],
  ) {
    for (const name of new Set(specs.map((s) => s.source.name))) this.bytesTotal += store.tensors.get(name)!.byteLength;
    this.chunkBytes = opts.chunkBytes ?? DEFAULT_CHUNK_BYTES;
    if (!(this.chunkBytes > 0)) throw new RangeError(`chunkBytes must be positive, got ${this.chunkBytes}`);
  }

  /** How tensor `name` is held; one with an adapter's update merged in is new values, not stored bits: f16 or f32. */
  storage(name: string, dtype: LoadDType, merged: boolean): StorageType {
    const t = residentType(this.store.tensors.get(name)!, dtype, this.backend.bf16);
    return merged && t === 'bf16' ? 'f16' : t;
  }

  /** Rows of the stored tensor, chunk by chunk, into a tensor from createEmpty; f16 falls back to f32 on overflow. */
  async streamMatrix(spec: WeightSpec, dtype: LoadDType): Promise<Tensor> {
    const target = this.opts.adapter?.targets.get(spec.source.name);
    const lora = target ? { target, factors: await this.opts.adapter!.readFactors(target, this.opts.signal) } : undefined;
    const t = this.backend.createEmpty(spec.shape, this.storage(spec.source.name, dtype, lora !== undefined));
    if (await this.fillRows(t, spec, lora)) return t;
    this.backend.dispose(t);
    this.warn(`${this.store.label}: tensor "${spec.source.name}" has values beyond float16's range (±65504), so it is kept as float32`);
    const wide = this.backend.createEmpty(spec.shape, 'f32');
    await this.fillRows(wide, spec, lora);
    return wide;
  }

  /** Fills `t` from the file; false (nothing counted) when an f16 tensor would overflow. Disposes `t` on errors. */
  private async fillRows(t: Tensor, spec: WeightSpec, lora: { target: LoraTarget; factors: LoraFactors } | undefined): Promise<boolean> {
    const stored = this.store.tensors.get(spec.source.name)!;
    const { rows, rowLength } = rowLayout(stored);
    const [first, last] = spec.source.rows ?? [0, rows];
    const rowBytes = rows === 0 ? 0 : stored.byteLength / rows;
    const want = t.dtype as StorageType;
    // A store without row reads reads the whole tensor for any chunk: then one chunk is cheapest.
    const chunkBytes = this.store.readRows ? this.chunkBytes : Math.max(this.chunkBytes, (last - first) * rowBytes);
    // f16 writes start at even elements: with rows of odd length, chunks take an even number of rows.
    const chunks = rowChunks(first, last, rowBytes, chunkBytes, want === 'f16' && rowLength % 2 === 1 ? 2 : 1);
    let counted = 0;
    try {
      for (const [a, b] of chunks) {
        this.opts.signal?.throwIfAborted();
        const data = await this.readChunk(stored, a, b, want, lora);
        if (!data) {
          // Counted bytes are read again into the f32 tensor: they count on top, so progress never goes back.
          this.bytesTotal += counted;
          this.doneByTensor.set(stored.name, (this.doneByTensor.get(stored.name) ?? 0) - counted);
          return false;
        }
        this.backend.writeRows(t, a - first, data);
        await this.uploaded(stored.name, (b - a) * rowBytes);
        counted += (b - a) * rowBytes;
      }
      return true;
    } catch (e) {
      this.backend.dispose(t);
      throw e;
    }
  }

  /** Rows [a, b) as f16 or bf16 bits or float32 values; undefined when f16 storage would overflow. */
  private async readChunk(stored: StoredTensor, a: number, b: number, want: StorageType, lora?: { target: LoraTarget; factors: LoraFactors }): Promise<Float32Array | Uint16Array | undefined> {
    const { store } = this;
    const signal = this.opts.signal;
    if (want === 'bf16' && !lora && store.readRowsHalf && stored.dtype === 'BF16') {
      const raw = await store.readRowsHalf(stored.name, a, b, signal);
      return new Bf16Bits(raw.buffer as ArrayBuffer, raw.byteOffset, raw.length);
    }
    if (want === 'f16' && !lora && store.readRowsHalf && (stored.dtype === 'F16' || stored.dtype === 'BF16')) {
      const raw = await store.readRowsHalf(stored.name, a, b, signal);
      if (stored.dtype === 'F16') return raw;
      const { bits, overflow } = bf16ToF16(raw);
      return overflow > 0 ? undefined : bits;
    }
    let values = await readRowsF32(store, stored.name, a, b, signal ? { signal } : {});
    if (lora) values = mergeLoraRows(values, a, b, lora.target, lora.factors);
    return want === 'f16' && f16Overflow(values) > 0 ? undefined : values;
  }

  /** The whole tensor as float32, with the adapter's update merged in. */
  async readWhole(name: string): Promise<Float32Array> {
    const stored = this.store.tensors.get(name)!;
    const f32Bytes = stored.shape.reduce((a, b) => a * b, 1) * 4;
    if (f32Bytes > WHOLE_READ_MAX_BYTES) {
      throw new FormatError(this.store.label, `tensor "${name}" is ${formatBytes(f32Bytes)} as float32 and must be read whole to be transposed (limit ${formatBytes(WHOLE_READ_MAX_BYTES)})`);
    }
    const data = await this.store.readF32(name, this.opts.signal);
    const target = this.opts.adapter?.targets.get(name);
    return target ? mergeLora(data, stored.shape, target, await this.opts.adapter!.readFactors(target, this.opts.signal)) : data;
  }

  uploadWhole(spec: WeightSpec, data: Float32Array, dtype: StorageType): Tensor {
    const { name } = spec.source;
    const stored = this.store.tensors.get(name)!;
    const values = transform(data, stored.shape, spec.source);
    let want = dtype;
    if (want === 'f16' && f16Overflow(values) > 0) {
      this.warn(`${this.store.label}: tensor "${name}" has values beyond float16's range (±65504), so it is kept as float32`);
      want = 'f32';
    }
    return this.backend.fromArray(values, spec.shape, want);
  }

  /** Progress for a tensor read whole, once its last part is uploaded. */
  async uploadedWhole(name: string): Promise<void> {
    await this.uploaded(name, this.store.tensors.get(name)!.byteLength);
  }

  /** Counts uploaded bytes; reports progress when a tensor completes or a chunk's worth has passed; bounds queued uploads. */
  private async uploaded(name: string, bytes: number): Promise<void> {
    this.bytesDone += bytes;
    this.unreported += bytes;
    this.unsynced += bytes;
    const done = (this.doneByTensor.get(name) ?? 0) + bytes;
    this.doneByTensor.set(name, done);
    if (this.unsynced >= this.chunkBytes) {
      // Uploads queue on the host until submitted: waiting here keeps at most about one chunk in flight.
      await this.backend.sync();
      this.unsynced = 0;
    }
    if (done >= this.store.tensors.get(name)!.byteLength || this.unreported >= this.chunkBytes) {
      this.unreported = 0;
      this.opts.onProgress?.(this.bytesDone, this.bytesTotal, name);
    }
  }

  private warn(message: string): void {
    (this.opts.onWarning ?? console.warn)(message);
  }
}

/** Rows [a, b) of a stored weight with its LoRA update: the factors restricted to those rows. */
function mergeLoraRows(rows: Float32Array, a: number, b: number, target: LoraTarget, f: LoraFactors): Float32Array {
  const [r, nIn] = target.shapeA;
  const nOut = target.shapeB[0];
  if (!target.transposed) {
    // Stored [out, in]: rows are outputs, so rows of B.
    return mergeLora(rows, [b - a, nIn], { ...target, shapeB: [b - a, r] }, { A: f.A, B: f.B.subarray(a * r, b * r) });
  }
  // Stored [in, out]: rows are inputs, so columns of A.
  const A = new Float32Array(r * (b - a));
  for (let k = 0; k < r; k++) A.set(f.A.subarray(k * nIn + a, k * nIn + b), k * (b - a));
  return mergeLora(rows, [b - a, nOut], { ...target, shapeA: [r, b - a] }, { A, B: f.B });
}

function gigabytes(bytes: number): string {
  return (bytes / 1e9).toFixed(2);
}

/** Reads only config.json, e.g. to estimate memory before loading. */
export async function readModelConfig(files: FileSet): Promise<ModelConfig> {
  const configFile = files.get('config.json');
  if (!configFile) throw new FormatError('folder', `no config.json (files: ${[...files.keys()].join(', ') || 'none'})`);
  return parseConfig(await readJson(configFile), configFile.name);
}

function checkSpecs(store: WeightStore, config: ModelConfig, specs: readonly WeightSpec[]): void {
  // A fused tensor must hold exactly the parts split from it.
  const fusedRows = new Map<string, number>();
  for (const { source } of specs) if (source.rows) fusedRows.set(source.name, Math.max(fusedRows.get(source.name) ?? 0, source.rows[1]));
  for (const spec of specs) {
    const { name, transpose, rows } = spec.source;
    const t = store.tensors.get(name);
    if (!t) throw new FormatError(store.label, `no tensor "${name}", which a ${config.modelType} model needs for ${spec.canonical}`);
    const oriented = transpose && t.shape.length === 2 ? [t.shape[1]!, t.shape[0]!] : [...t.shape];
    const expected = rows ? [fusedRows.get(name)!, ...spec.shape.slice(1)] : spec.shape;
    if (oriented.length !== expected.length || oriented.some((d, i) => d !== expected[i])) {
      throw new FormatError(
        store.label,
        `tensor "${name}" has shape [${t.shape.join(', ')}]${transpose ? ' (stored [in, out])' : ''}, but config.json implies [${expected.join(', ')}] for ${spec.canonical}`,
      );
    }
  }
}

/** Layer numbers in checkpoint names: "model.layers.3.…", "transformer.h.3.…". */
const LAYER_NAME = /(?:^|\.)(?:layers|h)\.(\d+)\./;

/**
 * The config's layer count against the layers the checkpoint holds, before anything is built from
 * it: a config asking for 10⁹ layers is refused here, not by running out of memory.
 */
function checkLayerCount(store: WeightStore, config: ModelConfig, configLabel: string): void {
  let present = 0;
  for (const name of store.tensors.keys()) {
    const m = LAYER_NAME.exec(name);
    if (m) present = Math.max(present, Number(m[1]) + 1);
  }
  if (config.nLayers > present) {
    throw new FormatError(configLabel, `says the model has ${config.nLayers} layers, but ${store.label} holds tensors for ${present === 0 ? 'none' : present === 1 ? 'layer 0 only' : `layers 0..${present - 1}`}`);
  }
}

/**
 * Checkpoint tensors that the config leaves unused mean config and weights disagree (a config with
 * fewer layers than the checkpoint would silently drop the rest): refused, naming them. Left out:
 * buffers some exporters save (GPT-2's attention masks, rotary inverse frequencies), a tied model's
 * saved lm_head, and a multimodal checkpoint's vision tower.
 */
function checkUnused(store: WeightStore, config: ModelConfig, specs: readonly WeightSpec[], configLabel: string): void {
  const used = new Set(specs.map((s) => s.source.name));
  const ignorable = (name: string) =>
    /(?:^|\.)attn\.(?:masked_)?bias$/.test(name) ||
    name.endsWith('rotary_emb.inv_freq') ||
    (config.tiedEmbeddings && /(?:^|\.)lm_head\.weight$/.test(name)) ||
    /(?:^|\.)(?:vision_tower|vision_model|multi_modal_projector)\./.test(name);
  const unused = [...store.tensors.keys()].filter((n) => !used.has(n) && !ignorable(n));
  if (unused.length === 0) return;
  const shown = unused.slice(0, 6).join(', ') + (unused.length > 6 ? `, and ${unused.length - 6} more` : '');
  throw new FormatError(store.label, `holds ${unused.length} tensor${unused.length === 1 ? '' : 's'} that a ${config.modelType} model with ${config.nLayers} layers as ${configLabel} describes does not use: ${shown}`);
}

function checkAdapterTargets(store: WeightStore, specs: readonly WeightSpec[], adapter: LoraAdapter): void {
  const used = new Set(specs.map((s) => s.source.name));
  for (const target of adapter.targets.values()) {
    const base = store.tensors.get(target.weight);
    if (!base || !used.has(target.weight)) {
      throw new FormatError(adapter.label, `adapts "${target.weight}", which the base model (${store.label}) does not have`);
    }
    const [out, inp] = target.transposed ? [base.shape[1], base.shape[0]] : [base.shape[0], base.shape[1]];
    if (base.shape.length !== 2 || target.shapeB[0] !== out || target.shapeA[1] !== inp) {
      throw new FormatError(
        adapter.label,
        `LoRA factors for "${target.weight}" (A [${target.shapeA.join(', ')}], B [${target.shapeB.join(', ')}]) do not fit the base weight [${base.shape.join(', ')}] in ${store.label}`,
      );
    }
  }
}

function transform(data: Float32Array, shape: readonly number[], src: WeightSource): Float32Array {
  let values = data;
  // Row length once in [out, in] orientation (1 for vectors).
  let cols = shape.length >= 2 ? shape[1]! : 1;
  if (src.transpose) {
    const rows = shape[0]!;
    const t = new Float32Array(data.length);
    for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) t[j * rows + i] = data[i * cols + j]!;
    values = t;
    cols = rows;
  }
  return src.rows ? values.slice(src.rows[0] * cols, src.rows[1] * cols) : values;
}
