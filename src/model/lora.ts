// PEFT LoRA adapters: adapter_config.json + adapter_model.safetensors. The update of a target weight
// is ΔW = scaling · B A with A [r, in], B [out, r], scaling = alpha / r (alpha / sqrt(r) with rsLoRA).
// Merged into the base weights at load (load.ts); the factors stay readable for analyses.
import { checkFinite, countNonFinite, type FiniteOptions } from '../io/finite.ts';
import { openSafetensorsFolder } from '../io/safetensors.ts';
import { FormatError, readJson, type FileSet } from '../io/source.ts';
import type { WeightStore } from '../io/store.ts';

export interface LoraConfig {
  r: number;
  alpha: number;
  useRslora: boolean;
  targetModules: readonly string[] | string;
  fanInFanOut: boolean;
  rankPattern: Readonly<Record<string, number>>;
  alphaPattern: Readonly<Record<string, number>>;
}

export interface LoraTarget {
  /** The adapted weight's name in the base checkpoint ("model.layers.0.self_attn.q_proj.weight"). */
  weight: string;
  /** Module path as PEFT names it ("model.layers.0.self_attn.q_proj"). */
  module: string;
  aName: string;
  bName: string;
  /** A [r, in] and B [out, r], in and out of the layer (not of the stored matrix). */
  shapeA: readonly [number, number];
  shapeB: readonly [number, number];
  r: number;
  alpha: number;
  scaling: number;
  /** The base stores this weight [in, out] (GPT-2 Conv1D with fan_in_fan_out, embeddings): ΔW is added transposed. */
  transposed: boolean;
}

export interface LoraFactors {
  A: Float32Array;
  B: Float32Array;
}

export interface LoraAdapter {
  /** Names the adapter's files in messages. */
  readonly label: string;
  readonly config: LoraConfig;
  /** By base weight name. */
  readonly targets: ReadonlyMap<string, LoraTarget>;
  readFactors(target: LoraTarget, signal?: AbortSignal): Promise<LoraFactors>;
}

/** A PEFT adapter folder. */
export async function readLoraAdapter(files: FileSet, opts: FiniteOptions = {}): Promise<LoraAdapter> {
  const configFile = files.get('adapter_config.json');
  if (!configFile) throw new FormatError('adapter folder', `no adapter_config.json (files: ${[...files.keys()].join(', ') || 'none'})`);
  const store = checkFinite(await openSafetensorsFolder(files, 'adapter_model'), opts);
  return loraAdapterFromStore(store, await readJson(configFile), configFile.name);
}

export function loraAdapterFromStore(store: WeightStore, rawConfig: unknown, configLabel = 'adapter_config.json'): LoraAdapter {
  const config = parseLoraConfig(rawConfig, configLabel);
  const label = store.label;
  const factors = new Map<string, { A?: string; B?: string; embedding: boolean }>();
  for (const name of store.tensors.keys()) {
    const m = /^(?:base_model\.model\.)?(.+)\.(lora_A|lora_B|lora_embedding_A|lora_embedding_B)(?:\.[A-Za-z0-9_-]+)?$/.exec(name.replace(/\.weight$/, ''));
    if (!m || name.endsWith('.bias')) {
      throw new FormatError(label, `tensor "${name}" is not a LoRA factor (lora_A / lora_B): adapters with biases, DoRA or modules_to_save are not supported`);
    }
    const [, module, kind] = m as unknown as [string, string, string];
    const entry = factors.get(module) ?? { embedding: kind.startsWith('lora_embedding') };
    if (kind.endsWith('A')) entry.A = name;
    else entry.B = name;
    factors.set(module, entry);
  }

  const targets = new Map<string, LoraTarget>();
  const untargeted = [...factors.keys()].filter((module) => !isTargeted(config.targetModules, module));
  if (untargeted.length > 0) {
    throw new FormatError(
      label,
      `holds LoRA factors for ${untargeted.length === factors.size ? 'modules' : `${untargeted.length} modules`} that target_modules [${[config.targetModules].flat().join(', ')}] in ${configLabel} does not name (${untargeted.slice(0, 3).join(', ')}${untargeted.length > 3 ? ', …' : ''}): the config and the weights disagree`,
    );
  }
  for (const [module, f] of factors) {
    if (!f.A || !f.B) throw new FormatError(label, `module "${module}" has lora_${f.A ? 'A' : 'B'} but no lora_${f.A ? 'B' : 'A'}`);
    const a = store.tensors.get(f.A)!.shape;
    const b = store.tensors.get(f.B)!.shape;
    if (a.length !== 2 || b.length !== 2) throw new FormatError(label, `LoRA factors of "${module}" must be 2-D, got A [${a.join(', ')}] and B [${b.join(', ')}]`);
    // Embedding factors are stored A [r, vocab], B [d, r]; linear ones A [r, in], B [out, r].
    const r = a[0]!;
    if (b[1] !== r) throw new FormatError(label, `LoRA factors of "${module}" disagree on the rank: A [${a.join(', ')}], B [${b.join(', ')}]`);
    const configuredR = patternValue(config.rankPattern, module) ?? config.r;
    if (configuredR !== r) throw new FormatError(label, `"${module}" has rank ${r} but ${configLabel} says r = ${configuredR}`);
    const alpha = patternValue(config.alphaPattern, module) ?? config.alpha;
    targets.set(`${module}.weight`, {
      weight: `${module}.weight`,
      module,
      aName: f.A,
      bName: f.B,
      shapeA: [a[0]!, a[1]!],
      shapeB: [b[0]!, b[1]!],
      r,
      alpha,
      scaling: config.useRslora ? alpha / Math.sqrt(r) : alpha / r,
      transposed: f.embedding || config.fanInFanOut,
    });
  }
  if (targets.size === 0) throw new FormatError(label, 'holds no LoRA factors');
  return {
    label,
    config,
    targets,
    async readFactors(target, signal) {
      return { A: await store.readF32(target.aName, signal), B: await store.readF32(target.bName, signal) };
    },
  };
}

