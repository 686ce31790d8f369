// Small dense linear algebra on the host, in float64: the k×k and n×n problems that are left once
// the backend has done the large matrix products. Matrices are row-major Float64Arrays.

const EPS = Number.EPSILON;

export function transposeHost(a: Float64Array, rows: number, cols: number): Float64Array {
  const out = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[j * rows + i] = a[i * cols + j]!;
  return out;
}

/**
 * Cholesky factor L (lower) with G = L·Lᵀ, or null when a pivot falls below
 * `minPivotRatio` times its diagonal entry: the rows are then too close to dependent for
 * CholeskyQR at the precision G was formed in.
 */
export function choleskyLower(g: Float64Array, n: number, minPivotRatio: number): Float64Array | null {
  const l = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    let pivot = g[j * n + j]!;
    for (let k = 0; k < j; k++) pivot -= l[j * n + k]! ** 2;
    if (!(pivot > minPivotRatio * g[j * n + j]!) || !Number.isFinite(pivot)) return null;
    const ljj = Math.sqrt(pivot);
    l[j * n + j] = ljj;
    for (let i = j + 1; i < n; i++) {
      let s = g[i * n + j]!;
      for (let k = 0; k < j; k++) s -= l[i * n + k]! * l[j * n + k]!;
      l[i * n + j] = s / ljj;
    }
  }
  return l;
}

export function invertLower(l: Float64Array, n: number): Float64Array {
  const inv = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    inv[j * n + j] = 1 / l[j * n + j]!;
    for (let i = j + 1; i < n; i++) {
      let s = 0;
      for (let k = j; k < i; k++) s -= l[i * n + k]! * inv[k * n + j]!;
      inv[i * n + j] = s / l[i * n + i]!;
    }
  }
  return inv;
}

interface Reflectors {
  /** The input, overwritten: R on and above the diagonal, reflector tails below it. */
  a: Float64Array;
  tau: Float64Array;
}

function householderInPlace(a: Float64Array, m: number, n: number): Reflectors {
  const p = Math.min(m, n);
  const tau = new Float64Array(p);
  for (let j = 0; j < p; j++) {
    let norm2 = 0;
    for (let i = j; i < m; i++) norm2 += a[i * n + j]! ** 2;
    const x0 = a[j * n + j]!;
    if (norm2 === 0 || norm2 === x0 * x0) {
      tau[j] = 0;
      continue;
    }
    const norm = Math.sqrt(norm2);
    const alpha = x0 >= 0 ? -norm : norm;
    const v0 = x0 - alpha;
    for (let i = j + 1; i < m; i++) a[i * n + j]! /= v0;
    const t = (alpha - x0) / alpha;
    tau[j] = t;
    a[j * n + j] = alpha;
    for (let k = j + 1; k < n; k++) {
      let w = a[j * n + k]!;
      for (let i = j + 1; i < m; i++) w += a[i * n + j]! * a[i * n + k]!;
      w *= t;
      a[j * n + k]! -= w;
      for (let i = j + 1; i < m; i++) a[i * n + k]! -= w * a[i * n + j]!;
    }
  }
  return { a, tau };
}

/** R of a QR factorisation of a (m×n): min(m, n)×n, upper trapezoidal. */
export function qrR(a: Float64Array, m: number, n: number): Float64Array {
  const { a: h } = householderInPlace(a.slice(), m, n);
  const p = Math.min(m, n);
  const r = new Float64Array(p * n);
  for (let i = 0; i < p; i++) for (let j = i; j < n; j++) r[i * n + j] = h[i * n + j]!;
  return r;
}

