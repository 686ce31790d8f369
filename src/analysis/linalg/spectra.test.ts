import { beforeAll, describe, expect, it } from 'vitest';
import { createCpuBackend } from '../../gpu/cpu-backend.ts';
import { useDawn } from '../../gpu/dawn-node.ts';
import { createWebGpuBackend } from '../../kernels/webgpu-backend.ts';
import { jacobiEigenvalues, singularValues } from './dense.ts';
import { gramSingularValues, hostGram } from './gram.ts';
import { loraSpectrum } from './lora.ts';
import { randomizedSingularValues, type MatrixBackend } from './randomized.ts';
import { summariseSpectrum } from './spectrum.ts';
import { close, float64Backend, gaussianMatrix, gramHost, matrixWithSpectrum } from './testing.ts';

/** Singular values by Jacobi on the float64 Gram: the reference. */
function referenceSigma(a: Float64Array, m: number, n: number): number[] {
  const { g, side } = gramHost(a, m, n);
  return [...jacobiEigenvalues(g, side)].map((v) => Math.sqrt(Math.max(v, 0)));
}

const backends: Array<[string, () => Promise<MatrixBackend>]> = [
  ['float64 host', async () => float64Backend()],
  ['cpu backend', async () => createCpuBackend()],
  [
    'webgpu backend (Dawn)',
    async () => {
      expect(useDawn()).toBe(true);
      return createWebGpuBackend();
    },
  ],
];

