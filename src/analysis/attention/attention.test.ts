// Attention-pattern diffing on the arch fixtures, where the fine-tune changes one layer-1 MLP tensor
// and one layer-2 attention output: layers 0–1 attention patterns are identical (JS exactly 0), layer
// 2's differ (its input changed); patterns against a direct softmax(QKᵀ) and head outputs that add
// up to the attention output.
import { describe, expect, it } from 'vitest';
import { createCpuBackend } from '../../gpu/cpu-backend.ts';
import { hookName } from '../../model/transformer.ts';
import { ARCHS, archPair } from '../activations/testing.ts';
import { attentionDiff, corpusAttentionDiff, headOutputs, headPatching, jensenShannon } from './attention.ts';

const PROMPT = [105, 116, 158, 23, 27, 211, 9, 77, 140, 3, 51, 200];
const be = createCpuBackend();

describe('attention-pattern diffing', () => {
  it.each(ARCHS)('%s: JS is exactly 0 in layers 0–1 and positive in layer 2; rows are distributions', async (arch) => {
    const pair = await archPair(arch, be);
    const r = await attentionDiff(pair, PROMPT);
    const H = pair.base.config.nHeads;
    expect(r.heads).toHaveLength(3 * H);
    for (const h of r.heads) {
      if (h.layer < 2) {
        expect(h.js).toBe(0);
        expect(h.maxAbs).toBe(0);
      }
    }
    expect(Math.max(...r.heads.filter((h) => h.layer === 2).map((h) => h.js))).toBeGreaterThan(1e-6);
    const T = PROMPT.length;
    for (const layer of r.base) {
      for (let row = 0; row < layer.heads * T; row++) {
        let s = 0;
        for (let k = 0; k < T; k++) s += layer.probs[row * T + k]!;
        expect(Math.abs(s - 1)).toBeLessThanOrEqual(1e-9);
        const t = row % T;
        for (let k = t + 1; k < T; k++) expect(layer.probs[row * T + k]).toBe(0);
      }
    }
    // Σ_s P[h, t, s] v_s equals the backend's attention output (windows and soft-caps included).
    const layer = 2;
    const { cache, logits } = pair.base.runWithCache([PROMPT], [hookName('resid_pre', layer)]);
    be.dispose(logits!);
    const { q, k, v, params } = pair.base.attentionInputs(cache.get(hookName('resid_pre', layer))!, layer, 0);
    const z = (await be.read(be.attention(q, k, v, params))) as Float32Array;
    const vh = (await be.read(v)) as Float32Array;
    for (const t of [q, k, v, ...cache.values()]) be.dispose(t);
    const { nHeads, nKvHeads, headDim: hd } = params;
    const probs = r.base[layer]!.probs;
    for (let h = 0; h < nHeads; h++) {
      const kh = Math.floor(h / (nHeads / nKvHeads));
      for (let t = 0; t < T; t++) {
        for (let i = 0; i < hd; i++) {
          let mix = 0;
          for (let s = 0; s < T; s++) mix += probs[(h * T + t) * T + s]! * vh[(s * nKvHeads + kh) * hd + i]!;
          expect(Math.abs(mix - z[(t * nHeads + h) * hd + i]!)).toBeLessThanOrEqual(1e-5 * (1 + Math.abs(mix)));
        }
      }
    }
    pair.base.dispose();
    pair.ft.dispose();
  });

  it('head outputs add up to the attention output; patching heads of unchanged layers recovers nothing', async () => {
    const pair = await archPair('gpt2', be);
    const layer = 2;
    const { cache, logits } = pair.ft.runWithCache([PROMPT], [hookName('resid_pre', layer), hookName('attn_out', layer)]);
    be.dispose(logits!);
    const heads = headOutputs(pair.ft, cache.get(hookName('resid_pre', layer))!, layer);
    const sum = new Float64Array(PROMPT.length * pair.ft.config.dModel);
    for (const h of heads) (await be.read(h)).forEach((x, i) => (sum[i]! += x));
    const bias = (await be.read(pair.ft.weight(`blocks.${layer}.attn.b_O`))) as Float32Array;
    const want = (await be.read(cache.get(hookName('attn_out', layer))!)) as Float32Array;
    const d = pair.ft.config.dModel;
    for (let i = 0; i < want.length; i++) expect(Math.abs(sum[i]! + bias[i % d]! - want[i]!)).toBeLessThanOrEqual(1e-4 * (1 + Math.abs(want[i]!)));
    for (const t of [...heads, ...cache.values()]) be.dispose(t);

    const p = await headPatching(pair, PROMPT);
    expect(p.klFtBase).toBeGreaterThan(0);
    expect(p.heads).toHaveLength(3 * pair.base.config.nHeads);
    for (const h of p.heads) if (h.layer < 2) expect(Math.abs(h.recovery)).toBeLessThanOrEqual(1e-3);
    // Layer 2's W_O is what changed: some head there recovers part of the gap.
    expect(Math.max(...p.heads.filter((h) => h.layer === 2).map((h) => h.recovery))).toBeGreaterThan(0.05);
  });

  it('corpus average weights samples by their positions; JS of equal rows is 0 and of disjoint rows log 2', async () => {
    const pair = await archPair('llama', be);
    const a = await attentionDiff(pair, PROMPT.slice(0, 4));
    const b = await attentionDiff(pair, PROMPT);
    const c = await corpusAttentionDiff(pair, [PROMPT.slice(0, 4), PROMPT]);
    const j = 3 * pair.base.config.nHeads - 1;
    const want = (a.heads[j]!.js * 4 + b.heads[j]!.js * 12) / 16;
    expect(Math.abs(c[j]!.js - want)).toBeLessThanOrEqual(1e-12 + 1e-9 * want);
    expect(jensenShannon(Float64Array.from([0.5, 0.5]), Float64Array.from([0.5, 0.5]), 0, 2)).toBe(0);
    expect(Math.abs(jensenShannon(Float64Array.from([1, 0]), Float64Array.from([0, 1]), 0, 2) - Math.LN2)).toBeLessThanOrEqual(1e-15);
  });
});
