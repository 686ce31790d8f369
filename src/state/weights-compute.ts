// The weight diff of a loaded pair, as the weights view runs it: a fine-tuned model is compared
// tensor by tensor; a fine-tuned PEFT adapter gives ΔW from its factors, against the base.
import { diffWeights } from '../analysis/weights/diff.ts';
import { diffLora } from '../analysis/weights/lora.ts';
import type { WeightsDiff } from '../analysis/weights/types.ts';
import type { MatrixBackend } from '../analysis/linalg/randomized.ts';
import { openModel } from '../io/open-model.ts';
import { FormatError, type FileSet } from '../io/source.ts';
import type { WeightStore } from '../io/store.ts';
import { loraAdapterFromStore } from '../model/lora.ts';

export interface DiffProgress {
  /** Tensors finished, of total. */
  done: number;
  total: number;
  /** The tensor finished last. */
  name: string;
  /** Bytes of both models read so far, of those the run reads. */
  bytesDone: number;
  bytesTotal: number;
}

export interface WeightsRequest {
  base: FileSet;
  ft: FileSet;
  /** Singular values kept per tensor (the spectrum plot and the energy curve use them). */
  topK: number;
}

export interface ComputeOptions {
  backend: MatrixBackend;
  signal?: AbortSignal;
  onProgress?: (p: DiffProgress) => void;
}

/** A store that counts the bytes of the tensors read through it. */
function counting(store: WeightStore, onRead: (bytes: number) => void): WeightStore {
  return {
    label: store.label,
    tensors: store.tensors,
    async readF32(name, signal) {
      const data = await store.readF32(name, signal);
      onRead(store.tensors.get(name)?.byteLength ?? 0);
      return data;
    },
  };
}

export async function computeWeightsDiff(req: WeightsRequest, opts: ComputeOptions): Promise<WeightsDiff> {
  const base = await openModel(req.base);
  if (base.kind === 'peft-adapter') throw new FormatError(base.label, 'the base is a PEFT adapter: drop the model it was trained on as the base');
  const ft = await openModel(req.ft);
  opts.signal?.throwIfAborted();
  let bytesDone = 0;
  let bytesTotal = 0;
  const addRead = (n: number) => (bytesDone += n);
  const report = (done: number, total: number, name: string) => opts.onProgress?.({ done, total, name, bytesDone, bytesTotal });
  const run = { backend: opts.backend, topK: req.topK, onProgress: report, ...(opts.signal ? { signal: opts.signal } : {}) };

  if (ft.kind === 'peft-adapter') {
    const adapter = loraAdapterFromStore(ft.store, ft.config);
    for (const name of adapter.targets.keys()) bytesTotal += base.store.tensors.get(name)?.byteLength ?? 0;
    return diffLora(counting(base.store, addRead), adapter, run);
  }
  for (const [name, t] of base.store.tensors) {
    const other = ft.store.tensors.get(name);
    if (other && other.shape.length === t.shape.length && other.shape.every((d, i) => d === t.shape[i])) bytesTotal += t.byteLength + other.byteLength;
  }
  return diffWeights(counting(base.store, addRead), counting(ft.store, addRead), run);
}
