// The spectral part of a tensor diff: the full spectrum through the Gram matrix of the smaller side
// (summed in float64 on the host up to a work limit, in float32 on the backend above it), with the
// top singular values taken from it where it resolves them; randomized block Krylov on the
// backend gives σ1 first, the values below the Gram's floor, and the whole answer when the sketch
// already holds the resolvable spectrum or the matrix is too large for a full spectrum.
import { gramAccumulation, gramFloor, gramSingularValues, gramWork, PRECISE_GRAM_MAX_WORK } from '../linalg/gram.ts';
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
/** Share of ‖ΔW‖_F² a sketch may leave out and still hold the whole spectrum (float32 rounding of its products). */
const SKETCH_LEFTOVER = 1e-5;

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
      // The products then run on the WebAssembly kernels with ΔW copied once (on the CPU backend only:
      // a GPU does them faster where it has them).
      ...((backend as { name?: string }).name === 'cpu' ? { host: delta } : {}),
      ...(opts.krylovBlock !== undefined ? { block: opts.krylovBlock } : {}),
      ...(opts.krylovDepth !== undefined ? { depth: opts.krylovDepth } : {}),
      ...(opts.seed !== undefined ? { seed: opts.seed } : {}),
    });
    const l = sketch.ritz.length;
    const sigma1 = sketch.ritz[0]!;
    const fallbacks = sketch.householderFallbacks ? `,householder ${sketch.householderFallbacks}/${sketch.orthonormalisations}` : '';
    const randomized = `randomized block Krylov(b=${sketch.block},d=${sketch.depth},l=${l},cholqr2${fallbacks})`;
    const side = Math.min(m, n);
    const maxSide = opts.fullSpectrumMaxSide ?? 4096;
    const rankTolerance = Math.max(m, n) * EPS32 * sigma1;
    if (sketch.complete) return spectralFields(sketch.ritz, frobenius, rankTolerance, topK, `${randomized}; spectrum complete in sketch`);
    if (side > maxSide) {
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
        top_singular_values: Array.from(sketch.ritz).slice(0, topK),
        method: `${randomized}; no full spectrum (min side ${side} > ${maxSide})`,
      };
    }
    const accumulation = gramAccumulation(m, n, opts.preciseGramMaxWork);
    const floor = gramFloor(m, n, sigma1, accumulation);
    const leftOver = frobenius ** 2 - sketch.capturedEnergy;
    if (sketch.ritz.filter((x) => x <= floor).length >= sketch.block && leftOver <= SKETCH_LEFTOVER * frobenius ** 2) {
      // The Gram could add nothing above its floor: the sketch holds the whole resolvable spectrum.
      // A whole block of Ritz values at the floor means the Krylov space outgrew the rank of ΔW (one
      // would not do: its lowest Ritz values tend to the smallest σ, not to σ_l), and the energy it
      // left out must be float32 rounding, not a bulk of values it could not hold.
      const sigma = new Float64Array(side);
      sigma.set(sketch.ritz);
      return spectralFields(sigma, frobenius, rankTolerance, topK, `${randomized}; spectrum in sketch, tail below the gram(${accumulation}) floor`);
    }
    const gram = await gramSingularValues(backend, a, {
      host: delta,
      ...(opts.jacobiMaxN !== undefined ? { jacobiMaxN: opts.jacobiMaxN } : {}),
      ...(opts.preciseGramMaxWork !== undefined ? { preciseGramMaxWork: opts.preciseGramMaxWork } : {}),
    });
    // The Gram gives σ_i to relative (floor/σ_i)²/2, while the sketch's lower Ritz values inside a
    // slowly decaying tail fall short by percents: the top values come from the Gram. Where the
    // Gram reports 0 (below its floor) the sketch has nothing better: its Ritz values are lower bounds
    // and its l-th is above the floor here, so a top-k Ritz value there is float32 rounding.
    const top = Array.from(gram.values.subarray(0, Math.min(topK, side)));
    const path = accumulation === 'float64 host' ? accumulation : `${accumulation}: ${gramWork(m, n).toPrecision(2)} multiply-adds > float64 limit ${opts.preciseGramMaxWork ?? PRECISE_GRAM_MAX_WORK}`;
    const method = `${randomized}; spectrum gram(${path})/${gram.method}, floor ${(gram.floor / gram.values[0]!).toPrecision(2)}·σ1; top-${top.length} from gram`;
    const fields = spectralFields(gram.values, frobenius, Math.max(rankTolerance, gram.floor), topK, method);
    return { ...fields, spectral: top[0]!, top_energy_fraction: top[0]! ** 2 / frobenius ** 2, top_singular_values: top };
  } finally {
    backend.dispose(a);
  }
}
