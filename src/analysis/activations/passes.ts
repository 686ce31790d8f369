// Corpus passes over a model pair that may not fit in memory together. Each batch goes first through
// the base model, which hands over what the fine-tuned pass of that batch needs (activations it
// "carries"), then through the fine-tuned model. With both models loaded (a ModelPair, or a
// PairedRunner in resident mode) the two passes alternate batch by batch and carried tensors stay on
// the backend. A PairedRunner in sequential mode loads the base, runs every batch, releases it, then
// does the same with the fine-tune; carried tensors wait on the host in between. Both orders run the
// same operations on the same values, so the results are identical.
import type { Backend, Tensor } from '../../model/backend.ts';
import type { ModelConfig } from '../../model/config.ts';
import { PairedRunner } from '../../model/paired.ts';
import type { Transformer } from '../../model/transformer.ts';
import { checkPair, checkPairConfigs, readF32, type ModelPair, type Progress } from './run.ts';

/** What corpus analyses run on: two loaded models, or a runner that may hold only one at a time. */
export type PairInput = ModelPair | PairedRunner;

/** A tensor handed from a batch's base pass to its fine-tuned pass. */
export interface Carried {
  /** The tensor, now owned by the caller (call once). */
  take(): Tensor;
}

export interface PairedPasses<K> {
  /** Runs one batch through the base model; what it returns is given to the fine-tuned pass of the batch. */
  base(index: number, model: Transformer, carry: (t: Tensor) => Promise<Carried>): Promise<K>;
  ft(index: number, model: Transformer, kept: K): Promise<void>;
  /**
   * Weights of the base model that the fine-tuned passes still use (the lens's unembedding): one
   * model at a time, they stay on the backend when the rest of the base is released.
   */
  keep?(base: Transformer): readonly Tensor[];
}

export interface PassOptions {
  signal?: AbortSignal | undefined;
  onProgress?: ((p: Progress) => void) | undefined;
  stage: string;
  /** Work per batch (e.g. samples) for progress: each finished pass of a batch adds it. */
  sizes: readonly number[];
}

/** The backend and the base configuration of a pair, after checking that the two can be compared. */
export function checkPairInput(input: PairInput): { backend: Backend; config: ModelConfig } {
  if (input instanceof PairedRunner) {
    checkPairConfigs(input.base.config, input.ft.config);
    return { backend: input.backend, config: input.base.config };
  }
  return { backend: checkPair(input), config: input.base.config };
}

export async function runPairedPasses<K>(input: PairInput, passes: PairedPasses<K>, opts: PassOptions): Promise<void> {
  const n = opts.sizes.length;
  const work = opts.sizes.reduce((a, b) => a + b, 0);
  if (input instanceof PairedRunner && input.mode === 'sequential') {
    const be = input.backend;
    const carry = async (t: Tensor): Promise<Carried> => {
      const shape = t.shape;
      const data = await readF32(be, t);
      return { take: () => be.fromArray(data, shape) };
    };
    let done = 0;
    const kept: (K | undefined)[] = [];
    const base = await input.base.load(opts.signal);
    const weights = new Set(passes.keep?.(base) ?? []);
    try {
      for (let i = 0; i < n; i++) {
        opts.signal?.throwIfAborted();
        kept.push(await passes.base(i, base, carry));
        done += opts.sizes[i]!;
        opts.onProgress?.({ stage: opts.stage, done, total: 2 * work });
      }
    } catch (e) {
      for (const t of weights) be.dispose(t);
      throw e;
    } finally {
      base.dispose(weights);
    }
    let ft: Transformer;
    try {
      ft = await input.ft.load(opts.signal);
    } catch (e) {
      for (const t of weights) be.dispose(t);
      throw e;
    }
    try {
      for (let i = 0; i < n; i++) {
        opts.signal?.throwIfAborted();
        const k = kept[i] as K;
        // Released batch by batch, so the host holds less as the pass goes on.
        kept[i] = undefined;
        await passes.ft(i, ft, k);
        done += opts.sizes[i]!;
        opts.onProgress?.({ stage: opts.stage, done, total: 2 * work });
      }
    } finally {
      ft.dispose();
      for (const t of weights) be.dispose(t);
    }
    return;
  }

  const pair = input instanceof PairedRunner ? await input.models() : input;
  const be = pair.base.backend;
  let done = 0;
  for (let i = 0; i < n; i++) {
    opts.signal?.throwIfAborted();
    // Carried tensors the fine-tuned pass did not take (it threw) are disposed here.
    const pending = new Set<Tensor>();
    const carry = async (t: Tensor): Promise<Carried> => {
      pending.add(t);
      return {
        take: () => {
          pending.delete(t);
          return t;
        },
      };
    };
    try {
      await passes.ft(i, pair.ft, await passes.base(i, pair.base, carry));
    } finally {
      for (const t of pending) be.dispose(t);
    }
    done += opts.sizes[i]!;
    opts.onProgress?.({ stage: opts.stage, done, total: work });
  }
}

/**
 * Runs `fn` on one model of the pair: the loaded one when both are resident, else loaded for the call
 * and released after it (one model at a time).
 */
export async function withModel<T>(input: PairInput, side: 'base' | 'ft', fn: (model: Transformer) => Promise<T>, signal?: AbortSignal): Promise<T> {
  if (!(input instanceof PairedRunner)) return fn(input[side]);
  if (input.mode === 'resident') return fn((await input.models())[side]);
  const model = await input[side].load(signal);
  try {
    return await fn(model);
  } finally {
    model.dispose();
  }
}

/** Both models loaded together, for analyses that mix them within one pass; refused, saying why, when the pair runs one model at a time. */
export async function bothModels(input: PairInput, what: string): Promise<ModelPair> {
  if (!(input instanceof PairedRunner)) return input;
  if (input.mode === 'sequential') throw new RangeError(`${what} needs both models loaded together, and they do not fit the memory budget together (one model at a time)`);
  return input.models();
}
