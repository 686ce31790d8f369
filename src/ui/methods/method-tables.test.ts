import { describe, expect, it } from 'vitest';
import type { CorpusKlResult } from '../../analysis/logit-diff/kl.ts';
import type { MiningResult } from '../../analysis/logit-diff/mine.ts';
import type { PcaResult } from '../../analysis/pca/pca.ts';
import type { DiffSaeOutcome } from '../../jobs/diff-sae.ts';
import { attentionTable, contextLine, contextParts, diffSaeTable, filterLatents, formatAlpha, headGrid, klPerPosition, miningTable, miningTopicsTable, rankHeads, samplesByAlpha, tokenJoin, tokenLabel, varianceShares } from './method-tables.ts';

const texts = { 1: 'Once', 2: ' upon', 3: ' a', 4: ' time', 5: ' the', 6: ' sea', 7: '\n', 8: '<0xE2>', 9: '<0x80>', 10: '<0x94>' };
const samples = [
  [1, 2, 3, 4, 5, 6],
  [5, 8, 9, 10, 6, 7],
];

describe('tokens and contexts', () => {
  it('shows tokens readably and unknown ids by number', () => {
    expect(tokenLabel(texts, 6)).toBe('sea');
    expect(tokenLabel(texts, 7)).toBe('⏎');
    expect(tokenLabel(texts, 99)).toBe('#99');
    expect(tokenJoin(texts, [{ id: 6 }, { id: 4 }, { id: 1 }], 2)).toBe('sea, time');
  });

  it('cuts the text around a place and marks its token', () => {
    expect(contextParts(samples, texts, 0, 4, 2, 1)).toEqual({ before: '… a time', at: ' the', after: ' sea' });
    expect(contextParts(samples, texts, 0, 0, 2, 1)).toEqual({ before: '', at: 'Once', after: ' upon…' });
    expect(contextLine(samples, texts, 0, 5)).toBe('Once upon a time the[ sea]');
  });

  it('merges byte tokens that make one character', () => {
    expect(contextLine(samples, texts, 1, 1)).toBe(' the[—] sea ');
  });

  it('names a place outside the corpus instead of failing', () => {
    expect(contextParts(samples, texts, 5, 0).at).toBe('sample 5, position 0');
    expect(contextParts(samples, texts, 0, 6).at).toBe('sample 0, position 6');
  });
});

describe('tables', () => {
  const mining: MiningResult = {
    k: 10,
    positions: 40,
    samples: 2,
    tokens: [
      { id: 6, count: 30, meanDiff: 2.5, maxDiff: 4 },
      { id: 99, count: 10, meanDiff: 1, maxDiff: 1.5 },
    ],
    topics: [{ tokens: [{ id: 6, weight: 0.9 }], contexts: [{ sample: 0, position: 5, weight: 0.4 }] }],
    topicError: 0.2,
  };

  it('lists mined tokens with their share of positions and exact token text', () => {
    expect(miningTable(mining, texts)).toEqual({
      header: ['rank', 'token', 'id', 'count', 'share_of_positions', 'mean_diff', 'max_diff'],
      rows: [
        [1, ' sea', 6, 30, 0.75, 2.5, 4],
        [2, '#99', 99, 10, 0.25, 1, 1.5],
      ],
    });
    expect(miningTopicsTable(mining, texts, samples).rows).toEqual([
      [0, 'token', 1, ' sea', 6, 0.9],
      [0, 'context', 1, 'Once upon a time the[ sea]', null, 0.4],
    ]);
  });

  it('leaves out positions no sample reaches in the KL line', () => {
    const r = { perPosition: Float64Array.of(0.5, NaN, 0.25), perPositionCount: Float64Array.of(4, 0, 2) } as CorpusKlResult;
    expect(klPerPosition(r)).toEqual([
      { position: 0, kl: 0.5, count: 4 },
      { position: 2, kl: 0.25, count: 2 },
    ]);
  });

  it('adds up the variance shares', () => {
    const r = { components: [{ varianceRatio: 0.5 }, { varianceRatio: 0.25 }, { varianceRatio: 0.125 }] } as PcaResult;
    const shares = varianceShares(r);
    expect(shares.map((s) => s.cumulative)).toEqual([0.5, 0.75, 0.875]);
    expect(shares.map((s) => s.component)).toEqual([0, 1, 2]);
  });

  it('groups samples by α in their order, and writes negative α with a minus sign', () => {
    const s = (alpha: number, seed: number) => ({ alpha, mode: 'logits' as const, seed, ids: [seed] });
    const groups = samplesByAlpha([s(2, 0), s(2, 1), s(0, 0), s(-1, 0)]);
    expect(groups.map((g) => [g.alpha, g.samples.map((x) => x.seed)])).toEqual([
      [2, [0, 1]],
      [0, [0]],
      [-1, [0]],
    ]);
    expect(formatAlpha(-1)).toBe('−1');
    expect(formatAlpha(0.5)).toBe('0.5');
  });
});

