// The WebGPU engine against the CPU reference engine (float64) on the same parameters and batch:
// activations, selections, reconstructions, every loss part and gradient, Adam, and training.
import { beforeAll, describe, expect, it } from 'vitest';
import { useDawn } from '../../gpu/dawn-node.ts';
import { createCpuEngine } from './cpu-engine.ts';
import type { CrosscoderEngine, LossOptions, SelectInfo } from './engine.ts';
import { initParams, scoreWeights, type CodeNormalization, type CrosscoderParams, type FloatArray } from './model.ts';
import { createRng } from './rng.ts';
import { plantFeatures, sampleActivations } from './synthetic.ts';
import { createTrainer, type TrainerOptions } from './trainer.ts';
import { createWebGpuEngine, type WebGpuCrosscoderEngine } from './webgpu-engine.ts';

const d = 16;
const D = 64;
const n = 32;
type Key = 'encW' | 'encB' | 'decW' | 'decB';
const KEYS: Key[] = ['encW', 'encB', 'decW', 'decB'];

beforeAll(() => {
  expect(useDawn()).toBe(true);
});

/** Every |got − want| ≤ abs + rel·|want|, naming the worst element. */
function expectClose(got: ArrayLike<number>, want: ArrayLike<number>, tol: { abs: number; rel: number }, what: string): void {
  expect(got.length, `${what}: length`).toBe(want.length);
  let worst = -1;
  let excess = 0;
  for (let i = 0; i < want.length; i++) {
    const e = Math.abs(got[i]! - want[i]!) - (tol.abs + tol.rel * Math.abs(want[i]!));
    if (!(e <= excess)) {
      worst = i;
      excess = e;
    }
  }
  if (worst >= 0) expect.fail(`${what}: element ${worst} is ${got[worst]}, expected ${want[worst]} (abs ${tol.abs}, rel ${tol.rel})`);
}

function randomSetup(seed: number) {
  const rng = createRng(seed);
  const p = initParams(d, D, rng);
  for (let i = 0; i < D; i++) p.encB[i] = rng.normal() * 0.2;
  for (let i = 0; i < 2 * d; i++) p.decB[i] = rng.normal() * 0.2;
  // Decoder norms away from 1, so the score weights matter.
  for (let i = 0; i < p.decW.length; i++) p.decW[i]! *= 0.5 + ((i / d) % 7) / 7;
  const xb = Float32Array.from({ length: n * d }, () => rng.normal());
  const xf = Float32Array.from({ length: n * d }, () => rng.normal() * 1.5);
  return { p, xb, xf };
}

async function pair(p: CrosscoderParams<FloatArray>, xb: Float32Array, xf: Float32Array, codeNormalization: CodeNormalization = 'crosscoder') {
  const gpu = await createWebGpuEngine(d, D, { codeNormalization });
  const cpu = createCpuEngine({ d, D, codeNormalization, precision: 'f64' });
  for (const e of [gpu, cpu] as CrosscoderEngine[]) {
    e.setParams(p);
    e.setBatch(xb, xf, n);
    e.encode();
  }
  return { gpu, cpu };
}

async function expectSameCode(gpu: CrosscoderEngine, cpu: CrosscoderEngine, tol = { abs: 2e-6, rel: 1e-5 }): Promise<void> {
  const a = await gpu.readCode();
  const b = await cpu.readCode();
  expect(Array.from(a.rowPtr)).toEqual(Array.from(b.rowPtr));
  expect(Array.from(a.index)).toEqual(Array.from(b.index));
  expectClose(a.value, b.value, tol, 'kept values');
}

function expectSameSelect(a: SelectInfo, b: SelectInfo): void {
  expect(a.kept).toBe(b.kept);
  expect(Array.from(a.fired)).toEqual(Array.from(b.fired));
  expect(Math.abs(a.minScore - b.minScore)).toBeLessThanOrEqual(1e-5 * Math.abs(b.minScore) + 2e-6);
}

/**
 * Gradients are float32 sums over tokens of terms that cancel, so the absolute part of the
 * tolerance scales with the largest entry of the same gradient.
 */
function expectCloseScaled(got: ArrayLike<number>, want: ArrayLike<number>, what: string): void {
  let scale = 0;
  for (let i = 0; i < want.length; i++) scale = Math.max(scale, Math.abs(want[i]!));
  expect(scale, `${what} is zero`).toBeGreaterThan(0);
  expectClose(got, want, { abs: 5e-6 * scale, rel: 1e-4 }, what);
}

