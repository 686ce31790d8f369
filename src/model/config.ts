// One canonical description of a decoder-only transformer, parsed from a Hugging Face config.json
// (transformers 4 style with rope_theta/rope_scaling, or 5 style with rope_parameters).
import { FormatError } from '../io/source.ts';
import type { Activation, RopeParams, RopeScaling } from './backend.ts';

export const ARCHITECTURES = ['gpt2', 'llama', 'mistral', 'qwen2', 'qwen3', 'phi3', 'gemma2', 'gemma3'] as const;
export type Architecture = (typeof ARCHITECTURES)[number];

export interface LayerConfig {
  /** Sliding attention window in tokens; 0 for full attention. */
  window: number;
  /** Rotary embedding of this layer (Gemma 3 uses another θ on its sliding layers); absent with learned positions. */
  rope?: RopeParams;
  /** Multiplier of q·k before softmax. */
  attnScale: number;
}

export interface ModelConfig {
  architecture: Architecture;
  /** model_type as written in the config (e.g. "gemma3_text"). */
  modelType: string;
  dModel: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  dMlp: number;
  vocab: number;
  maxPositions: number;
  norm: { kind: 'rms' | 'layer'; eps: number; /** Gemma: scale by (1 + w). */ addOne: boolean };
  activation: Activation;
  /** act(gate) · up (Llama family) rather than act(W_in x) (GPT-2). */
  gatedMlp: boolean;
  positions: 'rope' | 'learned';
  layers: LayerConfig[];
  tiedEmbeddings: boolean;
  /** Embeddings are multiplied by this (Gemma: sqrt(dModel) rounded to float32); 1 otherwise. */
  embedScale: number;
  /** Gemma 2/3: norms after attention and after the MLP, before the residual add. */
  sandwichNorms: boolean;
  /** Per-head RMS norm of q and k before rotary (Qwen3, Gemma 3). */
  qkNorm: boolean;
  /** Gemma 2 soft-capping: 0 for none. */
  attnSoftcap: number;
  finalSoftcap: number;
  bias: { qkv: boolean; attnOut: boolean; mlp: boolean };
  bosTokenId?: number;
  eosTokenIds: number[];
  /** Storage dtype named by the config ("float32", "bfloat16"), if any. */
  dtype?: string;
}

type Raw = Record<string, unknown>;

class Reader {
  constructor(
    readonly raw: Raw,
    readonly file: string,
  ) {}

  has(key: string): boolean {
    return this.get(key) !== undefined && this.get(key) !== null;
  }

  /** The value of an own property: keys such as "constructor" are not looked up on the prototype. */
  get(key: string): unknown {
    return Object.hasOwn(this.raw, key) ? this.raw[key] : undefined;
  }

  num(key: string, fallback?: number): number {
    const v = this.get(key);
    if (v === undefined || v === null) {
      if (fallback !== undefined) return fallback;
      throw new FormatError(this.file, `"${key}" is missing`);
    }
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new FormatError(this.file, `"${key}" must be a number, got ${JSON.stringify(v)}`);
    return v;
  }

  /** A number in (min, max] or [min, max] (`open` false): ranges that keep the arithmetic meaningful. */
  range(key: string, fallback: number | undefined, min: number, max: number, openMin = true): number {
    const v = this.num(key, fallback);
    if (openMin ? !(v > min) : !(v >= min)) throw new FormatError(this.file, `"${key}" must be ${openMin ? 'greater than' : 'at least'} ${min}, got ${v}`);
    if (v > max) throw new FormatError(this.file, `"${key}" is ${v}, above the limit of ${max} for it`);
    return v;
  }

  int(key: string, fallback?: number, max = Number.MAX_SAFE_INTEGER): number {
    const v = this.num(key, fallback);
    if (!Number.isInteger(v) || v < 0) throw new FormatError(this.file, `"${key}" must be a non-negative integer, got ${v}`);
    if (v > max) throw new FormatError(this.file, `"${key}" is ${v}, above the limit of ${max} for it`);
    return v;
  }

