// Weight diff of a LoRA adapter against its base, analytically: ΔW = s·B·A is never formed.
// Its spectrum and Frobenius norm come from the r×r problem (linalg/lora.ts); relative change and
// cosine need ⟨W_base, ΔW⟩ = s·⟨Bᵀ·W_base, A⟩, one [r, out]·[out, in] product on the backend.
import { FormatError } from '../../io/source.ts';
import type { WeightStore } from '../../io/store.ts';
import type { LoraAdapter } from '../../model/lora.ts';
import { loraSpectrum } from '../linalg/lora.ts';
import { readF32 } from '../linalg/randomized.ts';
import { spectralFields } from './spectrum.ts';
import type { MismatchedTensor, MissingTensor, RunOptions, TensorDiff, WeightsDiff } from './types.ts';

/**
 * One adapted weight given by its factors: ΔW = scaling · B · A, with shape [outFeatures, inFeatures].
 * `target` is the Hugging Face name of the base tensor ("model.layers.0.self_attn.q_proj.weight").
 * `transposed`: the base tensor is stored [in, out] (GPT-2 Conv1D with PEFT `fan_in_fan_out`,
 * embeddings), so the update is applied as ΔWᵀ.
 */
export interface LoraUpdate {
  target: string;
  /** [r, inFeatures], row-major. */
  A: Float32Array;
  /** [outFeatures, r], row-major. */
  B: Float32Array;
  r: number;
  inFeatures: number;
  outFeatures: number;
  scaling: number;
  transposed?: boolean;
}

const EPS64 = Number.EPSILON;

export interface DiffLoraOptions extends RunOptions {
  topK?: number;
  /** Names the adapter in error messages. */
  label?: string;
}

interface PendingUpdate extends Omit<LoraUpdate, 'A' | 'B'> {
  load(signal?: AbortSignal): Promise<{ A: Float32Array; B: Float32Array }>;
}

/**
 * Per-target statistics of a LoRA adapter over its base. The adapter is either a PEFT adapter
 * read by src/model/lora.ts (its factors are then read one target at a time) or a list of
 * LoraUpdate with the factors in memory.
 */
export async function diffLora(base: WeightStore, adapter: LoraAdapter | readonly LoraUpdate[], opts: DiffLoraOptions): Promise<WeightsDiff> {
  const label = opts.label ?? ('label' in adapter ? adapter.label : 'adapter');
  const topK = opts.topK ?? 16;
  const missing: MissingTensor[] = [];
  const mismatched: MismatchedTensor[] = [];
  const work: PendingUpdate[] = [];
  for (const t of pendingUpdates(adapter)) {
    const shape = t.transposed ? [t.inFeatures, t.outFeatures] : [t.outFeatures, t.inFeatures];
    const stored = base.tensors.get(t.target);
    if (!stored) missing.push({ name: t.target, shape, only_in: 'ft' });
    else if (stored.shape.length !== 2 || stored.shape[0] !== shape[0] || stored.shape[1] !== shape[1]) {
      mismatched.push({ name: t.target, base_shape: [...stored.shape], ft_shape: shape });
    } else work.push(t);
  }
  const tensors: TensorDiff[] = [];
  for (let i = 0; i < work.length; i++) {
    const pending = work[i]!;
    opts.signal?.throwIfAborted();
    const t: LoraUpdate = { ...pending, ...(await pending.load(opts.signal)) };
    checkFactors(t, label);
    const w = await base.readF32(t.target, opts.signal);
    tensors.push(await loraTensorDiff(opts, t, w, topK));
    opts.onProgress?.(i + 1, work.length, t.target);
  }
  return { tensors, missing, mismatched, unsupported: [] };
}

