// Crosscoder training as in science-of-finetuning's BatchTopKCrossCoderTrainer (dictionary_learning),
// plus the L1 crosscoder for comparison. One `step` per batch of paired activations; `train` runs
// steps from a source until a step count, an abort or the end of the data, yielding to the event
// loop so it can run in a worker next to a UI. Trainer state persists between `train` calls, so
// pausing is aborting and resuming is calling `train` again.
//
// Per step, as the reference: normalise; (step 0) b_dec from the geometric median; k from the
// annealing schedule; encode; BatchTopK; threshold EMA (after thresholdStartStep) of the smallest
// kept score; decode; update tokens-since-fired (dead latents); loss and gradients (auxk on the dead
// latents); clip the global gradient norm; Adam with warm-up/decay. Decoder norms are left free, as
// the reference crosscoder trainer does (no unit-norm projection): the norm ratio between the two
// models' decoder vectors is what the analysis reads.
import { createCpuEngine } from './cpu-engine.ts';
import type { CrosscoderEngine, LossParts, Objective } from './engine.ts';
import {
  computeNormalization,
  geometricMedian,
  initParams,
  normalize,
  type CodeNormalization,
  type CrosscoderModel,
  type Normalization,
} from './model.ts';
import { createRng } from './rng.ts';

export interface TrainerOptions {
  readonly d: number;
  /** Dictionary size (reference: 32·d). */
  readonly D: number;
  /** batchtopk (default) or l1 (every positive latent, L1 penalty on scaled codes). */
  readonly variant?: 'batchtopk' | 'l1';
  /** Latents per token on average (reference 100). */
  readonly k?: number;
  /** k at step 0, annealed linearly down to k over kAnnealSteps (reference 1024 over 2000). */
  readonly kMax?: number;
  readonly kAnnealSteps?: number;
  /** Reconstruction term of the BatchTopK loss: l2 (reference) or mse. */
  readonly objective?: 'l2' | 'mse';
  /** λ of the L1 variant. */
  readonly l1Lambda?: number;
  readonly lr?: number;
  readonly beta1?: number;
  readonly beta2?: number;
  readonly eps?: number;
  /** Linear learning-rate warm-up from 0 (reference 1000; the first step then has lr 0, as there). */
  readonly warmupSteps?: number;
  /** With totalSteps: linear decay to 0 from this step. */
  readonly decayStart?: number;
  readonly totalSteps?: number;
  readonly auxAlpha?: number;
  /** Dead latents per token in the auxiliary loss (reference d/2). */
  readonly auxK?: number;
  /** A latent is dead after this many tokens without firing (reference 10,000,000). */
  readonly deadTokens?: number;
  readonly thresholdBeta?: number;
  /** The threshold EMA starts after this step (reference 1000). */
  readonly thresholdStartStep?: number;
  /** Global gradient-norm clip (reference 1.0 for BatchTopK; 0 disables; default 0 for l1). */
  readonly clipGradNorm?: number;
  /** Norm of every initial decoder vector (reference default 1.0). */
  readonly initNorm?: number;
  readonly seed?: number;
  readonly codeNormalization?: CodeNormalization;
  /** Activation normalisation; computed from the first batch when absent (targetRms 1, centred). */
  readonly normalization?: Normalization;
  /** b_dec from the geometric median of the first batch (reference) or zero. */
  readonly decoderBiasInit?: 'median' | 'zero';
  /** Defaults to the float32 CPU engine. */
  readonly engine?: CrosscoderEngine;
}

export type ResolvedTrainerOptions = Required<Omit<TrainerOptions, 'normalization' | 'engine' | 'decayStart' | 'totalSteps'>> &
  Pick<TrainerOptions, 'decayStart' | 'totalSteps'>;

export interface StepStats extends LossParts {
  readonly step: number;
  /** Latents dead after this step. */
  readonly dead: number;
  /** BatchTopK k used in this step (0 for the L1 variant, where `kept` / n is the L0). */
  readonly k: number;
  /** Inference threshold θ after this step (−1 before it starts). */
  readonly threshold: number;
  readonly kept: number;
  readonly lr: number;
  readonly selectMs: number;
  readonly stepMs: number;
}

export interface Trainer {
  readonly options: ResolvedTrainerOptions;
  /** Steps done so far. */
  readonly steps: number;
  step(batchBase: Float32Array, batchFt: Float32Array): Promise<StepStats>;
  /** A snapshot of the crosscoder as trained so far. */
  model(): Promise<CrosscoderModel>;
}

