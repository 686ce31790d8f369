// The exact spectrum of a LoRA update ΔW = s·B·A (B [out, r], A [r, in]) without forming ΔW:
// B = Q_B·R_B and Aᵀ = Q_A·R_A give ΔW = Q_B·(s·R_B·R_Aᵀ)·Q_Aᵀ, so ΔW has the singular values
// of the small matrix s·R_B·R_Aᵀ, and the same Frobenius norm. All in float64 on the host.
import { qrR, singularValues, transposeHost } from './dense.ts';

export interface LoraFactorsShape {
  /** [r, inFeatures], row-major. */
  a: ArrayLike<number>;
  /** [outFeatures, r], row-major. */
  b: ArrayLike<number>;
  r: number;
  inFeatures: number;
  outFeatures: number;
  scaling: number;
}

export interface LoraSpectrum {
  /** min(r, in, out) singular values of s·B·A, descending. */
  values: Float64Array;
  frobenius: number;
}

export function loraSpectrum(f: LoraFactorsShape): LoraSpectrum {
  const { r, inFeatures: nIn, outFeatures: nOut } = f;
  const rb = qrR(Float64Array.from(f.b), nOut, r);
  const ra = qrR(transposeHost(Float64Array.from(f.a), r, nIn), nIn, r);
  const rowsB = Math.min(nOut, r);
  const rowsA = Math.min(nIn, r);
  const core = new Float64Array(rowsB * rowsA);
  let frob2 = 0;
  for (let i = 0; i < rowsB; i++) {
    for (let j = 0; j < rowsA; j++) {
      let s = 0;
      for (let t = 0; t < r; t++) s += rb[i * r + t]! * ra[j * r + t]!;
      s *= f.scaling;
      core[i * rowsA + j] = s;
      frob2 += s * s;
    }
  }
  return { values: singularValues(core, rowsB, rowsA), frobenius: Math.sqrt(frob2) };
}
