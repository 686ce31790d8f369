import { describe, expect, it } from 'vitest';
import { createCpuBackend } from '../../gpu/cpu-backend.ts';
import type { Transformer } from '../../model/transformer.ts';
import { differentialLogitLens, lensTop } from './lens.ts';
import { readF32 } from './run.ts';
import { ARCHS, archPair, FIXTURES, readCaptures, softmaxRows } from './testing.ts';

const be = createCpuBackend();
const PROMPT = [105, 116, 158, 23, 27, 211, 3, 250];

/** The model's final distribution at every position, in float64 on the host. */
async function finalProbs(model: Transformer, ids: readonly number[]): Promise<Float64Array> {
  const logits = model.runWithHooks([ids], {})!;
  return softmaxRows(await readF32(be, logits), model.config.vocab);
}

/** softmax(W_U · norm_final(h)) for rows of h, computed on the host in float64 from the model's weights. */
async function hostLens(model: Transformer, h: Float32Array): Promise<Float64Array> {
  const c = model.config;
  const d = c.dModel;
  const V = c.vocab;
  const w = await readF32(be, model.weight('ln_final.w'), false);
  const b = c.norm.kind === 'layer' ? await readF32(be, model.weight('ln_final.b'), false) : undefined;
  const U = await readF32(be, model.unembed, false);
  const rows = h.length / d;
  const logits = new Float32Array(rows * V);
  const x = new Float64Array(d);
  for (let r = 0; r < rows; r++) {
    let mean = 0;
    if (c.norm.kind === 'layer') {
      for (let j = 0; j < d; j++) mean += h[r * d + j]! / d;
    }
    let ms = 0;
    for (let j = 0; j < d; j++) ms += (h[r * d + j]! - mean) ** 2 / d;
    const inv = 1 / Math.sqrt(ms + c.norm.eps);
    for (let j = 0; j < d; j++) x[j] = (h[r * d + j]! - mean) * inv * (c.norm.addOne ? 1 + w[j]! : w[j]!) + (b ? b[j]! : 0);
    for (let v = 0; v < V; v++) {
      let z = 0;
      for (let j = 0; j < d; j++) z += x[j]! * U[v * d + j]!;
      logits[r * V + v] = c.finalSoftcap > 0 ? c.finalSoftcap * Math.tanh(z / c.finalSoftcap) : z;
    }
  }
  return softmaxRows(logits, V);
}

function hostKl(p: Float64Array, q: Float64Array, row: number, V: number): number {
  let kl = 0;
  for (let v = 0; v < V; v++) {
    const a = p[row * V + v]!;
    if (a > 0) kl += a * (Math.log(a) - Math.log(q[row * V + v]!));
  }
  return kl;
}

