// Top singular values of a large matrix by randomized block Krylov (Musco & Musco 2015; block
// Lanczos with full reorthogonalisation): the basis, on the smaller side of A, is [Ω, (AᵀA)Ω, …,
// (AᵀA)^d Ω], built a block at a time, and the Ritz values are those of A on its span. The products
// with the big matrix run on the backend, or on the WebAssembly kernels with the matrix copied into
// their memory once (wasm.ts's ResidentMatrix) when the caller has its values on the host; every
// basis is kept as rows ([b, m] or [b, n]) so no product needs a transpose of the big matrix, and the
// small pieces (Cholesky, triangular inverse, the Ritz values) run on the host in float64.
//
// Measured (bench/svd's 2048² and 4096×1024 low rank plus noise, top 16, same load): subspace
// iteration with 26 rows and 3 power iterations (8 passes over A, 208 rows·passes) left σ1..σ16 at
// 6e-7 and 3e-7 of float64; Krylov blocks of 12 to depth 4 (9 passes, 108 rows·passes) at 1–2e-7, in
// 0.5–0.8 of the time. In float32 emulation blocks of 8–10 need depth 5 for that, and blocks of
// 20–26 at depth 3 spend more rows·passes; the passes are about 60% of the time, the upload 15%.

import type { Backend, Tensor } from '../../model/backend.ts';
import { choleskyLower, householderQR, invertLower, jacobiEigenvalues, symmetricEigenvalues, transposeHost } from './dense.ts';
import { gaussianArray } from './rng.ts';
import { jacobiEigen } from './eigen.ts';
import { ResidentMatrix, wasmGram } from './wasm.ts';

/** The ops the linear-algebra code needs; both real backends provide them. */
export type MatrixBackend = Pick<Backend, 'fromArray' | 'read' | 'dispose' | 'matmul' | 'transpose'>;

export interface RandomizedOptions {
  /** Singular values wanted. Default 16. */
  k?: number;
  /** Rows per Krylov block. Default ⌈k/2⌉ + 4 (12 for k = 16). */
  block?: number;
  /** Krylov steps d: the basis holds b·(d + 1) rows, made with 2d + 1 passes over A. Default 4. */
  depth?: number;
  seed?: number;
  /**
   * The matrix's values on the host (row-major, as in the tensor) when the caller has them: the
   * products with it then run on the WebAssembly kernels with the matrix copied once into their
   * memory, where those run; on the backend otherwise.
   */
  host?: Float32Array;
}

export interface RandomizedResult {
  /** The l = b·(d + 1) (at most min(m, n)) Ritz values, descending, each a lower bound of its σ; the first min(k, m, n) are the answer. */
  ritz: Float64Array;
  /** ‖QᵀA‖_F² in float64 (the sum of the squared Ritz values): ‖A‖_F² minus this bounds the energy left outside the basis. */
  capturedEnergy: number;
  /** True when the basis spans the whole smaller side, so the Ritz values are the full spectrum. */
  complete: boolean;
  /** Rows of a block and Krylov steps taken. */
  block: number;
  depth: number;
  /** Orthonormalisations done, and how many fell back from CholeskyQR2 to Householder QR on the host. */
  orthonormalisations: number;
  householderFallbacks: number;
}

/** CholeskyQR accepts a pivot when it keeps this share of its row's norm² (κ up to about 300 in float32). */
const MIN_PIVOT_RATIO = 1e-5;
/**
 * The Ritz values' Cholesky of the basis's float64 Gram, and its whitening, keep directions down to
 * this share: the blocks are orthonormal, so a smaller one is a direction the basis already holds (a
 * block past the rank of A), whose float32 rounding the whitening would magnify.
 */
const MIN_RITZ_PIVOT_RATIO = 1e-2;

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

/** Products of rows on A's smaller side (length `side`) with A, out to the other side (length `other`), and back. */
interface SideProducts {
  side: number;
  other: number;
  out(x: Tensor): Promise<Tensor>;
  back(y: Tensor): Promise<Tensor>;
}

function sideProducts(products: Products, m: number, n: number): SideProducts {
  return n <= m
    ? { side: n, other: m, out: (x) => products.timesTransposed(x), back: (y) => products.times(y) }
    : { side: m, other: n, out: (x) => products.times(x), back: (y) => products.timesTransposed(y) };
}

