// Activation Difference Lens (Minder et al. 2025; science-of-finetuning/diffing-toolkit): the mean
// difference δ_p = mean_s (h^f_{ℓ,p} − h^b_{ℓ,p}) at early positions p of generic text, read through the
// fine-tuned model's logit lens (both signs), through a Patchscope on identity prompts, and used to steer.
// h is blocks.ℓ.hook_resid_post (the decoder layer's output, as the reference reads it).
import type { Tensor } from '../../model/backend.ts';
import { hookName, type HookFn, type Transformer } from '../../model/transformer.ts';
import { lensTop, type LensOptions } from './lens.ts';
import { checkPairInput, runPairedPasses, withModel, type PairInput } from './passes.ts';
import { captureActivations, checkIds, checkLayer, cosine, DEFAULT_BATCH_SIZE, disposeAll, equalLengthBatches, readF32, readI32, type RunOptions } from './run.ts';

export interface TokenProb {
  id: number;
  prob: number;
}

/** floor(0.5 · L), the reference's relative depth 0.5. */
export function defaultAdlLayer(nLayers: number): number {
  return Math.floor(0.5 * nLayers);
}

/** Corpus samples and tokens per sample the app and the command line use unless told otherwise. */
export const DEFAULT_ADL_SAMPLES = 200;
export const DEFAULT_TOKENS_PER_SAMPLE = 64;
export const DEFAULT_ADL_POSITIONS: readonly number[] = [0, 1, 2, 3, 4];
/** The reference leaves the first 5 positions out of the mean activation norm. */
export const NORM_SKIP_POSITIONS = 5;

export interface AdlDifferenceOptions extends RunOptions {
  layer?: number;
  positions?: readonly number[];
  /** Positions from which the fine-tuned model's mean ‖h_ℓ‖ is taken. Default 5. */
  normFromPosition?: number;
}

export interface AdlDifference {
  layer: number;
  positions: readonly number[];
  samples: number;
  /** δ_p for each position, [d] each. */
  delta: Float32Array[];
  /** cosine(δ_{s,p}, δ_p) for every sample s, per position: the readable-trace consistency. */
  consistency: Float32Array[];
  /** Mean ‖h^f_ℓ‖ over every sample's positions ≥ normFromPosition; undefined when no sample is that long. */
  ftNorm: number | undefined;
}

/**
 * δ_p over a corpus. By causality the activations at positions ≤ max(p) do not depend on later tokens,
 * so the base model runs only those; the fine-tuned model runs the whole samples for its mean norm.
 * With a PairedRunner that holds one model at a time, the base activations at those positions
 * (samples × (max(p) + 1) × d floats) wait on the host for the fine-tuned pass.
 */
