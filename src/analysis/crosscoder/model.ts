// The crosscoder's parameters, settings and activation normalisation, shared by every engine,
// the trainer, the file reader/writer and the latent analyses.
//
// Two models, m = 0 (base) and m = 1 (fine-tune), at one hook point of width d; D latents.
//   f = ReLU(Σ_m x^m W_enc^m + b_enc),   x̂^m = f W_dec^m + b_dec^m
// Layouts (row-major, chosen so that one latent's vectors are contiguous):
//   encW [2, D, d]: encW[(m·D + j)·d + i] = W_enc^m[i, j]   (the reference file stores [2, d, D])
//   encB [D]
//   decW [2, D, d]: decW[(m·D + j)·d + i] = W_dec^m[j, i] = d_j^m[i]   (same as the reference file)
//   decB [2, d]
import type { Rng } from './rng.ts';

export type FloatArray = Float32Array | Float64Array;

export const MODEL_NAMES = ['base', 'ft'] as const;

export interface CrosscoderParams<A extends FloatArray = Float32Array> {
  readonly d: number;
  readonly D: number;
  readonly encW: A;
  readonly encB: A;
  readonly decW: A;
  readonly decB: A;
}

/**
 * The weight w_j in the selection score s_j = f_j · w_j (the reference's "code normalization"):
 * crosscoder: Σ_m ‖d_j^m‖ (the default and what ALGORITHMS.md specifies); sae: sqrt(Σ_m ‖d_j^m‖²); none: 1.
 */
export type CodeNormalization = 'crosscoder' | 'sae' | 'none';

/** batchtopk: keep the k·B best scores per batch (or scores above θ); relu: every positive f (L1 crosscoders). */
export type Activation = 'batchtopk' | 'relu';

/** x' = (x − mean^m) · scale^m for model m; raw = x' / scale^m + mean^m. */
export interface Normalization {
  readonly mean: readonly [Float32Array, Float32Array];
  readonly scale: readonly [number, number];
  /** The root of the mean squared (centred) norm that normalised activations have: sqrt(E‖x'‖²). */
  readonly targetRms: number;
}

export interface CrosscoderModel {
  readonly params: CrosscoderParams;
  readonly activation: Activation;
  readonly codeNormalization: CodeNormalization;
  /** Latents kept per token on average in BatchTopK (k·B per batch). */
  readonly k: number;
  /** Inference threshold θ on scores (keep s_j > θ); negative when not yet estimated. */
  readonly threshold: number;
  readonly normalization: Normalization;
  /** Free-form settings and training summary, stored in the file's __metadata__. */
  readonly info: Readonly<Record<string, string>>;
}

export function identityNormalization(d: number): Normalization {
  return { mean: [new Float32Array(d), new Float32Array(d)], scale: [1, 1], targetRms: 1 };
}

export function zeroParams<A extends FloatArray>(d: number, D: number, make: (n: number) => A): CrosscoderParams<A> {
  return { d, D, encW: make(2 * D * d), encB: make(D), decW: make(2 * D * d), decB: make(2 * d) };
}

/**
 * Initialisation as in the reference (BatchTopKCrossCoder with init_with_transpose): every decoder
 * vector d_j^m gets an independent random direction and norm `initNorm` (reference default
 * norm_init_scale = 1.0; the reference draws kaiming-uniform entries before normalising, we draw
 * Gaussian ones so the direction is isotropic); the encoder is the decoder transposed; biases are 0.
 */
export function initParams(d: number, D: number, rng: Rng, initNorm = 1): CrosscoderParams {
  const p = zeroParams(d, D, (n) => new Float32Array(n));
  const v = new Float64Array(d);
  for (let row = 0; row < 2 * D; row++) {
    let ss = 0;
    for (let i = 0; i < d; i++) {
      v[i] = rng.normal();
      ss += v[i]! * v[i]!;
    }
    const s = initNorm / Math.sqrt(ss);
    for (let i = 0; i < d; i++) p.decW[row * d + i] = v[i]! * s;
  }
  p.encW.set(p.decW);
  return p;
}

export function cloneParams<A extends FloatArray, B extends FloatArray>(p: CrosscoderParams<A>, make: (n: number) => B): CrosscoderParams<B> {
  const copy = (a: A): B => {
    const out = make(a.length);
    out.set(a);
    return out;
  };
  return { d: p.d, D: p.D, encW: copy(p.encW), encB: copy(p.encB), decW: copy(p.decW), decB: copy(p.decB) };
}