describe('attention heads', () => {
  const heads = [
    { layer: 0, head: 0, js: 0, maxAbs: 0, worstPosition: 0, worstJs: 0 },
    { layer: 0, head: 1, js: 0, maxAbs: 0, worstPosition: 0, worstJs: 0 },
    { layer: 1, head: 0, js: 0.02, maxAbs: 0.3, worstPosition: 3, worstJs: 0.05 },
    { layer: 1, head: 1, js: 0.01, maxAbs: 0.1, worstPosition: 2, worstJs: 0.02 },
  ];

  it('lays them out as a layer × head grid with the largest magnitude', () => {
    const g = headGrid(heads, (h) => h.js);
    expect(g.layers).toBe(2);
    expect(g.heads).toBe(2);
    expect(g.value).toEqual([
      [0, 0],
      [0.02, 0.01],
    ]);
    expect(g.max).toBe(0.02);
    const sparse = headGrid([{ layer: 1, head: 2, r: -0.5 }], (x) => x.r);
    expect(sparse.value[0]!.every(Number.isNaN)).toBe(true);
    expect(sparse.max).toBe(0.5);
  });

  it('ranks heads by JS and joins patching by head', () => {
    expect(rankHeads(heads, 2).map((h) => [h.layer, h.head])).toEqual([
      [1, 0],
      [1, 1],
    ]);
    const t = attentionTable(heads, [{ layer: 1, head: 0, recovery: 0.8, kl: 0.1 }]);
    expect(t.rows[2]).toEqual([1, 0, 0.02, 0.3, 3, 0.05, 0.8, 0.1]);
    expect(t.rows[0]!.slice(6)).toEqual([null, null]);
  });
});

describe('the diff-SAE latent browser', () => {
  const latent = (id: number, frequency: number, maxActivation: number, positive: number[], top: [number, number][]) => ({
    id,
    frequency,
    maxActivation,
    positive: positive.map((t, i) => ({ id: t, prob: 0.5 / (i + 1) })),
    negative: [{ id: 1, prob: 0.25 }],
    top: top.map(([sample, position], i) => ({ sample, position, activation: maxActivation / (i + 1) })),
  });
  const result: DiffSaeOutcome = {
    layer: 3,
    hook: 'blocks.3.hook_resid_post',
    d: 8,
    D: 16,
    k: 2,
    steps: 10,
    rows: 10,
    fvu: 0.25,
    live: 3,
    curve: [],
    latents: [latent(4, 0.5, 1.5, [6, 4], [[0, 5]]), latent(9, 0.3, 7.25, [2], [[1, 4]]), latent(2, 0.3, 2, [3], [[0, 3]])],
  };

  it('sorts by frequency or by activation, ties by id; filters on lens and context tokens', () => {
    const ids = (q: string, sort: 'frequency' | 'activation') => filterLatents(result.latents, texts, samples, q, sort).map((l) => l.id);
    expect(ids('', 'frequency')).toEqual([4, 2, 9]);
    expect(ids('', 'activation')).toEqual([9, 2, 4]);
    // "sea" is a lens token of latent 4 and the top-context token of latent 9 (sample 1, position 4).
    expect(ids(' SEA ', 'frequency')).toEqual([4, 9]);
    expect(ids('once', 'frequency')).toEqual([4, 2, 9]);
    expect(ids('nothing', 'activation')).toEqual([]);
  });

  it('exports every listed latent unrounded with its lens and top context', () => {
    const t = diffSaeTable(result, texts, samples);
    expect(t.header).toEqual(['latent', 'frequency', 'max_activation', 'positive_tokens', 'negative_tokens', 'top_context', 'top_activation']);
    expect(t.rows[1]).toEqual([9, 0.3, 7.25, 'upon', 'Once', ' the—[ sea] ', 7.25]);
    expect(t.rows[0]![5]).toBe('Once upon a time the[ sea]');
  });
});