export async function adlDifferences(input: PairInput, samples: readonly (readonly number[])[], opts: AdlDifferenceOptions = {}): Promise<AdlDifference> {
  const { backend: be, config } = checkPairInput(input);
  const layer = opts.layer ?? defaultAdlLayer(config.nLayers);
  checkLayer({ config }, layer);
  const positions = opts.positions ?? DEFAULT_ADL_POSITIONS;
  if (positions.length === 0) throw new RangeError('no positions');
  for (const p of positions) if (!Number.isInteger(p) || p < 0) throw new RangeError(`position ${p} is not a non-negative integer`);
  const P = Math.max(...positions) + 1;
  const S = samples.length;
  if (S === 0) throw new RangeError('the corpus holds no samples');
  samples.forEach((s, i) => {
    if (s.length < P) throw new RangeError(`sample ${i} has ${s.length} tokens; position ${P - 1} needs at least ${P}`);
    checkIds({ config }, s);
  });
  const normFrom = opts.normFromPosition ?? NORM_SKIP_POSITIONS;
  const d = config.dModel;
  const name = hookName('resid_post', layer);
  const perSample = positions.map(() => new Float32Array(S * d));
  let normSum = 0;
  let normCount = 0;
  const capture = (m: Transformer, rows: readonly (readonly number[])[]) => captureActivations(m, rows, [name], layer).get(name)!;
  const batches = equalLengthBatches(samples, opts.batchSize ?? DEFAULT_BATCH_SIZE);
  await runPairedPasses(
    input,
    {
      base: async (i, model, carry) => carry(capture(model, batches[i]!.rows.map((r) => r.slice(0, P)))),
      ft: async (i, model, kept) => {
        const batch = batches[i]!;
        const B = batch.rows.length;
        const T = batch.rows[0]!.length;
        const hb = kept.take();
        let hf: Tensor | undefined;
        let hfHead: Tensor | undefined;
        let delta: Tensor | undefined;
        try {
          hf = capture(model, batch.rows);
          hfHead = T === P ? hf : be.sliceSeq(hf, 0, P);
          delta = be.sub(hfHead, hb);
          const values = await readF32(be, delta, false);
          batch.indices.forEach((s, b) => {
            positions.forEach((p, pi) => perSample[pi]!.set(values.subarray((b * P + p) * d, (b * P + p + 1) * d), s * d));
          });
          if (T > normFrom) {
            const sq = await readF32(be, be.sumSquares(hf));
            for (let b = 0; b < B; b++) for (let t = normFrom; t < T; t++) normSum += Math.sqrt(sq[b * T + t]!);
            normCount += B * (T - normFrom);
          }
        } finally {
          disposeAll(be, [hb, hf, hfHead === hf ? undefined : hfHead, delta]);
        }
      },
    },
    { signal: opts.signal, onProgress: opts.onProgress, stage: 'adl', sizes: batches.map((b) => b.rows.length) },
  );
  const delta = perSample.map((all) => {
    const sum = new Float64Array(d);
    for (let s = 0; s < S; s++) for (let j = 0; j < d; j++) sum[j]! += all[s * d + j]!;
    return Float32Array.from(sum, (v) => v / S);
  });
  const consistency = perSample.map((all, pi) => Float32Array.from({ length: S }, (_, s) => cosine(all, delta[pi]!, s * d, 0, d)));
  return { layer, positions, samples: S, delta, consistency, ftNorm: normCount > 0 ? normSum / normCount : undefined };
}

export interface SignedLens {
  top: TokenProb[];
  topNegative: TokenProb[];
}

/** Logit lens of v and of −v through the model's final norm and unembedding. */
export async function signedLens(model: Transformer, v: Float32Array, opts: LensOptions = {}): Promise<SignedLens> {
  const be = model.backend;
  const d = model.config.dModel;
  if (v.length !== d) throw new RangeError(`a vector of ${v.length} values for d_model ${d}`);
  const both = new Float32Array(2 * d);
  both.set(v);
  for (let j = 0; j < d; j++) both[d + j] = -v[j]!;
  const t = be.fromArray(both, [2, d]);
  try {
    const lens = await lensTop(model, t, { k: 20, ...opts });
    const row = (r: number): TokenProb[] => Array.from({ length: lens.k }, (_, j) => ({ id: lens.ids[r * lens.k + j]!, prob: lens.probs[r * lens.k + j]! }));
    return { top: row(0), topNegative: row(1) };
  } finally {
    be.dispose(t);
  }
}

/** v · target / ‖v‖. */
export function rescale(v: Float32Array, target: number): Float32Array {
  let n = 0;
  for (const x of v) n += x * x;
  n = Math.sqrt(n);
  if (!(n > 0)) throw new RangeError('cannot rescale a zero vector');
  return Float32Array.from(v, (x) => (x / n) * target);
}

/** 0.5…2.0 by 0.1, then 3, 4, 5, 10 and 20…200 by 20 (the reference's sweep). */
export function defaultPatchscopeScales(): number[] {
  const scales: number[] = [];
  for (let i = 5; i <= 20; i++) scales.push(i / 10);
  scales.push(3, 4, 5, 10);
  for (let s = 20; s <= 200; s += 20) scales.push(s);
  return scales;
}