  /** A size: an integer in 1..max. */
  size(key: string, max: number, fallback?: number): number {
    const v = this.int(key, fallback, max);
    if (v === 0) throw new FormatError(this.file, `"${key}" must be at least 1, got 0`);
    return v;
  }

  bool(key: string, fallback: boolean): boolean {
    const v = this.get(key);
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'boolean') throw new FormatError(this.file, `"${key}" must be true or false, got ${JSON.stringify(v)}`);
    return v;
  }

  str(key: string): string | undefined {
    const v = this.get(key);
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'string') throw new FormatError(this.file, `"${key}" must be a string, got ${JSON.stringify(v)}`);
    return v;
  }

  obj(key: string): Raw | undefined {
    const v = this.get(key);
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'object' || Array.isArray(v)) throw new FormatError(this.file, `"${key}" must be an object`);
    return v as Raw;
  }
}

/** Upper limits on sizes read from a config, far above any released model: past them a config is refused before anything is allocated. */
export const CONFIG_LIMITS = {
  layers: 1024,
  width: 1 << 17,
  heads: 4096,
  headDim: 4096,
  mlp: 1 << 20,
  vocab: 1 << 24,
  positions: 1 << 24,
} as const;

const MODEL_TYPES = new Map<string, Architecture>(Object.entries({
  gpt2: 'gpt2',
  llama: 'llama',
  mistral: 'mistral',
  qwen2: 'qwen2',
  qwen3: 'qwen3',
  phi3: 'phi3',
  gemma2: 'gemma2',
  gemma3: 'gemma3',
  gemma3_text: 'gemma3',
}));

const ACTIVATIONS = new Map<string, Activation>(Object.entries({
  silu: 'silu',
  swish: 'silu',
  relu: 'relu',
  gelu: 'gelu',
  gelu_new: 'gelu_tanh',
  gelu_fast: 'gelu_tanh',
  gelu_pytorch_tanh: 'gelu_tanh',
  gelu_tanh: 'gelu_tanh',
}));

/** Parses a Hugging Face config.json object. `file` names the source in errors. */
export function parseConfig(json: unknown, file = 'config.json'): ModelConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new FormatError(file, 'is not a JSON object');
  let raw = json as Raw;
  const modelType = Object.hasOwn(raw, 'model_type') ? raw.model_type : undefined;
  if (typeof modelType !== 'string') throw new FormatError(file, 'has no "model_type": cannot tell the architecture');
  // Multimodal Gemma 3 keeps the language model's settings in text_config.
  const textConfig = Object.hasOwn(raw, 'text_config') ? raw.text_config : undefined;
  if (modelType === 'gemma3' && textConfig && typeof textConfig === 'object' && !Array.isArray(textConfig)) raw = { ...(textConfig as Raw), model_type: 'gemma3_text' };
  const architecture = MODEL_TYPES.get(modelType);
  if (!architecture) {
    throw new FormatError(file, `model_type ${JSON.stringify(modelType)} is not a supported architecture (supported: ${[...MODEL_TYPES.keys()].join(', ')})`);
  }
  const r = new Reader(raw, file);
  return architecture === 'gpt2' ? parseGpt2(r) : parseRotary(r, architecture);
}

