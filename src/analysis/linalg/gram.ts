// The full singular spectrum of a matrix through the Gram matrix of its smaller side, with
// eigenvalues found on the host in float64. The Gram itself is formed either on the host in
// float64 (precise: keeps a noise tail down to ≈ 1e-6·σ1) or on the backend in float32 (fast on
// a GPU, but blind below ≈ 1e-3·σ1); the float64 one is the default up to a work limit. On the
// host, the Gram and the Householder tridiagonalisation run on the float64 WebAssembly kernels of
// wasm.ts (threaded), implicit QL in JavaScript; the JavaScript versions where those do not run.
import type { Tensor } from '../../model/backend.ts';
import { jacobiEigenvalues, tridiagonalEigenvalues, type EigenMethod } from './dense.ts';
import { matrixShape, readF32, type MatrixBackend } from './randomized.ts';
import { wasmGram, wasmGramTridiagonalWorkspace, wasmTridiagonalWorkspace } from './wasm.ts';

export type GramAccumulation = 'float64 host' | 'float32 backend';

export interface GramSpectrum {
  /** min(m, n) singular values, descending; those at or below `floor` are reported as 0. */
  values: Float64Array;
  /** The resolution of the path that ran (see gramFloor): σ at or below it are set to 0. */
  floor: number;
  method: EigenMethod;
  accumulation: GramAccumulation;
}

export interface GramOptions {
  /** Jacobi eigenvalues up to this Gram size, tridiagonal QL above. Default 256. */
  jacobiMaxN?: number;
  /** The float64 host Gram runs when it costs at most this many multiply-adds (min(m,n)²·max(m,n)/2). Default 2³⁴. */
  preciseGramMaxWork?: number;
  /** The matrix's values on the host (row-major, as in the tensor) when the caller has them: saves a readback. */
  host?: Float32Array;
}

/**
 * 2³⁴ multiply-adds take ≈ 2 s per thread at the ≈ 8·10⁹/s the float64 WebAssembly kernel reaches
 * (wasm.ts; ≈ 2·10⁹/s in the JavaScript fallback), about what the tridiagonalisation takes at side
 * 2048; so every matrix up to 2048×8192 gets the precise Gram, and the float32 one is left to the
 * largest (embeddings, 4096-wide MLPs).
 */
export const PRECISE_GRAM_MAX_WORK = 2 ** 34;

const EPS32 = 2 ** -23;
const EPS64 = Number.EPSILON;

export function gramWork(m: number, n: number): number {
  return (Math.min(m, n) ** 2 * Math.max(m, n)) / 2;
}

export function gramAccumulation(m: number, n: number, preciseGramMaxWork = PRECISE_GRAM_MAX_WORK): GramAccumulation {
  return gramWork(m, n) <= preciseGramMaxWork ? 'float64 host' : 'float32 backend';
}

export async function gramSingularValues(backend: MatrixBackend, a: Tensor, opts: GramOptions = {}): Promise<GramSpectrum> {
  const [m, n] = matrixShape(a);
  const side = Math.min(m, n);
  const accumulation = gramAccumulation(m, n, opts.preciseGramMaxWork);
  const jacobi = side <= (opts.jacobiMaxN ?? 256);
  const method: EigenMethod = jacobi ? 'jacobi' : 'tridiagonal-ql';
  let eig: Float64Array;
  if (accumulation === 'float64 host') {
    const x = opts.host ?? (await readF32(backend, a));
    // Large sides: the Gram and its tridiagonalisation stay in the WebAssembly memory.
    const ws = jacobi ? null : wasmGramTridiagonalWorkspace(x, m, n);
    if (ws) eig = tridiagonalEigenvalues(new Float64Array(0), side, ws);
    else eig = eigenvalues(hostGram(x, m, n), side, jacobi);
  } else {
    const g = await backendGram(backend, a);
    for (let i = 0; i < side; i++) {
      for (let j = 0; j < i; j++) {
        const s = (g[i * side + j]! + g[j * side + i]!) / 2;
        g[i * side + j] = s;
        g[j * side + i] = s;
      }
    }
    eig = eigenvalues(g, side, jacobi);
  }
  const floor = gramFloor(m, n, Math.sqrt(Math.max(eig[0] ?? 0, 0)), accumulation);
  const values = eig.map((v) => (v > floor * floor ? Math.sqrt(v) : 0));
  return { values, floor, method, accumulation };
}

/** Jacobi (small sides), or tridiagonal QL with the pass on the WebAssembly kernels where they run. */
function eigenvalues(g: Float64Array, n: number, jacobi: boolean): Float64Array {
  if (jacobi) return jacobiEigenvalues(g, n);
  return tridiagonalEigenvalues(g, n, wasmTridiagonalWorkspace(n, g) ?? undefined);
}

/**
 * The smallest singular value a Gram of an m×n matrix with largest value σ1 resolves: σ_floor² is
 * a bound on the absolute error of the computed eigenvalues λ_i = σ_i², so σ_i above the floor is
 * accurate to relative (σ_floor/σ_i)²/2 and σ_i below it is indistinguishable from 0.
 * - float32 backend: the sums of max(m, n) products round at ε32 each, λ_floor = √max(m,n)·ε32·σ1².
 *   Measured rounding of float32 Grams (blocked and sequential sums, up to 16384 long) stays 20×
 *   or more below it; without the floor a rank-2 ΔW would show dozens of spurious σ ≈ 3e-4·σ1.
 * - float64 host: products of float32 values are exact in float64 and the sums round at ε64
 *   (≈ √max(m,n)·ε64·σ1²), but the eigensolver's backward error dominates: measured against
 *   one-sided Jacobi SVD, max |λ_i − σ_i²| ≈ 1.2·min(m,n)·ε64·σ1² for both Jacobi and tridiagonal QL
 *   (sides 61 to 500), and the same with a double-double Gram. With a 4× margin,
 *   λ_floor = (4·min(m,n) + √max(m,n))·ε64·σ1²: σ_floor ≈ 4e-7·σ1 at 200 wide, 1e-6·σ1 at 1024,
 *   1.4e-6·σ1 at 2048 (spectra.test.ts checks the bound down to a spectrum falling to 1e-9·σ1).
 */
