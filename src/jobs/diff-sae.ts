// The diff-SAE as a job of the activation views: δ = h_ft − h_base at a layer over the corpus, a
// BatchTopK sparse autoencoder trained on it (progress carries the loss curve so far; a cancel stops
// it between steps), then its latents read like the crosscoder's: frequency, top contexts, and the
// fine-tune's logit lens of ± each decoder direction.
import { lensTop } from '../analysis/activations/lens.ts';
import type { ModelPair, Progress } from '../analysis/activations/run.ts';
import type { CrosscoderEngine } from '../analysis/crosscoder/engine.ts';
import type { CrosscoderModel } from '../analysis/crosscoder/model.ts';
import { collectDifferences, createDiffSaeTrainer, diffSaeLatentStats, differenceNormalization, latentDirection, trainDiffSae, type DifferenceActivations, type TrainPoint } from '../analysis/diff-sae/diff-sae.ts';
import { trainerSchedule } from './crosscoder.ts';

export interface DiffSaeSettings {
  layer: number;
  /** Dictionary size D. */
  dict: number;
  k: number;
  steps: number;
  /** Tokens per training batch (at most the corpus's rows of δ). */
  batch: number;
  lr: number;
  seed: number;
}

export interface DiffSaeLatent {
  id: number;
  /** Share of the corpus's tokens where the latent is active. */
  frequency: number;
  maxActivation: number;
  /** The fine-tune's logit lens of +direction and −direction. */
  positive: { id: number; prob: number }[];
  negative: { id: number; prob: number }[];
  /** Where it is most active (one place per sample, largest first). */
  top: { sample: number; position: number; activation: number }[];
}

export interface DiffSaeOutcome {
  layer: number;
  hook: string;
  d: number;
  D: number;
  k: number;
  steps: number;
  /** Tokens of δ trained on and analysed. */
  rows: number;
  /** Fraction of δ's variance unexplained over those tokens. */
  fvu: number;
  /** Latents that fired at least once; `latents` lists the most frequent of them. */
  live: number;
  curve: TrainPoint[];
  latents: DiffSaeLatent[];
}

export interface DiffSaeJobOptions {
  signal?: AbortSignal;
  onProgress?: (p: Progress) => void;
  /** The training engine (the CPU engine when absent); the caller disposes it. */
  engine?: CrosscoderEngine;
}

/** Latents listed, most frequent first. */
export const DIFF_SAE_LATENTS = 256;
const LENS_TOKENS = 10;
const TOP_CONTEXTS = 10;
/** Points the curve keeps (every ⌈steps / this⌉-th step, and the last). */
const CURVE_POINTS = 200;
/** Progress with the curve goes to the page at most this often. */
const PROGRESS_MS = 100;

export function checkDiffSaeSettings(s: DiffSaeSettings): void {
  for (const key of ['dict', 'k', 'steps', 'batch', 'seed'] as const) {
    const v = s[key];
    if (!Number.isInteger(v) || v < (key === 'seed' ? 0 : 1)) throw new RangeError(`the diff-SAE's ${key} must be an integer ≥ ${key === 'seed' ? 0 : 1}, got ${v}`);
  }
  if (!(s.lr > 0 && s.lr <= 1)) throw new RangeError(`the learning rate must be in (0, 1], got ${s.lr}`);
  if (s.k > s.dict) throw new RangeError(`k (${s.k}) is larger than the dictionary (${s.dict} latents)`);
}

export interface TrainedDiffSae {
  model: CrosscoderModel;
  delta: DifferenceActivations;
  curve: TrainPoint[];
}

