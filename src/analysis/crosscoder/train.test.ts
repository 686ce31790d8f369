import { describe, expect, it } from 'vitest';
import { createInference } from './inference.ts';
import { classifyRatio, createLatentStats, normRatios } from './latents.ts';
import { createRng } from './rng.ts';
import { plantFeatures, sampleActivations, type PlantedKind } from './synthetic.ts';
import { createTrainer, kAtStep, lrFactor, resolveTrainerOptions, train, type BatchSource, type StepStats } from './trainer.ts';

const d = 16;
const D = 64;

function cosine(a: ArrayLike<number>, ao: number, b: ArrayLike<number>, bo: number): number {
  let s = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < d; i++) {
    s += a[ao + i]! * b[bo + i]!;
    na += a[ao + i]! ** 2;
    nb += b[bo + i]! ** 2;
  }
  return s / Math.sqrt(na * nb);
}

function batches(seed: number, make: (rng: ReturnType<typeof createRng>) => { base: Float32Array; ft: Float32Array }, count = Infinity): BatchSource {
  const rng = createRng(seed);
  let i = 0;
  return {
    next() {
      if (i++ >= count) return { done: true, value: undefined };
      return { done: false, value: make(rng) };
    },
  };
}

describe('crosscoder training on planted features', () => {
  it('recovers shared, base-only and fine-tune-only directions and classifies them', async () => {
    const rng = createRng(1);
    const feats = plantFeatures(rng, d, { shared: 8, 'base-only': 4, 'ft-only': 4 });
    const fireProbability = 2 / 16;
    const trainer = createTrainer({
      d,
      D,
      k: 2,
      kMax: 8,
      kAnnealSteps: 300,
      lr: 3e-3,
      warmupSteps: 50,
      thresholdStartStep: 200,
      deadTokens: 20_000,
      seed: 3,
    });
    const source = batches(2, (r) => sampleActivations(feats, r, 256, { fireProbability, noise: 0.01 }));
    const history: StepStats[] = [];
    const run = await train(trainer, source, { steps: 1000, onStep: (s) => history.push(s) });
    expect(run.reason).toBe('done');
    expect(history.length).toBe(1000);
    expect(history[0]!.k).toBe(8);
    expect(history[999]!.k).toBe(2);
    expect(history.every((s) => s.kept === s.k * 256)).toBe(true);
    expect(history[999]!.fvu).toBeLessThan(0.05);
    expect(history[999]!.threshold).toBeGreaterThan(0);

    const model = await trainer.model();
    const { decW } = model.params;
    const ratios = normRatios(model.params);
    const matched = new Map<number, { kind: PlantedKind; latent: number }>();
    const hits: Record<PlantedKind, number> = { shared: 0, 'base-only': 0, 'ft-only': 0 };
    const totals: Record<PlantedKind, number> = { shared: 0, 'base-only': 0, 'ft-only': 0 };
    feats.kinds.forEach((kind, g) => {
      totals[kind]++;
      let best = -Infinity;
      let latent = -1;
      for (let j = 0; j < D; j++) {
        const cb = kind === 'ft-only' ? 1 : cosine(feats.directions, g * 2 * d, decW, j * d);
        const cf = kind === 'base-only' ? 1 : cosine(feats.directions, (g * 2 + 1) * d, decW, (D + j) * d);
        if (Math.min(cb, cf) > best) {
          best = Math.min(cb, cf);
          latent = j;
        }
      }
      if (best > 0.9 && classifyRatio(ratios[latent]!) === kind) {
        hits[kind]++;
        matched.set(g, { kind, latent });
      }
    });
    for (const kind of ['shared', 'base-only', 'ft-only'] as const) expect(hits[kind] / totals[kind]).toBeGreaterThanOrEqual(0.8);

    // Held-out tokens through the inference threshold: reconstruction, frequency, Latent Scaling.
    const test = sampleActivations(feats, createRng(99), 4096, { fireProbability, noise: 0.01 });
    const inference = createInference(model);
    const byThreshold = await inference.run(test.base, test.ft, 4096, 'threshold');
    const stats = createLatentStats(model.params);
    stats.add(byThreshold);
    const report = stats.result();
    let err = 0;
    let total = 0;
    for (const m of [0, 1]) {
      const x = byThreshold.x[m]!;
      const mean = new Float64Array(d);
      for (let t = 0; t < 4096; t++) for (let i = 0; i < d; i++) mean[i]! += x[t * d + i]! / 4096;
      for (let t = 0; t < 4096; t++) {
        for (let i = 0; i < d; i++) {
          err += (x[t * d + i]! - byThreshold.recon[m]![t * d + i]!) ** 2;
          total += (x[t * d + i]! - mean[i]!) ** 2;
        }
      }
    }
    expect(err / total).toBeLessThan(0.05);
    let specificOk = 0;
    let sharedOk = 0;
    let sharedCount = 0;
    let specificCount = 0;
    for (const { kind, latent } of matched.values()) {
      const info = report.latents[latent]!;
      expect(Math.abs(info.frequency - fireProbability)).toBeLessThan(0.03);
      if (kind === 'shared') {
        sharedCount++;
        if (!info.ftSpecific && !info.baseSpecific && Math.abs(info.ft.nuError - 1) < 0.3 && Math.abs(info.base.nuRecon - 1) < 0.3) sharedOk++;
      } else {
        specificCount++;
        if (kind === 'ft-only' ? info.ftSpecific && !info.baseSpecific : info.baseSpecific && !info.ftSpecific) specificOk++;
      }
    }
    expect(sharedOk / sharedCount).toBeGreaterThanOrEqual(0.8);
    expect(specificOk / specificCount).toBeGreaterThanOrEqual(0.8);
  });

  it('the L1 variant trains and lowers its loss', async () => {
    const rng = createRng(5);
    const feats = plantFeatures(rng, d, { shared: 4, 'base-only': 2, 'ft-only': 2 });
    const trainer = createTrainer({ d, D: 32, variant: 'l1', l1Lambda: 0.05, lr: 2e-3, warmupSteps: 10, seed: 1 });
    expect(trainer.options.auxAlpha).toBe(0);
    expect(trainer.options.clipGradNorm).toBe(0);
    const losses: number[] = [];
    const l1s: number[] = [];
    await train(trainer, batches(6, (r) => sampleActivations(feats, r, 128, { fireProbability: 0.2 })), {
      steps: 300,
      onStep: (s) => {
        losses.push(s.loss);
        l1s.push(s.l1);
      },
    });
    const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;
    expect(mean(losses.slice(-20))).toBeLessThan(0.25 * mean(losses.slice(0, 10)));
    expect(mean(l1s.slice(-20))).toBeGreaterThan(0);
    const model = await trainer.model();
    expect(model.activation).toBe('relu');
  });

  it('is deterministic given a seed', async () => {
    const feats = plantFeatures(createRng(8), d, { shared: 2, 'base-only': 1, 'ft-only': 1 });
    const runOnce = async () => {
      const trainer = createTrainer({ d, D: 16, k: 1, lr: 1e-3, warmupSteps: 2, seed: 11, deadTokens: 64 });
      const out: number[] = [];
      await train(trainer, batches(4, (r) => sampleActivations(feats, r, 32, { fireProbability: 0.3 })), { steps: 25, onStep: (s) => out.push(s.loss, s.auxk, s.dead) });
      return { out, params: (await trainer.model()).params };
    };
    const a = await runOnce();
    const b = await runOnce();
    expect(a.out).toEqual(b.out);
    expect(a.params.decW).toEqual(b.params.decW);
    expect(a.out.some((x, i) => i % 3 === 1 && x > 0)).toBe(true);
  });
});

