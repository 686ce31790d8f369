import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { wasmGemmOptions } from '../../gpu/cpu-wasm/gemm.ts';
import { createCpuBackend } from '../../gpu/cpu-backend.ts';
import { jacobiEigenvalues, singularValues, tridiagonalEigenvalues } from './dense.ts';
import { gramSingularValues, jsGram } from './gram.ts';
import { randomizedSingularValues } from './randomized.ts';
import { close, gaussianMatrix } from './testing.ts';
import { createRng } from './rng.ts';
import { ResidentMatrix, startWasmLinalgThreads, wasmGram, wasmLinalgAvailable, wasmTridiagonalWorkspace } from './wasm.ts';

/**
 * scale·Σ_{r<rank} e^{−r/8} g_r h_rᵀ plus unit Gaussian noise, float32: bench/svd's matrices, smaller;
 * scale 3 at 300×200 puts σ1 about 23× above the noise's edge (√m + √n), as at 2048² in the bench.
 */
function lowRankPlusNoise(m: number, n: number, rank: number, scale: number, seed: number): Float32Array {
  const rng = createRng(seed);
  const g = Float64Array.from({ length: m * rank }, () => rng.gaussian());
  const h = Float64Array.from({ length: rank * n }, () => rng.gaussian());
  const a = new Float32Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = rng.gaussian();
      for (let r = 0; r < rank; r++) s += scale * g[i * rank + r]! * Math.exp(-r / 8) * h[r * n + j]!;
      a[i * n + j] = s;
    }
  }
  return a;
}

/** x [l, k] · y [k, n] (or y [n, k] transposed) in float64. */
function product(x: ArrayLike<number>, y: ArrayLike<number>, l: number, k: number, n: number, transposeY: boolean): Float64Array {
  const out = new Float64Array(l * n);
  for (let i = 0; i < l; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let t = 0; t < k; t++) s += x[i * k + t]! * (transposeY ? y[j * k + t]! : y[t * n + j]!);
      out[i * n + j] = s;
    }
  }
  return out;
}

// Every job here is small: let each use two threads, so the threaded split is what runs.
const saved = { ...wasmGemmOptions };
beforeAll(async () => {
  wasmGemmOptions.threads = 2;
  wasmGemmOptions.flopsPerThread = 1;
  expect(wasmLinalgAvailable()).toBe(true);
  expect(await startWasmLinalgThreads()).toBe(2);
});
afterAll(() => Object.assign(wasmGemmOptions, saved));

