// Amplification: generate text that exaggerates what fine-tuning changed.
// - logit-diff: sample from z_ft + α·(z_ft − z_base) at every step (both models run with KV caches on the
//   same growing sequence); α = 0 is the fine-tune itself, α > 0 pushes further along the difference.
// - weights: generate from a model with W_base + α·ΔW for every tensor (ΔW = W_ft − W_base; for an
//   adapter the fine-tune's merged weights give ΔW, so this works for any fine-tune). α = 1 is the
//   fine-tune, 0 the base, −1 reverses the change.
// Sampling: softmax(z / temperature) in float64 on the host from a seeded generator (temperature 0:
// greedy), so a seed gives the same text on every backend whose logits agree.
import type { Tensor } from '../../model/backend.ts';
import { Transformer, type KvCache } from '../../model/transformer.ts';
import { checkIds, checkPair, disposeAll, readF32, type ModelPair, type Progress } from '../activations/run.ts';
import { createRng, type Rng } from '../crosscoder/rng.ts';

export interface SamplingOptions {
  /** New tokens per sample. */
  maxNew: number;
  /** Default 1; 0 is greedy. */
  temperature?: number;
  seed?: number;
  /** Stop after one of these ids (it is kept). */
  stop?: readonly number[];
  /** Checked before every new token: an abort stops the sampling there. */
  signal?: AbortSignal;
  /** After every new token. */
  onToken?: () => void;
}

/** Draws an id from softmax(z / temperature); the argmax at temperature 0. */
export function sampleLogits(z: Float32Array, temperature: number, rng: Rng): number {
  let best = 0;
  for (let i = 1; i < z.length; i++) if (z[i]! > z[best]!) best = i;
  if (temperature <= 0) return best;
  const m = z[best]!;
  const w = new Float64Array(z.length);
  let s = 0;
  for (let i = 0; i < z.length; i++) s += w[i] = Math.exp((z[i]! - m) / temperature);
  let u = rng.next() * s;
  for (let i = 0; i < z.length; i++) {
    u -= w[i]!;
    if (u < 0) return i;
  }
  return best;
}

/**
 * The sampling loop shared by every mode: `logits(next)` feeds the new tokens (the prompt first) and
 * returns the next-token logits [V] on the host.
 */
async function sampleWith(prompt: readonly number[], opts: SamplingOptions, logits: (next: readonly number[]) => Promise<Float32Array>): Promise<number[]> {
  const rng = createRng(opts.seed ?? 0);
  const out: number[] = [];
  let next: readonly number[] = prompt;
  while (out.length < opts.maxNew) {
    opts.signal?.throwIfAborted();
    const id = sampleLogits(await logits(next), opts.temperature ?? 1, rng);
    out.push(id);
    opts.onToken?.();
    if (opts.stop?.includes(id)) break;
    next = [id];
  }
  return out;
}

/** Last-position logits [1, 1, V] of a model continuing its KV cache. */
function stepLogits(model: Transformer, kv: KvCache, next: readonly number[]): Tensor {
  return model.forward([next], { kvCache: kv, lastPositionOnly: true }).logits!;
}

/** Samples a continuation of `prompt` from one model. */
export async function sampleModel(model: Transformer, prompt: readonly number[], opts: SamplingOptions): Promise<number[]> {
  checkIds(model, prompt);
  const kv = model.newKvCache();
  try {
    return await sampleWith(prompt, opts, (next) => readF32(model.backend, stepLogits(model, kv, next)));
  } finally {
    model.disposeKvCache(kv);
  }
}

/** Samples from z_ft + α·(z_ft − z_base). */
export async function sampleLogitDiff(pair: ModelPair, prompt: readonly number[], alpha: number, opts: SamplingOptions): Promise<number[]> {
  const be = checkPair(pair);
  checkIds(pair.base, prompt);
  const kvb = pair.base.newKvCache();
  const kvf = pair.ft.newKvCache();
  try {
    return await sampleWith(prompt, opts, async (next) => {
      const zb = stepLogits(pair.base, kvb, next);
      const zf = stepLogits(pair.ft, kvf, next);
      const diff = be.sub(zf, zb);
      const scaled = be.scale(diff, alpha);
      const z = be.add(zf, scaled);
      disposeAll(be, [zb, zf, diff, scaled]);
      return readF32(be, z);
    });
  } finally {
    pair.base.disposeKvCache(kvb);
    pair.ft.disposeKvCache(kvf);
  }
}

/**
 * A model with W_base + α·(W_ft − W_base) for every weight (the base's own where the fine-tune has no
 * tensor of that name and shape). Dispose it when done; the pair's weights are untouched.
 */
export function amplifiedModel(pair: ModelPair, alpha: number, signal?: AbortSignal): Transformer {
  const be = checkPair(pair);
  const weights = new Map<string, Tensor>();
  try {
    for (const [name, wb] of pair.base.weights) {
      signal?.throwIfAborted();
      const wf = pair.ft.weights.get(name);
      if (!wf || wf.shape.length !== wb.shape.length || wf.shape.some((n, i) => n !== wb.shape[i])) {
        weights.set(name, be.scale(wb, 1));
        continue;
      }
      const delta = be.sub(wf, wb);
      const scaled = be.scale(delta, alpha);
      weights.set(name, be.add(wb, scaled));
      disposeAll(be, [delta, scaled]);
    }
  } catch (e) {
    disposeAll(be, weights.values());
    throw e;
  }
  return new Transformer(pair.base.config, be, weights, pair.base.sources);
}

export type AmplifyMode = 'logits' | 'weights';

export interface AmplifyOptions extends Omit<SamplingOptions, 'onToken'> {
  alphas: readonly number[];
  mode: AmplifyMode;
  /** Samples per α; sample i uses seed + i. Default 1. */
  samples?: number;
  /** New tokens sampled so far, of at most alphas × samples × maxNew (a sample that stops early skips its rest). */
  onProgress?: (p: Progress) => void;
}

export interface AmplifiedSample {
  alpha: number;
  mode: AmplifyMode;
  seed: number;
  ids: number[];
}

export async function amplify(pair: ModelPair, prompt: readonly number[], opts: AmplifyOptions): Promise<AmplifiedSample[]> {
  const out: AmplifiedSample[] = [];
  const seed0 = opts.seed ?? 0;
  const samples = opts.samples ?? 1;
  for (const alpha of opts.alphas) if (!Number.isFinite(alpha)) throw new RangeError(`α must be a finite number, got ${alpha}`);
  const total = opts.alphas.length * samples * opts.maxNew;
  let done = 0;
  for (const alpha of opts.alphas) {
    const model = opts.mode === 'weights' ? amplifiedModel(pair, alpha, opts.signal) : undefined;
    try {
      for (let i = 0; i < samples; i++) {
        const start = done;
        const { onProgress: _, ...sampling } = opts;
        const o: SamplingOptions = { ...sampling, seed: seed0 + i, onToken: () => opts.onProgress?.({ stage: 'amplify', done: ++done, total }) };
        const ids = model ? await sampleModel(model, prompt, o) : await sampleLogitDiff(pair, prompt, alpha, o);
        done = start + opts.maxNew;
        out.push({ alpha, mode: opts.mode, seed: seed0 + i, ids });
      }
    } finally {
      model?.dispose();
    }
  }
  return out;
}
