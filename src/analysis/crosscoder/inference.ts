// Running a trained crosscoder over raw activations: normalise, encode, keep latents by the
// inference threshold (or BatchTopK when no threshold is known, or every positive latent for L1
// crosscoders), decode. Everything returned is in normalised space.
import { createCpuEngine } from './cpu-engine.ts';
import type { CrosscoderEngine } from './engine.ts';
import { normalize, type CrosscoderModel } from './model.ts';
import type { SparseCode } from './select.ts';

export interface InferenceBatch {
  readonly code: SparseCode;
  /** Normalised inputs and reconstructions, [n, d] each. */
  readonly x: readonly [Float32Array, Float32Array];
  readonly recon: readonly [Float32Array, Float32Array];
}

export interface Inference {
  readonly model: CrosscoderModel;
  /** mode "threshold" needs model.threshold ≥ 0 (falls back to topk otherwise). */
  run(base: Float32Array, ft: Float32Array, n: number, mode?: 'threshold' | 'topk'): Promise<InferenceBatch>;
}

export function createInference(model: CrosscoderModel, engine?: CrosscoderEngine): Inference {
  const { d, D } = model.params;
  const e = engine ?? createCpuEngine({ d, D, codeNormalization: model.codeNormalization });
  e.setParams(model.params);
  return {
    model,
    async run(base, ft, n, mode = 'threshold') {
      if (base.length < n * d || ft.length < n * d) throw new Error(`crosscoder inference: expected ${n}×${d} values per model, got ${base.length} and ${ft.length}`);
      const xb = normalize(base, n, model.normalization, 0, new Float32Array(n * d));
      const xf = normalize(ft, n, model.normalization, 1, new Float32Array(n * d));
      e.setBatch(xb, xf, n);
      e.encode();
      if (model.activation === 'relu') await e.selectPositive();
      else if (mode === 'threshold' && model.threshold >= 0) await e.selectAbove(model.threshold);
      else await e.selectTopK(model.k * n, -1);
      e.decode();
      const [rb, rf] = await e.readReconstruction();
      return { code: await e.readCode(), x: [xb, xf], recon: [rb, rf] };
    },
  };
}

/** Sparse codes with the inference threshold: keeps f_j where s_j = f_j·w_j > θ. */
export async function encodeWithThreshold(model: CrosscoderModel, base: Float32Array, ft: Float32Array, n: number): Promise<SparseCode> {
  if (model.activation === 'batchtopk' && model.threshold < 0) throw new Error('encodeWithThreshold: the crosscoder has no inference threshold yet (train past thresholdStartStep)');
  return (await createInference(model).run(base, ft, n, 'threshold')).code;
}
