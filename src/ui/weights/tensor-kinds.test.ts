import { readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { pathFileSet } from '../../io/node-source.ts';
import { openSafetensorsFolder } from '../../io/safetensors.ts';
import { placeTensors } from './tensor-kinds.ts';

describe('placeTensors', () => {
  it.each(readdirSync('test/fixtures/arch'))('%s: every tensor has a layer and module kind, one weight per cell', async (arch) => {
    const store = await openSafetensorsFolder(await pathFileSet(`test/fixtures/arch/${arch}/base`));
    const placed = placeTensors(store.tensors.keys());
    const cells = new Set<string>();
    for (const [name, p] of placed) {
      expect(p.kind, name).not.toBe('other');
      if (p.part !== 'weight') continue;
      const cell = `${p.layer}/${p.kind}`;
      expect(cells.has(cell), `${name} shares the cell ${cell}`).toBe(false);
      cells.add(cell);
    }
    const layers = new Set([...placed.values()].flatMap((p) => (p.layer === null ? [] : [p.layer])));
    expect([...layers].sort()).toEqual([0, 1, 2]);
  });

  it('tells Gemma post-attention norms from the Llama MLP input norm', () => {
    const llama = placeTensors(['model.layers.4.post_attention_layernorm.weight', 'model.layers.4.self_attn.q_proj.bias']);
    expect(llama.get('model.layers.4.post_attention_layernorm.weight')).toEqual({ layer: 4, kind: 'mlp_norm', part: 'weight' });
    expect(llama.get('model.layers.4.self_attn.q_proj.bias')).toEqual({ layer: 4, kind: 'q', part: 'bias' });
    const gemma = placeTensors(['model.layers.0.post_attention_layernorm.weight', 'model.layers.0.pre_feedforward_layernorm.weight']);
    expect(gemma.get('model.layers.0.post_attention_layernorm.weight')).toEqual({ layer: 0, kind: 'attn_post_norm', part: 'weight' });
    expect(gemma.get('model.layers.0.pre_feedforward_layernorm.weight')).toEqual({ layer: 0, kind: 'mlp_norm', part: 'weight' });
  });

  it('keeps unknown names as other', () => {
    const placed = placeTensors(['model.layers.0.self_attn.rotary_emb.inv_freq', 'model.layers.2.block_sparse_moe.gate.weight', 'score.weight']);
    for (const p of placed.values()) expect(p).toEqual({ layer: null, kind: 'other', part: 'other' });
  });
});
