import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { pathSource } from '../io/node-source.ts';
import { readSafetensorsHeader } from '../io/safetensors.ts';
import { FormatError } from '../io/source.ts';
import { parameterCount, parseConfig, type ModelConfig } from './config.ts';
import { convertNames } from './convert.ts';

const FIXTURES = new URL('../../test/fixtures/', import.meta.url).pathname;

async function fixtureConfig(dir: string): Promise<ModelConfig> {
  return parseConfig(JSON.parse(await readFile(`${FIXTURES}${dir}/config.json`, 'utf8')), `${dir}/config.json`);
}

describe('parseConfig', () => {
  it('reads Gemma 2: sliding layers, soft-caps, query_pre_attn_scalar, sandwich norms, sqrt(d) embedding', async () => {
    const c = await fixtureConfig('arch/gemma2/base');
    expect(c.architecture).toBe('gemma2');
    expect(c.layers.map((l) => l.window)).toEqual([8, 0, 8]);
    expect(c.layers[0]!.attnScale).toBe(0.25);
    expect([c.attnSoftcap, c.finalSoftcap]).toEqual([50, 30]);
    expect(c.norm).toEqual({ kind: 'rms', eps: 1e-5, addOne: true });
    expect(c.activation).toBe('gelu_tanh');
    expect(c.embedScale).toBe(8);
    expect(c.sandwichNorms && c.tiedEmbeddings && !c.qkNorm).toBe(true);
    expect([c.nHeads, c.nKvHeads, c.headDim, c.dMlp]).toEqual([4, 2, 16, 160]);
  });

  it('reads Gemma 3 from transformers 5 (per layer-type rope_parameters) and 4 (rope_local_base_freq)', async () => {
    const c5 = await fixtureConfig('arch/gemma3/base');
    expect(c5.qkNorm).toBe(true);
    expect(c5.layers.map((l) => [l.window, l.rope?.theta])).toEqual([[8, 10000], [8, 10000], [8, 10000]]);
    const c4 = parseConfig({
      model_type: 'gemma3',
      text_config: {
        model_type: 'gemma3_text', hidden_size: 64, num_attention_heads: 4, num_key_value_heads: 1, head_dim: 16, num_hidden_layers: 6,
        intermediate_size: 128, vocab_size: 100, rope_theta: 1e6, rope_local_base_freq: 1e4, sliding_window: 512, sliding_window_pattern: 6,
        rope_scaling: { rope_type: 'linear', factor: 8 }, query_pre_attn_scalar: 256,
      },
    });
    expect(c4.architecture).toBe('gemma3');
    expect(c4.layers.map((l) => l.window)).toEqual([512, 512, 512, 512, 512, 0]);
    expect(c4.layers[0]!.rope).toEqual({ theta: 1e4, rotaryDim: 16 });
    expect(c4.layers[5]!.rope).toEqual({ theta: 1e6, rotaryDim: 16, scaling: { type: 'linear', factor: 8 } });
    expect(c4.layers[0]!.attnScale).toBe(1 / 16);
  });

  it('reads Llama 3 rope scaling from transformers 4 style rope_scaling', () => {
    const c = parseConfig({
      model_type: 'llama', hidden_size: 2048, num_attention_heads: 32, num_key_value_heads: 8, num_hidden_layers: 16, intermediate_size: 8192,
      vocab_size: 128256, rms_norm_eps: 1e-5, rope_theta: 500000, tie_word_embeddings: true, hidden_act: 'silu',
      rope_scaling: { factor: 32, high_freq_factor: 4, low_freq_factor: 1, original_max_position_embeddings: 8192, rope_type: 'llama3' },
    });
    expect(c.headDim).toBe(64);
    expect(c.layers[3]!.rope).toEqual({ theta: 500000, rotaryDim: 64, scaling: { type: 'llama3', factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192 } });
    expect(c.tiedEmbeddings).toBe(true);
  });

  it('reads biases (Qwen 2), qk-norm (Qwen 3), partial rotary (Phi-3) and GPT-2', async () => {
    expect((await fixtureConfig('arch/qwen2/base')).bias).toEqual({ qkv: true, attnOut: false, mlp: false });
    expect((await fixtureConfig('arch/qwen3/base')).qkNorm).toBe(true);
    const phi = parseConfig({ model_type: 'phi3', hidden_size: 64, num_attention_heads: 4, num_hidden_layers: 2, intermediate_size: 128, vocab_size: 50, partial_rotary_factor: 0.5 });
    expect(phi.layers[0]!.rope!.rotaryDim).toBe(8);
    const g = await fixtureConfig('arch/gpt2/base');
    expect([g.positions, g.norm.kind, g.activation, g.gatedMlp, g.dMlp, g.maxPositions]).toEqual(['learned', 'layer', 'gelu_tanh', false, 256, 128]);
  });

  it('names the file and the model_type of an unknown architecture', () => {
    const err = (() => {
      try {
        parseConfig({ model_type: 'bert', hidden_size: 8 }, 'bert/config.json');
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(FormatError);
    expect((err as Error).message).toMatch(/^bert\/config\.json: model_type "bert" is not a supported architecture \(supported: gpt2, llama/);
  });

  it('names missing fields and unsupported rope types', () => {
    expect(() => parseConfig({ model_type: 'llama', num_attention_heads: 4 })).toThrow(/config\.json: "hidden_size" is missing/);
    expect(() => parseConfig({ model_type: 'llama', hidden_size: 8, num_attention_heads: 2, num_hidden_layers: 1, intermediate_size: 8, vocab_size: 4, rope_scaling: { rope_type: 'yarn', factor: 4 } })).toThrow(/rope type "yarn" is not supported/);
    expect(() => parseConfig({ hidden_size: 8 })).toThrow(/no "model_type"/);
  });
});

describe('converters and parameterCount', () => {
  it.each(['gpt2', 'llama', 'mistral', 'qwen2', 'qwen3', 'phi3', 'gemma2', 'gemma3'])('%s: parameters and bytes equal the checkpoint; every tensor is used', async (arch) => {
    const c = await fixtureConfig(`arch/${arch}/base`);
    const header = await readSafetensorsHeader(await pathSource(`${FIXTURES}arch/${arch}/base/model.safetensors`));
    const numel = [...header.entries.values()].reduce((n, e) => n + e.shape.reduce((a, b) => a * b, 1), 0);
    const count = parameterCount(c);
    expect(count.total).toBe(numel);
    const matrixNumel = [...header.entries.values()].filter((e) => e.shape.length >= 2).reduce((n, e) => n + e.shape.reduce((a, b) => a * b, 1), 0);
    expect(count.matrices).toBe(matrixNumel);
    const specs = convertNames(c, new Set(header.entries.keys()));
    expect(new Set(specs.map((s) => s.source.name))).toEqual(new Set(header.entries.keys()));
  });

  it('splits Phi-3 fused projections and transposes GPT-2 Conv1D weights', async () => {
    const phiNames = (await readSafetensorsHeader(await pathSource(`${FIXTURES}arch/phi3/base/model.safetensors`))).entries.keys();
    const phi = convertNames(await fixtureConfig('arch/phi3/base'), new Set(phiNames));
    const byName = new Map(phi.map((s) => [s.canonical, s]));
    expect(byName.get('blocks.1.attn.W_K')!.source).toEqual({ name: 'model.layers.1.self_attn.qkv_proj.weight', rows: [64, 128] });
    expect(byName.get('blocks.1.mlp.W_in')!.source).toEqual({ name: 'model.layers.1.mlp.gate_up_proj.weight', rows: [160, 320] });
    const gptNames = (await readSafetensorsHeader(await pathSource(`${FIXTURES}arch/gpt2/base/model.safetensors`))).entries.keys();
    const gpt = new Map(convertNames(await fixtureConfig('arch/gpt2/base'), new Set(gptNames)).map((s) => [s.canonical, s]));
    expect(gpt.get('blocks.0.attn.W_V')!.source).toEqual({ name: 'transformer.h.0.attn.c_attn.weight', transpose: true, rows: [128, 192] });
    expect(gpt.get('blocks.0.mlp.W_out')).toEqual({ canonical: 'blocks.0.mlp.W_out', shape: [64, 256], source: { name: 'transformer.h.0.mlp.c_proj.weight', transpose: true } });
    expect(gpt.has('unembed.W_U')).toBe(false);
  });
});