/** Thin QR of a (m×n, m ≥ n): Q m×n with orthonormal columns, R n×n. Q stays orthonormal when a is rank-deficient. */
export function householderQR(a: Float64Array, m: number, n: number): { q: Float64Array; r: Float64Array } {
  if (m < n) throw new Error(`householderQR: needs rows ≥ columns, got ${m}×${n}`);
  const { a: h, tau } = householderInPlace(a.slice(), m, n);
  const r = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = i; j < n; j++) r[i * n + j] = h[i * n + j]!;
  const q = new Float64Array(m * n);
  for (let i = 0; i < n; i++) q[i * n + i] = 1;
  for (let j = n - 1; j >= 0; j--) {
    const t = tau[j]!;
    if (t === 0) continue;
    for (let k = 0; k < n; k++) {
      let w = q[j * n + k]!;
      for (let i = j + 1; i < m; i++) w += h[i * n + j]! * q[i * n + k]!;
      w *= t;
      q[j * n + k]! -= w;
      for (let i = j + 1; i < m; i++) q[i * n + k]! -= w * h[i * n + j]!;
    }
  }
  return { q, r };
}

/** Eigenvalues of a symmetric matrix by cyclic Jacobi rotations (the accurate reference), descending. */
export function jacobiEigenvalues(g: Float64Array, n: number): Float64Array {
  const a = g.slice();
  let total = 0;
  for (let i = 0; i < n * n; i++) total += a[i]! ** 2;
  const tol = (EPS * EPS * total) / 4;
  for (let sweep = 0; ; sweep++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += a[p * n + q]! ** 2;
    if (off <= tol) break;
    if (sweep === 100) throw new Error(`jacobiEigenvalues: no convergence after 100 sweeps (n = ${n})`);
    for (let p = 0; p < n - 1; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = a[p * n + q]!;
        if (apq === 0) continue;
        const app = a[p * n + p]!;
        const aqq = a[q * n + q]!;
        const theta = (aqq - app) / (2 * apq);
        const t = (theta >= 0 ? 1 : -1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        a[p * n + p] = app - t * apq;
        a[q * n + q] = aqq + t * apq;
        a[p * n + q] = 0;
        a[q * n + p] = 0;
        for (let k = 0; k < n; k++) {
          if (k === p || k === q) continue;
          const akp = a[k * n + p]!;
          const akq = a[k * n + q]!;
          const np = c * akp - s * akq;
          const nq = s * akp + c * akq;
          a[k * n + p] = np;
          a[p * n + k] = np;
          a[k * n + q] = nq;
          a[q * n + k] = nq;
        }
      }
    }
  }
  const values = new Float64Array(n);
  for (let i = 0; i < n; i++) values[i] = a[i * n + i]!;
  return values.sort().reverse();
}

/**
 * Where the Householder tridiagonalisation keeps its numbers: the matrix (lower triangle, row
 * stride lda) and four vectors of length ≥ n, as Float64Arrays (plain arrays, or views of a
 * WebAssembly memory), and the one pass over the trailing block that costs n³ in all.
 */
export interface TridiagonalWorkspace {
  a: Float64Array;
  lda: number;
  v: Float64Array;
  p: Float64Array;
  vp: Float64Array;
  wp: Float64Array;
  /**
   * Rows i > k of the lower triangle: a[i, j] −= vp_i·wp_j + wp_i·vp_j for k < j ≤ i (the previous
   * step's rank-2 update; vp and wp are zero when there is none), then p_i = Σ_j a[i, j]·v_j over the
   * updated trailing block (j > k, both triangles through symmetry).
   */
  pass(n: number, k: number): void;
}

/** The fused pass in JavaScript (the reference for the WebAssembly one). */
export function jsTridiagonalWorkspace(g: Float64Array, n: number): TridiagonalWorkspace {
  const ws: TridiagonalWorkspace = {
    a: g.slice(),
    lda: n,
    v: new Float64Array(n),
    p: new Float64Array(n),
    vp: new Float64Array(n),
    wp: new Float64Array(n),
    pass(size, k) {
      const { a, lda, v, p, vp, wp } = ws;
      p.fill(0, k + 1, size);
      for (let i = k + 1; i < size; i++) {
        const row = i * lda;
        const vi = v[i]!;
        const vpi = vp[i]!;
        const wpi = wp[i]!;
        let s = 0;
        for (let j = k + 1; j < i; j++) {
          const aij = a[row + j]! - (vpi * wp[j]! + wpi * vp[j]!);
          a[row + j] = aij;
          s += aij * v[j]!;
          p[j]! += aij * vi;
        }
        const aii = a[row + i]! - 2 * vpi * wpi;
        a[row + i] = aii;
        p[i]! += s + aii * vi;
      }
    },
  };
  return ws;
}

