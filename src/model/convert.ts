// One converter per architecture: a pure mapping from checkpoint tensor names (Hugging Face) to
// canonical names, TransformerLens style. Canonical matrices are stored [out, in] like nn.Linear:
//   embed.W_E [vocab, d]            pos_embed.W_pos [positions, d]      unembed.W_U [vocab, d] (absent when tied)
//   blocks.{i}.ln1.w/.b             blocks.{i}.ln1_post.w (Gemma)       ln_final.w/.b
//   blocks.{i}.attn.W_Q [Hq·hd, d], W_K/W_V [Hkv·hd, d], W_O [d, Hq·hd], b_Q/b_K/b_V/b_O, q_norm.w/k_norm.w [hd]
//   blocks.{i}.ln2.w/.b             blocks.{i}.ln2_post.w (Gemma)
//   blocks.{i}.mlp.W_gate/W_in [dMlp, d], W_out [d, dMlp], b_gate/b_in/b_out
import type { Architecture, ModelConfig } from './config.ts';

/** Where a canonical tensor comes from in the checkpoint. */
export interface WeightSource {
  /** Tensor name in the checkpoint. */
  name: string;
  /** Stored [in, out] (GPT-2 Conv1D): transposed to [out, in] first. */
  transpose?: boolean;
  /** Rows [start, end) of the (transposed) tensor: one part of a fused tensor. For vectors, elements. */
  rows?: readonly [number, number];
}

export interface WeightSpec {
  canonical: string;
  shape: readonly number[];
  source: WeightSource;
}

export type Converter = (config: ModelConfig, checkpointNames: ReadonlySet<string>) => WeightSpec[];

/** The checkpoint's name for a canonical tensor, as analyses should report it. */
export function describeSource(s: WeightSource): string {
  return s.rows ? `${s.name}[${s.rows[0]}:${s.rows[1]}]` : s.name;
}

/** The prefix in front of a tensor name that ends with `suffix` ("model." for "model.embed_tokens.weight"). */
function prefixOf(names: ReadonlySet<string>, suffix: string, fallback: string): string {
  const candidates = [...names].filter((n) => n === suffix || n.endsWith(`.${suffix}`));
  candidates.sort((a, b) => a.length - b.length);
  const found = candidates[0];
  return found === undefined ? fallback : found.slice(0, found.length - suffix.length);
}

function lmHead(c: ModelConfig, names: ReadonlySet<string>): WeightSpec[] {
  if (c.tiedEmbeddings) return [];
  const name = `${prefixOf(names, 'lm_head.weight', '')}lm_head.weight`;
  // Checkpoints without a head share the embedding, whatever the config says.
  if (!names.has(name)) return [];
  return [{ canonical: 'unembed.W_U', shape: [c.vocab, c.dModel], source: { name } }];
}

function rotaryFamily(c: ModelConfig, names: ReadonlySet<string>, fusedPhi3: boolean): WeightSpec[] {
  const p = prefixOf(names, 'embed_tokens.weight', 'model.');
  const d = c.dModel;
  const q = c.nHeads * c.headDim;
  const kv = c.nKvHeads * c.headDim;
  const specs: WeightSpec[] = [{ canonical: 'embed.W_E', shape: [c.vocab, d], source: { name: `${p}embed_tokens.weight` } }];
  const add = (canonical: string, shape: readonly number[], name: string, rows?: readonly [number, number]): void => {
    specs.push({ canonical, shape, source: rows ? { name, rows } : { name } });
  };
  for (let i = 0; i < c.nLayers; i++) {
    const b = `blocks.${i}.`;
    const l = `${p}layers.${i}.`;
    add(`${b}ln1.w`, [d], `${l}input_layernorm.weight`);
    if (fusedPhi3) {
      const qkv = `${l}self_attn.qkv_proj.weight`;
      add(`${b}attn.W_Q`, [q, d], qkv, [0, q]);
      add(`${b}attn.W_K`, [kv, d], qkv, [q, q + kv]);
      add(`${b}attn.W_V`, [kv, d], qkv, [q + kv, q + 2 * kv]);
    } else {
      for (const [x, n] of [['Q', q], ['K', kv], ['V', kv]] as const) {
        const proj = `${l}self_attn.${x.toLowerCase()}_proj`;
        add(`${b}attn.W_${x}`, [n, d], `${proj}.weight`);
        if (c.bias.qkv) add(`${b}attn.b_${x}`, [n], `${proj}.bias`);
      }
    }
    add(`${b}attn.W_O`, [d, q], `${l}self_attn.o_proj.weight`);
    if (c.bias.attnOut) add(`${b}attn.b_O`, [d], `${l}self_attn.o_proj.bias`);
    if (c.qkNorm) {
      add(`${b}attn.q_norm.w`, [c.headDim], `${l}self_attn.q_norm.weight`);
      add(`${b}attn.k_norm.w`, [c.headDim], `${l}self_attn.k_norm.weight`);
    }
    if (c.sandwichNorms) {
      add(`${b}ln1_post.w`, [d], `${l}post_attention_layernorm.weight`);
      add(`${b}ln2.w`, [d], `${l}pre_feedforward_layernorm.weight`);
      add(`${b}ln2_post.w`, [d], `${l}post_feedforward_layernorm.weight`);
    } else {
      add(`${b}ln2.w`, [d], `${l}post_attention_layernorm.weight`);
    }
    const m = c.dMlp;
    if (fusedPhi3) {
      const gateUp = `${l}mlp.gate_up_proj.weight`;
      add(`${b}mlp.W_gate`, [m, d], gateUp, [0, m]);
      add(`${b}mlp.W_in`, [m, d], gateUp, [m, 2 * m]);
    } else {
      add(`${b}mlp.W_gate`, [m, d], `${l}mlp.gate_proj.weight`);
      add(`${b}mlp.W_in`, [m, d], `${l}mlp.up_proj.weight`);
      if (c.bias.mlp) {
        add(`${b}mlp.b_gate`, [m], `${l}mlp.gate_proj.bias`);
        add(`${b}mlp.b_in`, [m], `${l}mlp.up_proj.bias`);
      }
    }
    add(`${b}mlp.W_out`, [d, m], `${l}mlp.down_proj.weight`);
    if (c.bias.mlp && !fusedPhi3) add(`${b}mlp.b_out`, [d], `${l}mlp.down_proj.bias`);
  }
  add('ln_final.w', [d], `${p}norm.weight`);
  return [...specs, ...lmHead(c, names)];
}