/** δ at the layer over the samples, and a diff-SAE trained on it with the settings (deterministic for a seed). */
export async function trainOnDifferences(pair: ModelPair, samples: readonly (readonly number[])[], s: DiffSaeSettings, opts: DiffSaeJobOptions = {}): Promise<TrainedDiffSae> {
  checkDiffSaeSettings(s);
  const run = { ...(opts.signal ? { signal: opts.signal } : {}), ...(opts.onProgress ? { onProgress: opts.onProgress } : {}) };
  const delta = await collectDifferences(pair, samples, { layer: s.layer, ...run });
  const { d, rows } = delta;
  if (delta.delta.every((x) => x === 0)) throw new RangeError(`δ is 0 at every token: the two models agree at ${delta.hook} on this corpus, so there is nothing for a diff-SAE to learn`);
  const batch = Math.min(s.batch, rows);
  const trainer = createDiffSaeTrainer({
    d,
    D: s.dict,
    k: s.k,
    lr: s.lr,
    auxAlpha: 1 / 32,
    seed: s.seed,
    normalization: differenceNormalization(delta.delta, rows, d),
    ...trainerSchedule({ ...s, batch, auxAlpha: 1 / 32 }),
    ...(opts.engine ? { engine: opts.engine } : {}),
  });
  const curve: TrainPoint[] = [];
  const every = Math.max(1, Math.ceil(s.steps / CURVE_POINTS));
  let lastReport = -Infinity;
  await trainDiffSae(trainer, delta, {
    steps: s.steps,
    batch,
    seed: s.seed,
    onStep: (p) => {
      if (p.step % every === 0 || p.step === s.steps - 1) curve.push({ step: p.step, loss: p.loss, fvu: p.fvu, dead: p.dead });
      if (performance.now() - lastReport >= PROGRESS_MS || p.step === s.steps - 1) {
        lastReport = performance.now();
        opts.onProgress?.({ stage: 'training', done: p.step + 1, total: s.steps, curve: curve.slice() });
      }
      opts.signal?.throwIfAborted();
    },
  });
  return { model: await trainer.model(), delta, curve };
}

export async function diffSaeJob(pair: ModelPair, samples: readonly (readonly number[])[], s: DiffSaeSettings, opts: DiffSaeJobOptions = {}): Promise<DiffSaeOutcome> {
  const { model, delta, curve } = await trainOnDifferences(pair, samples, s, opts);
  const { d, rows } = delta;
  const report = await diffSaeLatentStats(model, delta, {
    topExamples: TOP_CONTEXTS,
    ...(opts.signal ? { signal: opts.signal } : {}),
    onProgress: (done, total) => opts.onProgress?.({ stage: 'latents', done, total }),
  });
  const live = report.latents.filter((l) => l.frequency > 0);
  const shown = live.slice().sort((a, b) => b.frequency - a.frequency || a.id - b.id).slice(0, DIFF_SAE_LATENTS);

  const ft = pair.ft;
  const be = ft.backend;
  const lensRows = new Float32Array(Math.max(1, 2 * shown.length) * d);
  shown.forEach((l, i) => {
    const v = latentDirection(model, l.id);
    lensRows.set(v, 2 * i * d);
    lensRows.set(v.map((x) => -x), (2 * i + 1) * d);
  });
  const k = Math.min(LENS_TOKENS, ft.config.vocab);
  const input = be.fromArray(lensRows, [lensRows.length / d, d]);
  const lens = await lensTop(ft, input, { k }).finally(() => be.dispose(input));
  const tokens = (row: number) => Array.from({ length: k }, (_, j) => ({ id: lens.ids[row * k + j]!, prob: lens.probs[row * k + j]! }));

  return {
    layer: delta.layer,
    hook: delta.hook,
    d,
    D: s.dict,
    k: s.k,
    steps: s.steps,
    rows,
    fvu: report.fvu,
    live: live.length,
    curve,
    latents: shown.map((l, i) => ({
      id: l.id,
      frequency: l.frequency,
      maxActivation: l.maxActivation,
      positive: tokens(2 * i),
      negative: tokens(2 * i + 1),
      top: l.top.flatMap((ex) => {
        const best = ex.tokens.reduce((a, b) => (b.activation > a.activation ? b : a), ex.tokens[0]!);
        return best ? [{ sample: ex.sample, position: best.position, activation: best.activation }] : [];
      }),
    })),
  };
}
