// Top singular values of a large matrix by randomized subspace iteration (Halko, Martinsson & Tropp
// 2011, Alg. 4.4). The products with the big matrix run on the backend, or on the WebAssembly
// kernels with the matrix copied into their memory once (wasm.ts's ResidentMatrix) when the caller
// has its values on the host; every basis is kept as rows ([l, m] or [l, n]) so no product needs a
// transpose of the big matrix, and the l×l pieces (Cholesky, triangular inverse, the Ritz values)
// run on the host in float64.
//
// Measured (bench/svd, 2048² low rank plus noise): block Krylov with blocks of k + 4 needs depth 3
// (8 passes over A of 20 rows) for the same 1e-7 accuracy as 8 passes of 26 rows here, and its
// blocks, orthogonalised against each other in float32, lose their independence on fast-decaying
// spectra; subspace iteration stays.
import type { Backend, Tensor } from '../../model/backend.ts';
import { choleskyLower, householderQR, invertLower, symmetricEigenvalues, transposeHost } from './dense.ts';
import { gaussianArray } from './rng.ts';
import { ResidentMatrix, wasmGram } from './wasm.ts';

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
  /**
   * The matrix's values on the host (row-major, as in the tensor) when the caller has them: the
   * products with it then run on the WebAssembly kernels with the matrix copied once into their
   * memory, where those run; on the backend otherwise.
   */
  host?: Float32Array;
}

export interface RandomizedResult {
  /** The l = min(k + p, m, n) Ritz values, descending; the first min(k, m, n) are the answer. */
  ritz: Float64Array;
  /** ‖QᵀA‖_F² in float64 (the sum of the squared Ritz values): ‖A‖_F² minus this bounds the energy left outside the basis. */
  capturedEnergy: number;
  /** True when the basis spans the whole smaller side, so the Ritz values are the full spectrum. */
  complete: boolean;
  /** Orthonormalisations done, and how many fell back from CholeskyQR2 to Householder QR on the host. */
  orthonormalisations: number;
  householderFallbacks: number;
}

/** CholeskyQR accepts a pivot when it keeps this share of its row's norm² (κ up to about 300 in float32). */
const MIN_PIVOT_RATIO = 1e-5;

/** Products of thin row blocks with the big matrix A: q [l, m] → q·A, w [l, n] → w·Aᵀ. */
interface Products {
  times(q: Tensor): Promise<Tensor>;
  timesTransposed(w: Tensor): Promise<Tensor>;
}

function backendProducts(backend: MatrixBackend, a: Tensor): Products {
  return {
    times: async (q) => backend.matmul(q, a),
    timesTransposed: async (w) => backend.matmul(w, a, { transposeB: true }),
  };
}

function residentProducts(backend: MatrixBackend, r: ResidentMatrix): Products {
  return {
    times: async (q) => backend.fromArray(r.times(await readF32(backend, q), q.shape[0]!), [q.shape[0]!, r.n]),
    timesTransposed: async (w) => backend.fromArray(r.timesTransposed(await readF32(backend, w), w.shape[0]!), [w.shape[0]!, r.m]),
  };
}

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
  const resident = opts.host ? ResidentMatrix.upload(opts.host, m, n) : null;
  const products = resident ? residentProducts(backend, resident) : backendProducts(backend, a);
  const omega = backend.fromArray(gaussianArray(l * n, opts.seed ?? 0x5eed), [l, n]);
  let rows = await products.timesTransposed(omega);
  backend.dispose(omega);
  try {
    let basis = await orthonormaliseRows(backend, rows, stats);
    backend.dispose(rows);
    for (let i = 0; i < q; i++) {
      rows = await products.times(basis);
      backend.dispose(basis);
      basis = await orthonormaliseRows(backend, rows, stats);
      backend.dispose(rows);
      rows = await products.timesTransposed(basis);
      backend.dispose(basis);
      basis = await orthonormaliseRows(backend, rows, stats);
      backend.dispose(rows);
    }
    rows = await products.times(basis);
    const basisValues = (await readF32(backend, basis)).slice();
    backend.dispose(basis);
    const ritz = ritzValues(basisValues, m, await readF32(backend, rows), n, l);
    let capturedEnergy = 0;
    for (const x of ritz) capturedEnergy += x * x;
    return { ritz, capturedEnergy, complete: l === Math.min(m, n), ...stats };
  } finally {
    backend.dispose(rows);
  }
}

/**
 * Singular values of A on the span of the rows of Q [l, m], from B = Q·A [l, n]: the eigenvalues of
 * L⁻¹·(B·Bᵀ)·L⁻ᵀ with Q·Qᵀ = L·Lᵀ, both Grams summed in float64 from the float32 values, so the
 * rounding left in Q's orthonormality does not enter the values.
 */
function ritzValues(q: Float32Array, m: number, bRows: Float32Array, n: number, l: number): Float64Array {
  const gram = (x: Float32Array, len: number) => wasmGram(x, l, len) ?? rowGram(x, l, len);
  const g = gram(bRows, n);
  const chol = choleskyLower(gram(q, m), l, 0);
  if (!chol) throw new Error('randomizedSingularValues: the orthonormalised basis lost its rank');
  const inv = invertLower(chol, l);
  // inv · g · invᵀ
  const t = new Float64Array(l * l);
  for (let i = 0; i < l; i++) {
    for (let j = 0; j < l; j++) {
      let s = 0;
      for (let r = 0; r <= i; r++) s += inv[i * l + r]! * g[r * l + j]!;
      t[i * l + j] = s;
    }
  }
  const h = new Float64Array(l * l);
  for (let i = 0; i < l; i++) {
    for (let j = 0; j <= i; j++) {
      let s = 0;
      for (let r = 0; r <= j; r++) s += t[i * l + r]! * inv[j * l + r]!;
      h[i * l + j] = s;
      h[j * l + i] = s;
    }
  }
  return symmetricEigenvalues(h, l, 32).values.map((v) => Math.sqrt(Math.max(v, 0)));
}

/** X·Xᵀ of rows x [l, len] in float64 (where the WebAssembly kernels do not run). */
function rowGram(x: Float32Array, l: number, len: number): Float64Array {
  const g = new Float64Array(l * l);
  for (let i = 0; i < l; i++) {
    for (let j = 0; j <= i; j++) {
      let s = 0;
      for (let t = 0; t < len; t++) s += x[i * len + t]! * x[j * len + t]!;
      g[i * l + j] = s;
      g[j * l + i] = s;
    }
  }
  return g;
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
