// Per-tensor weight diff of two checkpoints, ΔW = W_ft − W_base (ALGORITHMS.md, Weight space).
// Streams: one tensor pair is read, analysed and dropped before the next, so memory is bounded
// by the largest tensor (base, fine-tune and ΔW in float32), not by the model.
import type { StoredDType, WeightStore } from '../../io/store.ts';
import type { MatrixBackend } from '../linalg/randomized.ts';
import { matrixSpectrum, type SpectralFields } from './spectrum.ts';
import type { MismatchedTensor, MissingTensor, RunOptions, SpectrumOptions, TensorDiff, UnsupportedTensor, WeightsDiff } from './types.ts';

const NOT_WEIGHTS: ReadonlySet<StoredDType> = new Set(['I64', 'I32', 'I16', 'I8', 'U8', 'BOOL']);

export type DiffWeightsOptions = RunOptions & SpectrumOptions;

export async function diffWeights(base: WeightStore, ft: WeightStore, opts: DiffWeightsOptions): Promise<WeightsDiff> {
  const missing: MissingTensor[] = [];
  const mismatched: MismatchedTensor[] = [];
  const unsupported: UnsupportedTensor[] = [];
  const pairs: Array<{ name: string; shape: number[] }> = [];
  for (const [name, b] of base.tensors) {
    const f = ft.tensors.get(name);
    if (!f) missing.push({ name, shape: [...b.shape], only_in: 'base' });
    else if (!sameShape(b.shape, f.shape)) mismatched.push({ name, base_shape: [...b.shape], ft_shape: [...f.shape] });
    else if (NOT_WEIGHTS.has(b.dtype) || NOT_WEIGHTS.has(f.dtype)) unsupported.push({ name, reason: `not floating point (${b.dtype} in base, ${f.dtype} in fine-tune)` });
    else pairs.push({ name, shape: [...b.shape] });
  }
  for (const [name, f] of ft.tensors) if (!base.tensors.has(name)) missing.push({ name, shape: [...f.shape], only_in: 'ft' });

  const tensors: TensorDiff[] = [];
  for (let i = 0; i < pairs.length; i++) {
    const { name, shape } = pairs[i]!;
    opts.signal?.throwIfAborted();
    const w0 = await base.readF32(name, opts.signal);
    const w1 = await ft.readF32(name, opts.signal);
    tensors.push(await diffTensor(opts.backend, name, shape, w0, w1, opts));
    opts.onProgress?.(i + 1, pairs.length, name);
  }
  return { tensors, missing, mismatched, unsupported };
}

/**
 * One tensor pair. Vectors (0-D, 1-D) get the elementwise statistics only; tensors of rank ≥ 2
 * are analysed as the matrix [shape[0], rest] (rows are output features).
 */
export async function diffTensor(
  backend: MatrixBackend,
  name: string,
  shape: readonly number[],
  w0: Float32Array,
  w1: Float32Array,
  opts: SpectrumOptions,
): Promise<TensorDiff> {
  const count = w0.length;
  const delta = new Float32Array(count);
  let bb = 0;
  let ff = 0;
  let bf = 0;
  let dd = 0;
  let maxBase = 0;
  let maxDelta = 0;
  let zero = 0;
  let belowMicro = 0;
  for (let i = 0; i < count; i++) {
    const b = w0[i]!;
    const f = w1[i]!;
    delta[i] = f - b;
    const d = delta[i]!;
    bb += b * b;
    ff += f * f;
    bf += b * f;
    dd += d * d;
    maxBase = Math.max(maxBase, Math.abs(b));
    maxDelta = Math.max(maxDelta, Math.abs(d));
    if (d === 0) zero++;
    if (Math.abs(d) <= 1e-6) belowMicro++;
  }
  const relativeEpsilon = 1e-4 * maxBase;
  let belowRelative = 0;
  for (let i = 0; i < count; i++) if (Math.abs(delta[i]!) <= relativeEpsilon) belowRelative++;
  const frobenius = Math.sqrt(dd);
  const baseNorm = Math.sqrt(bb);
  const ftNorm = Math.sqrt(ff);
  const elementwise = {
    name,
    shape: [...shape],
    frobenius,
    relative: baseNorm > 0 ? frobenius / baseNorm : null,
    cosine: baseNorm > 0 && ftNorm > 0 ? bf / (baseNorm * ftNorm) : null,
    base_frobenius: baseNorm,
    ft_frobenius: ftNorm,
    max_abs_delta: maxDelta,
    sparsity: [
      { epsilon: 0, fraction: count ? zero / count : 1 },
      { epsilon: 1e-6, fraction: count ? belowMicro / count : 1 },
      { epsilon: relativeEpsilon, fraction: count ? belowRelative / count : 1 },
    ],
  };
  if (!Number.isFinite(dd) || !Number.isFinite(bb) || !Number.isFinite(ff)) return { ...elementwise, ...noSpectrum('non-finite values: no spectrum') };
  if (shape.length < 2 || count === 0) return { ...elementwise, ...noSpectrum('vector') };
  const rows = shape[0]!;
  return { ...elementwise, ...(await matrixSpectrum(backend, delta, rows, count / rows, frobenius, opts)) };
}

function noSpectrum(method: string): SpectralFields {
  return {
    spectral: null,
    nuclear: null,
    effective_rank: null,
    energy_50: null,
    energy_90: null,
    energy_99: null,
    top_energy_fraction: null,
    numerical_rank: null,
    rank_tolerance: null,
    top_singular_values: [],
    method,
  };
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}