/**
 * Householder reduction of a symmetric matrix to tridiagonal form (lower triangle only, 4/3·n³
 * flops): the diagonal d and the subdiagonal e (e[k] couples k and k+1). The reduction is
 * memory-bound, so each step's rank-2 update is applied in the same pass over the trailing block
 * that forms the next step's product A·v: one pass per step instead of two.
 */
export function tridiagonalise(ws: TridiagonalWorkspace, n: number): { d: Float64Array; e: Float64Array } {
  const { a, lda, v, p, vp, wp } = ws;
  const d = new Float64Array(n);
  const e = new Float64Array(n);
  // vp, wp: the previous step's update A −= vp·wpᵀ + wp·vpᵀ, not yet applied to the trailing block.
  vp.fill(0, 0, n);
  wp.fill(0, 0, n);
  let pending = false;
  for (let k = 0; k < n - 1; k++) {
    if (pending) for (let i = k; i < n; i++) a[i * lda + k]! -= vp[i]! * wp[k]! + wp[i]! * vp[k]!;
    d[k] = a[k * lda + k]!;
    let norm2 = 0;
    for (let i = k + 1; i < n; i++) norm2 += a[i * lda + k]! ** 2;
    const x0 = a[(k + 1) * lda + k]!;
    if (k === n - 2 || norm2 === x0 * x0) {
      e[k] = x0;
      if (pending) {
        v.fill(0, 0, n);
        ws.pass(n, k);
        vp.fill(0, 0, n);
        wp.fill(0, 0, n);
      }
      pending = false;
      continue;
    }
    const alpha = x0 >= 0 ? -Math.sqrt(norm2) : Math.sqrt(norm2);
    let vtv = 0;
    for (let i = k + 1; i < n; i++) {
      v[i] = i === k + 1 ? x0 - alpha : a[i * lda + k]!;
      vtv += v[i]! ** 2;
    }
    const beta = 2 / vtv;
    ws.pass(n, k);
    let vdotp = 0;
    for (let i = k + 1; i < n; i++) {
      p[i]! *= beta;
      vdotp += v[i]! * p[i]!;
    }
    const half = (beta * vdotp) / 2;
    for (let i = k + 1; i < n; i++) p[i]! -= half * v[i]!;
    e[k] = alpha;
    vp.set(v.subarray(0, n));
    wp.set(p.subarray(0, n));
    pending = true;
  }
  if (pending) a[(n - 1) * lda + n - 1]! -= 2 * vp[n - 1]! * wp[n - 1]!;
  d[n - 1] = a[(n - 1) * lda + n - 1]!;
  return { d, e };
}

/** Eigenvalues of a symmetric matrix (descending): tridiagonalise, then implicit QL with Wilkinson shifts. */
export function tridiagonalEigenvalues(g: Float64Array, n: number, ws: TridiagonalWorkspace = jsTridiagonalWorkspace(g, n)): Float64Array {
  const { d, e } = tridiagonalise(ws, n);
  tridiagonalQL(d, e);
  return d.sort().reverse();
}