const gpt2: Converter = (c, names) => {
  const p = prefixOf(names, 'wte.weight', 'transformer.');
  const d = c.dModel;
  const m = c.dMlp;
  const specs: WeightSpec[] = [
    { canonical: 'embed.W_E', shape: [c.vocab, d], source: { name: `${p}wte.weight` } },
    { canonical: 'pos_embed.W_pos', shape: [c.maxPositions, d], source: { name: `${p}wpe.weight` } },
  ];
  const conv = (canonical: string, shape: readonly number[], name: string, rows?: readonly [number, number]): WeightSpec => ({
    canonical,
    shape,
    source: rows ? { name, transpose: true, rows } : { name, transpose: true },
  });
  const plain = (canonical: string, shape: readonly number[], name: string, rows?: readonly [number, number]): WeightSpec => ({
    canonical,
    shape,
    source: rows ? { name, rows } : { name },
  });
  for (let i = 0; i < c.nLayers; i++) {
    const b = `blocks.${i}.`;
    const h = `${p}h.${i}.`;
    specs.push(
      plain(`${b}ln1.w`, [d], `${h}ln_1.weight`),
      plain(`${b}ln1.b`, [d], `${h}ln_1.bias`),
      conv(`${b}attn.W_Q`, [d, d], `${h}attn.c_attn.weight`, [0, d]),
      conv(`${b}attn.W_K`, [d, d], `${h}attn.c_attn.weight`, [d, 2 * d]),
      conv(`${b}attn.W_V`, [d, d], `${h}attn.c_attn.weight`, [2 * d, 3 * d]),
      plain(`${b}attn.b_Q`, [d], `${h}attn.c_attn.bias`, [0, d]),
      plain(`${b}attn.b_K`, [d], `${h}attn.c_attn.bias`, [d, 2 * d]),
      plain(`${b}attn.b_V`, [d], `${h}attn.c_attn.bias`, [2 * d, 3 * d]),
      conv(`${b}attn.W_O`, [d, d], `${h}attn.c_proj.weight`),
      plain(`${b}attn.b_O`, [d], `${h}attn.c_proj.bias`),
      plain(`${b}ln2.w`, [d], `${h}ln_2.weight`),
      plain(`${b}ln2.b`, [d], `${h}ln_2.bias`),
      conv(`${b}mlp.W_in`, [m, d], `${h}mlp.c_fc.weight`),
      plain(`${b}mlp.b_in`, [m], `${h}mlp.c_fc.bias`),
      conv(`${b}mlp.W_out`, [d, m], `${h}mlp.c_proj.weight`),
      plain(`${b}mlp.b_out`, [d], `${h}mlp.c_proj.bias`),
    );
  }
  specs.push(plain('ln_final.w', [d], `${p}ln_f.weight`), plain('ln_final.b', [d], `${p}ln_f.bias`));
  return [...specs, ...lmHead(c, names)];
};

// The Llama family differs only in what the config switches on (biases, qk-norm, Gemma's norms);
// Phi-3 fuses q/k/v and gate/up, which are split here.
export const CONVERTERS: Readonly<Record<Architecture, Converter>> = {
  gpt2,
  llama: (c, names) => rotaryFamily(c, names, false),
  mistral: (c, names) => rotaryFamily(c, names, false),
  qwen2: (c, names) => rotaryFamily(c, names, false),
  qwen3: (c, names) => rotaryFamily(c, names, false),
  phi3: (c, names) => rotaryFamily(c, names, true),
  gemma2: (c, names) => rotaryFamily(c, names, false),
  gemma3: (c, names) => rotaryFamily(c, names, false),
};

export function convertNames(config: ModelConfig, checkpointNames: ReadonlySet<string>): WeightSpec[] {
  return CONVERTERS[config.architecture](config, checkpointNames);
}
