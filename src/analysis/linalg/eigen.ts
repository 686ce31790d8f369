// Eigenvalues and eigenvectors of a symmetric matrix: cyclic Jacobi rotations for all of them (small n),
// and subspace iteration with a Rayleigh–Ritz step for the leading few of a large one.
import { householderQR } from './dense.ts';
import { createRng } from './rng.ts';

export interface SymmetricEigen {
  /** Descending. */
  values: Float64Array;
  /** Row-major [count, n]: row i is the unit eigenvector of values[i]. */
  vectors: Float64Array;
}

/** Every eigenpair of a symmetric n×n matrix (row-major), by cyclic Jacobi. */
export function jacobiEigen(g: Float64Array, n: number, maxSweeps = 60): SymmetricEigen {
  const a = g.slice();
  const v = new Float64Array(n * n);
  for (let i = 0; i < n; i++) v[i * n + i] = 1;
  for (let sweep = 0; sweep < maxSweeps; sweep++) {
    let off = 0;
    let diag = 0;
    for (let i = 0; i < n; i++) {
      diag += a[i * n + i]! ** 2;
      for (let j = i + 1; j < n; j++) off += a[i * n + j]! ** 2;
    }
    if (off <= 1e-30 * diag || off === 0) break;
    for (let p = 0; p < n - 1; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = a[p * n + q]!;
        if (apq === 0) continue;
        const theta = (a[q * n + q]! - a[p * n + p]!) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < n; k++) {
          const akp = a[k * n + p]!;
          const akq = a[k * n + q]!;
          a[k * n + p] = c * akp - s * akq;
          a[k * n + q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = a[p * n + k]!;
          const aqk = a[q * n + k]!;
          a[p * n + k] = c * apk - s * aqk;
          a[q * n + k] = s * apk + c * aqk;
        }
        for (let k = 0; k < n; k++) {
          const vkp = v[k * n + p]!;
          const vkq = v[k * n + q]!;
          v[k * n + p] = c * vkp - s * vkq;
          v[k * n + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  const order = Array.from({ length: n }, (_, i) => i).sort((x, y) => a[y * n + y]! - a[x * n + x]!);
  const values = Float64Array.from(order, (i) => a[i * n + i]!);
  const vectors = new Float64Array(n * n);
  order.forEach((col, row) => {
    for (let k = 0; k < n; k++) vectors[row * n + k] = v[k * n + col]!;
  });
  return { values, vectors };
}

/**
 * The `count` leading eigenpairs of a symmetric positive semi-definite n×n matrix: subspace iteration
 * on count + 8 vectors, then Jacobi on the projected matrix. Every eigenpair when n ≤ jacobiMaxN.
 */
export function leadingEigen(g: Float64Array, n: number, count: number, opts: { jacobiMaxN?: number; iterations?: number; seed?: number } = {}): SymmetricEigen {
  const c = Math.min(count, n);
  if (n <= (opts.jacobiMaxN ?? 256)) {
    const all = jacobiEigen(g, n);
    return { values: all.values.slice(0, c), vectors: all.vectors.slice(0, c * n) };
  }
  const m = Math.min(n, c + 8);
  const rng = createRng(opts.seed ?? 0);
  // q: n×m column block, row-major.
  let q = householderQR(Float64Array.from({ length: n * m }, () => rng.gaussian()), n, m).q;
  const times = (x: Float64Array): Float64Array => {
    const y = new Float64Array(n * m);
    for (let i = 0; i < n; i++) {
      for (let k = 0; k < n; k++) {
        const gik = g[i * n + k]!;
        if (gik === 0) continue;
        for (let j = 0; j < m; j++) y[i * m + j]! += gik * x[k * m + j]!;
      }
    }
    return y;
  };
  for (let it = 0; it < (opts.iterations ?? 60); it++) q = householderQR(times(q), n, m).q;
  const gq = times(q);
  const small = new Float64Array(m * m);
  for (let a = 0; a < m; a++) for (let b = 0; b < m; b++) for (let i = 0; i < n; i++) small[a * m + b]! += q[i * m + a]! * gq[i * m + b]!;
  for (let a = 0; a < m; a++) for (let b = a + 1; b < m; b++) small[a * m + b] = small[b * m + a] = (small[a * m + b]! + small[b * m + a]!) / 2;
  const e = jacobiEigen(small, m);
  const vectors = new Float64Array(c * n);
  for (let r = 0; r < c; r++) for (let i = 0; i < n; i++) for (let a = 0; a < m; a++) vectors[r * n + i]! += q[i * m + a]! * e.vectors[r * m + a]!;
  return { values: e.values.slice(0, c), vectors };
}