/** Implicit QL on a symmetric tridiagonal matrix (d diagonal, e[i] couples i and i+1): eigenvalues into d. */
function tridiagonalQL(d: Float64Array, e: Float64Array): void {
  const n = d.length;
  e[n - 1] = 0;
  for (let l = 0; l < n; l++) {
    for (let iter = 0; ; iter++) {
      let m = l;
      for (; m < n - 1; m++) {
        if (Math.abs(e[m]!) <= EPS * (Math.abs(d[m]!) + Math.abs(d[m + 1]!))) break;
      }
      if (m === l) break;
      if (iter === 60) throw new Error(`tridiagonal QL: no convergence for eigenvalue ${l} of ${n}`);
      let g = (d[l + 1]! - d[l]!) / (2 * e[l]!);
      let r = Math.hypot(g, 1);
      g = d[m]! - d[l]! + e[l]! / (g + (g >= 0 ? r : -r));
      let s = 1;
      let c = 1;
      let shift = 0;
      let deflated = false;
      for (let i = m - 1; i >= l; i--) {
        const f = s * e[i]!;
        const b = c * e[i]!;
        r = Math.hypot(f, g);
        e[i + 1] = r;
        if (r === 0) {
          d[i + 1]! -= shift;
          e[m] = 0;
          deflated = true;
          break;
        }
        s = f / r;
        c = g / r;
        g = d[i + 1]! - shift;
        r = (d[i]! - g) * s + 2 * c * b;
        shift = s * r;
        d[i + 1] = g + shift;
        g = c * r - b;
      }
      if (deflated) continue;
      d[l]! -= shift;
      e[l] = g;
      e[m] = 0;
    }
  }
}

export type EigenMethod = 'jacobi' | 'tridiagonal-ql';

/** Eigenvalues (descending) by Jacobi up to `jacobiMaxN`, by tridiagonal QL above; says which. */
export function symmetricEigenvalues(g: Float64Array, n: number, jacobiMaxN = 256): { values: Float64Array; method: EigenMethod } {
  if (n <= jacobiMaxN) return { values: jacobiEigenvalues(g, n), method: 'jacobi' };
  return { values: tridiagonalEigenvalues(g, n), method: 'tridiagonal-ql' };
}

/**
 * Singular values (descending, min(rows, cols) of them) by one-sided Jacobi on the rows of the
 * wider orientation: accurate to float64 relative precision, no Gram matrix is formed.
 */
export function singularValues(x: Float64Array, rows: number, cols: number): Float64Array {
  const [count, len, w] = rows <= cols ? [rows, cols, x.slice()] : [cols, rows, transposeHost(x, rows, cols)];
  for (let sweep = 0; ; sweep++) {
    let rotated = false;
    for (let i = 0; i < count - 1; i++) {
      for (let j = i + 1; j < count; j++) {
        let alpha = 0;
        let beta = 0;
        let gamma = 0;
        const oi = i * len;
        const oj = j * len;
        for (let k = 0; k < len; k++) {
          const xi = w[oi + k]!;
          const xj = w[oj + k]!;
          alpha += xi * xi;
          beta += xj * xj;
          gamma += xi * xj;
        }
        if (Math.abs(gamma) <= EPS * Math.sqrt(alpha * beta)) continue;
        rotated = true;
        const zeta = (beta - alpha) / (2 * gamma);
        const t = (zeta >= 0 ? 1 : -1) / (Math.abs(zeta) + Math.sqrt(1 + zeta * zeta));
        const c = 1 / Math.sqrt(1 + t * t);
        const s = c * t;
        for (let k = 0; k < len; k++) {
          const xi = w[oi + k]!;
          const xj = w[oj + k]!;
          w[oi + k] = c * xi - s * xj;
          w[oj + k] = s * xi + c * xj;
        }
      }
    }
    if (!rotated) break;
    if (sweep === 100) throw new Error(`singularValues: one-sided Jacobi did not converge (${rows}×${cols})`);
  }
  const out = new Float64Array(count);
  for (let i = 0; i < count; i++) {
    let s = 0;
    for (let k = 0; k < len; k++) s += w[i * len + k]! ** 2;
    out[i] = Math.sqrt(s);
  }
  return out.sort().reverse();
}