function pendingUpdates(adapter: LoraAdapter | readonly LoraUpdate[]): PendingUpdate[] {
  if (Array.isArray(adapter)) {
    return (adapter as readonly LoraUpdate[]).map(({ A, B, ...rest }) => ({ ...rest, load: async () => ({ A, B }) }));
  }
  const peft = adapter as LoraAdapter;
  return [...peft.targets.values()].map((t) => ({
    target: t.weight,
    r: t.r,
    inFeatures: t.shapeA[1],
    outFeatures: t.shapeB[0],
    scaling: t.scaling,
    transposed: t.transposed,
    load: (signal?: AbortSignal) => peft.readFactors(t, signal),
  }));
}

async function loraTensorDiff(opts: DiffLoraOptions, t: LoraUpdate, w: Float32Array, topK: number): Promise<TensorDiff> {
  const { backend } = opts;
  const spectrum = loraSpectrum({ a: t.A, b: t.B, r: t.r, inFeatures: t.inFeatures, outFeatures: t.outFeatures, scaling: t.scaling });
  let bb = 0;
  for (const v of w) bb += v * v;
  // ⟨W, B·A⟩ = ⟨Bᵀ·W, A⟩ for W [out, in]; for W stored [in, out], ⟨Wᵀ, B·A⟩ = ⟨(W·B)ᵀ, A⟩.
  const wt = backend.fromArray(w, t.transposed ? [t.inFeatures, t.outFeatures] : [t.outFeatures, t.inFeatures]);
  const b = backend.fromArray(t.B, [t.outFeatures, t.r]);
  const bt = t.transposed ? null : backend.transpose(b);
  const proj = bt ? backend.matmul(bt, wt) : backend.matmul(wt, b);
  const p = await readF32(backend, proj);
  for (const x of [wt, b, proj]) backend.dispose(x);
  if (bt) backend.dispose(bt);
  let inner = 0;
  for (let k = 0; k < t.r; k++) {
    for (let j = 0; j < t.inFeatures; j++) inner += t.A[k * t.inFeatures + j]! * (t.transposed ? p[j * t.r + k]! : p[k * t.inFeatures + j]!);
  }
  inner *= t.scaling;
  const frobenius = spectrum.frobenius;
  const baseNorm = Math.sqrt(bb);
  const ftNorm = Math.sqrt(Math.max(bb + 2 * inner + frobenius * frobenius, 0));
  const shape = t.transposed ? [t.inFeatures, t.outFeatures] : [t.outFeatures, t.inFeatures];
  const sigma1 = spectrum.values[0] ?? 0;
  return {
    name: t.target,
    shape,
    frobenius,
    relative: baseNorm > 0 ? frobenius / baseNorm : null,
    cosine: baseNorm > 0 && ftNorm > 0 ? (bb + inner) / (baseNorm * ftNorm) : null,
    base_frobenius: baseNorm,
    ft_frobenius: ftNorm,
    max_abs_delta: null,
    sparsity: null,
    ...spectralFields(spectrum.values, frobenius, Math.max(t.inFeatures, t.outFeatures) * EPS64 * sigma1, topK, `lora-factors(r=${t.r})`),
  };
}

function checkFactors(t: LoraUpdate, label: string): void {
  const dims = [t.r, t.inFeatures, t.outFeatures];
  if (!dims.every((d) => Number.isSafeInteger(d) && d > 0)) {
    throw new FormatError(label, `LoRA target "${t.target}" has invalid dimensions r=${t.r}, in=${t.inFeatures}, out=${t.outFeatures}`);
  }
  if (t.A.length !== t.r * t.inFeatures) throw new FormatError(label, `LoRA A for "${t.target}" has ${t.A.length} values, expected r·in = ${t.r}·${t.inFeatures}`);
  if (t.B.length !== t.outFeatures * t.r) throw new FormatError(label, `LoRA B for "${t.target}" has ${t.B.length} values, expected out·r = ${t.outFeatures}·${t.r}`);
  if (!Number.isFinite(t.scaling)) throw new FormatError(label, `LoRA scaling for "${t.target}" is ${t.scaling}`);
}
