import { describe, expect, it } from 'vitest';
import { createCpuBackend } from '../../gpu/cpu-backend.ts';
import { hookName } from '../../model/transformer.ts';
import { corpusDifferences, promptDifferences } from './differences.ts';
import { cosine, readF32 } from './run.ts';
import { archPair, FIXTURES, readCaptures } from './testing.ts';

const be = createCpuBackend();

describe('activation differences', () => {
  it.each([
    ['llama', 'resid_post'],
    ['gpt2', 'attn_out'],
    ['gemma2', 'mlp_out'],
  ] as const)('%s %s: per-token ‖δ‖, relative ‖δ‖ and cosine match the reference captures', async (arch, kind) => {
    const pair = await archPair(arch, be);
    const golden = await readCaptures(`${FIXTURES}arch/${arch}/golden.safetensors`);
    const ids = (await golden.ids('base.'))[1]!;
    const r = await promptDifferences(pair, ids, { kind });
    const d = pair.base.config.dModel;
    const T = ids.length;
    for (let l = 0; l < r.layers; l++) {
      // Row 1 of the [2, T, d] captures.
      const xb = (await golden.f32(`base.${kind}.${l}`)).subarray(T * d);
      const xf = (await golden.f32(`ft.${kind}.${l}`)).subarray(T * d);
      for (let t = 0; t < T; t++) {
        let dd = 0;
        let bb = 0;
        for (let j = 0; j < d; j++) {
          dd += (xf[t * d + j]! - xb[t * d + j]!) ** 2;
          bb += xb[t * d + j]! ** 2;
        }
        const norm = Math.sqrt(dd);
        const i = l * T + t;
        expect(Math.abs(r.norm[i]! - norm)).toBeLessThanOrEqual(2e-4 + 1e-3 * norm);
        expect(Math.abs(r.relative[i]! - norm / Math.sqrt(bb))).toBeLessThanOrEqual(1e-5 + 1e-3 * (norm / Math.sqrt(bb)));
        const cos = cosine(xb, xf, t * d, t * d, d);
        expect(Math.abs(r.cosine[i]! - cos)).toBeLessThanOrEqual(1e-5);
      }
    }
    // Layer 0 is shared by both models; the MLP of block 1 differs.
    expect(Math.max(...r.norm.subarray(0, T))).toBe(0);
    if (kind !== 'attn_out') expect(Math.min(...r.norm.subarray(T, 2 * T))).toBeGreaterThan(1e-3);
  });

  it('a model against itself: zero difference, cosine 1', async () => {
    const { base } = await archPair('qwen3', be);
    const r = await promptDifferences({ base, ft: base }, [5, 9, 200, 13]);
    for (let i = 0; i < r.norm.length; i++) {
      expect(r.norm[i]).toBe(0);
      expect(r.relative[i]).toBe(0);
      expect(Math.abs(r.cosine[i]! - 1)).toBeLessThanOrEqual(1e-6);
    }
  });

  it('corpus statistics over batches of unequal lengths equal the per-sample values, with consistency against the mean δ', async () => {
    const pair = await archPair('mistral', be);
    const samples = [
      [3, 17, 99, 4, 250, 61, 7],
      [8, 8, 140, 33, 2],
      [100, 101, 102, 103, 104, 105, 106],
      [9, 90, 190, 12, 45],
      [77, 1, 5, 222, 31, 64, 128],
    ];
    const from = 1;
    const r = await corpusDifferences(pair, samples, { batchSize: 2, fromPosition: from });
    const L = pair.base.config.nLayers;
    const d = pair.base.config.dModel;
    expect(r.samples).toBe(5);
    expect(r.tokens).toBe(samples.reduce((n, s) => n + s.length - from, 0));
    expect(r.layers.map((x) => x.layer)).toEqual([0, 1, 2]);
    const per = await Promise.all(samples.map((s) => promptDifferences(pair, s)));
    for (let l = 0; l < L; l++) {
      let norm = 0;
      let rel = 0;
      let cos = 0;
      const byPos = new Float64Array(7);
      const byPosCount = new Float64Array(7);
      for (const p of per) {
        for (let t = from; t < p.positions; t++) {
          norm += p.norm[l * p.positions + t]!;
          rel += p.relative[l * p.positions + t]!;
          cos += p.cosine[l * p.positions + t]!;
          byPos[t]! += p.norm[l * p.positions + t]!;
          byPosCount[t]!++;
        }
      }
      const got = r.layers[l]!;
      expect(Math.abs(got.meanNorm - norm / r.tokens)).toBeLessThanOrEqual(1e-6 + 1e-5 * (norm / r.tokens));
      expect(Math.abs(got.meanRelative - rel / r.tokens)).toBeLessThanOrEqual(1e-6 + 1e-5 * (rel / r.tokens));
      expect(Math.abs(got.meanCosine - cos / r.tokens)).toBeLessThanOrEqual(1e-6);
      expect(got.normByPosition[0]).toBeNaN();
      for (let t = from; t < 7; t++) expect(Math.abs(got.normByPosition[t]! - byPos[t]! / byPosCount[t]!)).toBeLessThanOrEqual(1e-6 + 1e-5 * byPos[t]!);

      // Per-sample mean δ from captures, then the cosine with their mean.
      const name = hookName('resid_post', l);
      const perSample: Float32Array[] = [];
      for (const s of samples) {
        const fb = pair.base.runWithCache([s], [name]);
        const ff = pair.ft.runWithCache([s], [name]);
        be.dispose(fb.logits!);
        be.dispose(ff.logits!);
        const xb = await readF32(be, fb.cache.get(name)!);
        const xf = await readF32(be, ff.cache.get(name)!);
        const mean = new Float32Array(d);
        for (let t = from; t < s.length; t++) for (let j = 0; j < d; j++) mean[j]! += (xf[t * d + j]! - xb[t * d + j]!) / (s.length - from);
        perSample.push(mean);
      }
      const meanDelta = new Float32Array(d);
      for (const m of perSample) for (let j = 0; j < d; j++) meanDelta[j]! += m[j]! / samples.length;
      for (let j = 0; j < d; j++) expect(Math.abs(got.meanDelta[j]! - meanDelta[j]!)).toBeLessThanOrEqual(1e-6 + 1e-4 * Math.abs(meanDelta[j]!));
      for (let s = 0; s < samples.length; s++) {
        const expected = l === 0 ? 0 : cosine(perSample[s]!, meanDelta);
        expect(Math.abs(got.consistency[s]! - expected)).toBeLessThanOrEqual(1e-5);
      }
    }
  });

  it('stops between batches when the signal aborts, reporting progress until then', async () => {
    const pair = await archPair('llama', be);
    const samples = Array.from({ length: 6 }, (_, i) => [i, i + 1, i + 2]);
    const controller = new AbortController();
    const seen: number[] = [];
    const run = corpusDifferences(pair, samples, {
      batchSize: 2,
      signal: controller.signal,
      onProgress: (p) => {
        seen.push(p.done);
        if (p.done === 4) controller.abort();
      },
    });
    await expect(run).rejects.toThrow(/abort/i);
    expect(seen).toEqual([2, 4]);
  });

  it('rejects samples without tokens after fromPosition and unknown layers', async () => {
    const pair = await archPair('llama', be);
    await expect(corpusDifferences(pair, [[1, 2]], { fromPosition: 2 })).rejects.toThrow(/sample 0 has 2 tokens, none at or after position 2/);
    await expect(corpusDifferences(pair, [[1, 2]], { layers: [3] })).rejects.toThrow(/layer 3 is outside 0\.\.2/);
    await expect(corpusDifferences(pair, [])).rejects.toThrow(/no samples/);
  });
});
