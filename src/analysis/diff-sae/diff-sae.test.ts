// diff-SAE: the crosscoder engine with δ as its one input recovers planted sparse directions of δ,
// and the zero base half stays exactly zero.
import { describe, expect, it } from 'vitest';
import { createRng } from '../crosscoder/rng.ts';
import { plantFeatures, sampleActivations } from '../crosscoder/synthetic.ts';
import { createDiffSaeTrainer, deltaBatches, diffSaeLatentStats, differenceNormalization, latentDirection } from './diff-sae.ts';

describe('diff-SAE', () => {
  it('recovers the planted directions of a sparse δ; the base half stays zero', async () => {
    const d = 16;
    const G = 8;
    const rng = createRng(1);
    const planted = plantFeatures(rng, d, { shared: 0, 'base-only': 0, 'ft-only': G });
    const n = 4096;
    const { ft: delta } = sampleActivations(planted, rng, n, { fireProbability: 0.25, noise: 0.01 });
    const D = 32;
    const trainer = createDiffSaeTrainer({ d, D, k: 2, kMax: 8, kAnnealSteps: 300, deadTokens: 20_000, lr: 3e-3, warmupSteps: 50, thresholdStartStep: 200, normalization: differenceNormalization(delta, n, d), seed: 3 });
    const batches = deltaBatches(delta, d, 256, 0);
    for (let s = 0; s < 1000; s++) await trainer.step(batches.next());
    const model = await trainer.model();
    for (let i = 0; i < D * d; i++) {
      expect(model.params.decW[i]).toBe(0);
      expect(model.params.encW[i]).toBe(0);
    }
    let found = 0;
    for (let g = 0; g < G; g++) {
      let best = 0;
      for (let j = 0; j < D; j++) {
        const v = latentDirection(model, j);
        let dot = 0;
        let vv = 0;
        for (let i = 0; i < d; i++) {
          dot += v[i]! * planted.directions[(g * 2 + 1) * d + i]!;
          vv += v[i]! * v[i]!;
        }
        if (vv > 0) best = Math.max(best, dot / Math.sqrt(vv));
      }
      if (best > 0.95) found++;
    }
    expect(found).toBe(G);
    const report = await diffSaeLatentStats(model, { d, rows: n, delta, tokens: new Int32Array(n), sample: Int32Array.from({ length: n }, (_, i) => Math.floor(i / 16)), position: Int32Array.from({ length: n }, (_, i) => i % 16), layer: 0, hook: 'x' });
    const live = report.latents.filter((l) => l.frequency > 0);
    expect(live.length).toBeGreaterThanOrEqual(G);
    const meanFreq = live.reduce((s, l) => s + l.frequency, 0);
    // 0.25 · 8 = 2 planted features fire per token on average, as k = 2.
    expect(meanFreq).toBeGreaterThan(1.5);
    expect(meanFreq).toBeLessThan(2.5);
  });
});
