import { beforeAll, describe, expect, it } from 'vitest';
import { createCpuBackend } from '../../gpu/cpu-backend.ts';
import { useDawn } from '../../gpu/dawn-node.ts';
import { createWebGpuBackend } from '../../kernels/webgpu-backend.ts';
import { singularValues } from '../linalg/dense.ts';
import type { MatrixBackend } from '../linalg/randomized.ts';
import { createRng } from '../linalg/rng.ts';
import { summariseSpectrum } from '../linalg/spectrum.ts';
import { close, matrixWithSpectrum } from '../linalg/testing.ts';
import { diffTensor } from './diff.ts';

const [M, N] = [300, 200];
const SIGNAL = [10, 7, 4, 2, 1];
const NOISE = 1e-3;

/**
 * Rank 5 (σ 10…1) plus Gaussian noise of 1e-3 per entry, rounded to float32: the noise adds a
 * bulk of 195 singular values between about 3e-3 and 3e-2 (3e-4·σ1 to 3e-3·σ1), below the
 * float32 Gram's resolution (≈ 1.4e-3·σ1 here) but carrying a third of the nuclear norm.
 */
function lowRankPlusNoise(): { delta: Float32Array; reference: Float64Array } {
  const a = matrixWithSpectrum(M, N, SIGNAL, 41);
  const rng = createRng(42);
  const delta = Float32Array.from(a, (v) => v + NOISE * rng.gaussian());
  return { delta, reference: singularValues(Float64Array.from(delta), M, N) };
}

const backends: Array<[string, () => Promise<MatrixBackend>]> = [
  ['cpu backend', async () => createCpuBackend()],
  [
    'webgpu backend (Dawn)',
    async () => {
      expect(useDawn()).toBe(true);
      return createWebGpuBackend();
    },
  ],
];

const { delta, reference } = lowRankPlusNoise();
const want = summariseSpectrum(reference);
const frobenius = Math.sqrt(delta.reduce((s, v) => s + v * v, 0));
const base = new Float32Array(M * N);

describe.each(backends)('spectrum of a low-rank-plus-noise ΔW on %s', (_, makeBackend) => {
  let backend: MatrixBackend;
  beforeAll(async () => {
    backend = await makeBackend();
  });

  it('top-16, nuclear norm and effective rank match the float64 one-sided Jacobi SVD', async () => {
    // σ6 lies in the noise bulk; the reference resolves it, and so must we.
    expect(reference[5]! / reference[0]!).toBeLessThan(4e-3);
    const t = await diffTensor(backend, 'w', [M, N], base, delta, {});
    expect(close(t.frobenius, frobenius, 1e-12)).toBe(true);
    expect(t.top_singular_values.length).toBe(16);
    // The float64 Gram resolves σ_i to relative (floor/σ_i)²/2 with floor ≈ 4e-7·σ1: below 1e-7 here.
    for (let i = 0; i < 16; i++) expect(close(t.top_singular_values[i]!, reference[i]!, 1e-6)).toBe(true);
    expect(close(t.spectral!, reference[0]!, 1e-6)).toBe(true);
    expect(close(t.nuclear!, want.nuclear, 1e-6)).toBe(true);
    expect(close(t.effective_rank!, want.effectiveRank, 1e-6)).toBe(true);
    expect(t.energy_90).toBe(want.energyRanks[1]);
    expect(t.energy_99).toBe(want.energyRanks[2]);
    // Every noise value is far above both the float64 floor and float32's matrix-rank tolerance.
    expect(t.numerical_rank).toBe(N);
    expect(t.method).toMatch(/gram\(float64 host\)/);
    expect(t.method).toMatch(/, floor 4\.3e-7·σ1; top-16 from gram$/);
  });

  it('above the precise-Gram work limit the float32 Gram runs, says so, and keeps its error bound', async () => {
    const t = await diffTensor(backend, 'w', [M, N], base, delta, { preciseGramMaxWork: 0 });
    expect(t.method).toMatch(/gram\(float32 backend: 6\.0e\+6 multiply-adds > float64 limit 0\)/);
    const floor = t.rank_tolerance!;
    // Its floor: σ1·(√300·2⁻²³)^½ ≈ 1.4e-3·σ1.
    expect(close(floor, reference[0]! * Math.sqrt(Math.sqrt(M) * 2 ** -23), 1e-5)).toBe(true);
    for (let i = 0; i < 16; i++) {
      const got = t.top_singular_values[i]!;
      const ref = reference[i]!;
      // |σ² − ref²| ≤ floor², so |σ − ref| ≤ floor²/(σ + ref): 3e-4 relative at σ16 ≈ 2e-3·σ1.
      expect(got).toBeGreaterThan(floor);
      expect(Math.abs(got - ref)).toBeLessThanOrEqual(floor ** 2 / (got + ref));
    }
    expect(t.method).toMatch(/top-16 from gram$/);
    expect(t.nuclear!).toBeLessThan(want.nuclear);
  });
});
