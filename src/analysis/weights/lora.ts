// Weight diff of a LoRA adapter against its base, analytically: ΔW = s·B·A is never formed.
// Its spectrum and Frobenius norm come from the r×r problem (linalg/lora.ts); relative change and
// cosine need ⟨W_base, ΔW⟩ = s·⟨Bᵀ·W_base, A⟩, one [r, out]·[out, in] product on the backend.
import { FormatError, readJson, type FileSet } from '../../io/source.ts';
import { openSafetensorsFolder } from '../../io/safetensors.ts';
import type { WeightStore } from '../../io/store.ts';
import { loraSpectrum } from '../linalg/lora.ts';
import { readF32 } from '../linalg/randomized.ts';
import { spectralFields } from './spectrum.ts';
import type { MismatchedTensor, MissingTensor, RunOptions, TensorDiff, WeightsDiff } from './types.ts';

/**
 * One adapted weight: ΔW = scaling · B · A, with shape [outFeatures, inFeatures].
 * `target` is the Hugging Face name of the base tensor ("model.layers.0.self_attn.q_proj.weight").
 * `transposed`: the base tensor is stored [in, out] (GPT-2 Conv1D with PEFT `fan_in_fan_out`,
 * embeddings), so the update is applied as ΔWᵀ.
 */
