// Paired activations for crosscoders: a corpus (one sample per line) is tokenized once, both models
// run on the same token rows, and the chosen hook's activations of every kept position are stored
// row by row, sample after sample, with the token id, sample and position of each row so latents
// can later be shown in context. A normalisation to a fixed RMS is computed over all rows; the rows
// stay raw, and the trainer and inference apply the normalisation (it is saved with the crosscoder).
import { hookName, type TokenInput } from '../../model/transformer.ts';
import type { PairedRunner } from '../../model/paired.ts';
import type { Tokenizer } from '../../io/tokenizer.ts';
import { corpusLines } from '../activations/corpus.ts';
import { computeNormalization, type Normalization } from './model.ts';
import { createRng } from './rng.ts';
import type { BatchSource, PairBatch } from './trainer.ts';

export const HOOK_KINDS = ['resid_post', 'resid_pre', 'attn_out', 'mlp_out'] as const;
export type HookKind = (typeof HOOK_KINDS)[number];

export interface CorpusOptions {
  /** Tokens fed to the models per sample, BOS included (longer samples are cut). Default 128. */
  readonly tokensPerSample?: number;
  /** Use only the first n non-empty lines. */
  readonly maxSamples?: number;
}

export interface CollectSettings {
  /** Block index; default floor(L/2). */
  readonly layer?: number;
  readonly hook?: HookKind;
  /**
   * Rows at positions below this are left out (the models still see those tokens). Default 1: in
   * most pretrained models the first token, BOS or not, is an attention sink whose residual is an
   * outlier many times the typical norm, and a crosscoder would spend latents on that one position.
   */
  readonly skipPositions?: number;
  /** E‖x'‖² of the normalised (centred) activations is targetRms². Default 1 (the trainer's). */
  readonly targetRms?: number;
}

export interface CollectOptions extends CollectSettings {
  /** Sequences per forward call. Default 16. */
  readonly batchSize?: number;
  readonly signal?: AbortSignal;
  readonly onProgress?: (p: { stage: 'activations'; done: number; total: number }) => void;
}

export interface PairedActivations {
  readonly d: number;
  readonly rows: number;
  /** Raw activations [rows, d] of the base and fine-tuned model. */
  readonly base: Float32Array;
  readonly ft: Float32Array;
  /** Per row: token id, sample index (line among the samples used), position in the sample. */
  readonly tokens: Int32Array;
  readonly sample: Int32Array;
  readonly position: Int32Array;
  readonly normalization: Normalization;
  readonly layer: number;
  /** Full hook point name ("blocks.3.hook_resid_post"). */
  readonly hook: string;
  readonly samples: number;
  /** Settings and provenance, for files and summaries. */
  readonly info: Readonly<Record<string, string>>;
}

/** Each non-empty line of a corpus (trimmed, as corpusLines) tokenized as the tokenizer's family expects (BOS where its post-processor adds one), then cut. */
export function tokenizeCorpus(text: string, tokenizer: Tokenizer, opts: CorpusOptions = {}): number[][] {
  const perSample = opts.tokensPerSample ?? 128;
  if (!Number.isInteger(perSample) || perSample < 1) throw new RangeError(`tokens per sample must be a positive integer, got ${perSample}`);
  const max = opts.maxSamples ?? Infinity;
  const out: number[][] = [];
  for (const line of corpusLines(text)) {
    if (out.length >= max) break;
    const ids = tokenizer.encode(line);
    if (ids.length > 0) out.push(ids.slice(0, perSample));
  }
  return out;
}

export function defaultLayer(nLayers: number): number {
  return Math.floor(nLayers / 2);
}

/**
 * Runs both models of `runner` over `samples` and keeps one hook's activations. Cancel with
 * `signal` (give the runner the same signal so loading stops too).
 */
