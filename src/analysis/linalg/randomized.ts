// Top singular values of a large matrix by randomized subspace iteration (Halko, Martinsson &
// Tropp 2011, Alg. 4.4). The products with the big matrix run on the backend; every basis is
// kept as rows ([l, m] or [l, n]) so no product needs a transpose of the big matrix, and the
// l×l pieces (Cholesky, triangular inverse, final SVD) run on the host in float64.
import type { Backend, Tensor } from '../../model/backend.ts';
import { choleskyLower, householderQR, invertLower, singularValues, transposeHost } from './dense.ts';
import { gaussianArray } from './rng.ts';

/** The ops the linear-algebra code needs; both real backends provide them. */
export type MatrixBackend = Pick<Backend, 'fromArray' | 'read' | 'dispose' | 'matmul' | 'transpose'>;

export interface RandomizedOptions {
  /** Singular values wanted. Default 16. */
  k?: number;
  /** Extra columns of the sketch. Default 10. */
  oversample?: number;
  /** Power iterations. Default 3. */
  powerIterations?: number;
  seed?: number;
}

export interface RandomizedResult {
  /** The l = min(k + p, m, n) Ritz values, descending; the first min(k, m, n) are the answer. */
  ritz: Float64Array;
  /** ‖QᵀA‖_F², in float64 from the float32 sketch: ‖A‖_F² minus this bounds the energy left outside the basis. */
  capturedEnergy: number;
  /** True when the basis spans the whole smaller side, so the Ritz values are the full spectrum. */
  complete: boolean;
  /** Orthonormalisations done, and how many fell back from CholeskyQR2 to Householder QR on the host. */
  orthonormalisations: number;
  householderFallbacks: number;
}

/** CholeskyQR accepts a pivot when it keeps this share of its row's norm² (κ up to about 300 in float32). */
const MIN_PIVOT_RATIO = 1e-5;

export async function randomizedSingularValues(
  backend: MatrixBackend,
  a: Tensor,
  opts: RandomizedOptions = {},
): Promise<RandomizedResult> {
  const [m, n] = matrixShape(a);
  const k = opts.k ?? 16;
  const l = Math.min(k + (opts.oversample ?? 10), m, n);
  const q = opts.powerIterations ?? 3;
  const stats = { orthonormalisations: 0, householderFallbacks: 0 };
  const omega = backend.fromArray(gaussianArray(l * n, opts.seed ?? 0x5eed), [l, n]);
  let rows = backend.matmul(omega, a, { transposeB: true });
  backend.dispose(omega);
  try {
    let basis = await orthonormaliseRows(backend, rows, stats);
    backend.dispose(rows);
    for (let i = 0; i < q; i++) {
      rows = backend.matmul(basis, a);
      backend.dispose(basis);
      basis = await orthonormaliseRows(backend, rows, stats);
      backend.dispose(rows);
      rows = backend.matmul(basis, a, { transposeB: true });
      backend.dispose(basis);
      basis = await orthonormaliseRows(backend, rows, stats);
      backend.dispose(rows);
    }
    rows = backend.matmul(basis, a);
    backend.dispose(basis);
    const b = Float64Array.from(await readF32(backend, rows));
    let capturedEnergy = 0;
    for (const x of b) capturedEnergy += x * x;
    return { ritz: singularValues(b, l, n), capturedEnergy, complete: l === Math.min(m, n), ...stats };
  } finally {
    backend.dispose(rows);
  }
}

/**
 * Rows of x [l, len] → orthonormal rows spanning the same space. CholeskyQR2 on the backend
 * (Gram X·Xᵀ, L⁻¹·X, twice); when a pivot is too small the rows are nearly dependent, and
 * Householder QR on the host in float64 takes over.
 */
async function orthonormaliseRows(
  backend: MatrixBackend,
  x: Tensor,
  stats: { orthonormalisations: number; householderFallbacks: number },
): Promise<Tensor> {
  stats.orthonormalisations++;
  const [l] = matrixShape(x);
  let current = x;
  for (let pass = 0; pass < 2; pass++) {
    const gram = backend.matmul(current, current, { transposeB: true });
    const g = Float64Array.from(await readF32(backend, gram));
    backend.dispose(gram);
    const chol = choleskyLower(g, l, MIN_PIVOT_RATIO);
    if (!chol) {
      if (current !== x) backend.dispose(current);
      stats.householderFallbacks++;
      return householderRows(backend, x);
    }
    const inv = backend.fromArray(Float32Array.from(invertLower(chol, l)), [l, l]);
    const next = backend.matmul(inv, current);
    backend.dispose(inv);
    if (current !== x) backend.dispose(current);
    current = next;
  }
  return current;
}

async function householderRows(backend: MatrixBackend, x: Tensor): Promise<Tensor> {
  const [l, len] = matrixShape(x);
  const cols = transposeHost(Float64Array.from(await readF32(backend, x)), l, len);
  const { q } = householderQR(cols, len, l);
  return backend.fromArray(Float32Array.from(transposeHost(q, len, l)), [l, len]);
}

export function matrixShape(t: Tensor): [number, number] {
  if (t.shape.length !== 2) throw new Error(`expected a matrix, got shape [${t.shape.join(', ')}]`);
  return [t.shape[0]!, t.shape[1]!];
}

export async function readF32(backend: MatrixBackend, t: Tensor): Promise<Float32Array> {
  const data = await backend.read(t);
  if (!(data instanceof Float32Array)) throw new Error('expected a float tensor');
  return data;
}