export interface LoraTarget {
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

export async function diffLora(base: WeightStore, targets: readonly LoraTarget[], opts: DiffLoraOptions): Promise<WeightsDiff> {
  const label = opts.label ?? 'adapter';
  const topK = opts.topK ?? 16;
  const missing: MissingTensor[] = [];
  const mismatched: MismatchedTensor[] = [];
  const work: LoraTarget[] = [];
  for (const t of targets) {
    checkFactors(t, label);
    const shape = t.transposed ? [t.inFeatures, t.outFeatures] : [t.outFeatures, t.inFeatures];
    const stored = base.tensors.get(t.target);
    if (!stored) missing.push({ name: t.target, shape, only_in: 'ft' });
    else if (stored.shape.length !== 2 || stored.shape[0] !== shape[0] || stored.shape[1] !== shape[1]) {
      mismatched.push({ name: t.target, base_shape: [...stored.shape], ft_shape: shape });
    } else work.push(t);
  }
  const tensors: TensorDiff[] = [];
  for (let i = 0; i < work.length; i++) {
    const t = work[i]!;
    opts.signal?.throwIfAborted();
    const w = await base.readF32(t.target, opts.signal);
    tensors.push(await loraTensorDiff(opts, t, w, topK));
    opts.onProgress?.(i + 1, work.length, t.target);
  }
  return { tensors, missing, mismatched, unsupported: [] };
}

async function loraTensorDiff(opts: DiffLoraOptions, t: LoraTarget, w: Float32Array, topK: number): Promise<TensorDiff> {
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

function checkFactors(t: LoraTarget, label: string): void {
  const dims = [t.r, t.inFeatures, t.outFeatures];
  if (!dims.every((d) => Number.isSafeInteger(d) && d > 0)) {
    throw new FormatError(label, `LoRA target "${t.target}" has invalid dimensions r=${t.r}, in=${t.inFeatures}, out=${t.outFeatures}`);
  }
  if (t.A.length !== t.r * t.inFeatures) throw new FormatError(label, `LoRA A for "${t.target}" has ${t.A.length} values, expected r·in = ${t.r}·${t.inFeatures}`);
  if (t.B.length !== t.outFeatures * t.r) throw new FormatError(label, `LoRA B for "${t.target}" has ${t.B.length} values, expected out·r = ${t.outFeatures}·${t.r}`);
  if (!Number.isFinite(t.scaling)) throw new FormatError(label, `LoRA scaling for "${t.target}" is ${t.scaling}`);
}

export interface PeftAdapter {
  targets: LoraTarget[];
  /** Adapter tensors that are not LoRA factors (trained biases, modules_to_save): not analysed. */
  ignored: string[];
  label: string;
}

interface PeftConfig {
  peft_type?: unknown;
  r?: unknown;
  lora_alpha?: unknown;
  use_rslora?: unknown;
  use_dora?: unknown;
  fan_in_fan_out?: unknown;
  alpha_pattern?: unknown;
}

const PREFIX = 'base_model.model.';

/**
 * A PEFT LoRA folder (adapter_config.json + adapter_model.safetensors) as LoraTargets. Scaling
 * follows PEFT: lora_alpha / r, or lora_alpha / sqrt(r) with use_rslora; alpha_pattern keys match
 * module names as PEFT's get_pattern_key does; r comes from each factor's shape.
 */
export async function readPeftAdapter(files: FileSet): Promise<PeftAdapter> {
  const configFile = files.get('adapter_config.json');
  if (!configFile) throw new FormatError('adapter folder', `no adapter_config.json (files: ${[...files.keys()].join(', ') || 'none'})`);
  const config = (await readJson(configFile)) as PeftConfig;
  const where = configFile.name;
  if (config.peft_type !== undefined && config.peft_type !== 'LORA') throw new FormatError(where, `peft_type is ${String(config.peft_type)}, only LORA adapters are supported`);
  if (config.use_dora === true) throw new FormatError(where, 'DoRA adapters (use_dora) are not supported: their ΔW depends on the base weight norms, not only on the LoRA factors');
  if (typeof config.lora_alpha !== 'number') throw new FormatError(where, `lora_alpha is missing or not a number (${JSON.stringify(config.lora_alpha)})`);
  const alphaPattern = (typeof config.alpha_pattern === 'object' && config.alpha_pattern !== null ? config.alpha_pattern : {}) as Record<string, unknown>;
  const store = await openSafetensorsFolder(files, 'adapter_model');
  const factors = new Map<string, { a?: string; b?: string; embedding: boolean }>();
  const ignored: string[] = [];
  for (const name of store.tensors.keys()) {
    const m = /^(.*)\.lora_(A|B)\.weight$/.exec(name) ?? /^(.*)\.lora_embedding_(A|B)$/.exec(name);
    if (!m) {
      ignored.push(name);
      continue;
    }
    const module = m[1]!.startsWith(PREFIX) ? m[1]!.slice(PREFIX.length) : m[1]!;
    const entry = factors.get(module) ?? { embedding: name.includes('lora_embedding_') };
    if (m[2] === 'A') entry.a = name;
    else entry.b = name;
    factors.set(module, entry);
  }
  const targets: LoraTarget[] = [];
  for (const [module, f] of factors) {
    if (!f.a || !f.b) throw new FormatError(store.label, `module "${module}" has lora_${f.a ? 'A' : 'B'} but no lora_${f.a ? 'B' : 'A'}`);
    const sa = store.tensors.get(f.a)!.shape;
    const sb = store.tensors.get(f.b)!.shape;
    if (sa.length !== 2 || sb.length !== 2 || sa[0] !== sb[1]) {
      throw new FormatError(store.label, `module "${module}": lora_A [${sa.join(', ')}] and lora_B [${sb.join(', ')}] do not fit as B·A`);
    }
    const r = sa[0]!;
    const patternKey = Object.keys(alphaPattern).find((key) => matchesPattern(key, module));
    const alpha = patternKey !== undefined ? alphaPattern[patternKey] : config.lora_alpha;
    if (typeof alpha !== 'number') throw new FormatError(where, `alpha_pattern["${patternKey}"] is not a number`);
    targets.push({
      target: `${module}.weight`,
      A: await store.readF32(f.a),
      B: await store.readF32(f.b),
      r,
      inFeatures: sa[1]!,
      outFeatures: sb[0]!,
      scaling: config.use_rslora === true ? alpha / Math.sqrt(r) : alpha / r,
      transposed: f.embedding || config.fan_in_fan_out === true,
    });
  }
  return { targets, ignored, label: store.label };
}

function matchesPattern(key: string, module: string): boolean {
  try {
    return new RegExp(`^(.*\\.)?(${key})$`).test(module);
  } catch {
    return key === module;
  }
}