describe('float64 WebAssembly kernels of the spectra', () => {
  it('the Gram equals the JavaScript float64 one, both orientations, sizes off the 4-row blocks and the panels', () => {
    for (const [m, n] of [[7, 600], [600, 7], [13, 515], [516, 12], [1, 5], [4, 4], [9, 9]] as const) {
      const a = Float32Array.from(gaussianMatrix(m, n, m * 1000 + n));
      const want = jsGram(a, m, n);
      const got = wasmGram(a, m, n)!;
      const side = Math.min(m, n);
      expect(got.length).toBe(side * side);
      for (let i = 0; i < side; i++) {
        for (let j = 0; j < side; j++) {
          const scale = Math.sqrt(want[i * side + i]! * want[j * side + j]!);
          expect(close(got[i * side + j]!, want[i * side + j]!, 0, 1e-14 * scale)).toBe(true);
        }
      }
    }
  });

  it('the tridiagonalisation on the kernels gives the eigenvalues of the JavaScript one and of Jacobi', () => {
    for (const n of [2, 3, 37, 64, 101]) {
      const x = gaussianMatrix(n, n, 40 + n);
      const g = new Float64Array(n * n);
      for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) g[i * n + j] = x[i * n + j]! + x[j * n + i]!;
      const want = jacobiEigenvalues(g, n);
      const js = tridiagonalEigenvalues(g, n);
      const wasm = tridiagonalEigenvalues(g, n, wasmTridiagonalWorkspace(n, g)!);
      const scale = Math.max(Math.abs(want[0]!), Math.abs(want[n - 1]!));
      for (let i = 0; i < n; i++) {
        expect(close(wasm[i]!, want[i]!, 0, 1e-13 * n * scale)).toBe(true);
        expect(close(wasm[i]!, js[i]!, 0, 1e-13 * n * scale)).toBe(true);
      }
    }
  });

  it('a matrix with an already tridiagonal block (skipped reflections) keeps its eigenvalues', () => {
    const n = 24;
    const g = new Float64Array(n * n);
    for (let i = 0; i < n; i++) {
      g[i * n + i] = i % 5;
      if (i + 1 < n) g[i * n + i + 1] = g[(i + 1) * n + i] = 0.5;
    }
    // Fill only the last rows densely: the first steps have nothing below the subdiagonal.
    for (let i = 16; i < n; i++) for (let j = 16; j < i; j++) g[i * n + j] = g[j * n + i] = Math.sin(i * j);
    const want = jacobiEigenvalues(g, n);
    const got = tridiagonalEigenvalues(g, n, wasmTridiagonalWorkspace(n, g)!);
    for (let i = 0; i < n; i++) expect(close(got[i]!, want[i]!, 0, 1e-12)).toBe(true);
  });

  it('products with a resident matrix equal float64 products to float32 rounding (ragged panels and tiles, K past one block, rows past one upload block)', () => {
    for (const [m, n, l] of [[13, 37, 5], [40, 1024, 7], [1, 8, 1], [33, 9, 26], [600, 44, 9], [601, 21, 3], [256, 16, 4]] as const) {
      const a = Float32Array.from(gaussianMatrix(m, n, m + n));
      const q = Float32Array.from(gaussianMatrix(l, m, 3 * l));
      const w = Float32Array.from(gaussianMatrix(l, n, 5 * l));
      const r = ResidentMatrix.upload(a, m, n)!;
      const y = r.times(q, l);
      const z = r.timesTransposed(w, l);
      const wantY = product(q, a, l, m, n, false);
      const wantZ = product(w, a, l, n, m, true);
      expect(y.length).toBe(l * n);
      expect(z.length).toBe(l * m);
      // |Σ| rounding ≤ k·ε32·Σ|x||y|; Gaussian entries: Σ|x||y| ≈ k·0.64.
      for (let i = 0; i < y.length; i++) expect(close(y[i]!, wantY[i]!, 0, m * m * 6e-8 + 1e-6)).toBe(true);
      for (let i = 0; i < z.length; i++) expect(close(z[i]!, wantZ[i]!, 0, n * n * 6e-8 + 1e-6)).toBe(true);
    }
  });

  it('a resident matrix refuses products once the memory was used for something else', () => {
    const a = Float32Array.from(gaussianMatrix(8, 8, 1));
    const r = ResidentMatrix.upload(a, 8, 8)!;
    wasmGram(a, 8, 8);
    expect(() => r.times(a, 8)).toThrow(/used for something else/);
  });
});

describe('spectra of a low-rank-plus-noise matrix against float64 one-sided Jacobi', () => {
  const [m, n] = [300, 200];
  const x = lowRankPlusNoise(m, n, 32, 3, 77);
  const want = singularValues(Float64Array.from(x), m, n);
  const backend = createCpuBackend();

  it('randomized top-16 on the resident matrix and on the backend: within 1e-6 relative', async () => {
    const a = backend.fromArray(x, [m, n]);
    const res = await randomizedSingularValues(backend, a, { k: 16, host: x });
    const onBackend = await randomizedSingularValues(backend, a, { k: 16 });
    backend.dispose(a);
    expect(res.ritz.length).toBe(60);
    for (let i = 0; i < 16; i++) {
      expect(close(res.ritz[i]!, want[i]!, 1e-6, 0)).toBe(true);
      expect(close(onBackend.ritz[i]!, want[i]!, 1e-6, 0)).toBe(true);
    }
  });

  it('the full spectrum (float64 Gram, tridiagonal QL on the kernels): σ ≥ 1e-2·σ1 within 1e-6, the rest within the floor bound', async () => {
    const a = backend.fromArray(x, [m, n]);
    const res = await gramSingularValues(backend, a, { host: x, jacobiMaxN: 0 });
    backend.dispose(a);
    expect(res.method).toBe('tridiagonal-ql');
    expect(res.accumulation).toBe('float64 host');
    for (let i = 0; i < n; i++) {
      if (want[i]! >= 1e-2 * want[0]!) expect(close(res.values[i]!, want[i]!, 1e-6)).toBe(true);
      // |σ² − ref²| ≤ floor²: what the Gram route promises for the small values.
      expect(Math.abs(res.values[i]! ** 2 - want[i]! ** 2)).toBeLessThanOrEqual(res.floor ** 2);
    }
  });
});