async function expectSameGrads(gpu: CrosscoderEngine, cpu: CrosscoderEngine, what: string, dead: Uint8Array | null): Promise<void> {
  const a = await gpu.readGrads();
  const b = await cpu.readGrads();
  for (const k of KEYS) expectCloseScaled(a[k], b[k], `${what}: ∂${k}`);
  if (!dead) return;
  // Latents that did not fire get gradients from the auxiliary loss alone.
  const rows = (g: CrosscoderParams<FloatArray>, k: 'encW' | 'decW') =>
    Array.from({ length: 2 * D }, (_, r) => r).flatMap((r) => (dead[r % D] ? Array.from(g[k].subarray(r * d, r * d + d)) : []));
  for (const k of ['encW', 'decW'] as const) expectCloseScaled(rows(a, k), rows(b, k), `${what}: dead rows of ∂${k}`);
  expectCloseScaled(a.encB.filter((_, j) => dead[j]), b.encB.filter((_, j) => dead[j]), `${what}: dead entries of ∂encB`);
}

function expectSameLoss(a: Record<string, number>, b: Record<string, number>): void {
  for (const k of ['loss', 'l2', 'mse', 'auxk', 'l1', 'fvu']) {
    expect(Math.abs(a[k]! - b[k]!), `${k}: ${a[k]} vs ${b[k]}`).toBeLessThanOrEqual(1e-6 + 1e-5 * Math.abs(b[k]!));
  }
}

