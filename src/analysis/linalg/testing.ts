// Test helpers: random matrices with a chosen spectrum, and a float64 host implementation of the
// few backend ops the linear algebra uses (the reference the real backends are compared with).
import type { Tensor } from '../../model/backend.ts';
import { householderQR } from './dense.ts';
import type { MatrixBackend } from './randomized.ts';
import { createRng } from './rng.ts';

interface HostTensor extends Tensor {
  data: Float64Array;
}

export function float64Backend(): MatrixBackend {
  const host = (t: Tensor): HostTensor => t as HostTensor;
  const make = (data: Float64Array, shape: readonly number[]): HostTensor => ({ shape, dtype: 'f32', backend: 'cpu', data });
  return {
    fromArray: (data, shape) => make(Float64Array.from(data), shape),
    read: async (t) => Float32Array.from(host(t).data),
    dispose: () => {},
    matmul(a, b, opts) {
      const [m, k] = [a.shape[0]!, a.shape[1]!];
      const n = opts?.transposeB ? b.shape[0]! : b.shape[1]!;
      const x = host(a).data;
      const y = host(b).data;
      const out = new Float64Array(m * n);
      for (let i = 0; i < m; i++) {
        for (let j = 0; j < n; j++) {
          let s = 0;
          if (opts?.transposeB) for (let t = 0; t < k; t++) s += x[i * k + t]! * y[j * k + t]!;
          else for (let t = 0; t < k; t++) s += x[i * k + t]! * y[t * n + j]!;
          out[i * n + j] = s;
        }
      }
      return make(out, [m, n]);
    },
    transpose(a) {
      const [m, n] = [a.shape[0]!, a.shape[1]!];
      const x = host(a).data;
      const out = new Float64Array(m * n);
      for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) out[j * m + i] = x[i * n + j]!;
      return make(out, [n, m]);
    },
  };
}

/** Columns of a random m×n (m ≥ n) matrix with orthonormal columns, row-major. */
export function randomOrthonormal(m: number, n: number, seed: number): Float64Array {
  const rng = createRng(seed);
  const g = new Float64Array(m * n);
  for (let i = 0; i < g.length; i++) g[i] = rng.gaussian();
  return householderQR(g, m, n).q;
}

/** U·diag(σ)·Vᵀ, m×n, with random orthonormal U and V: a matrix whose singular values are σ. */
export function matrixWithSpectrum(m: number, n: number, sigma: readonly number[], seed: number): Float64Array {
  const r = sigma.length;
  const u = randomOrthonormal(m, r, seed);
  const v = randomOrthonormal(n, r, seed + 1);
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let t = 0; t < r; t++) {
      const us = u[i * r + t]! * sigma[t]!;
      if (us === 0) continue;
      for (let j = 0; j < n; j++) out[i * n + j]! += us * v[j * r + t]!;
    }
  }
  return out;
}

export function gaussianMatrix(m: number, n: number, seed: number): Float64Array {
  const rng = createRng(seed);
  const out = new Float64Array(m * n);
  for (let i = 0; i < out.length; i++) out[i] = rng.gaussian();
  return out;
}

export function gramHost(a: Float64Array, m: number, n: number): { g: Float64Array; side: number } {
  const side = Math.min(m, n);
  const g = new Float64Array(side * side);
  for (let i = 0; i < side; i++) {
    for (let j = 0; j <= i; j++) {
      let s = 0;
      if (m <= n) for (let t = 0; t < n; t++) s += a[i * n + t]! * a[j * n + t]!;
      else for (let t = 0; t < m; t++) s += a[t * n + i]! * a[t * n + j]!;
      g[i * side + j] = s;
      g[j * side + i] = s;
    }
  }
  return { g, side };
}

/** |got − want| ≤ abs + rel·|want|: the tolerance every numeric assertion here uses. */
export function close(got: number, want: number, rel: number, abs = 0): boolean {
  return Math.abs(got - want) <= abs + rel * Math.abs(want);
}