function parseLoraConfig(raw: unknown, file: string): LoraConfig {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new FormatError(file, 'is not a JSON object');
  const c = raw as Record<string, unknown>;
  const get = (key: string): unknown => (Object.hasOwn(c, key) ? c[key] : undefined);
  const peftType = get('peft_type');
  if (peftType !== undefined && peftType !== 'LORA') throw new FormatError(file, `peft_type ${JSON.stringify(peftType)} is not LORA`);
  if (get('use_dora') === true) throw new FormatError(file, 'DoRA adapters (use_dora) are not supported');
  const num = (key: string, v = get(key)): number => {
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new FormatError(file, `"${key}" must be a positive number, got ${JSON.stringify(v)}`);
    if (v > MAX_LORA_NUMBER) throw new FormatError(file, `"${key}" is ${v}, above the limit of ${MAX_LORA_NUMBER} for it`);
    return v;
  };
  const record = (key: string): Record<string, number> => {
    const v = get(key);
    if (v === undefined || v === null) return {};
    if (typeof v !== 'object' || Array.isArray(v)) throw new FormatError(file, `"${key}" must map module names to numbers`);
    const out: Record<string, number> = Object.create(null) as Record<string, number>;
    for (const [k, x] of Object.entries(v)) out[k] = num(`${key}.${k}`, x);
    return out;
  };
  const targets = get('target_modules');
  if (targets !== undefined && targets !== null && typeof targets !== 'string' && !(Array.isArray(targets) && targets.every((t) => typeof t === 'string'))) {
    throw new FormatError(file, '"target_modules" must be a module name pattern or a list of module names');
  }
  return {
    r: num('r'),
    alpha: num('lora_alpha'),
    useRslora: get('use_rslora') === true,
    targetModules: typeof targets === 'string' ? targets : Array.isArray(targets) ? (targets as string[]) : [],
    fanInFanOut: get('fan_in_fan_out') === true,
    rankPattern: record('rank_pattern'),
    alphaPattern: record('alpha_pattern'),
  };
}

/** Largest r or lora_alpha accepted: far above real adapters, low enough that α/r · B A stays finite. */
const MAX_LORA_NUMBER = 1e6;

/**
 * Whether target_modules names a module, as PEFT's check_target_module_exists decides for a list:
 * the module itself, or a name it ends with after a dot. A string is a regular expression to PEFT;
 * none is built from a file here, so only "all-linear" and plain names are checked, other
 * expressions are taken as given.
 */
function isTargeted(targets: readonly string[] | string, module: string): boolean {
  if (typeof targets === 'string') return targets === 'all-linear' || /[^\w.-]/.test(targets) || suffixMatch(targets, module);
  return targets.length === 0 || targets.some((t) => suffixMatch(t, module));
}