/** The reference's identity prompts; the first is the one the ADL paper names. */
export const IDENTITY_PROMPTS: readonly string[] = ['man -> man\n1135 -> 1135\nhello -> hello\n?', 'bear -> bear\n42 -> 42\nblue -> blue\n?', '921 -> 921\ntarget -> target\nanna -> anna\n?'];

export interface PatchscopeOptions extends Pick<RunOptions, 'signal' | 'onProgress'> {
  /** Token ids of the identity prompts (tokenized by the caller, e.g. IDENTITY_PROMPTS). */
  prompts: readonly (readonly number[])[];
  scales?: readonly number[];
  /** A token counts at a scale only if it is in the top `intersectionTopK` of every prompt. Default 100. */
  intersectionTopK?: number;
  /** Tokens reported per scale. Default 20. */
  top?: number;
  /** Latents whose scales share one batched step. Default: as many as keep its logits within 64 MiB. */
  latentsPerStep?: number;
}

export interface PatchscopeScale {
  scale: number;
  /** Tokens in every prompt's top intersectionTopK, by probability averaged over the prompts. */
  top: TokenProb[];
}

export interface PatchscopeResult {
  scales: PatchscopeScale[];
  /** Tokens by the number of scales whose top list holds them (then by summed probability): stable across scales. */
  stable: { id: number; scales: number; prob: number }[];
}

/** Logits (and probabilities) a Patchscope step may hold at once: latents are batched up to this. */
const PATCHSCOPE_STEP_BYTES = 64 * 1024 * 1024;

/**
 * Patchscope: the residual leaving block ℓ at each identity prompt's last token is replaced by s · latent,
 * and the next-token distribution read, for each latent. By causality only the last token depends on the
 * patch: each prompt's prefix runs once into a KV cache, which is repeated once per (latent, scale) row,
 * and all the rows' last tokens then run as one batched step (several steps when the rows' logits would
 * exceed PATCHSCOPE_STEP_BYTES). One result per latent.
 */