function parseGpt2(r: Reader): ModelConfig {
  const dModel = r.size('n_embd', CONFIG_LIMITS.width);
  const nHeads = r.size('n_head', CONFIG_LIMITS.heads);
  const nLayers = r.size('n_layer', CONFIG_LIMITS.layers);
  const headDim = dModel / nHeads;
  if (!Number.isInteger(headDim)) throw new FormatError(r.file, `n_embd ${dModel} is not a multiple of n_head ${nHeads}`);
  const scaleWeights = r.bool('scale_attn_weights', true);
  const byLayer = r.bool('scale_attn_by_inverse_layer_idx', false);
  const layers: LayerConfig[] = [];
  for (let i = 0; i < nLayers; i++) {
    layers.push({ window: 0, attnScale: (scaleWeights ? 1 / Math.sqrt(headDim) : 1) / (byLayer ? i + 1 : 1) });
  }
  return {
    architecture: 'gpt2',
    modelType: 'gpt2',
    dModel,
    nLayers,
    nHeads,
    nKvHeads: nHeads,
    headDim,
    dMlp: r.size('n_inner', CONFIG_LIMITS.mlp, 4 * dModel),
    vocab: r.size('vocab_size', CONFIG_LIMITS.vocab),
    maxPositions: r.size('n_positions', CONFIG_LIMITS.positions, r.size('n_ctx', CONFIG_LIMITS.positions, 1024)),
    norm: { kind: 'layer', eps: r.range('layer_norm_epsilon', 1e-5, 0, 1), addOne: false },
    activation: activation(r, 'activation_function', 'gelu_new'),
    gatedMlp: false,
    positions: 'learned',
    layers,
    tiedEmbeddings: r.bool('tie_word_embeddings', true),
    embedScale: 1,
    sandwichNorms: false,
    qkNorm: false,
    attnSoftcap: 0,
    finalSoftcap: 0,
    bias: { qkv: true, attnOut: true, mlp: true },
    ...tokens(r, r.size('vocab_size', CONFIG_LIMITS.vocab)),
  };
}

function parseRotary(r: Reader, architecture: Exclude<Architecture, 'gpt2'>): ModelConfig {
  const gemma = architecture === 'gemma2' || architecture === 'gemma3';
  const dModel = r.size('hidden_size', CONFIG_LIMITS.width);
  const nHeads = r.size('num_attention_heads', CONFIG_LIMITS.heads);
  const nLayers = r.size('num_hidden_layers', CONFIG_LIMITS.layers);
  const nKvHeads = r.int('num_key_value_heads', nHeads, CONFIG_LIMITS.heads);
  if (!r.has('head_dim') && dModel % nHeads !== 0) throw new FormatError(r.file, `hidden_size ${dModel} is not a multiple of num_attention_heads ${nHeads}`);
  const headDim = r.int('head_dim', dModel / nHeads, CONFIG_LIMITS.headDim);
  if (!Number.isInteger(headDim) || headDim === 0) throw new FormatError(r.file, `hidden_size ${dModel} is not a multiple of num_attention_heads ${nHeads}`);
  if (nKvHeads === 0 || nHeads % nKvHeads !== 0) throw new FormatError(r.file, `num_attention_heads ${nHeads} is not a multiple of num_key_value_heads ${nKvHeads}`);

  const types = layerTypes(r, architecture, nLayers);
  const slidingWindow = r.int('sliding_window', 0);
  const attnScale = gemma ? 1 / Math.sqrt(r.range('query_pre_attn_scalar', headDim, 0, 1e12)) : 1 / Math.sqrt(headDim);
  const layers: LayerConfig[] = types.map((type) => ({
    window: type === 'sliding_attention' ? slidingWindow : 0,
    rope: ropeParams(r, architecture, type, headDim),
    attnScale,
  }));

  const attentionBias = r.bool('attention_bias', false);
  const bias =
    architecture === 'qwen2'
      ? { qkv: true, attnOut: false, mlp: false }
      : { qkv: attentionBias, attnOut: attentionBias, mlp: r.bool('mlp_bias', false) };

  return {
    architecture,
    modelType: r.str('model_type') ?? architecture,
    dModel,
    nLayers,
    nHeads,
    nKvHeads,
    headDim,
    dMlp: r.size('intermediate_size', CONFIG_LIMITS.mlp),
    vocab: r.size('vocab_size', CONFIG_LIMITS.vocab),
    maxPositions: r.size('max_position_embeddings', CONFIG_LIMITS.positions, 2048),
    norm: { kind: 'rms', eps: r.range('rms_norm_eps', 1e-6, 0, 1), addOne: gemma },
    activation: gemma && r.has('hidden_activation') ? activation(r, 'hidden_activation', 'gelu_pytorch_tanh') : activation(r, 'hidden_act', gemma ? 'gelu_pytorch_tanh' : 'silu'),
    gatedMlp: true,
    positions: 'rope',
    layers,
    tiedEmbeddings: r.bool('tie_word_embeddings', gemma),
    embedScale: gemma ? Math.fround(Math.sqrt(dModel)) : 1,
    sandwichNorms: gemma,
    qkNorm: architecture === 'qwen3' || architecture === 'gemma3',
    attnSoftcap: architecture === 'gemma2' ? r.range('attn_logit_softcapping', 0, 0, 1e12, false) : 0,
    finalSoftcap: architecture === 'gemma2' ? r.range('final_logit_softcapping', 0, 0, 1e12, false) : 0,
    bias,
    ...tokens(r, r.size('vocab_size', CONFIG_LIMITS.vocab)),
  };
}