export function resolveTrainerOptions(o: TrainerOptions): ResolvedTrainerOptions {
  const variant = o.variant ?? 'batchtopk';
  const k = Math.min(o.k ?? 100, o.D);
  const r: ResolvedTrainerOptions = {
    d: o.d,
    D: o.D,
    variant,
    k,
    kMax: Math.min(o.kMax ?? k, o.D),
    kAnnealSteps: o.kAnnealSteps ?? 0,
    objective: o.objective ?? 'l2',
    l1Lambda: o.l1Lambda ?? 0.1,
    lr: o.lr ?? 1e-4,
    beta1: o.beta1 ?? 0.9,
    beta2: o.beta2 ?? 0.999,
    eps: o.eps ?? 1e-8,
    warmupSteps: o.warmupSteps ?? 1000,
    auxAlpha: variant === 'l1' ? 0 : (o.auxAlpha ?? 1 / 32),
    auxK: o.auxK ?? Math.floor(o.d / 2),
    deadTokens: o.deadTokens ?? 10_000_000,
    thresholdBeta: o.thresholdBeta ?? 0.999,
    thresholdStartStep: o.thresholdStartStep ?? 1000,
    clipGradNorm: o.clipGradNorm ?? (variant === 'l1' ? 0 : 1),
    initNorm: o.initNorm ?? 1,
    seed: o.seed ?? 0,
    codeNormalization: o.codeNormalization ?? 'crosscoder',
    decoderBiasInit: o.decoderBiasInit ?? 'median',
    ...(o.decayStart !== undefined ? { decayStart: o.decayStart } : {}),
    ...(o.totalSteps !== undefined ? { totalSteps: o.totalSteps } : {}),
  };
  if (!(Number.isInteger(r.d) && r.d > 0 && Number.isInteger(r.D) && r.D > 0)) throw new Error(`crosscoder trainer: d and D must be positive integers (got d=${r.d}, D=${r.D})`);
  if (!(r.k >= 1 && r.kMax >= r.k)) throw new Error(`crosscoder trainer: need 1 ≤ k ≤ kMax (got k=${r.k}, kMax=${r.kMax})`);
  if (r.decayStart !== undefined && !(r.totalSteps !== undefined && r.decayStart < r.totalSteps)) {
    throw new Error('crosscoder trainer: decayStart needs totalSteps > decayStart');
  }
  return r;
}

/** k at a step: linear from kMax down to k over kAnnealSteps, rounded (the reference's schedule). */
export function kAtStep(o: Pick<ResolvedTrainerOptions, 'k' | 'kMax' | 'kAnnealSteps'>, step: number): number {
  if (o.kAnnealSteps <= 0 || o.kMax === o.k || step >= o.kAnnealSteps) return o.k;
  return Math.max(1, Math.round(o.kMax - ((o.kMax - o.k) * step) / o.kAnnealSteps));
}

/** Learning-rate factor at a step: warm-up, constant, optional linear decay (dictionary_learning's get_lr_schedule). */
export function lrFactor(o: Pick<ResolvedTrainerOptions, 'warmupSteps' | 'decayStart' | 'totalSteps'>, step: number): number {
  if (step < o.warmupSteps) return step / o.warmupSteps;
  if (o.decayStart !== undefined && o.totalSteps !== undefined && step >= o.decayStart) {
    return Math.max(0, (o.totalSteps - step) / (o.totalSteps - o.decayStart));
  }
  return 1;
}