describe('logit lens', () => {
  it.each(ARCHS)('%s: the lens of the last resid_post is the final distribution, and KL matches the final distributions', async (arch) => {
    const pair = await archPair(arch, be);
    const L = pair.base.config.nLayers;
    const V = pair.base.config.vocab;
    const T = PROMPT.length;
    const k = 5;
    const lens = await differentialLogitLens(pair, PROMPT, { k });
    expect([lens.layers, lens.positions, lens.kl.length]).toEqual([L, T, L * T]);
    const pb = await finalProbs(pair.base, PROMPT);
    const pf = await finalProbs(pair.ft, PROMPT);
    for (let t = 0; t < T; t++) {
      const row = (L - 1) * T + t;
      for (const [top, p] of [
        [lens.base, pb],
        [lens.ft, pf],
      ] as const) {
        for (let j = 0; j < k; j++) {
          const id = top.ids[row * k + j]!;
          const expected = p[t * V + id]!;
          expect(Math.abs(top.probs[row * k + j]! - expected)).toBeLessThanOrEqual(1e-6 + 1e-4 * expected);
          // The j-th token is as probable as the j-th largest of the reference distribution.
          const sorted = [...p.subarray(t * V, (t + 1) * V)].sort((a, b) => b - a);
          expect(Math.abs(expected - sorted[j]!)).toBeLessThanOrEqual(1e-6 + 1e-4 * sorted[j]!);
        }
      }
      const kl = hostKl(pf, pb, t, V);
      expect(Math.abs(lens.kl[row]! - kl)).toBeLessThanOrEqual(1e-5 + 1e-3 * kl);
    }
  });

  it.each(['llama', 'gpt2', 'gemma2'])('%s: the lens of every layer matches a float64 host computation on the reference captures', async (arch) => {
    const pair = await archPair(arch, be);
    const golden = await readCaptures(`${FIXTURES}arch/${arch}/golden.safetensors`);
    const d = pair.base.config.dModel;
    const V = pair.base.config.vocab;
    const k = 8;
    for (let l = 0; l < pair.base.config.nLayers; l++) {
      const h = await golden.f32(`base.resid_post.${l}`);
      const t = be.fromArray(h, [h.length / d, d]);
      const top = await lensTop(pair.base, t, { k });
      be.dispose(t);
      const p = await hostLens(pair.base, h);
      for (let r = 0; r < top.rows; r++) {
        for (let j = 0; j < k; j++) {
          const expected = p[r * V + top.ids[r * k + j]!]!;
          expect(Math.abs(top.probs[r * k + j]! - expected)).toBeLessThanOrEqual(1e-6 + 1e-4 * expected);
          if (j > 0) expect(top.probs[r * k + j]!).toBeLessThanOrEqual(top.probs[r * k + j - 1]!);
        }
        const best = Math.max(...p.subarray(r * V, (r + 1) * V));
        expect(Math.abs(top.probs[r * k]! - best)).toBeLessThanOrEqual(1e-6 + 1e-4 * best);
      }
    }
  });

  it('one layer per backend call gives the all-layers result; KL is zero where the pair does not differ yet', async () => {
    const pair = await archPair('qwen2', be);
    const whole = await differentialLogitLens(pair, PROMPT, { k: 7 });
    const perLayer = await differentialLogitLens(pair, PROMPT, { k: 7, maxRows: PROMPT.length });
    expect([...perLayer.base.ids]).toEqual([...whole.base.ids]);
    expect([...perLayer.ft.ids]).toEqual([...whole.ft.ids]);
    for (let i = 0; i < whole.base.probs.length; i++) {
      expect(Math.abs(perLayer.base.probs[i]! - whole.base.probs[i]!)).toBeLessThanOrEqual(1e-6 + 1e-5 * whole.base.probs[i]!);
      expect(Math.abs(perLayer.ft.probs[i]! - whole.ft.probs[i]!)).toBeLessThanOrEqual(1e-6 + 1e-5 * whole.ft.probs[i]!);
    }
    for (let i = 0; i < whole.kl.length; i++) expect(Math.abs(perLayer.kl[i]! - whole.kl[i]!)).toBeLessThanOrEqual(1e-5 + 1e-4 * whole.kl[i]!);
    // The pair differs from block 1 on (its MLP output): KL is zero at layer 0 and not after.
    const T = PROMPT.length;
    for (let t = 0; t < T; t++) expect(Math.abs(whole.kl[t]!)).toBeLessThanOrEqual(1e-6);
    expect(Math.min(...whole.kl.subarray(T))).toBeGreaterThan(1e-4);
  });

  it('a model against itself has zero KL and equal top tokens everywhere', async () => {
    const { base } = await archPair('mistral', be);
    const lens = await differentialLogitLens({ base, ft: base }, PROMPT, { k: 4 });
    for (const x of lens.kl) expect(Math.abs(x)).toBeLessThanOrEqual(1e-6);
    expect([...lens.ft.ids]).toEqual([...lens.base.ids]);
  });

  it('refuses token ids outside the vocabulary and an empty prompt', async () => {
    const pair = await archPair('llama', be);
    await expect(differentialLogitLens(pair, [1, 256])).rejects.toThrow(/token id 256 is outside the vocabulary \(0\.\.255\)/);
    await expect(differentialLogitLens(pair, [])).rejects.toThrow(/no tokens/);
    await expect(differentialLogitLens(pair, [1, 2], { k: 33 })).rejects.toThrow(/k = 33 must be an integer in 1\.\.32/);
  });
});