type LayerType = 'full_attention' | 'sliding_attention';

function layerTypes(r: Reader, architecture: Architecture, nLayers: number): LayerType[] {
  const listed = r.get('layer_types');
  if (Array.isArray(listed)) {
    if (listed.length !== nLayers) throw new FormatError(r.file, `"layer_types" lists ${listed.length} layers but num_hidden_layers is ${nLayers}`);
    return listed.map((t, i) => {
      if (t !== 'full_attention' && t !== 'sliding_attention') throw new FormatError(r.file, `layer_types[${i}] is "${String(t)}", not full_attention or sliding_attention`);
      return t;
    });
  }
  const window = r.int('sliding_window', 0);
  const all = (t: LayerType) => Array.from({ length: nLayers }, () => t);
  switch (architecture) {
    case 'gemma2':
      return Array.from({ length: nLayers }, (_, i) => (i % 2 === 0 ? 'sliding_attention' : 'full_attention'));
    case 'gemma3': {
      const pattern = r.size('sliding_window_pattern', CONFIG_LIMITS.layers + 1, r.size('_sliding_window_pattern', CONFIG_LIMITS.layers + 1, 6));
      return Array.from({ length: nLayers }, (_, i) => ((i + 1) % pattern !== 0 ? 'sliding_attention' : 'full_attention'));
    }
    case 'qwen2':
    case 'qwen3': {
      if (!r.bool('use_sliding_window', false) || window === 0) return all('full_attention');
      const first = r.int('max_window_layers', nLayers);
      return Array.from({ length: nLayers }, (_, i) => (i >= first ? 'sliding_attention' : 'full_attention'));
    }
    case 'mistral':
    case 'phi3':
      return all(window > 0 ? 'sliding_attention' : 'full_attention');
    default:
      return all('full_attention');
  }
}

function ropeParams(r: Reader, architecture: Architecture, type: LayerType, headDim: number): RopeParams {
  let spec: Raw;
  const params = r.obj('rope_parameters');
  if (params) {
    const perType = Object.hasOwn(params, type) ? params[type] : undefined;
    spec = perType && typeof perType === 'object' && !Array.isArray(perType) ? (perType as Raw) : params;
  } else if (architecture === 'gemma3' && type === 'sliding_attention') {
    spec = { rope_theta: r.range('rope_local_base_freq', 10000, 0, Number.MAX_VALUE) };
  } else {
    spec = { rope_theta: r.num('rope_theta', 10000), ...(r.obj('rope_scaling') ?? {}) };
  }
  const s = new Reader(spec, r.file);
  const theta = s.range('rope_theta', r.range('rope_theta', 10000, 0, Number.MAX_VALUE), 0, Number.MAX_VALUE);
  const partial = s.range('partial_rotary_factor', r.range('partial_rotary_factor', 1, 0, 1), 0, 1);
  const rotaryDim = Math.floor(headDim * partial);
  if (rotaryDim % 2 !== 0 || rotaryDim === 0) throw new FormatError(r.file, `partial_rotary_factor ${partial} gives ${rotaryDim} rotary dimensions of ${headDim}: must be even and positive`);
  const kind = s.str('rope_type') ?? s.str('type') ?? 'default';
  let scaling: RopeScaling | undefined;
  switch (kind) {
    case 'default':
      break;
    case 'linear':
      scaling = { type: 'linear', factor: s.range('factor', undefined, 0, 1e6) };
      break;
    case 'llama3':
      scaling = {
        type: 'llama3',
        factor: s.range('factor', undefined, 0, 1e6),
        lowFreqFactor: s.range('low_freq_factor', undefined, 0, 1e6),
        highFreqFactor: s.range('high_freq_factor', undefined, 0, 1e6),
        originalMaxPositions: s.size('original_max_position_embeddings', CONFIG_LIMITS.positions),
      };
      break;
    default:
      throw new FormatError(r.file, `rope type "${kind}" is not supported (supported: default, linear, llama3)`);
  }
  return scaling ? { theta, rotaryDim, scaling } : { theta, rotaryDim };
}

