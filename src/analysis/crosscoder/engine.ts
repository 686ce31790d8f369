// The numeric core of crosscoder training, as an interface: the CPU implementation
// (cpu-engine.ts) is the reference, and a WebGPU engine can implement the same calls with its
// buffers kept on the device. The engine owns parameters, Adam moments, gradients and the current
// batch; calls that need a value back (selection statistics, losses, read*) return promises so a
// GPU engine can map buffers, the others only enqueue work.
import type { CodeNormalization, CrosscoderParams, FloatArray } from './model.ts';
import type { SparseCode } from './select.ts';

export interface SelectInfo {
  /** Entries kept over the batch (k·B when at least that many scores are positive). */
  readonly kept: number;
  /** The smallest kept score s_j = f_j·w_j (−1 when nothing is kept): feeds the threshold EMA. */
  readonly minScore: number;
  /** Per latent, 1 when it is kept for some token of this batch. Valid until the next select. */
  readonly fired: Uint8Array;
}

export type Objective = 'l2' | 'mse' | 'l1';

export interface LossOptions {
  /**
   * l2: mean over tokens and models of ‖x^m − x̂^m‖₂ (the reference BatchTopK loss);
   * mse: mean over tokens and models of ‖x^m − x̂^m‖²;
   * l1: mean over tokens of Σ_m ‖x^m − x̂^m‖² + λ Σ_j f_j w_j (ALGORITHMS.md's L1 crosscoder).
   */
  readonly objective: Objective;
  readonly l1Lambda: number;
  /** Weight of the auxiliary loss (0 turns it off). */
  readonly auxAlpha: number;
  /** Dead latents used per token by the auxiliary loss (reference: d/2). */
  readonly auxK: number;
  /** Per latent, 1 when dead; null when none are. */
  readonly dead: Uint8Array | null;
}

export interface LossParts {
  /** The objective plus auxAlpha·auxk: what the gradients are of. */
  readonly loss: number;
  /** Mean over tokens and models of ‖x^m − x̂^m‖₂. */
  readonly l2: number;
  /** Mean over tokens and models of ‖x^m − x̂^m‖². */
  readonly mse: number;
  /** Normalised auxiliary loss (0 when no latent is dead). */
  readonly auxk: number;
  /** Mean over tokens of Σ_j f_j w_j. */
  readonly l1: number;
  /** Fraction of variance unexplained: Σ‖x − x̂‖² / Σ‖x − mean(x)‖² over tokens and both models. */
  readonly fvu: number;
}

export interface AdamOptions {
  readonly lr: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  /** Clip the global gradient norm to this before the step (0: no clipping). */
  readonly clipGradNorm: number;
}

export interface CrosscoderEngine {
  readonly d: number;
  readonly D: number;
  readonly codeNormalization: CodeNormalization;
  /** Replaces the parameters and resets the Adam state. */
  setParams(p: CrosscoderParams<FloatArray>): void;
  /** Sets b_dec^m (the trainer initialises it from the first batch) and leaves the rest alone. */
  setDecoderBias(m: 0 | 1, bias: FloatArray): void;
  readParams(): Promise<CrosscoderParams<FloatArray>>;
  /** Gradients of the last backward, laid out as the parameters. */
  readGrads(): Promise<CrosscoderParams<FloatArray>>;
  /** The current batch: normalised activations [n, d] of each model. */
  setBatch(base: FloatArray, ft: FloatArray, n: number): void;
  /** f = ReLU(Σ_m x^m W_enc^m + b_enc) for every token and latent. */
  encode(): void;
  /** BatchTopK over the batch: keeps the kTotal best scores; hint: last step's minScore (or ≤ 0). */
  selectTopK(kTotal: number, hint: number): Promise<SelectInfo>;
  /** Keeps f_j where s_j > theta (inference). */
  selectAbove(theta: number): Promise<SelectInfo>;
  /** Keeps every positive f (L1 crosscoders). */
  selectPositive(): Promise<SelectInfo>;
  /** x̂^m = b_dec^m + Σ over kept (j, f_j) of f_j d_j^m. */
  decode(): void;
  /** Loss of the current batch and its gradients (replacing earlier ones). */
  backward(opts: LossOptions): Promise<LossParts>;
  /** One Adam step on the last gradients. */
  adam(opts: AdamOptions): void;
  readCode(): Promise<SparseCode>;
  /** Reconstructions x̂^base, x̂^ft of the current batch, normalised, [n, d] each. */
  readReconstruction(): Promise<[Float32Array, Float32Array]>;
}