describe.each(backends)('spectra on %s', (_, makeBackend) => {
  let backend: MatrixBackend;
  beforeAll(async () => {
    backend = await makeBackend();
  });
  const upload = (a: Float64Array, m: number, n: number) => backend.fromArray(Float32Array.from(a), [m, n]);

  it('randomized top-k matches the float64 reference on a decaying spectrum', async () => {
    const [m, n] = [120, 200];
    const sigma = Array.from({ length: m }, (_, i) => 0.7 ** i);
    const a = matrixWithSpectrum(m, n, sigma, 11);
    const want = referenceSigma(a, m, n);
    const res = await randomizedSingularValues(backend, upload(a, m, n), { k: 16 });
    // Blocks of 12, depth 4: a basis of 60 rows from 9 passes.
    expect([res.block, res.depth, res.ritz.length]).toEqual([12, 4, 60]);
    expect(res.complete).toBe(false);
    // 0.7^i falls below float32 rounding within the basis; what remains is that rounding.
    for (let i = 0; i < 16; i++) expect(close(res.ritz[i]!, want[i]!, 1e-5, 2e-6 * want[0]!)).toBe(true);
  });

  it('randomized top-k: the basis on either side of a tall or wide matrix gives the same values', async () => {
    const sigma = Array.from({ length: 90 }, (_, i) => 0.8 ** i);
    const wide = matrixWithSpectrum(90, 150, sigma, 21);
    const tall = new Float64Array(150 * 90);
    for (let i = 0; i < 90; i++) for (let j = 0; j < 150; j++) tall[j * 90 + i] = wide[i * 150 + j]!;
    const want = referenceSigma(wide, 90, 150);
    for (const [a, m, n] of [[wide, 90, 150], [tall, 150, 90]] as const) {
      const res = await randomizedSingularValues(backend, upload(a, m, n), { k: 8 });
      expect([res.block, res.depth, res.ritz.length]).toEqual([8, 4, 40]);
      for (let i = 0; i < 8; i++) expect(close(res.ritz[i]!, want[i]!, 1e-5, 2e-6 * want[0]!)).toBe(true);
      // Ritz values are lower bounds of their σ.
      for (let i = 0; i < 40; i++) expect(res.ritz[i]!).toBeLessThanOrEqual(want[i]! * (1 + 1e-5) + 1e-6 * want[0]!);
    }
  });

  it('a Krylov basis that outgrows the rank of A keeps the exact values and the rest near zero', async () => {
    const [m, n] = [64, 70];
    const a = matrixWithSpectrum(m, n, [5, 2, 0.5], 22);
    const res = await randomizedSingularValues(backend, upload(a, m, n), { k: 4, block: 12, depth: 3 });
    expect(res.ritz.length).toBe(48);
    for (const [i, s] of [5, 2, 0.5].entries()) expect(close(res.ritz[i]!, s, 1e-5, 1e-6)).toBe(true);
    for (let i = 3; i < 48; i++) expect(res.ritz[i]!).toBeLessThan(1e-5 * 5);
  });

  it('randomized top-k on a flat Gaussian spectrum: σ1 close, the rest lower bounds', async () => {
    const [m, n] = [100, 160];
    const a = gaussianMatrix(m, n, 12);
    const want = referenceSigma(a, m, n);
    const res = await randomizedSingularValues(backend, upload(a, m, n), { k: 16 });
    expect(close(res.ritz[0]!, want[0]!, 5e-3)).toBe(true);
    for (let i = 0; i < 16; i++) {
      expect(res.ritz[i]!).toBeLessThanOrEqual(want[i]! * (1 + 1e-5));
      expect(close(res.ritz[i]!, want[i]!, 0.05)).toBe(true);
    }
  });

  it('rank-deficient sketches fall back to Householder QR and still give exact values', async () => {
    const [m, n] = [64, 160];
    const a = matrixWithSpectrum(m, n, [3, 1], 13);
    const res = await randomizedSingularValues(backend, upload(a, m, n));
    expect(res.householderFallbacks).toBeGreaterThan(0);
    expect(close(res.ritz[0]!, 3, 1e-5)).toBe(true);
    expect(close(res.ritz[1]!, 1, 1e-5)).toBe(true);
    expect(res.ritz[2]!).toBeLessThan(1e-5);
    expect(Math.abs(res.capturedEnergy - 10)).toBeLessThan(1e-5 * 10);
  });

  it('a well-conditioned sketch stays on CholeskyQR2', async () => {
    const [m, n] = [80, 90];
    const a = matrixWithSpectrum(m, n, Array.from({ length: 40 }, (_, i) => 1 + 1 / (i + 1)), 14);
    const res = await randomizedSingularValues(backend, upload(a, m, n), { k: 4, block: 6, depth: 2 });
    // Ω, then per step the image and the new block.
    expect(res.orthonormalisations).toBe(5);
    expect(res.householderFallbacks).toBe(0);
  });

  it('a basis as wide as the smaller side is complete and exact; the same seed gives the same values', async () => {
    const [m, n] = [30, 12];
    const a = gaussianMatrix(m, n, 15);
    const want = referenceSigma(a, m, n);
    const t = upload(a, m, n);
    const res = await randomizedSingularValues(backend, t, { k: 16 });
    expect(res.complete).toBe(true);
    expect(res.ritz.length).toBe(12);
    for (let i = 0; i < 12; i++) expect(close(res.ritz[i]!, want[i]!, 1e-5, 1e-6 * want[0]!)).toBe(true);
    const again = await randomizedSingularValues(backend, t, { k: 16 });
    expect([...again.ritz]).toEqual([...res.ritz]);
  });

  it.each([
    ['float64 host', undefined],
    ['float32 backend', 0],
  ] as const)('full spectrum through the Gram (%s): values and effective rank against the float64 reference', async (accumulation, preciseGramMaxWork) => {
    for (const [m, n, jacobiMaxN] of [[60, 100, 256], [100, 60, 256], [70, 90, 0]] as const) {
      const a = gaussianMatrix(m, n, 16 + m);
      const want = referenceSigma(a, m, n);
      const res = await gramSingularValues(backend, upload(a, m, n), { jacobiMaxN, ...(preciseGramMaxWork !== undefined ? { preciseGramMaxWork } : {}) });
      expect(res.method).toBe(jacobiMaxN === 0 ? 'tridiagonal-ql' : 'jacobi');
      expect(res.accumulation).toBe(accumulation);
      expect(res.values.length).toBe(Math.min(m, n));
      for (let i = 0; i < want.length; i++) expect(close(res.values[i]!, want[i]!, 1e-4, 1e-4 * want[0]!)).toBe(true);
      const erank = summariseSpectrum(res.values).effectiveRank;
      const wantErank = summariseSpectrum(want).effectiveRank;
      expect(close(erank, wantErank, 1e-3)).toBe(true);
    }
  });

  it('the float64 Gram resolves a spectrum falling to 1e-9·σ1 down to its floor, in both orientations', async () => {
    for (const [m, n] of [[90, 61], [61, 90]] as const) {
      const sigma = Array.from({ length: 61 }, (_, i) => 10 ** (-9 * (i / 60)));
      // The reference is the SVD of the float32 matrix actually analysed.
      const a = Float64Array.from(Float32Array.from(matrixWithSpectrum(m, n, sigma, 18)));
      const want = singularValues(a, m, n);
      const res = await gramSingularValues(backend, upload(a, m, n));
      expect(res.accumulation).toBe('float64 host');
      // (4·61 + √90)·ε64 → σ_floor ≈ 2.4e-7·σ1: the last 15 or so of the 61 lie below it.
      expect(close(res.floor, want[0]! * Math.sqrt((4 * 61 + Math.sqrt(90)) * Number.EPSILON), 1e-6)).toBe(true);
      const below = want.filter((s) => s <= res.floor).length;
      expect(below).toBeGreaterThan(10);
      expect(below).toBeLessThan(25);
      for (let i = 0; i < want.length; i++) {
        const got = res.values[i]!;
        // |σ² − ref²| ≤ floor² is the bound the floor stands for.
        if (got > 0) expect(Math.abs(got - want[i]!)).toBeLessThanOrEqual(res.floor ** 2 / (got + want[i]!));
        else expect(want[i]!).toBeLessThanOrEqual(Math.SQRT2 * res.floor);
      }
      // Values 100× above the floor are exact to 1e-4 relative or better.
      for (let i = 0; i < want.length; i++) if (want[i]! > 100 * res.floor) expect(close(res.values[i]!, want[i]!, 1e-4)).toBe(true);
    }
  });

  it('the float32 Gram floor zeroes what float32 cannot resolve, so a rank-2 matrix keeps its effective rank', async () => {
    const [m, n] = [64, 160];
    const a = matrixWithSpectrum(m, n, [3, 1], 17);
    const res = await gramSingularValues(backend, upload(a, m, n), { preciseGramMaxWork: 0 });
    expect(res.accumulation).toBe('float32 backend');
    expect(close(res.values[0]!, 3, 1e-4)).toBe(true);
    expect(close(res.values[1]!, 1, 1e-4)).toBe(true);
    for (let i = 2; i < m; i++) expect(res.values[i]).toBe(0);
    expect(res.floor).toBeLessThan(0.01);
    // p = (3/4, 1/4)
    const want = Math.exp(-(0.75 * Math.log(0.75) + 0.25 * Math.log(0.25)));
    expect(close(summariseSpectrum(res.values).effectiveRank, want, 1e-4)).toBe(true);
  });
});

