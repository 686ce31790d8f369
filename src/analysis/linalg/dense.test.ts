import { describe, expect, it } from 'vitest';
import { choleskyLower, householderQR, invertLower, jacobiEigenvalues, qrR, singularValues, symmetricEigenvalues, tridiagonalEigenvalues } from './dense.ts';
import { summariseSpectrum, rankAbove } from './spectrum.ts';
import { close, gaussianMatrix, matrixWithSpectrum, randomOrthonormal } from './testing.ts';

function matmul(a: Float64Array, b: Float64Array, m: number, k: number, n: number): Float64Array {
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; i++) for (let t = 0; t < k; t++) for (let j = 0; j < n; j++) out[i * n + j]! += a[i * k + t]! * b[t * n + j]!;
  return out;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i]! - b[i]!));
  return d;
}

function transpose(a: Float64Array, m: number, n: number): Float64Array {
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) out[j * m + i] = a[i * n + j]!;
  return out;
}

/** V·diag(λ)·Vᵀ with a random orthogonal V. */
function symmetricWithEigenvalues(lambda: readonly number[], seed: number): Float64Array {
  const n = lambda.length;
  const v = randomOrthonormal(n, n, seed);
  const scaled = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) scaled[i * n + j] = v[i * n + j]! * lambda[j]!;
  const g = matmul(scaled, transpose(v, n, n), n, n, n);
  for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) g[i * n + j] = g[j * n + i] = (g[i * n + j]! + g[j * n + i]!) / 2;
  return g;
}

describe('dense float64 linear algebra', () => {
  it('Cholesky factors a Gram matrix and its triangular inverse is one', () => {
    const x = gaussianMatrix(8, 20, 1);
    const g = matmul(x, transpose(x, 8, 20), 8, 20, 8);
    const l = choleskyLower(g, 8, 1e-12);
    expect(l).not.toBeNull();
    expect(maxAbsDiff(matmul(l!, transpose(l!, 8, 8), 8, 8, 8), g)).toBeLessThan(1e-12 * 40);
    const eye = matmul(l!, invertLower(l!, 8), 8, 8, 8);
    for (let i = 0; i < 8; i++) for (let j = 0; j < 8; j++) expect(Math.abs(eye[i * 8 + j]! - (i === j ? 1 : 0))).toBeLessThan(1e-12);
  });

  it('Cholesky refuses nearly dependent rows', () => {
    const x = gaussianMatrix(6, 20, 2);
    for (let j = 0; j < 20; j++) x[5 * 20 + j] = x[j]! + 1e-9 * x[20 + j]!;
    const g = matmul(x, transpose(x, 6, 20), 6, 20, 6);
    expect(choleskyLower(g, 6, 1e-5)).toBeNull();
  });

  it('Householder QR reproduces A and keeps Q orthonormal when A is rank-deficient', () => {
    for (const [m, n, rank] of [[30, 8, 8], [30, 8, 3]] as const) {
      const a = matrixWithSpectrum(m, n, Array.from({ length: rank }, (_, i) => 2 / (i + 1)), 3);
      const { q, r } = householderQR(a, m, n);
      expect(maxAbsDiff(matmul(q, r, m, n, n), a)).toBeLessThan(1e-13);
      const qtq = matmul(transpose(q, m, n), q, n, m, n);
      for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) expect(Math.abs(qtq[i * n + j]! - (i === j ? 1 : 0))).toBeLessThan(1e-13);
      const rOnly = qrR(a, m, n);
      for (let i = 0; i < n; i++) expect(Math.abs(Math.abs(rOnly[i * n + i]!) - Math.abs(r[i * n + i]!))).toBeLessThan(1e-13);
    }
  });

  it('Jacobi and tridiagonal QL find known eigenvalues, negative and repeated ones included', () => {
    const lambda = Array.from({ length: 40 }, (_, i) => (i % 7 === 0 ? 2.5 : Math.sin(i) * 3));
    lambda.push(0, 0, 0);
    const g = symmetricWithEigenvalues(lambda, 4);
    const want = [...lambda].sort((a, b) => b - a);
    for (const got of [jacobiEigenvalues(g, lambda.length), tridiagonalEigenvalues(g, lambda.length)]) {
      for (let i = 0; i < want.length; i++) expect(Math.abs(got[i]! - want[i]!)).toBeLessThan(1e-12 * 3 * 43);
    }
  });

  it('tridiagonal QL agrees with Jacobi on a 180×180 random symmetric matrix', () => {
    const n = 180;
    const x = gaussianMatrix(n, n, 5);
    const g = new Float64Array(n * n);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) g[i * n + j] = x[i * n + j]! + x[j * n + i]!;
    const jac = symmetricEigenvalues(g, n, 256);
    const ql = symmetricEigenvalues(g, n, 100);
    expect(jac.method).toBe('jacobi');
    expect(ql.method).toBe('tridiagonal-ql');
    const scale = Math.max(Math.abs(jac.values[0]!), Math.abs(jac.values[n - 1]!));
    expect(maxAbsDiff(jac.values, ql.values)).toBeLessThan(1e-12 * scale * n);
    let trace = 0;
    for (let i = 0; i < n; i++) trace += g[i * n + i]!;
    expect(Math.abs(ql.values.reduce((a, b) => a + b, 0) - trace)).toBeLessThan(1e-10 * scale * n);
  });

  it('one-sided Jacobi gives singular values to float64 accuracy, tiny ones included', () => {
    const sigma = [5, 3, 1, 1e-3, 1e-7, 1e-10];
    for (const [m, n] of [[9, 14], [14, 9]] as const) {
      const got = singularValues(matrixWithSpectrum(m, n, sigma, 6), m, n);
      expect(got.length).toBe(9);
      for (let i = 0; i < sigma.length; i++) expect(close(got[i]!, sigma[i]!, 1e-9, 1e-14)).toBe(true);
      for (let i = sigma.length; i < 9; i++) expect(got[i]!).toBeLessThan(1e-14);
    }
  });
});

describe('spectrum summaries', () => {
  it('effective rank, energy ranks and top energy fraction by their definitions', () => {
    // energies 16, 4, 1, 1 of 22; p = 1/2, 1/4, 1/8, 1/8 so H = 1.75·ln 2.
    const s = summariseSpectrum([4, 2, 1, 1]);
    expect(s.nuclear).toBe(8);
    expect(Math.abs(s.effectiveRank - 2 ** 1.75)).toBeLessThan(1e-12);
    expect(s.energyRanks).toEqual([1, 2, 4]);
    expect(Math.abs(s.topEnergyFraction - 16 / 22)).toBeLessThan(1e-15);
    expect(summariseSpectrum([0, 0])).toEqual({ nuclear: 0, effectiveRank: 0, energyRanks: [0, 0, 0], topEnergyFraction: 0 });
    expect(Math.abs(summariseSpectrum([1, 1, 1, 1, 1]).effectiveRank - 5)).toBeLessThan(1e-12);
    expect(rankAbove([3, 1, 1e-9, 0], 1e-6)).toBe(2);
  });
});