const suffixMatch = (key: string, module: string) => module === key || module.endsWith(`.${key}`);

/**
 * The value of the first rank_pattern / alpha_pattern key naming the module. PEFT matches keys as
 * regular expressions, `(.*\.)?key$`; here a key is matched literally, as the module or a dotted
 * suffix of it, which is what PEFT writes (module names) and costs one comparison per key.
 */
function patternValue(patterns: Readonly<Record<string, number>>, module: string): number | undefined {
  for (const key of Object.keys(patterns)) if (suffixMatch(key, module)) return patterns[key];
  return undefined;
}

/** ΔW = scaling · B A in the layout of the base weight ([out, in], or [in, out] when transposed). */
export function loraDelta(target: LoraTarget, f: LoraFactors): Float32Array {
  const [r, nIn] = target.shapeA;
  const nOut = target.shapeB[0];
  const delta = new Float32Array(nOut * nIn);
  const row = new Float64Array(nIn);
  for (let o = 0; o < nOut; o++) {
    row.fill(0);
    for (let k = 0; k < r; k++) {
      const b = f.B[o * r + k]!;
      if (b === 0) continue;
      const ao = k * nIn;
      for (let i = 0; i < nIn; i++) row[i]! += b * f.A[ao + i]!;
    }
    // Rounded to float32 before scaling, as PEFT computes (B @ A) * scaling in float32.
    if (target.transposed) for (let i = 0; i < nIn; i++) delta[i * nOut + o] = Math.fround(row[i]!) * target.scaling;
    else for (let i = 0; i < nIn; i++) delta[o * nIn + i] = Math.fround(row[i]!) * target.scaling;
  }
  return delta;
}

/** W + ΔW as a new array; `shape` is the base weight's stored shape, checked against the factors. */
export function mergeLora(w: Float32Array, shape: readonly number[], target: LoraTarget, f: LoraFactors): Float32Array {
  const [r, nIn] = target.shapeA;
  const nOut = target.shapeB[0];
  const expected = target.transposed ? [nIn, nOut] : [nOut, nIn];
  if (shape.length !== 2 || shape[0] !== expected[0] || shape[1] !== expected[1] || f.A.length !== r * nIn || f.B.length !== nOut * r) {
    throw new FormatError(target.aName, `LoRA factors A [${target.shapeA.join(', ')}], B [${target.shapeB.join(', ')}] do not fit "${target.weight}" [${shape.join(', ')}]`);
  }
  const delta = loraDelta(target, f);
  for (let i = 0; i < delta.length; i++) delta[i] = w[i]! + delta[i]!;
  // Finite weights and factors (checked as read) can still overflow through the scaling.
  const out = countNonFinite(delta);
  if (out.nan + out.inf > 0) {
    const before = countNonFinite(w);
    const fa = countNonFinite(f.A);
    const fb = countNonFinite(f.B);
    if (before.nan + before.inf + fa.nan + fa.inf + fb.nan + fb.inf === 0) {
      throw new FormatError(target.aName, `the LoRA update of "${target.weight}" overflows float32 (${out.nan + out.inf} values are not finite with scaling ${target.scaling}, from lora_alpha ${target.alpha} and r ${target.r})`);
    }
  }
  return delta;
}

/**
 * The base store with the adapter merged into its targets, read lazily tensor by tensor: what an
 * adapter "fine-tune" looks like to analyses that compare stores (task vectors, weight diffs).
 * Adapted tensors are reported as F32 (they are computed in float32).
 */
export function mergedStore(base: WeightStore, adapter: LoraAdapter): WeightStore {
  const tensors = new Map(base.tensors);
  for (const t of adapter.targets.values()) {
    const stored = base.tensors.get(t.weight);
    if (!stored) throw new FormatError(adapter.label, `adapts "${t.weight}", which ${base.label} does not have: the adapter was trained on another model`);
    tensors.set(t.weight, { ...stored, dtype: 'F32', byteLength: stored.shape.reduce((a, b) => a * b, 1) * 4 });
  }
  return {
    label: `${base.label} + ${adapter.label}`,
    tensors,
    async readF32(name, signal) {
      const w = await base.readF32(name, signal);
      const target = adapter.targets.get(name);
      if (!target) return w;
      return mergeLora(w, base.tensors.get(name)!.shape, target, await adapter.readFactors(target, signal));
    },
  };
}
