// The full singular spectrum of a matrix through the Gram matrix of its smaller side: the
// backend forms A·Aᵀ (or Aᵀ·A) in float32, the host finds its eigenvalues in float64.
import type { Tensor } from '../../model/backend.ts';
import { symmetricEigenvalues, type EigenMethod } from './dense.ts';
import { matrixShape, readF32, type MatrixBackend } from './randomized.ts';

export interface GramSpectrum {
  /** min(m, n) singular values, descending; those at or below `floor` are reported as 0. */
  values: Float64Array;
  /**
   * Singular values below this cannot be told apart from the rounding of the float32 Gram and
   * are set to 0: σ_floor² = λ_floor = sqrt(max(m, n))·ε32·σ1². Measured rounding noise of
   * float32 Grams (blocked and sequential sums, up to 16384 long) stays 20× or more below λ_floor;
   * without the floor a rank-2 ΔW would show dozens of spurious σ ≈ 3e-4·σ1.
   */
  floor: number;
  method: EigenMethod;
}

const EPS32 = 2 ** -23;

export async function gramSingularValues(backend: MatrixBackend, a: Tensor, opts: { jacobiMaxN?: number } = {}): Promise<GramSpectrum> {
  const [m, n] = matrixShape(a);
  const side = Math.min(m, n);
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
  for (let i = 0; i < side; i++) {
    for (let j = 0; j < i; j++) {
      const s = (g[i * side + j]! + g[j * side + i]!) / 2;
      g[i * side + j] = s;
      g[j * side + i] = s;
    }
  }
  const { values: eig, method } = symmetricEigenvalues(g, side, opts.jacobiMaxN);
  const floor = gramFloor(m, n, Math.sqrt(Math.max(eig[0] ?? 0, 0)));
  const values = eig.map((v) => (v > floor * floor ? Math.sqrt(v) : 0));
  return { values, floor, method };
}

/** The smallest singular value a float32 Gram of an m×n matrix with largest value σ1 resolves (see GramSpectrum.floor). */
export function gramFloor(m: number, n: number, sigma1: number): number {
  return sigma1 * Math.sqrt(Math.sqrt(Math.max(m, n)) * EPS32);
}