describe('training loop and schedules', () => {
  it('anneals k linearly from kMax to k and warms the learning rate up', () => {
    const o = resolveTrainerOptions({ d: 8, D: 2048, k: 100, kMax: 1024, kAnnealSteps: 2000, warmupSteps: 1000, decayStart: 8000, totalSteps: 10000 });
    expect(kAtStep(o, 0)).toBe(1024);
    expect(kAtStep(o, 1000)).toBe(562);
    expect(kAtStep(o, 1999)).toBe(100);
    expect(kAtStep(o, 5000)).toBe(100);
    expect(lrFactor(o, 0)).toBe(0);
    expect(lrFactor(o, 500)).toBe(0.5);
    expect(lrFactor(o, 4000)).toBe(1);
    expect(lrFactor(o, 9000)).toBe(0.5);
    expect(() => resolveTrainerOptions({ d: 8, D: 16, k: 4, kMax: 2 })).toThrow(/k ≤ kMax/);
  });

  it('pauses on abort, resumes where it stopped, and stops when the data runs out', async () => {
    const feats = plantFeatures(createRng(2), 8, { shared: 2, 'base-only': 1, 'ft-only': 1 });
    const trainer = createTrainer({ d: 8, D: 16, k: 1, warmupSteps: 1 });
    const source = batches(3, (r) => sampleActivations(feats, r, 16, { fireProbability: 0.3 }), 30);
    const ctrl = new AbortController();
    const first = await train(trainer, source, { steps: 100, signal: ctrl.signal, onStep: (s) => s.step === 9 && ctrl.abort() });
    expect(first).toMatchObject({ reason: 'aborted', steps: 10 });
    const second = await train(trainer, source, { steps: 20 });
    expect(second).toMatchObject({ reason: 'done', steps: 20 });
    expect(second.last?.step).toBe(19);
    const third = await train(trainer, source, { steps: 100 });
    expect(third).toMatchObject({ reason: 'exhausted', steps: 30 });
    await expect(trainer.step(new Float32Array(7), new Float32Array(7))).rejects.toThrow(/\[n, 8\]/);
  });
});
