// The weight diff of an opened pair: a fine-tuned model is compared tensor by tensor; a fine-tuned
// PEFT adapter gives ΔW from its factors, against the base.
import { diffWeights } from '../analysis/weights/diff.ts';
import { diffLora } from '../analysis/weights/lora.ts';
import type { WeightsDiff } from '../analysis/weights/types.ts';
import type { WeightStore } from '../io/store.ts';
import type { JobContext, JobProgress } from './context.ts';
import { openPair, type OpenedPair, type PairFiles } from './pair.ts';

export interface DiffProgress extends JobProgress {
  stage: 'tensors';
  /** The tensor finished last. */
  name: string;
  /** Bytes of both models read so far, of those the run reads. */
  bytesDone: number;
  bytesTotal: number;
}

export interface WeightsSettings {
  /** Singular values kept per tensor (the spectrum plot and the energy curve use them). */
  topK: number;
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

export async function weightsJob(pair: OpenedPair, settings: WeightsSettings, ctx: JobContext<DiffProgress>): Promise<WeightsDiff> {
  ctx.signal?.throwIfAborted();
  const { base, ft, adapter } = pair;
  let bytesDone = 0;
  let bytesTotal = 0;
  const addRead = (n: number) => (bytesDone += n);
  const report = (done: number, total: number, name: string) => ctx.onProgress?.({ stage: 'tensors', done, total, name, bytesDone, bytesTotal });
  const run = { backend: ctx.backend, topK: settings.topK, onProgress: report, ...(ctx.signal ? { signal: ctx.signal } : {}) };
  if (adapter) {
    for (const name of adapter.targets.keys()) bytesTotal += base.store.tensors.get(name)?.byteLength ?? 0;
    return diffLora(counting(base.store, addRead), adapter, run);
  }
  for (const [name, t] of base.store.tensors) {
    const other = ft.store.tensors.get(name);
    if (other && other.shape.length === t.shape.length && other.shape.every((d, i) => d === t.shape[i])) bytesTotal += t.byteLength + other.byteLength;
  }
  return diffWeights(counting(base.store, addRead), counting(ft.store, addRead), run);
}

export interface WeightsRequest extends PairFiles, WeightsSettings {}

/** Opens the pair and runs the weight diff (openPair, then weightsJob). */
export async function computeWeightsDiff(req: WeightsRequest, ctx: JobContext<DiffProgress>): Promise<WeightsDiff> {
  return weightsJob(await openPair(req), { topK: req.topK }, ctx);
}
