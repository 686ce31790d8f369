// diff-SAE: a BatchTopK sparse autoencoder on the activation difference δ = h_ft − h_base, trained and
// run by the crosscoder engine with one input: δ goes in the fine-tune slot, the base slot holds
// zeros, and the base half of the encoder and decoder starts at zero. With a zero input and a zero
// target that half gets zero gradients and stays zero, so the crosscoder is exactly an SAE on δ
// (f = ReLU(W_enc δ + b_enc), δ̂ = W_dec f + b_dec, BatchTopK scores f_j · ‖d_j‖).
import { hookName } from '../../model/transformer.ts';
import { checkLayer, checkPair, disposeAll, readF32, type ModelPair, type RunOptions } from '../activations/run.ts';
import { createCpuEngine } from '../crosscoder/cpu-engine.ts';
import type { CrosscoderEngine } from '../crosscoder/engine.ts';
import type { PairedActivations } from '../crosscoder/collect.ts';
import { createInference } from '../crosscoder/inference.ts';
import { createLatentStats, type LatentReport } from '../crosscoder/latents.ts';
import { computeNormalization, initParams, type CrosscoderModel, type CrosscoderParams, type Normalization } from '../crosscoder/model.ts';
import { createRng } from '../crosscoder/rng.ts';
import { createTrainer, train, type StepStats, type Trainer, type TrainerOptions } from '../crosscoder/trainer.ts';
import { forEachPairedBatch } from '../logit-diff/stream.ts';

/** Per-token δ = ft − base of paired activations, with the provenance of each row. */
export interface DifferenceActivations {
  readonly d: number;
  readonly rows: number;
  readonly delta: Float32Array;
  readonly tokens: Int32Array;
  readonly sample: Int32Array;
  readonly position: Int32Array;
  readonly layer: number;
  readonly hook: string;
}

export function differenceActivations(acts: PairedActivations): DifferenceActivations {
  const delta = new Float32Array(acts.rows * acts.d);
  for (let i = 0; i < delta.length; i++) delta[i] = acts.ft[i]! - acts.base[i]!;
  return { d: acts.d, rows: acts.rows, delta, tokens: acts.tokens, sample: acts.sample, position: acts.position, layer: acts.layer, hook: acts.hook };
}

export interface CollectDifferencesOptions extends RunOptions {
  layer: number;
  /** Positions before this are left out (default 1: what follows BOS is not about the fine-tune). */
  fromPosition?: number;
  /** δ kept on the host, at most (rows × d floats). Default 2^27 (512 MB). */
  maxValues?: number;
}

/** δ = h_ft − h_base at resid_post of `layer` for every corpus token from `fromPosition` on (both models run batch by batch). */
export async function collectDifferences(pair: ModelPair, samples: readonly (readonly number[])[], opts: CollectDifferencesOptions): Promise<DifferenceActivations> {
  const be = checkPair(pair);
  checkLayer(pair.base, opts.layer);
  const d = pair.base.config.dModel;
  const from = opts.fromPosition ?? 1;
  const hook = hookName('resid_post', opts.layer);
  const rows = samples.reduce((n, s) => n + Math.max(0, s.length - from), 0);
  const maxValues = opts.maxValues ?? 2 ** 27;
  if (rows * d > maxValues) throw new RangeError(`the diff-SAE keeps δ of every token on the host: ${rows} tokens × ${d} exceed ${maxValues} values; use fewer samples`);
  if (rows === 0) throw new RangeError(`no tokens at or after position ${from}: use longer samples`);
  const delta = new Float32Array(rows * d);
  const tokens = new Int32Array(rows);
  const sample = new Int32Array(rows);
  const position = new Int32Array(rows);
  let at = 0;
  await forEachPairedBatch(pair, samples, [hook], { ...opts, stage: 'activations', lastLayer: opts.layer }, async (b) => {
    const T = b.seq;
    const diff = be.sub(b.ft.get(hook)!, b.base.get(hook)!);
    const host = await readF32(be, diff, false);
    disposeAll(be, [diff]);
    for (let row = 0; row < host.length / d; row++) {
      const p = row % T;
      if (p < from) continue;
      const s = b.samples[Math.floor(row / T)]!;
      delta.set(host.subarray(row * d, row * d + d), at * d);
      tokens[at] = samples[s]![p]!;
      sample[at] = s;
      position[at] = p;
      at++;
    }
  });
  return { d, rows, delta, tokens, sample, position, layer: opts.layer, hook };
}

/** The normalisation of δ (centred, E‖δ'‖² = targetRms²); the zero base slot is left as it is. */
export function differenceNormalization(delta: Float32Array, n: number, d: number, targetRms = 1): Normalization {
  const norm = computeNormalization(delta, delta, n, d, { targetRms });
  return { mean: [new Float32Array(d), norm.mean[1]], scale: [1, norm.scale[1]], targetRms };
}

/** Parameters with the base half (encoder and decoder rows of model 0) set to zero. */
export function withZeroBase(p: CrosscoderParams): CrosscoderParams {
  const { d, D } = p;
  const encW = p.encW.slice();
  const decW = p.decW.slice();
  encW.fill(0, 0, D * d);
  decW.fill(0, 0, D * d);
  const decB = p.decB.slice();
  decB.fill(0, 0, d);
  return { ...p, encW, decW, decB };
}

export type DiffSaeTrainerOptions = Omit<TrainerOptions, 'codeNormalization' | 'variant'> & { readonly normalization: Normalization };