export async function collectPairedActivations(runner: PairedRunner, samples: readonly (readonly number[])[], opts: CollectOptions = {}): Promise<PairedActivations> {
  const config = runner.base.config;
  const d = config.dModel;
  if (runner.ft.config.dModel !== d || runner.ft.config.nLayers !== config.nLayers) {
    throw new RangeError(`${runner.base.label} and ${runner.ft.label} differ in width or depth (${d}×${config.nLayers} vs ${runner.ft.config.dModel}×${runner.ft.config.nLayers}): their activations cannot be paired`);
  }
  const layer = opts.layer ?? defaultLayer(config.nLayers);
  if (!Number.isInteger(layer) || layer < 0 || layer >= config.nLayers) throw new RangeError(`layer ${layer} is outside 0..${config.nLayers - 1}`);
  const kind = opts.hook ?? 'resid_post';
  if (!HOOK_KINDS.includes(kind)) throw new RangeError(`hook "${String(kind)}" is not one of ${HOOK_KINDS.join(', ')}`);
  const skip = opts.skipPositions ?? 1;
  if (!Number.isInteger(skip) || skip < 0) throw new RangeError(`skipPositions must be a non-negative integer, got ${skip}`);
  const batchSize = opts.batchSize ?? 16;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError(`batch size must be a positive integer, got ${batchSize}`);
  const hook = hookName(kind, layer);

  const offsets = new Int32Array(samples.length + 1);
  samples.forEach((s, i) => (offsets[i + 1] = offsets[i]! + Math.max(0, s.length - skip)));
  const rows = offsets[samples.length]!;
  if (rows === 0) throw new RangeError(`no activations to collect: ${samples.length} samples, none longer than ${skip} token(s)`);
  const base = new Float32Array(rows * d);
  const ft = new Float32Array(rows * d);
  const tokens = new Int32Array(rows);
  const sample = new Int32Array(rows);
  const position = new Int32Array(rows);
  samples.forEach((s, i) => {
    for (let p = skip; p < s.length; p++) {
      const r = offsets[i]! + p - skip;
      tokens[r] = s[p]!;
      sample[r] = i;
      position[r] = p;
    }
  });

  const groups = equalLengthGroups(samples, batchSize).filter((g) => samples[g[0]!]!.length > skip);
  const batches: TokenInput[] = groups.map((g) => g.map((i) => samples[i]!));
  let done = 0;
  const be = runner.backend;
  await runner.run(batches, [hook], async ({ index, base: b, ft: f }) => {
    opts.signal?.throwIfAborted();
    const group = groups[index]!;
    const seq = samples[group[0]!]!.length;
    const xb = await be.read(b.get(hook)!);
    const xf = await be.read(f.get(hook)!);
    group.forEach((i, row) => {
      const from = (row * seq + skip) * d;
      const to = (row * seq + seq) * d;
      base.set(xb.subarray(from, to), offsets[i]! * d);
      ft.set(xf.subarray(from, to), offsets[i]! * d);
      done += seq - skip;
    });
    opts.onProgress?.({ stage: 'activations', done, total: rows });
  });

  const normalization = computeNormalization(base, ft, rows, d, { targetRms: opts.targetRms ?? 1 });
  return {
    d,
    rows,
    base,
    ft,
    tokens,
    sample,
    position,
    normalization,
    layer,
    hook,
    samples: samples.length,
    info: { base_model: runner.base.label, ft_model: runner.ft.label, skip_positions: String(skip) },
  };
}

/** Sample indices grouped by length (the forward pass takes rectangular batches), in input order within a length. */
export function equalLengthGroups(samples: readonly (readonly number[])[], batchSize: number): number[][] {
  const byLength = new Map<number, number[]>();
  samples.forEach((s, i) => {
    const list = byLength.get(s.length);
    if (list) list.push(i);
    else byLength.set(s.length, [i]);
  });
  const groups: number[][] = [];
  for (const list of byLength.values()) for (let i = 0; i < list.length; i += batchSize) groups.push(list.slice(i, i + batchSize));
  return groups;
}

/**
 * Endless training batches of `batchTokens` rows drawn without replacement from a seeded shuffle
 * of `rows` (all rows when absent), reshuffled every epoch: neighbouring tokens of one story are
 * strongly correlated, so batches must not follow corpus order.
 */
export function shuffledBatches(acts: Pick<PairedActivations, 'base' | 'ft' | 'd' | 'rows'>, batchTokens: number, seed = 0, rows?: Int32Array): BatchSource {
  const { d } = acts;
  const pool = rows ? Int32Array.from(rows) : Int32Array.from({ length: acts.rows }, (_, i) => i);
  if (!Number.isInteger(batchTokens) || batchTokens < 1) throw new RangeError(`batch size must be a positive integer number of tokens, got ${batchTokens}`);
  if (pool.length < batchTokens) throw new RangeError(`a batch of ${batchTokens} tokens needs at least that many rows; the activations have ${pool.length}`);
  const rng = createRng(seed);
  let cursor = pool.length;
  const shuffle = () => {
    for (let i = pool.length - 1; i > 0; i--) {
      const j = rng.int(i + 1);
      const t = pool[i]!;
      pool[i] = pool[j]!;
      pool[j] = t;
    }
    cursor = 0;
  };
  return {
    next(): IteratorResult<PairBatch> {
      if (cursor + batchTokens > pool.length) shuffle();
      const base = new Float32Array(batchTokens * d);
      const ft = new Float32Array(batchTokens * d);
      for (let t = 0; t < batchTokens; t++) {
        const r = pool[cursor + t]!;
        base.set(acts.base.subarray(r * d, (r + 1) * d), t * d);
        ft.set(acts.ft.subarray(r * d, (r + 1) * d), t * d);
      }
      cursor += batchTokens;
      return { done: false, value: { base, ft } };
    },
  };
}