export function gramFloor(m: number, n: number, sigma1: number, accumulation: GramAccumulation = 'float32 backend'): number {
  const lambdaRelative =
    accumulation === 'float64 host' ? (4 * Math.min(m, n) + Math.sqrt(Math.max(m, n))) * EPS64 : Math.sqrt(Math.max(m, n)) * EPS32;
  return sigma1 * Math.sqrt(lambdaRelative);
}

async function backendGram(backend: MatrixBackend, a: Tensor): Promise<Float64Array> {
  const [m, n] = matrixShape(a);
  let gram: Tensor;
  if (m <= n) {
    gram = backend.matmul(a, a, { transposeB: true });
  } else {
    const at = backend.transpose(a);
    gram = backend.matmul(at, at, { transposeB: true });
    backend.dispose(at);
  }
  const g = Float64Array.from(await readF32(backend, gram));
  backend.dispose(gram);
  return g;
}

/** Columns of the long side per panel: 4 + 4 panel rows of this length stay in L1 while a 4×4 block is summed. */
const PANEL = 256;

/**
 * A·Aᵀ (m ≤ n) or Aᵀ·A (m > n) of a row-major float32 m×n matrix, summed in float64: min(m, n)²,
 * symmetric. The long side is cut into panels of PANEL, each copied as [side, PANEL] rows so that
 * both orientations share one kernel, and memory beyond the Gram is one panel.
 */
export function hostGram(x: Float32Array, m: number, n: number): Float64Array {
  const fast = wasmGram(x, m, n);
  if (fast) return fast;
  return jsGram(x, m, n);
}

/** hostGram in JavaScript: the reference for the WebAssembly kernel, and where it does not run. */
export function jsGram(x: Float32Array, m: number, n: number): Float64Array {
  const side = Math.min(m, n);
  const len = Math.max(m, n);
  const g = new Float64Array(side * side);
  const panel = new Float64Array(side * PANEL);
  for (let t0 = 0; t0 < len; t0 += PANEL) {
    const width = Math.min(PANEL, len - t0);
    if (m <= n) {
      for (let i = 0; i < side; i++) for (let t = 0; t < width; t++) panel[i * width + t] = x[i * n + t0 + t]!;
    } else {
      for (let t = 0; t < width; t++) {
        const row = (t0 + t) * n;
        for (let i = 0; i < side; i++) panel[i * width + t] = x[row + i]!;
      }
    }
    addPanelGram(panel, side, width, g);
  }
  for (let i = 0; i < side; i++) for (let j = 0; j < i; j++) g[j * side + i] = g[i * side + j]!;
  return g;
}

/** g += P·Pᵀ on and below the diagonal (and inside the diagonal 4×4 blocks), P [side, width]. */
function addPanelGram(p: Float64Array, side: number, width: number, g: Float64Array): void {
  const blocked = side - (side % 4);
  for (let i = 0; i < blocked; i += 4) {
    const a0 = i * width;
    const a1 = a0 + width;
    const a2 = a1 + width;
    const a3 = a2 + width;
    for (let j = 0; j <= i; j += 4) {
      const b0 = j * width;
      const b1 = b0 + width;
      const b2 = b1 + width;
      const b3 = b2 + width;
      let s00 = 0, s01 = 0, s02 = 0, s03 = 0, s10 = 0, s11 = 0, s12 = 0, s13 = 0;
      let s20 = 0, s21 = 0, s22 = 0, s23 = 0, s30 = 0, s31 = 0, s32 = 0, s33 = 0;
      for (let t = 0; t < width; t++) {
        const x0 = p[a0 + t]!;
        const x1 = p[a1 + t]!;
        const x2 = p[a2 + t]!;
        const x3 = p[a3 + t]!;
        const y0 = p[b0 + t]!;
        const y1 = p[b1 + t]!;
        const y2 = p[b2 + t]!;
        const y3 = p[b3 + t]!;
        s00 += x0 * y0; s01 += x0 * y1; s02 += x0 * y2; s03 += x0 * y3;
        s10 += x1 * y0; s11 += x1 * y1; s12 += x1 * y2; s13 += x1 * y3;
        s20 += x2 * y0; s21 += x2 * y1; s22 += x2 * y2; s23 += x2 * y3;
        s30 += x3 * y0; s31 += x3 * y1; s32 += x3 * y2; s33 += x3 * y3;
      }
      const r0 = i * side + j;
      const r1 = r0 + side;
      const r2 = r1 + side;
      const r3 = r2 + side;
      g[r0]! += s00; g[r0 + 1]! += s01; g[r0 + 2]! += s02; g[r0 + 3]! += s03;
      g[r1]! += s10; g[r1 + 1]! += s11; g[r1 + 2]! += s12; g[r1 + 3]! += s13;
      g[r2]! += s20; g[r2 + 1]! += s21; g[r2 + 2]! += s22; g[r2 + 3]! += s23;
      g[r3]! += s30; g[r3 + 1]! += s31; g[r3 + 2]! += s32; g[r3 + 3]! += s33;
    }
  }
  for (let i = blocked; i < side; i++) {
    for (let j = 0; j <= i; j++) {
      let s = 0;
      for (let t = 0; t < width; t++) s += p[i * width + t]! * p[j * width + t]!;
      g[i * side + j]! += s;
    }
  }
}
