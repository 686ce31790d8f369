import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { pathFileSet } from '../io/node-source.ts';
import { bytesSource, type FileSet } from '../io/source.ts';
import { pairProblem, pairReady, type Role } from './models.ts';
import { openModelLoader } from './open-weights.ts';
import { createAppStore } from './store.ts';

const DEMO = 'public/models/demo';

async function loaded(files: Record<Role, FileSet>) {
  const store = createAppStore();
  store.getState().setModelLoader(openModelLoader);
  for (const role of ['base', 'ft'] as const) store.getState().setPendingFiles(role, files[role]);
  await Promise.all([store.getState().loadModel('base'), store.getState().loadModel('ft')]);
  return store.getState();
}

describe('openModelLoader', () => {
  it('summarises the demo base from its header and config.json', async () => {
    const s = await loaded({ base: await pathFileSet(`${DEMO}/base`), ft: await pathFileSet(`${DEMO}/ocean`) });
    const status = s.models.base.status;
    if (status.kind !== 'loaded') throw new Error(JSON.stringify(status));
    const config = JSON.parse(readFileSync(`${DEMO}/base/config.json`, 'utf8')) as Record<string, number>;
    const d = config.hidden_size!;
    const kv = config.num_key_value_heads! * config.head_dim!;
    const mlp = config.intermediate_size!;
    // Tied embeddings: one vocab × d matrix; per layer q, o [d, d], k, v [kv, d], three MLP matrices, two norms; a final norm.
    const params = config.vocab_size! * d + config.num_hidden_layers! * (2 * d * d + 2 * kv * d + 3 * d * mlp + 2 * d) + d;
    expect(status.summary).toMatchObject({
      kind: 'model',
      format: 'hf',
      label: 'model.safetensors',
      architecture: 'llama',
      layers: 6,
      dModel: 192,
      vocabSize: 4096,
      parameterCount: params,
      dtypes: { F16: params },
      weightBytes: 2 * params,
      largestTensor: { name: 'model.embed_tokens.weight', elements: 4096 * 192 },
    });
    expect(status.summary.shapes.get('model.layers.0.self_attn.k_proj.weight')).toEqual([kv, d]);
    expect(pairProblem(s.models)).toBeNull();
    expect(pairReady(s.models)).toBe(true);
  });

  it('summarises a PEFT adapter as the fine-tuned model and accepts it on its base', async () => {
    const s = await loaded({ base: await pathFileSet(`${DEMO}/base`), ft: await pathFileSet(`${DEMO}/space`) });
    const status = s.models.ft.status;
    if (status.kind !== 'loaded') throw new Error(JSON.stringify(status));
    const cfg = JSON.parse(readFileSync(`${DEMO}/space/adapter_config.json`, 'utf8')) as { r: number; lora_alpha: number; target_modules: string[] };
    expect(status.summary.kind).toBe('adapter');
    expect(status.summary.adapter?.r).toBe(cfg.r);
    expect(status.summary.adapter?.alpha).toBe(cfg.lora_alpha);
    expect(status.summary.adapter?.targets).toHaveLength(6 * cfg.target_modules.length);
    expect(status.summary.adapter?.targets).toContainEqual({ name: 'model.layers.5.mlp.down_proj.weight', shape: [192, 512] });
    expect(pairReady(s.models)).toBe(true);
  });

  it('names both files when the architectures differ', async () => {
    const s = await loaded({ base: await pathFileSet('test/fixtures/arch/gpt2/base'), ft: await pathFileSet('test/fixtures/arch/llama/ft') });
    const problem = pairProblem(s.models);
    expect(problem).toContain('the base model (model.safetensors) is gpt2 with 3 layers');
    expect(problem).toContain('the fine-tuned model (model.safetensors) is llama with 3 layers');
    expect(pairReady(s.models)).toBe(false);
  });

  it('rejects an adapter trained on another model, and an adapter given as the base', async () => {
    const other = await loaded({ base: await pathFileSet(`${DEMO}/base`), ft: await pathFileSet('test/fixtures/stories260K/space/adapter') });
    expect(pairProblem(other.models)).toMatch(/^the adapter \(adapter_model\.safetensors\) changes "model\.layers\.\d\.[a-z_.]+\.weight" as \[\d+, \d+\] but the base model \(model\.safetensors\) has it as \[\d+, \d+\]/);
    const wrong = await loaded({ base: await pathFileSet('test/fixtures/arch/gpt2/base'), ft: await pathFileSet(`${DEMO}/space`) });
    expect(pairProblem(wrong.models)).toMatch(/^the adapter \(adapter_model\.safetensors\) targets 42 tensors such as ".+", none of which is in the base model \(model\.safetensors\)/);
    const swapped = await loaded({ base: await pathFileSet(`${DEMO}/space`), ft: await pathFileSet(`${DEMO}/base`) });
    expect(pairProblem(swapped.models)).toContain('the base model (adapter_model.safetensors) is a PEFT adapter');
  });

  it('reports a truncated safetensors file and an unknown folder by file name', async () => {
    const folder = await pathFileSet('test/fixtures/arch/llama/base');
    const weights = readFileSync('test/fixtures/arch/llama/base/model.safetensors');
    const truncated = new Map(folder);
    truncated.set('model.safetensors', bytesSource(weights.subarray(0, weights.length - 100), 'model.safetensors'));
    const notes = new Map([['notes.txt', bytesSource(new TextEncoder().encode('hello'), 'notes.txt')]]);
    const s = await loaded({ base: truncated, ft: notes });
    const base = s.models.base.status;
    const ft = s.models.ft.status;
    expect(base.kind === 'error' && base.message).toMatch(/^model\.safetensors: .*truncated/);
    expect(ft.kind === 'error' && ft.message).toMatch(/no model recognised.*notes\.txt/);
  });
});
