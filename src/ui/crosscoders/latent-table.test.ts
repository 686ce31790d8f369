import { describe, expect, it } from 'vitest';
import type { LatentTable } from '../../jobs/crosscoder.ts';
import { DEFAULT_LATENT_FILTER } from '../../state/crosscoder.ts';
import { binCounts, filterLatents, leaningNu, ratioHistogram } from './latent-table.ts';

// Six latents: ft-only (0, 4), shared (1), base-only (2), other (3), dead (5).
function table(): LatentTable {
  const f = (xs: number[]) => Float32Array.from(xs);
  return {
    ratio: f([0.05, 0.5, 0.95, 0.3, 0.02, 0.5]),
    frequency: f([1e-3, 0.2, 1e-5, 0.05, 0.5, 0]),
    maxActivation: f([1, 2, 3, 4, 5, 0]),
    nuErrorFt: f([0.1, 0.9, 2, 0.5, 0.6, NaN]),
    nuReconFt: f([0.2, 0.8, 3, 0.4, 0.1, NaN]),
    nuErrorBase: f([9, 1.1, 0.2, 2, 7, NaN]),
    nuReconBase: f([8, 1.2, 0.1, 3, 6, NaN]),
    specific: Uint8Array.from([1, 0, 2, 0, 0, 0]),
    topTokens: [[' sea', ' waves'], [' the'], [' Tim'], [','], [' shell'], []],
  };
}

describe('filterLatents', () => {
  it('keeps live latents sorted by r, fine-tune only first, ties by id', () => {
    expect(filterLatents(table(), DEFAULT_LATENT_FILTER)).toEqual([4, 0, 3, 1, 2]);
    expect(filterLatents(table(), { ...DEFAULT_LATENT_FILTER, sort: 'ratio-desc' })).toEqual([2, 1, 3, 0, 4]);
    expect(filterLatents(table(), { ...DEFAULT_LATENT_FILTER, sort: 'frequency' })).toEqual([4, 1, 3, 0, 2]);
    // ν^ε with the decoder the latent leans to: 0.1, 0.9 (ft), 0.2 (base), 0.5, 0.6.
    expect(filterLatents(table(), { ...DEFAULT_LATENT_FILTER, sort: 'nu-error' })).toEqual([0, 2, 3, 4, 1]);
  });

  it('filters by class, Latent Scaling, frequency decades, r range and top-token text', () => {
    const t = table();
    expect(filterLatents(t, { ...DEFAULT_LATENT_FILTER, cls: 'ft-only' })).toEqual([4, 0]);
    expect(filterLatents(t, { ...DEFAULT_LATENT_FILTER, cls: 'other' })).toEqual([3]);
    expect(filterLatents(t, { ...DEFAULT_LATENT_FILTER, cls: 'ft-specific' })).toEqual([0]);
    expect(filterLatents(t, { ...DEFAULT_LATENT_FILTER, cls: 'base-specific' })).toEqual([2]);
    expect(filterLatents(t, { ...DEFAULT_LATENT_FILTER, fmin: -3, fmax: -1 })).toEqual([0, 3]);
    expect(filterLatents(t, { ...DEFAULT_LATENT_FILTER, rmin: 0.25, rmax: 0.5 })).toEqual([3, 1]);
    expect(filterLatents(t, { ...DEFAULT_LATENT_FILTER, q: 'SEA' })).toEqual([0]);
    expect(filterLatents(t, { ...DEFAULT_LATENT_FILTER, q: ' s' })).toEqual([4, 0]);
    expect(filterLatents(t, { ...DEFAULT_LATENT_FILTER, q: 'nothing' })).toEqual([]);
  });
});

describe('histograms', () => {
  it('bins values with end bins taking what lies outside, and NaN left out', () => {
    expect(binCounts([0, 0.1, 0.5, 0.99, 1, 2, -1, NaN], 0, 1, 4)).toEqual({ edges: [0, 0.25, 0.5, 0.75, 1], counts: [3, 0, 1, 3] });
  });

  it('counts the r of live latents only', () => {
    const h = ratioHistogram(table(), 10);
    expect(h.counts.reduce((a, b) => a + b, 0)).toBe(5);
    expect(h.counts[0]).toBe(2);
    expect(h.counts[5]).toBe(1);
    expect(h.counts[9]).toBe(1);
  });

  it('reads ν with the decoder the latent leans to', () => {
    const t = table();
    expect(leaningNu(t, 1)).toEqual({ error: t.nuErrorFt[1], recon: t.nuReconFt[1], direction: 'ft' });
    expect(leaningNu(t, 2)).toEqual({ error: t.nuErrorBase[2], recon: t.nuReconBase[2], direction: 'base' });
  });
});