describe('hostGram', () => {
  it('equals the float64 Gram of the smaller side, for sizes off the 4-row blocks and the 256-column panels', () => {
    for (const [m, n] of [[7, 600], [600, 7], [13, 515], [516, 12], [1, 5], [4, 4]] as const) {
      const a = Float32Array.from(gaussianMatrix(m, n, m * 1000 + n));
      const { g: want, side } = gramHost(Float64Array.from(a), m, n);
      const got = hostGram(a, m, n);
      expect(got.length).toBe(side * side);
      for (let i = 0; i < side; i++) {
        for (let j = 0; j < side; j++) {
          const scale = Math.sqrt(want[i * side + i]! * want[j * side + j]!);
          expect(close(got[i * side + j]!, want[i * side + j]!, 0, 1e-14 * scale)).toBe(true);
          expect(got[i * side + j]).toBe(got[j * side + i]);
        }
      }
    }
  });
});

describe('LoRA spectrum from the factors', () => {
  it('equals the spectrum of the merged float64 ΔW = s·B·A', () => {
    for (const [r, nIn, nOut, s] of [[4, 40, 30, 2], [6, 20, 4, 0.5], [3, 2, 9, 1.5]] as const) {
      const a = gaussianMatrix(r, nIn, 21 + r);
      const b = gaussianMatrix(nOut, r, 31 + r);
      const merged = new Float64Array(nOut * nIn);
      let frob2 = 0;
      for (let i = 0; i < nOut; i++) {
        for (let j = 0; j < nIn; j++) {
          let v = 0;
          for (let t = 0; t < r; t++) v += b[i * r + t]! * a[t * nIn + j]!;
          merged[i * nIn + j] = s * v;
          frob2 += (s * v) ** 2;
        }
      }
      const want = singularValues(merged, nOut, nIn);
      const got = loraSpectrum({ a, b, r, inFeatures: nIn, outFeatures: nOut, scaling: s });
      expect(got.values.length).toBe(Math.min(r, nIn, nOut));
      for (let i = 0; i < got.values.length; i++) expect(close(got.values[i]!, want[i]!, 1e-12, 1e-12 * want[0]!)).toBe(true);
      expect(close(got.frobenius, Math.sqrt(frob2), 1e-12)).toBe(true);
    }
  });
});
