// Non-negative matrix factorisation V ≈ W H (Frobenius loss) by Lee & Seung's multiplicative updates,
// for a sparse non-negative V given as (row, column, value) triples: W [rows, r], H [r, cols].
import { createRng } from '../crosscoder/rng.ts';

export interface SparseMatrix {
  rows: number;
  cols: number;
  /** Triples, one entry per (row, col) at most. */
  row: Int32Array;
  col: Int32Array;
  value: Float64Array;
}

export interface NmfResult {
  w: Float64Array;
  h: Float64Array;
  rank: number;
  /** ‖V − W H‖_F / ‖V‖_F after the last iteration. */
  relativeError: number;
  iterations: number;
}

const EPS = 1e-12;

export function nmf(v: SparseMatrix, rank: number, opts: { iterations?: number; seed?: number } = {}): NmfResult {
  const { rows, cols } = v;
  if (!(Number.isInteger(rank) && rank >= 1)) throw new RangeError(`NMF rank must be a positive integer, got ${rank}`);
  const iterations = opts.iterations ?? 200;
  const rng = createRng(opts.seed ?? 0);
  let mean = 0;
  for (const x of v.value) {
    if (!(x >= 0)) throw new RangeError(`NMF needs non-negative values, got ${x}`);
    mean += x;
  }
  mean /= Math.max(1, rows * cols);
  // Random positive start scaled to the data (as scikit-learn's init='random').
  const s = Math.sqrt(mean / rank);
  const w = Float64Array.from({ length: rows * rank }, () => s * (0.5 + rng.next()));
  const h = Float64Array.from({ length: rank * cols }, () => s * (0.5 + rng.next()));
  const nnz = v.value.length;
  const wh = new Float64Array(nnz);
  for (let it = 0; it < iterations; it++) {
    // H ← H ⊙ (Wᵀ V) / (Wᵀ W H)
    const wtv = new Float64Array(rank * cols);
    for (let e = 0; e < nnz; e++) {
      const i = v.row[e]!;
      const j = v.col[e]!;
      for (let r = 0; r < rank; r++) wtv[r * cols + j]! += w[i * rank + r]! * v.value[e]!;
    }
    const wtw = gram(w, rows, rank);
    for (let r = 0; r < rank; r++) {
      for (let j = 0; j < cols; j++) {
        let den = 0;
        for (let q = 0; q < rank; q++) den += wtw[r * rank + q]! * h[q * cols + j]!;
        h[r * cols + j]! *= wtv[r * cols + j]! / (den + EPS);
      }
    }
    // W ← W ⊙ (V Hᵀ) / (W H Hᵀ)
    const vht = new Float64Array(rows * rank);
    for (let e = 0; e < nnz; e++) {
      const i = v.row[e]!;
      const j = v.col[e]!;
      for (let r = 0; r < rank; r++) vht[i * rank + r]! += v.value[e]! * h[r * cols + j]!;
    }
    const hht = new Float64Array(rank * rank);
    for (let a = 0; a < rank; a++) for (let b = 0; b < rank; b++) for (let j = 0; j < cols; j++) hht[a * rank + b]! += h[a * cols + j]! * h[b * cols + j]!;
    for (let i = 0; i < rows; i++) {
      for (let r = 0; r < rank; r++) {
        let den = 0;
        for (let q = 0; q < rank; q++) den += w[i * rank + q]! * hht[q * rank + r]!;
        w[i * rank + r]! *= vht[i * rank + r]! / (den + EPS);
      }
    }
  }
  // ‖V − WH‖² = ‖V‖² − 2 Σ_nnz v·(WH) + ‖WH‖², ‖WH‖² = tr((WᵀW)(HHᵀ)).
  let vv = 0;
  let cross = 0;
  for (let e = 0; e < nnz; e++) {
    const i = v.row[e]!;
    const j = v.col[e]!;
    let x = 0;
    for (let r = 0; r < rank; r++) x += w[i * rank + r]! * h[r * cols + j]!;
    wh[e] = x;
    vv += v.value[e]! ** 2;
    cross += v.value[e]! * x;
  }
  const wtw = gram(w, rows, rank);
  let whwh = 0;
  for (let a = 0; a < rank; a++) {
    for (let b = 0; b < rank; b++) {
      let hh = 0;
      for (let j = 0; j < cols; j++) hh += h[a * cols + j]! * h[b * cols + j]!;
      whwh += wtw[a * rank + b]! * hh;
    }
  }
  const err = Math.sqrt(Math.max(0, vv - 2 * cross + whwh));
  return { w, h, rank, relativeError: vv > 0 ? err / Math.sqrt(vv) : 0, iterations };
}

/** Aᵀ A of a row-major [n, r] matrix. */
function gram(a: Float64Array, n: number, r: number): Float64Array {
  const g = new Float64Array(r * r);
  for (let i = 0; i < n; i++) for (let p = 0; p < r; p++) for (let q = 0; q < r; q++) g[p * r + q]! += a[i * r + p]! * a[i * r + q]!;
  return g;
}