/** ‖d_j^m‖ as [2, D]: norms[m·D + j]. */
export function decoderNorms(p: CrosscoderParams<FloatArray>): Float64Array {
  const { d, D, decW } = p;
  const out = new Float64Array(2 * D);
  for (let row = 0; row < 2 * D; row++) {
    let ss = 0;
    const o = row * d;
    for (let i = 0; i < d; i++) ss += decW[o + i]! * decW[o + i]!;
    out[row] = Math.sqrt(ss);
  }
  return out;
}

/** w_j of the selection score s_j = f_j · w_j. */
export function scoreWeights(p: CrosscoderParams<FloatArray>, mode: CodeNormalization): Float64Array {
  const n = decoderNorms(p);
  const D = p.D;
  const w = new Float64Array(D);
  for (let j = 0; j < D; j++) {
    const a = n[j]!;
    const b = n[D + j]!;
    w[j] = mode === 'crosscoder' ? a + b : mode === 'sae' ? Math.sqrt(a * a + b * b) : 1;
  }
  return w;
}

/**
 * Normalisation from data, as the reference does it (dictionary_learning's NormalizableMixin with
 * keep_relative_variance): per model, subtract the mean (when `center`) and multiply by one global
 * factor so that E‖x'‖² = targetRms². With center = false only the scale is applied (E‖x‖² about 0).
 */
export function computeNormalization(
  base: FloatArray,
  ft: FloatArray,
  n: number,
  d: number,
  opts: { targetRms?: number; center?: boolean } = {},
): Normalization {
  const targetRms = opts.targetRms ?? 1;
  const center = opts.center ?? true;
  if (n <= 0) throw new Error('computeNormalization: no tokens');
  const one = (x: FloatArray): [Float32Array, number] => {
    if (x.length < n * d) throw new Error(`computeNormalization: expected ${n}×${d} values, got ${x.length}`);
    const mean = new Float64Array(d);
    if (center) {
      for (let t = 0; t < n; t++) for (let i = 0; i < d; i++) mean[i]! += x[t * d + i]!;
      for (let i = 0; i < d; i++) mean[i]! /= n;
    }
    let ss = 0;
    for (let t = 0; t < n; t++) {
      for (let i = 0; i < d; i++) {
        const v = x[t * d + i]! - mean[i]!;
        ss += v * v;
      }
    }
    const rms = Math.sqrt(ss / n);
    return [Float32Array.from(mean), rms > 0 ? targetRms / rms : 1];
  };
  const [mb, sb] = one(base);
  const [mf, sf] = one(ft);
  return { mean: [mb, mf], scale: [sb, sf], targetRms };
}

/** Normalised copy of one model's activations [n, d]. */
export function normalize<A extends FloatArray>(x: FloatArray, n: number, norm: Normalization, m: 0 | 1, out: A): A {
  const d = norm.mean[m].length;
  const mean = norm.mean[m];
  const s = norm.scale[m];
  for (let t = 0; t < n; t++) {
    const o = t * d;
    for (let i = 0; i < d; i++) out[o + i] = (x[o + i]! - mean[i]!) * s;
  }
  return out;
}

/**
 * Geometric median of n points in R^d (Weiszfeld iterations, as the reference's initialisation of
 * the decoder bias from the first batch).
 */
export function geometricMedian(x: FloatArray, n: number, d: number, maxIter = 100, tol = 1e-5): Float64Array {
  const guess = new Float64Array(d);
  for (let t = 0; t < n; t++) for (let i = 0; i < d; i++) guess[i]! += x[t * d + i]!;
  for (let i = 0; i < d; i++) guess[i]! /= n;
  const next = new Float64Array(d);
  for (let it = 0; it < maxIter; it++) {
    next.fill(0);
    let wsum = 0;
    for (let t = 0; t < n; t++) {
      let ss = 0;
      for (let i = 0; i < d; i++) {
        const v = x[t * d + i]! - guess[i]!;
        ss += v * v;
      }
      const w = 1 / Math.max(Math.sqrt(ss), 1e-12);
      wsum += w;
      for (let i = 0; i < d; i++) next[i]! += w * x[t * d + i]!;
    }
    let moved = 0;
    for (let i = 0; i < d; i++) {
      const v = next[i]! / wsum;
      moved += (v - guess[i]!) ** 2;
      guess[i] = v;
    }
    if (Math.sqrt(moved) < tol) break;
  }
  return guess;
}
