// The issue-12 analyses on the WebGPU backend (Dawn; a software adapter here) against the CPU backend,
// on the same inputs: the tiny llama arch fixture (d 64, vocab 256, 3 layers) and a few short samples.
import { beforeAll, describe, expect, it } from 'vitest';
import { createCpuBackend } from '../../gpu/cpu-backend.ts';
import { useDawn } from '../../gpu/dawn-node.ts';
import { createWebGpuBackend } from '../../kernels/webgpu-backend.ts';
import type { ModelPair } from '../activations/run.ts';
import { archPair } from '../activations/testing.ts';
import { sampleLogitDiff } from '../amplify/amplify.ts';
import { attentionDiff } from '../attention/attention.ts';
import { createRng } from '../crosscoder/rng.ts';
import { collectDifferences } from '../diff-sae/diff-sae.ts';
import { activationDiffPca } from '../pca/pca.ts';
import { corpusKl } from './kl.ts';
import { diffMining } from './mine.ts';

const rng = createRng(21);
const SAMPLES = Array.from({ length: 2 }, () => Array.from({ length: 6 }, () => rng.int(256)));
const PROMPT = [105, 116, 158, 23, 27, 211];
let gpu: ModelPair;
let cpu: ModelPair;

beforeAll(async () => {
  expect(useDawn()).toBe(true);
  gpu = await archPair('llama', await createWebGpuBackend());
  cpu = await archPair('llama', createCpuBackend());
});

const close = (a: number, b: number, abs: number, rel: number) => expect(Math.abs(a - b)).toBeLessThanOrEqual(abs + rel * Math.abs(b));

describe('issue-12 analyses on WebGPU', () => {
  it('diff mining and corpus KL match the CPU backend', async () => {
    const opts = { k: 5, top: 20, topics: 2, topicTokens: 20 };
    const [g, c] = [await diffMining(gpu, SAMPLES, opts), await diffMining(cpu, SAMPLES, opts)];
    // Counts can differ only where two differences tie within float32 rounding at the K-th place.
    const cc = new Map(c.tokens.map((t) => [t.id, t]));
    let matched = 0;
    for (const t of g.tokens) {
      const o = cc.get(t.id);
      if (!o) continue;
      matched++;
      expect(Math.abs(t.count - o.count)).toBeLessThanOrEqual(1);
      if (t.count === o.count) close(t.meanDiff, o.meanDiff, 1e-3, 1e-3);
    }
    expect(matched).toBeGreaterThanOrEqual(16);
    const [kg, kc] = [await corpusKl(gpu, SAMPLES, { top: 5 }), await corpusKl(cpu, SAMPLES, { top: 5 })];
    close(kg.meanKl, kc.meanKl, 1e-5, 1e-3);
    for (let p = 0; p < 6; p++) close(kg.perPosition[p]!, kc.perPosition[p]!, 1e-5, 1e-3);
    kg.topContexts.forEach((x, i) => close(x.kl, kc.topContexts[i]!.kl, 1e-5, 1e-3));
  });

  it('PCA, attention patterns and logit-diff sampling match the CPU backend', async () => {
    const [pg, pc] = [await activationDiffPca(gpu, SAMPLES, { layer: 2, components: 3 }), await activationDiffPca(cpu, SAMPLES, { layer: 2, components: 3 })];
    close(pg.totalVariance, pc.totalVariance, 1e-6, 1e-4);
    pg.components.forEach((x, i) => {
      const y = pc.components[i]!;
      close(x.variance, y.variance, 1e-6, 1e-3);
      let dot = 0;
      for (let j = 0; j < x.direction.length; j++) dot += x.direction[j]! * y.direction[j]!;
      expect(Math.abs(dot)).toBeGreaterThan(0.999);
    });
    const [ag, ac] = [await attentionDiff(gpu, PROMPT), await attentionDiff(cpu, PROMPT)];
    ag.heads.forEach((h, i) => {
      close(h.js, ac.heads[i]!.js, 1e-6, 1e-3);
      if (h.layer < 2) expect(h.js).toBe(0);
    });
    // Greedy amplified continuations agree (the logits agree to float32 rounding).
    const opts = { maxNew: 3, temperature: 0 };
    expect(await sampleLogitDiff(gpu, PROMPT, 2, opts)).toEqual(await sampleLogitDiff(cpu, PROMPT, 2, opts));
  });

  it("the diff-SAE's δ matches the CPU backend, row for row", async () => {
    const [g, c] = [await collectDifferences(gpu, SAMPLES, { layer: 2 }), await collectDifferences(cpu, SAMPLES, { layer: 2 })];
    expect([g.rows, g.d]).toEqual([2 * 5, 64]);
    expect([...g.sample, ...g.position, ...g.tokens]).toEqual([...c.sample, ...c.position, ...c.tokens]);
    let big = 0;
    for (let i = 0; i < c.delta.length; i++) {
      close(g.delta[i]!, c.delta[i]!, 1e-5, 1e-3);
      big = Math.max(big, Math.abs(c.delta[i]!));
    }
    expect(big).toBeGreaterThan(1e-3);
  });
});
