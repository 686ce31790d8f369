// The activation analyses on the WebGPU backend (Dawn, software adapter here) against the CPU backend,
// on the tiny arch fixture (d 64, vocab 256, 3 layers, 6 tokens).
import { beforeAll, describe, expect, it } from 'vitest';
import { createCpuBackend } from '../../gpu/cpu-backend.ts';
import { useDawn } from '../../gpu/dawn-node.ts';
import { resetFlags, setFlags } from '../../kernels/flags.ts';
import { createWebGpuBackend } from '../../kernels/webgpu-backend.ts';
import type { Backend } from '../../model/backend.ts';
import { adlDifferences, patchscope } from './adl.ts';
import { differentialLogitLens } from './lens.ts';
import { activationPatching, modelStitching } from './patching.ts';
import type { ModelPair } from './run.ts';
import { archPair, patchscopeMismatches, patchscopePerScale } from './testing.ts';

const PROMPT = [105, 116, 158, 23, 27, 211];
let gpu: ModelPair;
let cpu: ModelPair;

beforeAll(async () => {
  expect(useDawn()).toBe(true);
  const be: Backend = await createWebGpuBackend();
  gpu = await archPair('llama', be);
  cpu = await archPair('llama', createCpuBackend());
});

const close = (a: number, b: number, abs: number, rel: number) => expect(Math.abs(a - b)).toBeLessThanOrEqual(abs + rel * Math.abs(b));

describe('activation analyses on WebGPU', () => {
  it('differential lens matches the CPU backend, also with the unembedding kept as row blocks', async () => {
    const c = await differentialLogitLens(cpu, PROMPT, { k: 4 });
    setFlags({ maxBindingBytes: 16384 });
    let blocked: ModelPair;
    try {
      blocked = await archPair('llama', gpu.base.backend);
    } finally {
      resetFlags();
    }
    // Only embedding, x·Wᵀ and the lens accept row blocks.
    expect(() => blocked.base.backend.scale(blocked.base.unembed, 1)).toThrow(/row blocks/);
    for (const pair of [gpu, blocked]) {
      const g = await differentialLogitLens(pair, PROMPT, { k: 4 });
      for (let i = 0; i < c.kl.length; i++) close(g.kl[i]!, c.kl[i]!, 1e-4, 1e-3);
      for (let i = 0; i < c.ft.probs.length; i++) {
        close(g.ft.probs[i]!, c.ft.probs[i]!, 1e-5, 1e-3);
        close(g.base.probs[i]!, c.base.probs[i]!, 1e-5, 1e-3);
      }
      // Ids agree wherever the CPU's probabilities are not near-ties.
      let same = 0;
      for (let i = 0; i < c.ft.ids.length; i++) if (g.ft.ids[i] === c.ft.ids[i]) same++;
      expect(same).toBeGreaterThanOrEqual(c.ft.ids.length - 2);
    }
  });

  it('patching and stitching: the same recoveries, KL and losses', async () => {
    const g = await activationPatching(gpu, PROMPT, { kinds: ['resid_post', 'mlp_out'] });
    const c = await activationPatching(cpu, PROMPT, { kinds: ['resid_post', 'mlp_out'] });
    close(g.klFtBase, c.klFtBase, 1e-5, 1e-3);
    close(g.ftIntoBase[0]!.recovery[2]!, 1, 1e-4, 0);
    for (let k = 0; k < 2; k++) for (let l = 0; l < 3; l++) close(g.baseIntoFt[k]!.recovery[l]!, c.baseIntoFt[k]!.recovery[l]!, 1e-3, 1e-3);
    const gs = await modelStitching(gpu, PROMPT);
    const cs = await modelStitching(cpu, PROMPT);
    for (let l = 0; l <= 3; l++) {
      close(gs.loss[l]!, cs.loss[l]!, 1e-4, 1e-4);
      close(gs.klFromFt[l]!, cs.klFromFt[l]!, 1e-5, 1e-3);
    }
  });

  it('ADL differences and the KV-cache Patchscope match the CPU backend', async () => {
    const samples = [
      [3, 17, 99, 4, 250, 61, 7],
      [8, 8, 140, 33, 2, 9, 10],
      [100, 101, 102, 103, 104, 105, 106],
    ];
    const g = await adlDifferences(gpu, samples, { positions: [0, 1, 2], batchSize: 2 });
    const c = await adlDifferences(cpu, samples, { positions: [0, 1, 2], batchSize: 2 });
    close(g.ftNorm!, c.ftNorm!, 1e-5, 1e-5);
    for (let p = 0; p < 3; p++) for (let j = 0; j < 64; j++) close(g.delta[p]![j]!, c.delta[p]![j]!, 1e-5, 1e-4);
    const opts = { prompts: [[5, 6, 7, 8]], scales: [1, 10], intersectionTopK: 20, top: 5 };
    const [gp] = await patchscope(gpu.ft, [c.delta[2]!], 2, opts);
    const [cp] = await patchscope(cpu.ft, [c.delta[2]!], 2, opts);
    for (let s = 0; s < 2; s++) cp!.scales[s]!.top.forEach((t, j) => close(gp!.scales[s]!.top[j]!.prob, t.prob, 1e-6, 1e-3));
  });

  it('Patchscope\'s batched step over the repeated prefix cache equals one step per scale, and the CPU backend', async () => {
    const V = gpu.ft.config.vocab;
    const latent = Float32Array.from({ length: 64 }, (_, i) => Math.cos(0.7 * i) * 2);
    const prompts = [[11, 45, 12, 200, 45, 12, 7], [9], [30, 31, 32]];
    const scales = [0.5, 1, 3, 20, 200];
    const opts = { prompts, scales, intersectionTopK: V, top: 8 };
    const [g] = await patchscope(gpu.ft, [latent], 1, opts);
    expect(patchscopeMismatches(g!, await patchscopePerScale(gpu.ft, latent, 1, prompts, scales), 1e-6, 1e-4)).toEqual([]);
    expect(patchscopeMismatches(g!, await patchscopePerScale(cpu.ft, latent, 1, prompts, scales), 1e-6, 1e-3)).toEqual([]);
  });
});
