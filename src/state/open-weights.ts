// The models screen's loader: opens what was dropped for one role (headers only) and summarises it.
import { openModel, type OpenedModel } from '../io/open-model.ts';
import type { FileSet } from '../io/source.ts';
import { totalBytes } from '../io/store.ts';
import { loraAdapterFromStore } from '../model/lora.ts';
import type { ModelLoader, ModelSummary } from './models.ts';

const int = (v: unknown): number | null => (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : null);

function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** What the models screen shows about an opened model or adapter, and what the pair check compares. */
export function summarize(opened: OpenedModel): ModelSummary {
  const { store, config } = opened;
  const dtypes: Record<string, number> = {};
  const shapes = new Map<string, readonly number[]>();
  let parameterCount = 0;
  let largest: { name: string; elements: number } | null = null;
  for (const t of store.tensors.values()) {
    const n = numel(t.shape);
    parameterCount += n;
    dtypes[t.dtype] = (dtypes[t.dtype] ?? 0) + n;
    shapes.set(t.name, t.shape);
    if (!largest || n > largest.elements) largest = { name: t.name, elements: n };
  }
  const common = { format: opened.kind, label: opened.label, parameterCount, dtypes, weightBytes: totalBytes(store), largestTensor: largest, shapes };
  if (opened.kind === 'peft-adapter') {
    const adapter = loraAdapterFromStore(store, config);
    const base = config.base_model_name_or_path;
    return {
      ...common,
      kind: 'adapter',
      architecture: typeof base === 'string' && base !== '' ? `LoRA for ${base}` : 'LoRA adapter',
      layers: null,
      dModel: null,
      vocabSize: null,
      adapter: {
        r: adapter.config.r,
        alpha: adapter.config.alpha,
        targets: [...adapter.targets.values()]
          .map((t) => ({ name: t.weight, shape: (t.transposed ? [t.shapeA[1], t.shapeB[0]] : [t.shapeB[0], t.shapeA[1]]) as [number, number] }))
          .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)),
      },
    };
  }
  const modelType = config.model_type;
  return {
    ...common,
    kind: 'model',
    architecture: typeof modelType === 'string' ? modelType : 'unknown',
    layers: int(config.num_hidden_layers ?? config.n_layer),
    dModel: int(config.hidden_size ?? config.n_embd),
    vocabSize: int(config.vocab_size),
  };
}

/** Counts the bytes read through a file set (headers, configs, tokenizers). */
function countingFiles(files: FileSet, onRead: (bytes: number) => void): FileSet {
  return new Map(
    [...files].map(([path, src]) => [
      path,
      {
        name: src.name,
        size: src.size,
        async read(offset: number, length: number, signal?: AbortSignal) {
          const bytes = await src.read(offset, length, signal);
          onRead(bytes.byteLength);
          return bytes;
        },
      },
    ]),
  );
}

/** Opens headers only: tensors are read later, one at a time, by the analyses. */
export const openModelLoader: ModelLoader = async (files, _role, onProgress, signal) => {
  let total = 0;
  for (const src of files.values()) total += src.size;
  let read = 0;
  const opened = await openModel(countingFiles(files, (n) => onProgress((read += n), total)));
  signal.throwIfAborted();
  return summarize(opened);
};