export function createTrainer(opts: TrainerOptions): Trainer {
  const o = resolveTrainerOptions(opts);
  const { d, D } = o;
  const engine = opts.engine ?? createCpuEngine({ d, D, codeNormalization: o.codeNormalization });
  if (engine.d !== d || engine.D !== D) throw new Error(`crosscoder trainer: the engine is d=${engine.d}, D=${engine.D}, the options say d=${d}, D=${D}`);
  if (engine.codeNormalization !== o.codeNormalization) throw new Error('crosscoder trainer: the engine uses another code normalisation than the options');
  engine.setParams(initParams(d, D, createRng(o.seed), o.initNorm));
  let normalization = opts.normalization;
  let steps = 0;
  let threshold = -1;
  let lastCut = -1;
  let k = kAtStep(o, 0);
  const sinceFired = new Float64Array(D);
  const dead = new Uint8Array(D);
  let xb = new Float32Array(0);
  let xf = new Float32Array(0);
  let last: StepStats | null = null;

  return {
    options: o,
    get steps() {
      return steps;
    },
    async step(batchBase, batchFt) {
      const t0 = performance.now();
      const n = batchBase.length / d;
      if (!Number.isInteger(n) || n === 0 || batchFt.length !== batchBase.length) {
        throw new Error(`crosscoder trainer: a batch must be [n, ${d}] for both models (got ${batchBase.length} and ${batchFt.length} values)`);
      }
      normalization ??= computeNormalization(batchBase, batchFt, n, d);
      if (xb.length !== n * d) {
        xb = new Float32Array(n * d);
        xf = new Float32Array(n * d);
      }
      normalize(batchBase, n, normalization, 0, xb);
      normalize(batchFt, n, normalization, 1, xf);
      if (steps === 0 && o.decoderBiasInit === 'median') {
        engine.setDecoderBias(0, geometricMedian(xb, n, d));
        engine.setDecoderBias(1, geometricMedian(xf, n, d));
      }
      k = kAtStep(o, steps);
      engine.setBatch(xb, xf, n);
      engine.encode();
      const s0 = performance.now();
      const sel = o.variant === 'l1' ? await engine.selectPositive() : await engine.selectTopK(k * n, lastCut);
      const selectMs = performance.now() - s0;
      lastCut = sel.minScore;
      if (o.variant === 'batchtopk' && steps > o.thresholdStartStep) {
        const m = Math.max(sel.minScore, 0);
        threshold = threshold < 0 ? m : o.thresholdBeta * threshold + (1 - o.thresholdBeta) * m;
      }
      engine.decode();
      let deadCount = 0;
      for (let j = 0; j < D; j++) {
        sinceFired[j] = sel.fired[j] ? 0 : sinceFired[j]! + n;
        dead[j] = sinceFired[j]! >= o.deadTokens ? 1 : 0;
        deadCount += dead[j]!;
      }
      const objective: Objective = o.variant === 'l1' ? 'l1' : o.objective;
      const parts = await engine.backward({
        objective,
        l1Lambda: o.l1Lambda,
        auxAlpha: o.auxAlpha,
        auxK: o.auxK,
        dead: deadCount > 0 ? dead : null,
      });
      const lr = o.lr * lrFactor(o, steps);
      engine.adam({ lr, beta1: o.beta1, beta2: o.beta2, eps: o.eps, clipGradNorm: o.clipGradNorm });
      const kReported = o.variant === 'l1' ? 0 : k;
      last = { ...parts, step: steps, dead: deadCount, k: kReported, threshold, kept: sel.kept, lr, selectMs, stepMs: performance.now() - t0 };
      steps++;
      return last;
    },
    async model() {
      const p = await engine.readParams();
      return {
        params: { d, D, encW: Float32Array.from(p.encW), encB: Float32Array.from(p.encB), decW: Float32Array.from(p.decW), decB: Float32Array.from(p.decB) },
        activation: o.variant === 'l1' ? 'relu' : 'batchtopk',
        codeNormalization: o.codeNormalization,
        k: o.variant === 'l1' ? 0 : k,
        threshold: o.variant === 'l1' ? -1 : threshold,
        normalization: normalization ?? { mean: [new Float32Array(d), new Float32Array(d)], scale: [1, 1], targetRms: 1 },
        info: {
          trainer: JSON.stringify(o),
          steps: String(steps),
          ...(last ? { last_loss: String(last.loss), last_fvu: String(last.fvu), dead: String(last.dead) } : {}),
        },
      };
    },
  };
}

export interface PairBatch {
  /** Raw activations [n, d] of the base model. */
  readonly base: Float32Array;
  readonly ft: Float32Array;
}

/** A sync or async iterator of batches; its next() is called directly, so a paused run can continue it. */
export interface BatchSource {
  next(): IteratorResult<PairBatch> | Promise<IteratorResult<PairBatch>>;
}

export interface TrainRunOptions {
  /** Train until the trainer has done this many steps in total. */
  readonly steps: number;
  readonly signal?: AbortSignal;
  readonly onStep?: (s: StepStats) => void;
  /** Yield to the event loop at least this often (default 50 ms). */
  readonly yieldMs?: number;
}

export interface TrainRunResult {
  readonly reason: 'done' | 'aborted' | 'exhausted';
  readonly steps: number;
  readonly last: StepStats | null;
}

export async function train(trainer: Trainer, source: BatchSource, opts: TrainRunOptions): Promise<TrainRunResult> {
  const yieldMs = opts.yieldMs ?? 50;
  let last: StepStats | null = null;
  let lastYield = performance.now();
  while (trainer.steps < opts.steps) {
    if (opts.signal?.aborted) return { reason: 'aborted', steps: trainer.steps, last };
    const r = await source.next();
    if (r.done) return { reason: 'exhausted', steps: trainer.steps, last };
    last = await trainer.step(r.value.base, r.value.ft);
    opts.onStep?.(last);
    if (performance.now() - lastYield >= yieldMs) {
      await new Promise((resolve) => setTimeout(resolve, 0));
      lastYield = performance.now();
    }
  }
  return { reason: opts.signal?.aborted ? 'aborted' : 'done', steps: trainer.steps, last };
}
