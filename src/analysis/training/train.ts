// The training loop: batches of token windows from a corpus, micro-batches with gradient accumulation,
// gradient clipping by global norm, AdamW (torch.optim.AdamW's update) with a warm-up then cosine or
// linear decay schedule (transformers' get_*_schedule_with_warmup).
import type { TrainableTransformer } from './model.ts';
import { Rng } from './rng.ts';
import type { Param } from './tape.ts';

export interface OptimizerOptions {
  lr: number;
  steps: number;
  warmupSteps: number;
  schedule: 'cosine' | 'linear' | 'constant';
  weightDecay: number;
  beta1: number;
  beta2: number;
  eps: number;
  /** Clip the global gradient norm to this; 0 for no clipping. */
  maxGradNorm: number;
}

export const DEFAULT_OPTIMIZER: Omit<OptimizerOptions, 'lr' | 'steps'> = {
  warmupSteps: 0,
  schedule: 'cosine',
  weightDecay: 0,
  beta1: 0.9,
  beta2: 0.999,
  eps: 1e-8,
  maxGradNorm: 1,
};

/** The learning-rate multiplier at step s (0-based), as transformers' schedulers give it. */
export function lrFactor(o: Pick<OptimizerOptions, 'steps' | 'warmupSteps' | 'schedule'>, s: number): number {
  if (s < o.warmupSteps) return s / Math.max(1, o.warmupSteps);
  const progress = (s - o.warmupSteps) / Math.max(1, o.steps - o.warmupSteps);
  if (o.schedule === 'cosine') return Math.max(0, 0.5 * (1 + Math.cos(Math.PI * progress)));
  if (o.schedule === 'linear') return Math.max(0, 1 - progress);
  return 1;
}

export class AdamW {
  private readonly m = new Map<Param, Float32Array>();
  private readonly v = new Map<Param, Float32Array>();
  private t = 0;

  constructor(
    private readonly params: readonly Param[],
    private readonly o: OptimizerOptions,
  ) {}

  /** Global L2 norm of the gradients (before clipping). */
  gradNorm(): number {
    let ss = 0;
    for (const p of this.params) for (const g of p.grad!) ss += g * g;
    return Math.sqrt(ss);
  }

  /** One update with the gradients in the parameters; returns the gradient norm and the learning rate used. */
  step(): { gradNorm: number; lr: number } {
    const o = this.o;
    const norm = this.gradNorm();
    // torch.nn.utils.clip_grad_norm_: scale by max_norm / (norm + 1e-6) when that is below 1.
    const clip = o.maxGradNorm > 0 ? Math.min(1, o.maxGradNorm / (norm + 1e-6)) : 1;
    const lr = o.lr * lrFactor(o, this.t);
    this.t++;
    const bc1 = 1 - o.beta1 ** this.t;
    const bc2 = Math.sqrt(1 - o.beta2 ** this.t);
    for (const p of this.params) {
      const g = p.grad!;
      const w = p.data;
      let m = this.m.get(p);
      let v = this.v.get(p);
      if (!m || !v) {
        m = new Float32Array(w.length);
        v = new Float32Array(w.length);
        this.m.set(p, m);
        this.v.set(p, v);
      }
      const decay = 1 - lr * o.weightDecay;
      for (let i = 0; i < w.length; i++) {
        const gi = g[i]! * clip;
        m[i] = o.beta1 * m[i]! + (1 - o.beta1) * gi;
        v[i] = o.beta2 * v[i]! + (1 - o.beta2) * gi * gi;
        w[i] = w[i]! * decay - ((lr / bc1) * m[i]!) / (Math.sqrt(v[i]!) / bc2 + o.eps);
      }
    }
    return { gradNorm: norm, lr };
  }
}

/** What a Trainer steps: CpuTrainEngine (the model's Tape and AdamW on the host) or the WebGPU engine (webgpu-engine.ts). */
export interface TrainEngine {
  /** "CPU", or "WebGPU (adapter)". */
  readonly description: string;
  /** One optimizer step over ids [batch, seq] in micro-batches, as trainStep. */
  step(ids: Int32Array, batch: number, seq: number, microBatch: number): Promise<{ loss: number; gradNorm: number; lr: number }>;
  /** Copies the trained parameters into the model's host arrays, where export.ts reads them. */
  syncWeights(): Promise<void>;
  dispose(): void;
}

export class CpuTrainEngine implements TrainEngine {
  readonly description = 'CPU';
  private readonly opt: AdamW;

  constructor(
    readonly model: TrainableTransformer,
    o: OptimizerOptions,
  ) {
    this.opt = new AdamW([...model.params().values()], o);
  }

  step(ids: Int32Array, batch: number, seq: number, microBatch: number): Promise<{ loss: number; gradNorm: number; lr: number }> {
    return Promise.resolve(trainStep(this.model, this.opt, ids, batch, seq, microBatch));
  }

  syncWeights(): Promise<void> {
    return Promise.resolve();
  }

  dispose(): void {}
}

export interface StepResult {
  step: number;
  loss: number;
  gradNorm: number;
  lr: number;
}