export async function patchscope(model: Transformer, latents: readonly Float32Array[], layer: number, opts: PatchscopeOptions): Promise<PatchscopeResult[]> {
  const be = model.backend;
  checkLayer(model, layer);
  const d = model.config.dModel;
  const V = model.config.vocab;
  for (const latent of latents) if (latent.length !== d) throw new RangeError(`a latent of ${latent.length} values for d_model ${d}`);
  if (opts.prompts.length === 0) throw new RangeError('no identity prompts');
  opts.prompts.forEach((p) => checkIds(model, p));
  const scales = opts.scales ?? defaultPatchscopeScales();
  if (scales.length === 0) throw new RangeError('no scales');
  if (latents.length === 0) return [];
  const K = Math.min(opts.intersectionTopK ?? 100, V);
  const top = opts.top ?? 20;
  const name = hookName('resid_post', layer);
  const S = scales.length;
  // Latents per step: at least one, as many as keep a step's [rows, V] logits within the budget.
  const perStep = opts.latentsPerStep ?? Math.max(1, Math.floor(PATCHSCOPE_STEP_BYTES / (S * V * 4)));
  if (!Number.isInteger(perStep) || perStep < 1) throw new RangeError(`latentsPerStep ${perStep} is not a positive integer`);
  const groups: number[][] = [];
  for (let i = 0; i < latents.length; i += perStep) groups.push(Array.from({ length: Math.min(perStep, latents.length - i) }, (_, j) => i + j));
  // sums[latent][scale]: token → [prompts seen in top K, summed probability]
  const sums = latents.map(() => scales.map(() => new Map<number, [number, number]>()));
  const total = opts.prompts.length * groups.length;
  let done = 0;
  for (const prompt of opts.prompts) {
    const prefix = model.newKvCache();
    try {
      if (prompt.length > 1) {
        const { logits } = model.forward([prompt.slice(0, -1)], { kvCache: prefix, lastPositionOnly: true });
        if (logits) be.dispose(logits);
      }
      const last = prompt[prompt.length - 1]!;
      for (const group of groups) {
        opts.signal?.throwIfAborted();
        const rows = group.length * S;
        const patched = new Float32Array(rows * d);
        group.forEach((li, gi) => {
          const latent = latents[li]!;
          scales.forEach((s, si) => {
            for (let j = 0; j < d; j++) patched[(gi * S + si) * d + j] = latent[j]! * s;
          });
        });
        const patch: HookFn = () => be.fromArray(patched, [rows, 1, d]);
        const step = model.repeatKvCache(prefix, rows);
        let probs: Tensor;
        try {
          const { logits } = model.forward(Array.from({ length: rows }, () => [last]), { kvCache: step, lastPositionOnly: true, hooks: { [name]: patch } });
          probs = be.softmax(logits!);
          be.dispose(logits!);
        } finally {
          model.disposeKvCache(step);
        }
        const t = be.topk(probs, K);
        be.dispose(probs);
        const values = await readF32(be, t.values);
        const ids = await readI32(be, t.indices);
        group.forEach((li, gi) => {
          for (let si = 0; si < S; si++) {
            const m = sums[li]![si]!;
            for (let j = (gi * S + si) * K; j < (gi * S + si + 1) * K; j++) {
              const e = m.get(ids[j]!) ?? [0, 0];
              e[0]++;
              e[1] += values[j]!;
              m.set(ids[j]!, e);
            }
          }
        });
        opts.onProgress?.({ stage: 'patchscope', done: ++done, total });
      }
    } finally {
      model.disposeKvCache(prefix);
    }
  }
  return sums.map((perLatent) => patchscopeResult(perLatent, scales, opts.prompts.length, top));
}

function patchscopeResult(sums: Map<number, [number, number]>[], scales: readonly number[], n: number, top: number): PatchscopeResult {
  const perScale = scales.map((scale, si): PatchscopeScale => {
    const kept = [...sums[si]!].filter(([, [count]]) => count === n).map(([id, [, p]]) => ({ id, prob: p / n }));
    kept.sort((a, b) => b.prob - a.prob || a.id - b.id);
    return { scale, top: kept.slice(0, top) };
  });
  const stable = new Map<number, { id: number; scales: number; prob: number }>();
  for (const s of perScale) {
    for (const t of s.top) {
      const e = stable.get(t.id) ?? { id: t.id, scales: 0, prob: 0 };
      e.scales++;
      e.prob += t.prob;
      stable.set(t.id, e);
    }
  }
  return { scales: perScale, stable: [...stable.values()].sort((a, b) => b.scales - a.scales || b.prob - a.prob || a.id - b.id).slice(0, top) };
}

export interface SteeringOptions extends Pick<RunOptions, 'signal' | 'onProgress'> {
  layer: number;
  /** Multiples of the steering vector added at every position. */
  strengths: readonly number[];
  prompt: readonly number[];
  maxNewTokens: number;
  stop?: readonly number[];
}

export interface SteeredGeneration {
  strength: number;
  /** Greedy new token ids of each model with strength · v added to blocks.ℓ.hook_resid_post. */
  base: number[];
  ft: number[];
}

/** The reference's steering vector: v = δ / ‖δ‖ · mean ‖h^f_ℓ‖. */
export function steeringVector(delta: Float32Array, ftNorm: number): Float32Array {
  return rescale(delta, ftNorm);
}

/**
 * Greedy generations of both models, side by side, with strength · v added at layer ℓ at every position.
 * Each model generates on its own: one model at a time, the base does every strength, then the fine-tune.
 */
