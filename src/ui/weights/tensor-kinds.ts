// Hugging Face tensor names → (layer, module kind): the one place the heatmap's rows and columns
// come from. Names the table does not recognise stay in the table as "other".

/** Per-layer modules, in heatmap column order (columns absent from a model are not drawn). */
export const LAYER_KINDS = ['q', 'k', 'v', 'qkv', 'o', 'q_norm', 'k_norm', 'gate', 'up', 'gate_up', 'down', 'attn_norm', 'attn_post_norm', 'mlp_norm', 'mlp_post_norm'] as const;
/** Model-wide tensors, drawn as a strip of their own. */
export const MODEL_KINDS = ['embed', 'pos_embed', 'final_norm', 'lm_head'] as const;

export type LayerKind = (typeof LAYER_KINDS)[number];
export type ModelKind = (typeof MODEL_KINDS)[number];
export type ModuleKind = LayerKind | ModelKind;

export const KIND_LABELS: Record<ModuleKind, string> = {
  q: 'q',
  k: 'k',
  v: 'v',
  qkv: 'qkv',
  o: 'o',
  q_norm: 'q norm',
  k_norm: 'k norm',
  gate: 'gate',
  up: 'up',
  gate_up: 'gate·up',
  down: 'down',
  attn_norm: 'attn norm',
  attn_post_norm: 'attn post-norm',
  mlp_norm: 'mlp norm',
  mlp_post_norm: 'mlp post-norm',
  embed: 'embeddings',
  pos_embed: 'positions',
  final_norm: 'final norm',
  lm_head: 'lm_head',
};

export type Placement =
  | { layer: number; kind: LayerKind; part: 'weight' | 'bias' }
  | { layer: null; kind: ModelKind; part: 'weight' | 'bias' }
  | { layer: null; kind: 'other'; part: 'other' };

// Module path inside a block → kind. GPT-2 (c_attn, c_proj, c_fc, ln_1, ln_2), Llama family,
// Phi-3 (qkv_proj, gate_up_proj), Gemma 2/3 (pre/post feed-forward norms).
const BLOCK_MODULES: Record<string, LayerKind> = {
  'self_attn.q_proj': 'q',
  'self_attn.k_proj': 'k',
  'self_attn.v_proj': 'v',
  'self_attn.qkv_proj': 'qkv',
  'attn.c_attn': 'qkv',
  'self_attn.o_proj': 'o',
  'attn.c_proj': 'o',
  'self_attn.q_norm': 'q_norm',
  'self_attn.k_norm': 'k_norm',
  'mlp.gate_proj': 'gate',
  'mlp.up_proj': 'up',
  'mlp.c_fc': 'up',
  'mlp.gate_up_proj': 'gate_up',
  'mlp.down_proj': 'down',
  'mlp.c_proj': 'down',
  input_layernorm: 'attn_norm',
  ln_1: 'attn_norm',
  ln_2: 'mlp_norm',
  pre_feedforward_layernorm: 'mlp_norm',
  post_feedforward_layernorm: 'mlp_post_norm',
};

const MODEL_MODULES: Record<string, ModelKind> = {
  'model.embed_tokens': 'embed',
  'transformer.wte': 'embed',
  'transformer.wpe': 'pos_embed',
  'model.norm': 'final_norm',
  'transformer.ln_f': 'final_norm',
  lm_head: 'lm_head',
};

const BLOCK = /^(?:model\.layers|transformer\.h)\.(\d+)\.(.+)$/;

/**
 * Places every name. Gemma's post_attention_layernorm normalises the attention output (its MLP
 * has pre_feedforward_layernorm); everywhere else it is the MLP's input norm.
 */
export function placeTensors(names: Iterable<string>): Map<string, Placement> {
  const all = [...names];
  const sandwich = all.some((n) => n.includes('.pre_feedforward_layernorm.'));
  const out = new Map<string, Placement>();
  for (const name of all) out.set(name, place(name, sandwich));
  return out;
}

function place(name: string, sandwich: boolean): Placement {
  const suffix = /\.(weight|bias)$/.exec(name);
  const other = { layer: null, kind: 'other', part: 'other' } as const;
  if (!suffix) return other;
  const part = suffix[1] as 'weight' | 'bias';
  const module = name.slice(0, -suffix[0].length);
  const block = BLOCK.exec(module);
  if (block) {
    const inner = block[2]!;
    const kind = inner === 'post_attention_layernorm' ? (sandwich ? 'attn_post_norm' : 'mlp_norm') : BLOCK_MODULES[inner];
    return kind ? { layer: Number(block[1]), kind, part } : other;
  }
  const kind = MODEL_MODULES[module];
  return kind ? { layer: null, kind, part } : other;
}
