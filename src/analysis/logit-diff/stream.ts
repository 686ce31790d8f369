// Corpus passes over a model pair: the samples are batched by equal length, both models run on each
// batch, and the caller gets the requested hook activations of both ([B, T, d], on the backend, valid
// during the visit) with the sample index of each batch row. Nothing of [tokens × vocab] is kept.
import type { Tensor } from '../../model/backend.ts';
import { captureActivations, checkIds, checkPair, DEFAULT_BATCH_SIZE, disposeAll, equalLengthBatches, type ModelPair, type RunOptions } from '../activations/run.ts';

export interface PairedBatch {
  /** Sample index of each row of the batch. */
  samples: readonly number[];
  seq: number;
  base: ReadonlyMap<string, Tensor>;
  ft: ReadonlyMap<string, Tensor>;
}

/** Runs both models over every sample, batch by batch, and calls `visit` with the captured `names`. */
export async function forEachPairedBatch(
  pair: ModelPair,
  samples: readonly (readonly number[])[],
  names: readonly string[],
  opts: RunOptions & { stage?: string; lastLayer?: number },
  visit: (b: PairedBatch) => Promise<void> | void,
): Promise<void> {
  checkPair(pair);
  if (samples.length === 0) throw new RangeError('the corpus holds no samples');
  for (const s of samples) checkIds(pair.base, s);
  const batches = equalLengthBatches(samples, opts.batchSize ?? DEFAULT_BATCH_SIZE);
  const stage = opts.stage ?? 'corpus';
  let done = 0;
  for (const batch of batches) {
    opts.signal?.throwIfAborted();
    const base = captureActivations(pair.base, batch.rows, names, opts.lastLayer);
    const ft = captureActivations(pair.ft, batch.rows, names, opts.lastLayer);
    try {
      await visit({ samples: batch.indices, seq: batch.rows[0]!.length, base, ft });
    } finally {
      disposeAll(pair.base.backend, [...base.values(), ...ft.values()]);
    }
    done += batch.indices.length;
    opts.onProgress?.({ stage, done, total: samples.length });
  }
}

/** A place in the corpus: sample index and token position. */
export interface CorpusPlace {
  sample: number;
  position: number;
}

/** Keeps the n entries with the largest score seen so far (ties: the earlier one stays). */
export class TopList<T> {
  readonly items: { score: number; item: T }[] = [];
  constructor(readonly n: number) {}

  /** Whether a score would enter the list (check before building an item). */
  admits(score: number): boolean {
    return this.n > 0 && (this.items.length < this.n || score > this.items[this.items.length - 1]!.score);
  }

  add(score: number, item: T): void {
    if (!this.admits(score)) return;
    let i = this.items.length;
    while (i > 0 && this.items[i - 1]!.score < score) i--;
    this.items.splice(i, 0, { score, item });
    if (this.items.length > this.n) this.items.pop();
  }
}
