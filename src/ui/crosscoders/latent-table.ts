// The feature browser's selection: which latents pass the filters, in which order, and the
// histograms drawn over them. Pure functions over the analysis' per-latent arrays.
import { classifyRatio, type LatentClass } from '../../analysis/crosscoder/latents.ts';
import type { LatentTable } from '../../jobs/crosscoder.ts';
import type { LatentFilter } from '../../state/crosscoder.ts';

export function latentClass(t: LatentTable, j: number): LatentClass {
  return classifyRatio(t.ratio[j]!);
}

/** Ratios r at or below this are shown as fine-tune only, and so on (ALGORITHMS.md). */
export const CLASS_EDGES = { ftOnly: 0.1, sharedLow: 0.4, sharedHigh: 0.6, baseOnly: 0.9 } as const;

/** ν with the decoder direction of the model the latent leans to (ft when r ≤ 0.5). */
export function leaningNu(t: LatentTable, j: number): { error: number; recon: number; direction: 'ft' | 'base' } {
  return t.ratio[j]! <= 0.5 ? { error: t.nuErrorFt[j]!, recon: t.nuReconFt[j]!, direction: 'ft' } : { error: t.nuErrorBase[j]!, recon: t.nuReconBase[j]!, direction: 'base' };
}

function passes(t: LatentTable, j: number, f: LatentFilter, q: string): boolean {
  const freq = t.frequency[j]!;
  if (!(freq > 0)) return false;
  const lf = Math.log10(freq);
  if (lf < f.fmin - 1e-9 || lf > f.fmax + 1e-9) return false;
  const r = t.ratio[j]!;
  if (!(r >= f.rmin - 1e-9 && r <= f.rmax + 1e-9)) return false;
  switch (f.cls) {
    case 'all':
      break;
    case 'ft-specific':
      if (t.specific[j] !== 1) return false;
      break;
    case 'base-specific':
      if (t.specific[j] !== 2) return false;
      break;
    default:
      if (classifyRatio(r) !== f.cls) return false;
  }
  return q === '' || (t.topTokens[j] ?? []).some((tok) => tok.toLowerCase().includes(q));
}

/** Live latents (frequency > 0) that pass the filter, sorted as it says (ties by id). */
export function filterLatents(t: LatentTable, f: LatentFilter): number[] {
  const q = f.q.trim().toLowerCase();
  const ids: number[] = [];
  for (let j = 0; j < t.ratio.length; j++) if (passes(t, j, f, q)) ids.push(j);
  const key: (j: number) => number =
    f.sort === 'ratio'
      ? (j) => t.ratio[j]!
      : f.sort === 'ratio-desc'
        ? (j) => -t.ratio[j]!
        : f.sort === 'frequency'
          ? (j) => -t.frequency[j]!
          : (j) => {
              const nu = leaningNu(t, j).error;
              return Number.isFinite(nu) ? nu : Infinity;
            };
  return ids.sort((a, b) => key(a) - key(b) || a - b);
}

/** Counts of `values` in equal bins over [lo, hi] (values outside are clamped into the end bins; NaN skipped). */
export function binCounts(values: Iterable<number>, lo: number, hi: number, bins: number): { edges: number[]; counts: number[] } {
  const edges = Array.from({ length: bins + 1 }, (_, i) => lo + ((hi - lo) * i) / bins);
  const counts = new Array<number>(bins).fill(0);
  for (const v of values) {
    if (Number.isNaN(v)) continue;
    const b = Math.floor(((v - lo) / (hi - lo)) * bins);
    counts[Math.min(bins - 1, Math.max(0, b))]!++;
  }
  return { edges, counts };
}

/** Histogram of r over the live latents, in bins of 1/bins. */
export function ratioHistogram(t: LatentTable, bins = 50): { edges: number[]; counts: number[] } {
  const live: number[] = [];
  for (let j = 0; j < t.ratio.length; j++) if (t.frequency[j]! > 0) live.push(t.ratio[j]!);
  return binCounts(live, 0, 1, bins);
}