/** A trainer whose steps take a batch of δ [n, d]. */
export interface DiffSaeTrainer {
  readonly inner: Trainer;
  step(delta: Float32Array): ReturnType<Trainer['step']>;
  model(): Promise<CrosscoderModel>;
}

export function createDiffSaeTrainer(opts: DiffSaeTrainerOptions): DiffSaeTrainer {
  const engine: CrosscoderEngine = opts.engine ?? createCpuEngine({ d: opts.d, D: opts.D, codeNormalization: 'crosscoder' });
  const inner = createTrainer({ ...opts, engine, variant: 'batchtopk', codeNormalization: 'crosscoder' });
  engine.setParams(withZeroBase(initParams(opts.d, opts.D, createRng(inner.options.seed), inner.options.initNorm)));
  let zeros = new Float32Array(0);
  return {
    inner,
    step(delta) {
      if (zeros.length !== delta.length) zeros = new Float32Array(delta.length);
      return inner.step(zeros, delta);
    },
    async model() {
      const m = await inner.model();
      return { ...m, info: { ...m.info, kind: 'diff-sae' } };
    },
  };
}

export interface TrainPoint {
  step: number;
  loss: number;
  fvu: number;
  dead: number;
}

/**
 * Trains for `steps` steps on shuffled batches of δ; `onStep` sees every step, and whatever it throws
 * (a cancel: signal.throwIfAborted()) stops the training. Yields to the event loop every 50 ms.
 */
export async function trainDiffSae(trainer: DiffSaeTrainer, delta: DifferenceActivations, opts: { steps: number; batch: number; seed?: number; onStep?: (s: StepStats) => void }): Promise<StepStats | null> {
  const batches = deltaBatches(delta.delta, delta.d, Math.min(opts.batch, delta.rows), opts.seed ?? 0);
  let zeros = new Float32Array(0);
  const source = {
    next: () => {
      const ft = batches.next();
      if (zeros.length !== ft.length) zeros = new Float32Array(ft.length);
      return { done: false as const, value: { base: zeros, ft } };
    },
  };
  const r = await train(trainer.inner, source, { steps: opts.steps, ...(opts.onStep ? { onStep: opts.onStep } : {}) });
  return r.last;
}

/** Shuffled batches of δ rows (a fixed seed), cycling through the rows. */
export function deltaBatches(delta: Float32Array, d: number, batchTokens: number, seed = 0, rows?: Int32Array): { next(): Float32Array } {
  const pool = rows ?? Int32Array.from({ length: delta.length / d }, (_, i) => i);
  if (pool.length < batchTokens) throw new RangeError(`a batch of ${batchTokens} tokens needs that many rows; there are ${pool.length}`);
  const rng = createRng(seed);
  const order = Int32Array.from(pool);
  let at = order.length;
  return {
    next() {
      const out = new Float32Array(batchTokens * d);
      for (let b = 0; b < batchTokens; b++) {
        if (at >= order.length) {
          for (let i = order.length - 1; i > 0; i--) {
            const j = rng.int(i + 1);
            [order[i], order[j]] = [order[j]!, order[i]!];
          }
          at = 0;
        }
        const r = order[at++]!;
        out.set(delta.subarray(r * d, r * d + d), b * d);
      }
      return out;
    },
  };
}

/**
 * Frequency, activation and top contexts of every latent of a diff-SAE over δ rows, and the fraction
 * of δ's variance (about its mean) the SAE leaves unexplained.
 */
export async function diffSaeLatentStats(model: CrosscoderModel, acts: DifferenceActivations, opts: { topExamples?: number; chunk?: number; signal?: AbortSignal; onProgress?: (done: number, total: number) => void } = {}): Promise<LatentReport & { fvu: number }> {
  const { d } = acts;
  const stats = createLatentStats(model.params, opts.topExamples === undefined ? {} : { topExamples: opts.topExamples });
  const inference = createInference(model);
  const chunk = opts.chunk ?? 1024;
  const zeros = new Float32Array(chunk * d);
  let err = 0;
  let sumX2 = 0;
  const sumX = new Float64Array(d);
  for (let start = 0; start < acts.rows; start += chunk) {
    opts.signal?.throwIfAborted();
    const n = Math.min(chunk, acts.rows - start);
    const out = await inference.run(zeros.subarray(0, n * d), acts.delta.subarray(start * d, (start + n) * d), n);
    stats.add(out, { sample: acts.sample.subarray(start, start + n), position: acts.position.subarray(start, start + n) });
    // In the normalised space (centred, one global scale): the ratio is the same as in δ's own.
    const x = out.x[1];
    const xh = out.recon[1];
    for (let i = 0; i < n * d; i++) {
      const e = x[i]! - xh[i]!;
      err += e * e;
      sumX2 += x[i]! * x[i]!;
      sumX[i % d]! += x[i]!;
    }
    opts.onProgress?.(start + n, acts.rows);
  }
  let meanSq = 0;
  for (let i = 0; i < d; i++) meanSq += (sumX[i]! / acts.rows) ** 2;
  const variance = sumX2 - acts.rows * meanSq;
  return { ...stats.result(), fvu: variance > 0 ? err / variance : NaN };
}

/** Decoder direction of latent j (the δ slot), in the raw space of δ (undoing the normalisation's scale). */
export function latentDirection(model: CrosscoderModel, j: number): Float32Array {
  const { d, D, decW } = model.params;
  return decW.slice((D + j) * d, (D + j + 1) * d);
}
