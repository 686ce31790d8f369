import { describe, expect, it } from 'vitest';
import { createInference, encodeWithThreshold, type InferenceBatch } from './inference.ts';
import { classifyRatio, createLatentStats, densityHistogram, logitEffects, normRatios } from './latents.ts';
import { identityNormalization, zeroParams, type CrosscoderModel } from './model.ts';
import { createRng } from './rng.ts';

function randomModel(d: number, D: number, seed: number, threshold: number): CrosscoderModel {
  const rng = createRng(seed);
  const params = zeroParams(d, D, (n) => new Float32Array(n));
  for (const key of ['encW', 'encB', 'decW', 'decB'] as const) for (let i = 0; i < params[key].length; i++) params[key][i] = rng.normal() * 0.5;
  return { params, activation: 'batchtopk', codeNormalization: 'crosscoder', k: 3, threshold, normalization: identityNormalization(d), info: {} };
}

describe('decoder norm ratio', () => {
  it('computes r from the two decoder norms and classifies it', () => {
    const p = zeroParams(2, 6, (n) => new Float32Array(n));
    const norms: Array<[number, number]> = [[1, 0], [0, 2], [1, 1], [1, 0.5], [0.3, 1], [0, 0]];
    norms.forEach(([b, f], j) => {
      p.decW[j * 2] = b;
      p.decW[(6 + j) * 2 + 1] = f;
    });
    const r = normRatios(p);
    const expected = [1, 0, 0.5, 0.75, 0.15];
    expected.forEach((e, j) => expect(Math.abs(r[j]! - e)).toBeLessThan(1e-6));
    expect(Number.isNaN(r[5]!)).toBe(true);
    expect(Array.from(r, classifyRatio)).toEqual(['base-only', 'ft-only', 'shared', 'other', 'other', 'other']);
    expect(classifyRatio(0.09)).toBe('ft-only');
    expect(classifyRatio(0.41)).toBe('shared');
    expect(classifyRatio(0.91)).toBe('base-only');
  });
});

describe('Latent Scaling', () => {
  it('matches the closed form computed directly from dense activations, streamed over two batches', async () => {
    const d = 6;
    const D = 10;
    const n = 60;
    const model = randomModel(d, D, 3, 0.2);
    const rng = createRng(4);
    const base = Float32Array.from({ length: n * d }, () => rng.normal());
    const ft = Float32Array.from({ length: n * d }, () => rng.normal());
    const inf = createInference(model);
    const half = n / 2;
    const a = await inf.run(base.subarray(0, half * d), ft.subarray(0, half * d), half);
    const b = await inf.run(base.subarray(half * d), ft.subarray(half * d), half);
    const stats = createLatentStats(model.params);
    stats.add(a);
    stats.add(b);
    const report = stats.result();
    expect(report.tokens).toBe(n);

    const { decW } = model.params;
    const batches: InferenceBatch[] = [a, b];
    let checked = 0;
    for (let j = 0; j < D; j++) {
      // Dense f_j per token, then β by the formula of ALGORITHMS.md.
      const rows: Array<{ f: number; x: Float32Array[]; r: Float32Array[] }> = [];
      for (const batch of batches) {
        for (let t = 0; t < batch.code.rows; t++) {
          let f = 0;
          for (let q = batch.code.rowPtr[t]!; q < batch.code.rowPtr[t + 1]!; q++) if (batch.code.index[q] === j) f = batch.code.value[q]!;
          rows.push({ f, x: [0, 1].map((m) => batch.x[m]!.subarray(t * d, (t + 1) * d)), r: [0, 1].map((m) => batch.recon[m]!.subarray(t * d, (t + 1) * d)) });
        }
      }
      const ff = rows.reduce((s, row) => s + row.f * row.f, 0);
      const count = rows.filter((row) => row.f > 0).length;
      expect(Math.abs(report.latents[j]!.frequency - count / n)).toBeLessThan(1e-12);
      if (ff === 0) continue;
      checked++;
      for (const dir of [0, 1] as const) {
        const u = decW.subarray((dir * D + j) * d, (dir * D + j + 1) * d);
        const uu = u.reduce((s, x) => s + x * x, 0);
        const beta = (m: number, target: 'error' | 'recon') => {
          const dm = decW.subarray((m * D + j) * d, (m * D + j + 1) * d);
          let s = 0;
          for (const row of rows) {
            for (let i = 0; i < d; i++) {
              const y = target === 'recon' ? row.r[m]![i]! : row.x[m]![i]! - (row.r[m]![i]! - row.f * dm[i]!);
              s += row.f * u[i]! * y;
            }
          }
          return s / (uu * ff);
        };
        const got = dir === 1 ? report.latents[j]!.ft : report.latents[j]!.base;
        for (const m of [0, 1]) {
          for (const [target, value] of [['error', got.betaError[m]!], ['recon', got.betaRecon[m]!]] as const) {
            const want = beta(m, target);
            expect(Math.abs(value - want)).toBeLessThan(1e-5 + 1e-4 * Math.abs(want));
          }
        }
        const other = 1 - dir;
        expect(Math.abs(got.nuError - beta(other, 'error') / beta(dir, 'error'))).toBeLessThan(1e-4 * (1 + Math.abs(got.nuError)));
      }
    }
    expect(checked).toBeGreaterThan(5);
  });
});