export async function randomizedSingularValues(
  backend: MatrixBackend,
  a: Tensor,
  opts: RandomizedOptions = {},
): Promise<RandomizedResult> {
  const [m, n] = matrixShape(a);
  const k = opts.k ?? 16;
  const side = Math.min(m, n);
  let block = Math.min(opts.block ?? Math.ceil(k / 2) + 4, side);
  let depth = opts.depth ?? 4;
  // A basis that would reach the whole smaller side is that side: one block, exact values.
  if (block * (depth + 1) >= side) [block, depth] = [side, 0];
  const l = block * (depth + 1);
  const stats = { orthonormalisations: 0, householderFallbacks: 0 };
  const resident = opts.host ? ResidentMatrix.upload(opts.host, m, n) : null;
  const sides = sideProducts(resident ? residentProducts(backend, resident) : backendProducts(backend, a), m, n);
  // The basis rows so far on the host, and as a tensor for the projections; Z_j = out(P_j) as computed.
  const basis = new Float32Array(l * side);
  const images = new Float32Array(l * sides.other);
  const omega = backend.fromArray(gaussianArray(block * side, opts.seed ?? 0x5eed), [block, side]);
  let p = await orthonormaliseRows(backend, omega, stats);
  backend.dispose(omega);
  for (let j = 0; ; j++) {
    basis.set(await readF32(backend, p), j * block * side);
    const z = await sides.out(p);
    backend.dispose(p);
    images.set(await readF32(backend, z), j * block * sides.other);
    if (j === depth) {
      backend.dispose(z);
      break;
    }
    // The next block: Aᵀ·A·P_j (through Z_j orthonormalised, which keeps its span and its scale),
    // without its components on the basis so far, orthonormalised.
    const q = await orthonormaliseRows(backend, z, stats);
    backend.dispose(z);
    const w = await sides.back(q);
    backend.dispose(q);
    const projected = await projectOut(backend, w, basis.subarray(0, (j + 1) * block * side), (j + 1) * block, side);
    backend.dispose(w);
    p = await orthonormaliseRows(backend, projected, stats);
    backend.dispose(projected);
  }
  const ritz = ritzValues(basis, side, images, sides.other, l);
  let capturedEnergy = 0;
  for (const x of ritz) capturedEnergy += x * x;
  return { ritz, capturedEnergy, complete: l === side, block, depth, ...stats };
}

/**
 * Rows w [b, len] less their components on the rows of `basis` ([rows, len], orthonormal to float32
 * rounding), twice (block classical Gram–Schmidt twice), the subtraction on the host.
 */
async function projectOut(backend: MatrixBackend, w: Tensor, basis: Float32Array, rows: number, len: number): Promise<Tensor> {
  const [b] = matrixShape(w);
  const p = backend.fromArray(basis, [rows, len]);
  const values = (await readF32(backend, w)).slice();
  let current = w;
  for (let pass = 0; pass < 2; pass++) {
    const c = backend.matmul(current, p, { transposeB: true });
    const along = backend.matmul(c, p);
    backend.dispose(c);
    const d = await readF32(backend, along);
    for (let i = 0; i < b * len; i++) values[i]! -= d[i]!;
    backend.dispose(along);
    if (current !== w) backend.dispose(current);
    current = backend.fromArray(values, [b, len]);
  }
  backend.dispose(p);
  return current;
}

/**
 * Singular values of A on the span of the rows of Q [l, m], from B = Q·A [l, n]: the eigenvalues of
 * L⁻¹·(B·Bᵀ)·L⁻ᵀ with Q·Qᵀ = L·Lᵀ, both Grams summed in float64 from the float32 values, so the
 * rounding left in Q's orthonormality does not enter the values. Where Q·Qᵀ is too close to singular
 * for Cholesky (a Krylov space that ran out of new directions), its eigenvectors whiten it instead
 * and the directions it lacks count as zeros.
 */
function ritzValues(q: Float32Array, m: number, bRows: Float32Array, n: number, l: number): Float64Array {
  const gram = (x: Float32Array, len: number) => wasmGram(x, l, len) ?? rowGram(x, l, len);
  const g = gram(bRows, n);
  const gq = gram(q, m);
  const chol = choleskyLower(gq, l, MIN_RITZ_PIVOT_RATIO);
  if (!chol) return whitenedRitzValues(gq, g, l);
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
  return ritzFromEigenvalues(h, l);
}

/**
 * √ of the eigenvalues of h: tridiagonal QL, or Jacobi where QL does not converge (a cluster of
 * values at rounding level next to large ones, as a basis wider than the rank of A leaves).
 */
function ritzFromEigenvalues(h: Float64Array, l: number): Float64Array {
  let values: Float64Array;
  try {
    values = symmetricEigenvalues(h, l, 32).values;
  } catch {
    values = jacobiEigenvalues(h, l);
  }
  return values.map((v) => Math.sqrt(Math.max(v, 0)));
}

/** ritzValues on the directions of Q·Qᵀ = V·Λ·Vᵀ with λ above MIN_RITZ_PIVOT_RATIO·λ1: the eigenvalues of Λ^-½·Vᵀ·G·V·Λ^-½. */
function whitenedRitzValues(gq: Float64Array, g: Float64Array, l: number): Float64Array {
  const { values, vectors } = jacobiEigen(gq, l);
  const kept: number[] = [];
  for (let i = 0; i < l; i++) if (values[i]! > MIN_RITZ_PIVOT_RATIO * values[0]!) kept.push(i);
  const r = kept.length;
  // T = Λ^-½·Vᵀ restricted to the kept directions, [r, l]; H = T·G·Tᵀ.
  const t = new Float64Array(r * l);
  kept.forEach((e, i) => {
    const scale = 1 / Math.sqrt(values[e]!);
    for (let c = 0; c < l; c++) t[i * l + c] = vectors[e * l + c]! * scale;
  });
  const tg = new Float64Array(r * l);
  for (let i = 0; i < r; i++) {
    for (let j = 0; j < l; j++) {
      let s = 0;
      for (let c = 0; c < l; c++) s += t[i * l + c]! * g[c * l + j]!;
      tg[i * l + j] = s;
    }
  }
  const h = new Float64Array(r * r);
  for (let i = 0; i < r; i++) {
    for (let j = 0; j <= i; j++) {
      let s = 0;
      for (let c = 0; c < l; c++) s += tg[i * l + c]! * t[j * l + c]!;
      h[i * r + j] = s;
      h[j * r + i] = s;
    }
  }
  const ritz = new Float64Array(l);
  ritz.set(ritzFromEigenvalues(h, r));
  return ritz;
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
