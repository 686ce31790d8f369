// Loading: config → converter → tensors read one at a time from the store, transformed (transpose,
// split of fused tensors, LoRA merge) and uploaded, so no more than one checkpoint tensor is on the
// host at once.
import { openSafetensorsFolder } from '../io/safetensors.ts';
import { FormatError, readJson, type FileSet } from '../io/source.ts';
import type { WeightStore } from '../io/store.ts';
import type { Backend, Tensor } from './backend.ts';
import { parseConfig, type ModelConfig } from './config.ts';
import { convertNames, type WeightSource, type WeightSpec } from './convert.ts';
import { mergeLora, type LoraAdapter } from './lora.ts';
import { Transformer } from './transformer.ts';

export interface LoadOptions {
  signal?: AbortSignal;
  /** Called after each checkpoint tensor is uploaded. */
  onProgress?: (bytesDone: number, bytesTotal: number, tensorName: string) => void;
  /** Storage of matrices on the backend (vectors stay f32). Default f32. */
  dtype?: 'f32' | 'f16';
  /** A PEFT LoRA adapter merged into the weights as they load. */
  adapter?: LoraAdapter;
}

/** A Hugging Face folder: config.json and model.safetensors (or shards). */
export async function loadModel(files: FileSet, backend: Backend, opts: LoadOptions = {}): Promise<Transformer> {
  const configFile = files.get('config.json');
  if (!configFile) throw new FormatError('folder', `no config.json (files: ${[...files.keys()].join(', ') || 'none'})`);
  const config = await readJson(configFile);
  const store = await openSafetensorsFolder(files);
  return loadModelFromStore(store, config, backend, opts, configFile.name);
}

/** Any weight store with Hugging Face tensor names, plus its (possibly synthesized) config.json object. */
export async function loadModelFromStore(store: WeightStore, rawConfig: unknown, backend: Backend, opts: LoadOptions = {}, configLabel = 'config.json'): Promise<Transformer> {
  const config = parseConfig(rawConfig, configLabel);
  const specs = convertNames(config, new Set(store.tensors.keys()));
  checkSpecs(store, config, specs);
  const adapter = opts.adapter;
  if (adapter) checkAdapterTargets(store, specs, adapter);

  const sourceNames = [...new Set(specs.map((s) => s.source.name))];
  const bytesTotal = sourceNames.reduce((n, name) => n + store.tensors.get(name)!.byteLength, 0);
  let bytesDone = 0;
  const weights = new Map<string, Tensor>();
  const sources = new Map<string, WeightSource>();
  try {
    // Specs of one fused tensor are adjacent, so one read serves them all.
    let current: { name: string; data: Float32Array } | undefined;
    for (const spec of specs) {
      opts.signal?.throwIfAborted();
      const src = spec.source;
      if (current?.name !== src.name) {
        if (current) report(current.name);
        let data = await store.readF32(src.name, opts.signal);
        const target = adapter?.targets.get(src.name);
        if (adapter && target) data = mergeLora(data, store.tensors.get(src.name)!.shape, target, await adapter.readFactors(target, opts.signal));
        current = { name: src.name, data };
      }
      const values = transform(current.data, store.tensors.get(src.name)!.shape, src);
      const dtype = spec.shape.length >= 2 ? (opts.dtype ?? 'f32') : 'f32';
      weights.set(spec.canonical, backend.fromArray(values, spec.shape, dtype));
      sources.set(spec.canonical, src);
    }
    if (current) report(current.name);
  } catch (e) {
    for (const t of weights.values()) backend.dispose(t);
    throw e;
  }
  return new Transformer(config, backend, weights, sources, adapter);

  function report(name: string): void {
    bytesDone += store.tensors.get(name)!.byteLength;
    opts.onProgress?.(bytesDone, bytesTotal, name);
  }
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