function activation(r: Reader, key: string, fallback: string): Activation {
  const name = r.str(key) ?? fallback;
  const act = ACTIVATIONS.get(name);
  if (!act) throw new FormatError(r.file, `activation "${name}" (${key}) is not supported (supported: ${[...ACTIVATIONS.keys()].join(', ')})`);
  return act;
}

/**
 * BOS and EOS ids. Ids past the vocabulary are left out: tiny test models copy GPT-2's 50256 into a
 * 256-token config, and transformers keeps them, but no such token can be produced or prepended.
 */
function tokens(r: Reader, vocab: number): { bosTokenId?: number; eosTokenIds: number[]; dtype?: string } {
  const id = (key: string, v: unknown): number | undefined => {
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new FormatError(r.file, `"${key}" is ${JSON.stringify(v)}, not a token id`);
    return v < vocab ? v : undefined;
  };
  const eos = r.get('eos_token_id');
  const eosList = eos === undefined || eos === null ? [] : Array.isArray(eos) ? eos : [eos];
  if (eosList.length > 1024) throw new FormatError(r.file, `"eos_token_id" lists ${eosList.length} ids, above the limit of 1024`);
  const eosTokenIds = eosList.map((e) => id('eos_token_id', e)).filter((e) => e !== undefined);
  const bos = r.get('bos_token_id');
  const bosTokenId = bos === undefined || bos === null ? undefined : id('bos_token_id', bos);
  const dtype = r.str('torch_dtype') ?? r.str('dtype');
  return { ...(bosTokenId === undefined ? {} : { bosTokenId }), eosTokenIds, ...(dtype ? { dtype } : {}) };
}

/** Parameters the checkpoint holds (tied embeddings counted once): in matrices, and in vectors (norms, biases). */
export function parameterCount(c: ModelConfig): { matrices: number; vectors: number; total: number } {
  const d = c.dModel;
  const q = c.nHeads * c.headDim;
  const kv = c.nKvHeads * c.headDim;
  const normParams = c.norm.kind === 'layer' ? 2 * d : d;
  const layerMatrices = d * q + 2 * d * kv + q * d + (c.gatedMlp ? 3 : 2) * d * c.dMlp;
  let layerVectors = (c.sandwichNorms ? 4 : 2) * normParams;
  if (c.qkNorm) layerVectors += 2 * c.headDim;
  if (c.bias.qkv) layerVectors += q + 2 * kv;
  if (c.bias.attnOut) layerVectors += d;
  if (c.bias.mlp) layerVectors += (c.gatedMlp ? 2 : 1) * c.dMlp + d;
  let matrices = c.vocab * d + c.nLayers * layerMatrices;
  if (c.positions === 'learned') matrices += c.maxPositions * d;
  if (!c.tiedEmbeddings) matrices += c.vocab * d;
  const vectors = c.nLayers * layerVectors + normParams;
  return { matrices, vectors, total: matrices + vectors };
}