export async function steer(input: PairInput, v: Float32Array, opts: SteeringOptions): Promise<SteeredGeneration[]> {
  const { backend: be, config } = checkPairInput(input);
  checkLayer({ config }, opts.layer);
  checkIds({ config }, opts.prompt);
  const d = config.dModel;
  if (v.length !== d) throw new RangeError(`a steering vector of ${v.length} values for d_model ${d}`);
  const name = hookName('resid_post', opts.layer);
  const out: SteeredGeneration[] = opts.strengths.map((strength) => ({ strength, base: [], ft: [] }));
  let done = 0;
  for (const side of ['base', 'ft'] as const) {
    await withModel(
      input,
      side,
      async (m) => {
        for (const g of out) {
          const added = be.fromArray(Float32Array.from(v, (x) => x * g.strength), [d]);
          const hooks = { [name]: ((act: Tensor) => be.add(act, added)) as HookFn };
          try {
            g[side] = await m.generate(opts.prompt, opts.maxNewTokens, { hooks, ...(opts.stop ? { stop: opts.stop } : {}), ...(opts.signal ? { signal: opts.signal } : {}) });
          } finally {
            be.dispose(added);
          }
          opts.onProgress?.({ stage: 'steer', done: ++done, total: 2 * opts.strengths.length });
        }
      },
      opts.signal,
    );
  }
  return out;
}

export interface AdlOptions extends AdlDifferenceOptions {
  /** Lens tokens per position and sign. Default 20. */
  top?: number;
  /** Run the Patchscope on each δ_p (rescaled to the fine-tuned model's mean norm when known). */
  patchscope?: Omit<PatchscopeOptions, 'signal' | 'onProgress' | 'top'>;
}

export interface AdlPosition extends SignedLens {
  position: number;
  consistency: number;
  norm: number;
  patchscope?: PatchscopeResult;
}

export interface AdlResult {
  layer: number;
  samples: number;
  ftNorm: number | undefined;
  positions: AdlPosition[];
  difference: AdlDifference;
}

/**
 * δ_p over the corpus, its signed logit lens through the fine-tuned model, and optionally its Patchscope.
 * A PairedRunner holding one model at a time loads the fine-tune once more for the lens.
 */
export async function activationDifferenceLens(input: PairInput, samples: readonly (readonly number[])[], opts: AdlOptions = {}): Promise<AdlResult> {
  const diff = await adlDifferences(input, samples, opts);
  return withModel(
    input,
    'ft',
    async (ft) => {
      const top = opts.top ?? 20;
      const positions: AdlPosition[] = [];
      for (const [pi, position] of diff.positions.entries()) {
        opts.signal?.throwIfAborted();
        const delta = diff.delta[pi]!;
        const lens = await signedLens(ft, delta, { k: top });
        const consistency = diff.consistency[pi]!.reduce((a, b) => a + b, 0) / diff.samples;
        const norm = Math.sqrt(delta.reduce((a, x) => a + x * x, 0));
        positions.push({ position, consistency, norm, ...lens });
      }
      if (opts.patchscope) {
        // One Patchscope over every non-zero δ_p, so their scales share each batched step.
        const scoped = positions.filter((p) => p.norm > 0);
        const latents = scoped.map((p) => {
          const delta = diff.delta[diff.positions.indexOf(p.position)]!;
          return diff.ftNorm === undefined ? delta : rescale(delta, diff.ftNorm);
        });
        const results = await patchscope(ft, latents, diff.layer, { ...opts.patchscope, top, ...(opts.signal ? { signal: opts.signal } : {}), ...(opts.onProgress ? { onProgress: opts.onProgress } : {}) });
        scoped.forEach((p, i) => (p.patchscope = results[i]!));
      }
      return { layer: diff.layer, samples: diff.samples, ftNorm: diff.ftNorm, positions, difference: diff };
    },
    opts.signal,
  );
}
