// Corpus KL: KL(P_ft ‖ P_base) of the two models' next-token distributions at every token of a corpus,
// by the backend's fused logit-lens pass over the final-normed residuals (the vocabulary is streamed
// with an online log-sum-exp; no logits are kept). Reported: the mean, the mean per position index,
// a histogram, and the places with the largest KL with both models' top tokens.
import type { Tensor } from '../../model/backend.ts';
import type { Transformer } from '../../model/transformer.ts';
import { checkPair, readF32, readI32, type ModelPair, type RunOptions } from '../activations/run.ts';
import { forEachPairedBatch, TopList, type CorpusPlace } from './stream.ts';

export interface CorpusKlOptions extends RunOptions {
  /** Places with the largest KL kept. Default 50. */
  top?: number;
  /** Top tokens of each model kept for those places. Default 5. */
  k?: number;
  /** Histogram bins, log-spaced between the smallest positive and the largest KL. Default 30. */
  bins?: number;
  fromPosition?: number;
}

export interface KlContext extends CorpusPlace {
  kl: number;
  baseTop: { id: number; prob: number }[];
  ftTop: { id: number; prob: number }[];
}

export interface CorpusKlResult {
  direction: 'KL(P_ft || P_base)';
  tokens: number;
  meanKl: number;
  maxKl: number;
  /** Mean KL at each position index (NaN where no sample reaches it), and the count there. */
  perPosition: Float64Array;
  perPositionCount: Float64Array;
  /** Bin edges (bins + 1, log-spaced; the first bin also holds KL ≤ its lower edge) and counts. */
  histogram: { edges: number[]; counts: number[] };
  topContexts: KlContext[];
}

function lensHead(model: Transformer, normed: Tensor) {
  return { normed, unembed: model.unembed, softcap: Math.max(0, model.config.finalSoftcap) };
}

export async function corpusKl(pair: ModelPair, samples: readonly (readonly number[])[], opts: CorpusKlOptions = {}): Promise<CorpusKlResult> {
  const be = checkPair(pair);
  const k = Math.min(opts.k ?? 5, pair.base.config.vocab);
  const from = opts.fromPosition ?? 0;
  const Tmax = Math.max(0, ...samples.map((s) => s.length));
  const perPosSum = new Float64Array(Tmax);
  const perPositionCount = new Float64Array(Tmax);
  const all: number[] = [];
  const top = new TopList<KlContext>(opts.top ?? 50);
  const name = 'ln_final.hook_normalized';
  await forEachPairedBatch(pair, samples, [name], { ...opts, stage: 'kl' }, async (b) => {
    // The op gives KL(P_0 ‖ P_1): the fine-tune is head 0.
    const { heads, kl } = be.logitLens([lensHead(pair.ft, b.ft.get(name)!), lensHead(pair.base, b.base.get(name)!)], k);
    for (const h of heads) be.dispose(h.lse);
    const klRows = await readF32(be, kl!);
    const ftLp = await readF32(be, heads[0]!.logProbs);
    const ftIds = await readI32(be, heads[0]!.ids);
    const baseLp = await readF32(be, heads[1]!.logProbs);
    const baseIds = await readI32(be, heads[1]!.ids);
    const T = b.seq;
    for (let row = 0; row < klRows.length; row++) {
      const position = row % T;
      if (position < from) continue;
      // Float32 cancellation can leave a KL of a few ulps below zero.
      const x = Math.max(0, klRows[row]!);
      all.push(x);
      perPosSum[position]! += x;
      perPositionCount[position]!++;
      if (!top.admits(x)) continue;
      const list = (ids: Int32Array, lp: Float32Array) => Array.from({ length: k }, (_, j) => ({ id: ids[row * k + j]!, prob: Math.exp(lp[row * k + j]!) }));
      top.add(x, { sample: b.samples[Math.floor(row / T)]!, position, kl: x, baseTop: list(baseIds, baseLp), ftTop: list(ftIds, ftLp) });
    }
  });
  let sum = 0;
  let maxKl = 0;
  for (const x of all) {
    sum += x;
    if (x > maxKl) maxKl = x;
  }
  return {
    direction: 'KL(P_ft || P_base)',
    tokens: all.length,
    meanKl: all.length > 0 ? sum / all.length : NaN,
    maxKl,
    perPosition: perPosSum.map((s, p) => (perPositionCount[p]! > 0 ? s / perPositionCount[p]! : NaN)),
    perPositionCount,
    histogram: logHistogram(all, opts.bins ?? 30),
    topContexts: top.items.map((x) => x.item),
  };
}

/** Counts in log-spaced bins from the smallest positive value to the largest (values ≤ the first edge fall in bin 0). */
export function logHistogram(values: readonly number[], bins: number): { edges: number[]; counts: number[] } {
  let lo = Infinity;
  let hi = 0;
  for (const x of values) {
    if (x > 0 && x < lo) lo = x;
    if (x > hi) hi = x;
  }
  if (!(hi > 0)) return { edges: [0, 0], counts: [values.length] };
  if (lo === hi) lo = hi / 10;
  const a = Math.log10(lo);
  const w = (Math.log10(hi) - a) / bins;
  const edges = Array.from({ length: bins + 1 }, (_, i) => 10 ** (a + i * w));
  const counts = new Array<number>(bins).fill(0);
  for (const x of values) {
    const i = x > 0 ? Math.floor((Math.log10(x) - a) / w) : 0;
    counts[Math.min(bins - 1, Math.max(0, i))]!++;
  }
  return { edges, counts };
}