describe('top-activating contexts', () => {
  it('keeps the samples with the largest activation and their per-token activations, merging a sample split over batches', () => {
    const D = 2;
    const d = 1;
    const params = zeroParams(d, D, (n) => new Float32Array(n));
    params.decW.set([1, 1, 1, 1]);
    const stats = createLatentStats(params, { topExamples: 2 });
    const batch = (entries: Array<Array<[number, number]>>): InferenceBatch => {
      const rowPtr = new Int32Array(entries.length + 1);
      const index: number[] = [];
      const value: number[] = [];
      entries.forEach((row, t) => {
        for (const [j, v] of row) {
          index.push(j);
          value.push(v);
        }
        rowPtr[t + 1] = index.length;
      });
      const zeros = () => new Float32Array(entries.length * d);
      return { code: { rows: entries.length, cols: D, rowPtr, index: Int32Array.from(index), value: Float32Array.from(value) }, x: [zeros(), zeros()], recon: [zeros(), zeros()] };
    };
    // Samples 0 (positions 0-2), 1 (0-1) and the start of sample 2 (positions 0-1).
    stats.add(batch([[[0, 1]], [[0, 3], [1, 1]], [], [[0, 2]], [], [[0, 0.5]], []]), {
      sample: Int32Array.from([0, 0, 0, 1, 1, 2, 2]),
      position: Int32Array.from([0, 1, 2, 0, 1, 0, 1]),
    });
    // The rest of sample 2 (positions 2-3) and sample 3.
    stats.add(batch([[[0, 5]], [], [[0, 2.5]]]), { sample: Int32Array.from([2, 2, 3]), position: Int32Array.from([2, 3, 0]) });
    const top = stats.result().latents[0]!.top;
    expect(top.map((e) => e.sample)).toEqual([2, 0]);
    expect(top[0]!.maxActivation).toBe(5);
    expect(top[0]!.tokens).toEqual([
      { position: 0, activation: 0.5 },
      { position: 2, activation: 5 },
    ]);
    expect(top[1]!.tokens).toEqual([
      { position: 0, activation: 1 },
      { position: 1, activation: 3 },
    ]);
    expect(stats.result().latents[1]!.top).toEqual([{ sample: 0, maxActivation: 1, tokens: [{ position: 1, activation: 1 }] }]);
  });
});

describe('density histogram and logit effects', () => {
  it('bins log10 frequency and counts dead latents apart', () => {
    const h = densityHistogram([0, 1e-9, 1e-4, 0.01, 1, 0.0101], { bins: 8, min: -8 });
    expect(h.edges).toEqual([-8, -7, -6, -5, -4, -3, -2, -1, 0]);
    expect(h.counts).toEqual([1, 0, 0, 0, 1, 0, 2, 1]);
    expect(h.dead).toBe(1);
  });

  it('returns the largest and smallest entries of W_U·d, as a sort would', () => {
    const V = 300;
    const d = 7;
    const rng = createRng(12);
    const W = Float32Array.from({ length: V * d }, () => rng.normal());
    const dir = Float32Array.from({ length: d }, () => rng.normal());
    const scale = Float32Array.from({ length: d }, () => 0.5 + rng.next());
    const { positive, negative } = logitEffects(W, V, dir, 5, scale);
    const logits = Array.from({ length: V }, (_, v) => {
      let s = 0;
      for (let i = 0; i < d; i++) s += W[v * d + i]! * dir[i]! * scale[i]!;
      return { id: v, value: s };
    });
    const desc = [...logits].sort((a, b) => b.value - a.value);
    expect(positive.map((e) => e.id)).toEqual(desc.slice(0, 5).map((e) => e.id));
    expect(negative.map((e) => e.id)).toEqual(desc.slice(-5).reverse().map((e) => e.id));
    positive.forEach((e, i) => expect(Math.abs(e.value - desc[i]!.value)).toBeLessThan(1e-9 + 1e-9 * Math.abs(e.value)));
    expect(() => logitEffects(W, V + 1, dir)).toThrow(/W_U has/);
  });
});

describe('threshold encoding', () => {
  it('keeps exactly the latents whose score exceeds θ, and refuses a crosscoder without θ', async () => {
    const model = randomModel(4, 8, 21, 0.3);
    const rng = createRng(22);
    const base = Float32Array.from({ length: 40 }, () => rng.normal());
    const ft = Float32Array.from({ length: 40 }, () => rng.normal());
    const code = await encodeWithThreshold(model, base, ft, 10);
    const { encW, encB, decW } = model.params;
    const norm = (m: number, j: number) => Math.hypot(...decW.subarray((m * 8 + j) * 4, (m * 8 + j + 1) * 4));
    for (let t = 0; t < 10; t++) {
      const kept = new Map<number, number>();
      for (let q = code.rowPtr[t]!; q < code.rowPtr[t + 1]!; q++) kept.set(code.index[q]!, code.value[q]!);
      for (let j = 0; j < 8; j++) {
        let pre = encB[j]!;
        for (let i = 0; i < 4; i++) pre += base[t * 4 + i]! * encW[j * 4 + i]! + ft[t * 4 + i]! * encW[(8 + j) * 4 + i]!;
        const f = Math.max(0, pre);
        const score = f * (norm(0, j) + norm(1, j));
        if (Math.abs(score - 0.3) < 1e-5) continue;
        expect(kept.has(j)).toBe(score > 0.3);
        if (kept.has(j)) expect(Math.abs(kept.get(j)! - f)).toBeLessThan(1e-5 + 1e-5 * f);
      }
    }
    await expect(encodeWithThreshold({ ...model, threshold: -1 }, base, ft, 10)).rejects.toThrow(/no inference threshold/);
  });
});
