// The spectral part of a tensor diff: top singular values by randomized subspace iteration on
// the backend, the full spectrum through the Gram matrix when the tail is resolvable, or from the
// sketch itself when it already holds everything float32 can resolve.
import { gramFloor, gramSingularValues } from '../linalg/gram.ts';
import { randomizedSingularValues, type MatrixBackend } from '../linalg/randomized.ts';
import { rankAbove, summariseSpectrum } from '../linalg/spectrum.ts';
import type { SpectrumOptions, TensorDiff } from './types.ts';

export type SpectralFields = Pick<
  TensorDiff,
  | 'spectral'
  | 'nuclear'
  | 'effective_rank'
  | 'energy_50'
  | 'energy_90'
  | 'energy_99'
  | 'top_energy_fraction'
  | 'numerical_rank'
  | 'rank_tolerance'
  | 'top_singular_values'
  | 'method'
>;

const EPS32 = 2 ** -23;

/** Spectral fields from a known full spectrum (descending). */
export function spectralFields(
  sigma: ArrayLike<number>,
  frobenius: number,
  rankTolerance: number,
  topK: number,
  method: string,
): SpectralFields {
  const s = summariseSpectrum(sigma);
  return {
    spectral: sigma[0] ?? 0,
    nuclear: s.nuclear,
    effective_rank: s.effectiveRank,
    energy_50: s.energyRanks[0],
    energy_90: s.energyRanks[1],
    energy_99: s.energyRanks[2],
    top_energy_fraction: frobenius > 0 ? (sigma[0] ?? 0) ** 2 / frobenius ** 2 : 0,
    numerical_rank: rankAbove(sigma, rankTolerance),
    rank_tolerance: rankTolerance,
    top_singular_values: Array.from(sigma).slice(0, topK),
    method,
  };
}

/** ΔW given row-major [m, n] in float32, with its Frobenius norm computed in float64. */
export async function matrixSpectrum(
  backend: MatrixBackend,
  delta: Float32Array,
  m: number,
  n: number,
  frobenius: number,
  opts: SpectrumOptions,
): Promise<SpectralFields> {
  const topK = opts.topK ?? 16;
  if (frobenius === 0) return spectralFields(new Float64Array(Math.min(m, n)), 0, 0, topK, 'zero');
  const a = backend.fromArray(delta, [m, n]);
  try {
    const sketch = await randomizedSingularValues(backend, a, {
      k: topK,
      ...(opts.oversample !== undefined ? { oversample: opts.oversample } : {}),
      ...(opts.powerIterations !== undefined ? { powerIterations: opts.powerIterations } : {}),
      ...(opts.seed !== undefined ? { seed: opts.seed } : {}),
    });
    const l = sketch.ritz.length;
    const sigma1 = sketch.ritz[0]!;
    const top = Array.from(sketch.ritz).slice(0, topK);
    const fallbacks = sketch.householderFallbacks ? `,householder ${sketch.householderFallbacks}/${sketch.orthonormalisations}` : '';
    const randomized = `randomized(l=${l},q=${opts.powerIterations ?? 3},cholqr2${fallbacks})`;
    const side = Math.min(m, n);
    const sketchTolerance = Math.max(m, n) * EPS32 * sigma1;
    let fields: SpectralFields;
    if (sketch.complete) {
      fields = spectralFields(sketch.ritz, frobenius, sketchTolerance, topK, `${randomized}; spectrum complete in sketch`);
    } else if (sketch.ritz[l - 1]! <= gramFloor(m, n, sigma1)) {
      // The Gram could add nothing above its floor: the sketch holds the whole resolvable spectrum.
      const sigma = new Float64Array(side);
      sigma.set(sketch.ritz);
      fields = spectralFields(sigma, frobenius, sketchTolerance, topK, `${randomized}; spectrum in sketch, tail below float32 resolution`);
    } else if (side <= (opts.fullSpectrumMaxSide ?? 4096)) {
      const gram = await gramSingularValues(backend, a, opts.jacobiMaxN !== undefined ? { jacobiMaxN: opts.jacobiMaxN } : {});
      fields = spectralFields(gram.values, frobenius, gram.floor, topK, `${randomized}; spectrum gram/${gram.method}`);
    } else {
      return {
        spectral: sigma1,
        nuclear: null,
        effective_rank: null,
        energy_50: null,
        energy_90: null,
        energy_99: null,
        top_energy_fraction: sigma1 ** 2 / frobenius ** 2,
        numerical_rank: null,
        rank_tolerance: null,
        top_singular_values: top,
        method: `${randomized}; no full spectrum (min side ${side} > ${opts.fullSpectrumMaxSide ?? 4096})`,
      };
    }
    return { ...fields, spectral: sigma1, top_energy_fraction: sigma1 ** 2 / frobenius ** 2, top_singular_values: top };
  } finally {
    backend.dispose(a);
  }
}
