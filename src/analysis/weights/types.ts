// Result objects of the weight-space analyses, JSON-ready: field names are those the CLI prints
// (CLI.md, `weights`), snake_case, with null where a value does not apply.
import type { MatrixBackend } from '../linalg/randomized.ts';

export interface SparsityLevel {
  /** Threshold: 0, 1e-6, and 1e-4·max|W_base| (in that order). */
  epsilon: number;
  /** Fraction of entries with |ΔW_ij| ≤ epsilon. */
  fraction: number;
}

export interface TensorDiff {
  name: string;
  shape: number[];
  /** ‖ΔW‖_F. */
  frobenius: number;
  /** ‖ΔW‖_F / ‖W_base‖_F; null when W_base is zero. */
  relative: number | null;
  /** Cosine of W_base and W_ft flattened; null when either is zero. */
  cosine: number | null;
  base_frobenius: number;
  ft_frobenius: number;
  /** max|ΔW_ij|; null on the LoRA path, which never forms ΔW. */
  max_abs_delta: number | null;
  /** null on the LoRA path. */
  sparsity: SparsityLevel[] | null;
  /** σ1 of ΔW; null for vectors. */
  spectral: number | null;
  /** Σσ_i; null for vectors, and for matrices whose full spectrum was not computed. */
  nuclear: number | null;
  /** Roy & Vetterli effective rank; null as nuclear. */
  effective_rank: number | null;
  /** Energy ranks: smallest r with Σ_{i≤r} σ_i² ≥ q·Σσ_i²; null as nuclear. */
  energy_50: number | null;
  energy_90: number | null;
  energy_99: number | null;
  /** σ1² / Σσ_i² (exact from ‖ΔW‖_F², so it is known even without the full spectrum); null for vectors. */
  top_energy_fraction: number | null;
  /** Count of σ_i > rank_tolerance; null as nuclear. */
  numerical_rank: number | null;
  /**
   * σ at or below this count as zero for numerical_rank: max(m, n)·ε32·σ1 (numpy's matrix_rank
   * convention for float32 data), or the resolution of the float32 Gram when that ran and is coarser.
   */
  rank_tolerance: number | null;
  /** Up to topK largest singular values, descending; empty for vectors. */
  top_singular_values: number[];
  /**
   * How the numbers were obtained, e.g. "randomized(l=26,q=3,cholqr2); spectrum gram(float64 host)/jacobi,
   * floor 4.3e-7·σ1; top-16 from gram".
   */
  method: string;
}

export interface MissingTensor {
  name: string;
  shape: number[];
  /** Which side has it. */
  only_in: 'base' | 'ft';
}

export interface MismatchedTensor {
  name: string;
  base_shape: number[];
  ft_shape: number[];
}

export interface UnsupportedTensor {
  name: string;
  reason: string;
}

export interface WeightsDiff {
  tensors: TensorDiff[];
  missing: MissingTensor[];
  mismatched: MismatchedTensor[];
  /** Tensors present in both with the same shape that hold no floating-point weights (integer buffers). */
  unsupported: UnsupportedTensor[];
}

export interface SpectrumOptions {
  /** Singular values reported per matrix. Default 16. */
  topK?: number;
  /** Rows per block of the randomized block Krylov. Default ⌈topK/2⌉ + 4. */
  krylovBlock?: number;
  /** Krylov steps d (2d + 1 passes over ΔW). Default 4. */
  krylovDepth?: number;
  /** Seed of the Gaussian test matrix. */
  seed?: number;
  /**
   * The full spectrum (nuclear norm, effective rank, energy ranks) comes from the Gram matrix of
   * the smaller side when that side is at most this long. Default 4096. Cost: the Gram
   * (min(m, n)²·max(m, n)/2 multiply-adds, see preciseGramMaxWork) plus 4/3·min(m, n)³ flops on the host.
   */
  fullSpectrumMaxSide?: number;
  /** Jacobi eigenvalues up to this Gram size, tridiagonal QL above. Default 256. */
  jacobiMaxN?: number;
  /**
   * The Gram is summed in float64 on the host (resolving σ down to ≈ 1e-6·σ1) when that costs at most
   * this many multiply-adds, min(m, n)²·max(m, n)/2, and in float32 on the backend (≈ 1e-3·σ1) above.
   * Default 2³⁴ (linalg/gram.ts, PRECISE_GRAM_MAX_WORK).
   */
  preciseGramMaxWork?: number;
}

export interface RunOptions {
  backend: MatrixBackend;
  signal?: AbortSignal;
  /** Called after each tensor with the number done so far. */
  onProgress?: (done: number, total: number, name: string) => void;
}