/**
 * One optimizer step over ids [batch, seq], in micro-batches of `microBatch` rows whose gradients add up
 * to those of the mean loss over the whole batch.
 */
export function trainStep(model: TrainableTransformer, opt: AdamW, ids: Int32Array, batch: number, seq: number, microBatch = batch): { loss: number; gradNorm: number; lr: number } {
  model.zeroGrad();
  const total = batch * (seq - 1);
  let loss = 0;
  for (let b0 = 0; b0 < batch; b0 += microBatch) {
    const rows = Math.min(microBatch, batch - b0);
    loss += model.lossAndGrad(ids.subarray(b0 * seq, (b0 + rows) * seq), rows, seq, 1 / total).loss;
  }
  const { gradNorm, lr } = opt.step();
  return { loss: loss / total, gradNorm, lr };
}

/** Token windows of `seq` drawn from documents joined into one stream (each document as tokenized). */
export class WindowSampler {
  private readonly stream: Int32Array;
  private readonly rng: Rng;

  constructor(documents: readonly (readonly number[])[], seed: number) {
    const n = documents.reduce((s, d) => s + d.length, 0);
    this.stream = new Int32Array(n);
    let at = 0;
    for (const d of documents) {
      this.stream.set(d, at);
      at += d.length;
    }
    this.rng = new Rng(seed);
  }

  get tokens(): number {
    return this.stream.length;
  }

  /** ids [batch, seq] from random starts. */
  batch(batch: number, seq: number): Int32Array {
    if (this.stream.length < seq) throw new RangeError(`the corpus has ${this.stream.length} tokens, fewer than one sequence of ${seq}`);
    const out = new Int32Array(batch * seq);
    for (let b = 0; b < batch; b++) {
      const start = this.rng.int(this.stream.length - seq + 1);
      out.set(this.stream.subarray(start, start + seq), b * seq);
    }
    return out;
  }
}

export interface TrainRun extends Omit<OptimizerOptions, 'steps'> {
  steps: number;
  /** Sequences per optimizer step. */
  batch: number;
  /** Sequences per forward/backward pass (gradients accumulate over batch / microBatch passes). */
  microBatch: number;
  seq: number;
  seed: number;
}

export interface TrainSummary {
  losses: number[];
  gradNorms: number[];
  seconds: number;
  tokensPerStep: number;
}

/** A run that can stop between steps and go on later (pause, resume): the optimizer state and the sampler stay. */
export class Trainer {
  private readonly sampler: WindowSampler;
  readonly losses: number[] = [];
  readonly gradNorms: number[] = [];
  /** Seconds spent in steps so far. */
  seconds = 0;

  constructor(
    readonly model: TrainableTransformer,
    documents: readonly (readonly number[])[],
    readonly run: TrainRun,
    readonly engine: TrainEngine = new CpuTrainEngine(model, run),
  ) {
    this.sampler = new WindowSampler(documents, run.seed);
    if (this.sampler.tokens < run.seq) throw new RangeError(`the corpus has ${this.sampler.tokens} tokens, fewer than one sequence of ${run.seq}`);
  }

  get steps(): number {
    return this.losses.length;
  }

  get done(): boolean {
    return this.steps >= this.run.steps;
  }

  /** One optimizer step on a fresh batch. */
  async step(): Promise<StepResult> {
    const t0 = performance.now();
    const run = this.run;
    const r = await this.engine.step(this.sampler.batch(run.batch, run.seq), run.batch, run.seq, Math.min(run.microBatch, run.batch));
    this.seconds += (performance.now() - t0) / 1000;
    const step = this.losses.length;
    this.losses.push(r.loss);
    this.gradNorms.push(r.gradNorm);
    return { step, ...r };
  }

  /** Brings the trained weights into the model's host arrays (before exporting them). */
  syncWeights(): Promise<void> {
    return this.engine.syncWeights();
  }

  summary(): TrainSummary {
    return { losses: [...this.losses], gradNorms: [...this.gradNorms], seconds: this.seconds, tokensPerStep: this.run.batch * (this.run.seq - 1) };
  }
}

/**
 * Steps until the run is done or `stop` says so (checked after each step); onStep sees every step, and
 * the signal stops between steps. Other work (progress output, messages) gets in between steps.
 */
export async function continueTrainer(trainer: Trainer, onStep?: (r: StepResult, elapsedSeconds: number) => void, signal?: AbortSignal, stop?: () => boolean): Promise<void> {
  while (!trainer.done) {
    signal?.throwIfAborted();
    const r = await trainer.step();
    onStep?.(r, trainer.seconds);
    if (stop?.()) return;
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
}

/** Trains on random windows of the documents; onStep sees every step, and the signal stops between steps. */
export async function trainOnDocuments(
  model: TrainableTransformer,
  documents: readonly (readonly number[])[],
  run: TrainRun,
  onStep?: (r: StepResult, elapsedSeconds: number) => void,
  signal?: AbortSignal,
  engine?: TrainEngine,
): Promise<TrainSummary> {
  const trainer = new Trainer(model, documents, run, engine);
  await continueTrainer(trainer, onStep, signal);
  await trainer.syncWeights();
  return trainer.summary();
}