describe('WebGPU crosscoder engine against the CPU engine', () => {
  it('encodes f = ReLU(Σ_m x^m W_enc^m + b_enc)', async () => {
    const { p, xb, xf } = randomSetup(1);
    const gpu = await createWebGpuEngine(d, D);
    gpu.setParams(p);
    gpu.setBatch(xb, xf, n);
    gpu.encode();
    const f = await gpu.readActivations();
    const want = new Float64Array(n * D);
    for (let t = 0; t < n; t++) {
      for (let j = 0; j < D; j++) {
        let s = p.encB[j]!;
        for (let i = 0; i < d; i++) s += xb[t * d + i]! * p.encW[j * d + i]! + xf[t * d + i]! * p.encW[(D + j) * d + i]!;
        want[t * D + j] = Math.max(s, 0);
      }
    }
    expectClose(f, want, { abs: 2e-6, rel: 1e-5 }, 'f');
    expect(want.filter((v) => v > 0).length).toBeGreaterThan(n * D * 0.2);
    gpu.dispose();
  });

  for (const codeNormalization of ['crosscoder', 'sae', 'none'] as CodeNormalization[]) {
    it(`BatchTopK keeps the same kTotal entries with any hint (${codeNormalization} scores)`, async () => {
      const { p, xb, xf } = randomSetup(2);
      const { gpu, cpu } = await pair(p, xb, xf, codeNormalization);
      for (const kTotal of [1, 3 * n, 10 * n]) {
        const ref = await cpu.selectTopK(kTotal, -1);
        expect(ref.kept).toBe(kTotal);
        for (const hint of [-1, ref.minScore, ref.minScore * 1.3, ref.minScore * 0.7, ref.minScore * 50, ref.minScore / 50]) {
          expectSameSelect(await gpu.selectTopK(kTotal, hint), ref);
          await expectSameCode(gpu, cpu);
        }
      }
      expectClose(await gpu.readScoreWeights(), Float32Array.from(scoreWeights(p, codeNormalization)), { abs: 1e-6, rel: 1e-6 }, 'score weights');
      gpu.dispose();
    });
  }

  it('splits planted ties at the cut exactly as the CPU engine does', async () => {
    // Small integers everywhere: every sum is exact in float32 in any order, and many scores tie.
    const rng = createRng(3);
    const p = initParams(d, D, rng);
    p.encW.forEach((_, i) => (p.encW[i] = [0, 0, 0, 1, -1, 0.5][rng.int(6)]!));
    p.encB.fill(0);
    p.decW.fill(0);
    // Unit decoder vectors: w_j = 2 for every latent.
    for (let j = 0; j < D; j++) {
      p.decW[j * d + (j % d)] = 1;
      p.decW[(D + j) * d + ((j + 1) % d)] = 1;
    }
    const xb = Float32Array.from({ length: n * d }, () => rng.int(3) - 1);
    const xf = Float32Array.from({ length: n * d }, () => rng.int(3) - 1);
    const { gpu, cpu } = await pair(p, xb, xf);
    const f = await gpu.readActivations();
    let planted = 0;
    for (const kTotal of [2 * n, 5 * n, 9 * n]) {
      const ref = await cpu.selectTopK(kTotal, -1);
      const atCut = f.filter((v) => v * 2 === ref.minScore).length;
      const code = await cpu.readCode();
      const keptAtCut = Array.from(code.value).filter((v) => v * 2 === ref.minScore).length;
      if (keptAtCut < atCut) planted++;
      for (const hint of [-1, ref.minScore, ref.minScore * 0.75]) {
        const got = await gpu.selectTopK(kTotal, hint);
        expect(got.kept).toBe(kTotal);
        expectSameSelect(got, ref);
        await expectSameCode(gpu, cpu, { abs: 0, rel: 0 });
      }
    }
    expect(planted).toBe(3);
    gpu.dispose();
  });

  it('keeps scores above θ, and every positive one, as the CPU engine', async () => {
    const { p, xb, xf } = randomSetup(4);
    const { gpu, cpu } = await pair(p, xb, xf);
    const ref = await cpu.selectTopK(4 * n, -1);
    // Thresholds away from any score: at a score itself the engines' roundings of it may differ.
    for (const theta of [ref.minScore * 1.0001, ref.minScore * 0.5001, 0]) {
      const want = await cpu.selectAbove(theta);
      expectSameSelect(await gpu.selectAbove(theta), want);
      await expectSameCode(gpu, cpu);
    }
    const all = await cpu.selectPositive();
    expect(all.kept).toBeGreaterThan(10 * n);
    expectSameSelect(await gpu.selectPositive(), all);
    await expectSameCode(gpu, cpu);
    gpu.dispose();
  });

  it('decodes x̂^m = b_dec^m + Σ kept f_j d_j^m', async () => {
    const { p, xb, xf } = randomSetup(5);
    const { gpu, cpu } = await pair(p, xb, xf);
    await gpu.selectTopK(6 * n, -1);
    await cpu.selectTopK(6 * n, -1);
    await expectSameCode(gpu, cpu);
    gpu.decode();
    cpu.decode();
    const [gb, gf] = await gpu.readReconstruction();
    const [cb, cf] = await cpu.readReconstruction();
    expectClose(gb, cb, { abs: 1e-6, rel: 1e-5 }, 'x̂ base');
    expectClose(gf, cf, { abs: 1e-6, rel: 1e-5 }, 'x̂ ft');
    gpu.dispose();
  });

  const none: LossOptions = { objective: 'l2', l1Lambda: 0, auxAlpha: 0, auxK: 0, dead: null };
  const cases: Array<{ name: string; select: 'topk' | 'positive'; opts: LossOptions; codeNormalization?: CodeNormalization }> = [
    { name: 'l2', select: 'topk', opts: none },
    { name: 'mse', select: 'topk', opts: { ...none, objective: 'mse' } },
    { name: 'l1 (crosscoder norms)', select: 'positive', opts: { ...none, objective: 'l1', l1Lambda: 0.3 } },
    { name: 'l1 (sae norms)', select: 'positive', opts: { ...none, objective: 'l1', l1Lambda: 0.3 }, codeNormalization: 'sae' },
    { name: 'l2 with auxk on dead latents', select: 'topk', opts: { ...none, auxAlpha: 0.5, auxK: 5 } },
    { name: 'mse with auxk, every dead candidate kept', select: 'topk', opts: { ...none, objective: 'mse', auxAlpha: 0.5, auxK: D } },
  ];
  for (const c of cases) {
    it(`loss parts and every gradient: ${c.name}`, async () => {
      const { p, xb, xf } = randomSetup(6);
      const { gpu, cpu } = await pair(p, xb, xf, c.codeNormalization);
      const kTotal = 2 * n;
      const ref = c.select === 'topk' ? await cpu.selectTopK(kTotal, -1) : await cpu.selectPositive();
      const got = c.select === 'topk' ? await gpu.selectTopK(kTotal, -1) : await gpu.selectPositive();
      expectSameSelect(got, ref);
      gpu.decode();
      cpu.decode();
      const dead = c.opts.auxAlpha > 0 ? Uint8Array.from(ref.fired, (x) => 1 - x) : null;
      if (dead && c.opts.auxK < D) expect(dead.reduce((a, b) => a + b, 0)).toBeGreaterThan(c.opts.auxK);
      const opts = { ...c.opts, dead };
      const want = await cpu.backward(opts);
      const lossGot = await gpu.backward(opts);
      expectSameLoss({ ...lossGot }, { ...want });
      if (c.opts.auxAlpha > 0) expect(want.auxk).toBeGreaterThan(0);
      if (c.opts.objective === 'l1') expect(want.l1).toBeGreaterThan(0);
      await expectSameGrads(gpu, cpu, c.name, dead);
      gpu.dispose();
    });
  }

  for (const clipGradNorm of [0, 0.05]) {
    it(`Adam steps update parameters as the CPU engine (clip ${clipGradNorm})`, async () => {
      const { p, xb, xf } = randomSetup(7);
      const { gpu, cpu } = await pair(p, xb, xf);
      // eps comparable to the gradients, so that Adam is not blind to the clipping factor.
      const adam = { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-3, clipGradNorm };
      const dead = new Uint8Array(D);
      for (let step = 0; step < 2; step++) {
        for (const e of [gpu, cpu] as CrosscoderEngine[]) {
          if (step > 0) e.encode();
          const sel = await e.selectTopK(3 * n, -1);
          dead.set(Uint8Array.from(sel.fired, (x) => 1 - x));
          e.decode();
          await e.backward({ ...none, auxAlpha: 1 / 32, auxK: 4, dead });
          e.adam(adam);
        }
        const a = await gpu.readParams();
        const b = await cpu.readParams();
        // Adam moves every parameter with a gradient by about lr; compare the updates.
        for (const k of KEYS) {
          const moved = b[k].map((v, i) => v - p[k][i]!);
          expect(moved.some((v) => Math.abs(v) > 1e-3)).toBe(true);
          expectClose(a[k], b[k], { abs: 2e-6, rel: 1e-5 }, `step ${step + 1}: ${k}`);
        }
      }
      gpu.dispose();
    });
  }

  it('a few training steps from the same seed stay close to the CPU engine', async () => {
    const rng = createRng(8);
    const feats = plantFeatures(rng, d, { shared: 6, 'base-only': 3, 'ft-only': 3 });
    const batches = Array.from({ length: 8 }, () => sampleActivations(feats, rng, n, { fireProbability: 0.15, noise: 0.02 }));
    const opts: TrainerOptions = { d, D, k: 4, kMax: 12, kAnnealSteps: 6, lr: 3e-3, warmupSteps: 2, deadTokens: 3 * n, seed: 5 };
    const gpuEngine = await createWebGpuEngine(d, D);
    const gpu = createTrainer({ ...opts, engine: gpuEngine });
    const cpu = createTrainer({ ...opts, engine: createCpuEngine({ d, D, precision: 'f64' }) });
    let auxSteps = 0;
    for (const b of batches) {
      const a = await gpu.step(b.base, b.ft);
      const c = await cpu.step(b.base, b.ft);
      expect(a.kept).toBe(c.kept);
      expect(a.dead).toBe(c.dead);
      if (c.auxk > 0) auxSteps++;
      for (const k of ['loss', 'l2', 'mse', 'auxk', 'fvu'] as const) {
        expect(Math.abs(a[k] - c[k]), `step ${c.step} ${k}: ${a[k]} vs ${c[k]}`).toBeLessThanOrEqual(1e-5 + 1e-4 * Math.abs(c[k]));
      }
    }
    expect(auxSteps).toBeGreaterThan(0);
    const a = (await gpu.model()).params;
    const c = (await cpu.model()).params;
    for (const k of KEYS) expectClose(a[k], c[k], { abs: 1e-5, rel: 1e-4 }, `trained ${k}`);
    gpuEngine.dispose();
  });

  it('rejects mismatched parameters and batches, and calls out of order', async () => {
    const gpu: WebGpuCrosscoderEngine = await createWebGpuEngine(d, D);
    const { p, xb, xf } = randomSetup(9);
    expect(() => gpu.setParams(initParams(d, D + 1, createRng(1)))).toThrow(/D=65.*D=64/);
    expect(() => gpu.encode()).toThrow(/needs a batch/);
    gpu.setParams(p);
    expect(() => gpu.setBatch(xb, xf.subarray(0, d * (n - 1)), n)).toThrow(/expected 32×16 values per model/);
    gpu.setBatch(xb, xf, n);
    expect(() => gpu.decode()).toThrow(/needs a selection/);
    await expect(gpu.backward(none)).rejects.toThrow(/needs encode, a selection and decode/);
    gpu.dispose();
    expect(() => gpu.encode()).toThrow(/after dispose/);
    await expect(createWebGpuEngine(d, 0)).rejects.toThrow(/positive integers/);
  });
});
