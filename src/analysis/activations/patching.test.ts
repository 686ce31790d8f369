import { describe, expect, it } from 'vitest';
import { createCpuBackend } from '../../gpu/cpu-backend.ts';
import type { Transformer } from '../../model/transformer.ts';
import { activationPatching, modelStitching } from './patching.ts';
import { readF32 } from './run.ts';
import { archPair, softmaxRows } from './testing.ts';

const be = createCpuBackend();
const PROMPT = [105, 116, 158, 23, 27, 211, 40, 9];

async function probs(model: Transformer, ids: readonly number[]): Promise<Float64Array> {
  return softmaxRows(await readF32(be, model.runWithHooks([ids], {})!), model.config.vocab);
}

function meanKl(p: Float64Array, q: Float64Array, V: number, rows: readonly number[]): number {
  let total = 0;
  for (const r of rows) for (let v = 0; v < V; v++) total += p[r * V + v]! * (Math.log(p[r * V + v]!) - Math.log(q[r * V + v]!));
  return total / rows.length;
}

function meanLoss(p: Float64Array, V: number, ids: readonly number[]): number {
  let s = 0;
  for (let t = 0; t + 1 < ids.length; t++) s -= Math.log(p[t * V + ids[t + 1]!]!);
  return s / (ids.length - 1);
}

const close = (a: number, b: number, abs: number, rel: number) => expect(Math.abs(a - b)).toBeLessThanOrEqual(abs + rel * Math.abs(b));

describe('cross-model activation patching', () => {
  it.each(['llama', 'gemma2', 'gpt2'])('%s: the last resid_post recovers the other model exactly, shared layer 0 recovers nothing', async (arch) => {
    const pair = await archPair(arch, be);
    const L = pair.base.config.nLayers;
    const V = pair.base.config.vocab;
    const r = await activationPatching(pair, PROMPT);
    const pb = await probs(pair.base, PROMPT);
    const pf = await probs(pair.ft, PROMPT);
    const all = PROMPT.map((_, t) => t);
    close(r.klFtBase, meanKl(pf, pb, V, all), 1e-6, 1e-4);
    close(r.klBaseFt, meanKl(pb, pf, V, all), 1e-6, 1e-4);
    expect(r.klFtBase).toBeGreaterThan(1e-3);
    expect(r.ftIntoBase.map((x) => x.kind)).toEqual(['resid_pre', 'attn_out', 'mlp_out', 'resid_post']);
    for (const direction of [r.ftIntoBase, r.baseIntoFt]) {
      const post = direction.find((x) => x.kind === 'resid_post')!;
      close(post.recovery[L - 1]!, 1, 1e-5, 0);
      expect(Math.abs(post.kl[L - 1]!)).toBeLessThanOrEqual(1e-7);
      // Block 0 is identical in both models: its activations are too, so patching them changes nothing.
      for (const x of direction) close(x.recovery[0]!, 0, 1e-6, 0);
      // The fine-tune changes block 1's MLP: patching its output moves the distribution, not all the way.
      const mlp = direction.find((x) => x.kind === 'mlp_out')!;
      expect(mlp.recovery[1]!).toBeGreaterThan(0.01);
      expect(mlp.recovery[1]!).toBeLessThan(0.999);
    }
  });

  it('compares the last position alone when asked', async () => {
    const pair = await archPair('qwen2', be);
    const V = pair.base.config.vocab;
    const r = await activationPatching(pair, PROMPT, { positions: 'last', kinds: ['resid_post'] });
    const pb = await probs(pair.base, PROMPT);
    const pf = await probs(pair.ft, PROMPT);
    close(r.klFtBase, meanKl(pf, pb, V, [PROMPT.length - 1]), 1e-6, 1e-4);
    expect(r.ftIntoBase).toHaveLength(1);
    close(r.ftIntoBase[0]!.recovery[2]!, 1, 1e-5, 0);
  });

  it('a zero difference gives zero KL (recovery undefined)', async () => {
    const { base } = await archPair('phi3', be);
    const r = await activationPatching({ base, ft: base }, PROMPT, { kinds: ['attn_out'] });
    expect(r.klFtBase).toBe(0);
    for (const x of r.ftIntoBase[0]!.kl) expect(x).toBe(0);
    expect(r.ftIntoBase[0]!.recovery[0]).toBeNaN();
  });
});

describe('model stitching', () => {
  it.each(['llama', 'qwen3', 'gemma3'])('%s: ℓ = 0 is the upper model and ℓ = L the lower one (heads shared); loss matches the host', async (arch) => {
    const pair = await archPair(arch, be);
    const L = pair.base.config.nLayers;
    const V = pair.base.config.vocab;
    const pb = await probs(pair.base, PROMPT);
    const pf = await probs(pair.ft, PROMPT);
    for (const lower of ['base', 'ft'] as const) {
      const r = await modelStitching(pair, PROMPT, { lower });
      expect(r.klFromFt).toHaveLength(L + 1);
      const [fromLower, fromUpper] = lower === 'base' ? [r.klFromBase, r.klFromFt] : [r.klFromFt, r.klFromBase];
      expect(Math.abs(fromUpper[0]!)).toBeLessThanOrEqual(1e-7);
      expect(Math.abs(fromLower[L]!)).toBeLessThanOrEqual(1e-7);
      close(fromLower[0]!, lower === 'base' ? meanKl(pb, pf, V, PROMPT.map((_, t) => t)) : meanKl(pf, pb, V, PROMPT.map((_, t) => t)), 1e-6, 1e-4);
      close(r.lossBase, meanLoss(pb, V, PROMPT), 1e-6, 1e-5);
      close(r.lossFt, meanLoss(pf, V, PROMPT), 1e-6, 1e-5);
      close(r.loss[0]!, lower === 'base' ? r.lossFt : r.lossBase, 1e-6, 1e-6);
      close(r.loss[L]!, lower === 'base' ? r.lossBase : r.lossFt, 1e-6, 1e-6);
      // Block 0 is shared: stitching after it changes nothing.
      close(r.loss[1]!, r.loss[0]!, 1e-6, 1e-6);
    }
  });

  it('has no loss when only the last position is compared', async () => {
    const pair = await archPair('llama', be);
    const r = await modelStitching(pair, PROMPT, { positions: 'last' });
    expect(r.loss[0]).toBeNaN();
    expect(Math.abs(r.klFromFt[0]!)).toBeLessThanOrEqual(1e-7);
  });
});
