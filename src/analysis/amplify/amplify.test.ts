// Amplification identities: α = 0 of logit-diff amplification is sampling the fine-tune with the same
// seed; weight amplification at α = 0 is the base and at α = 1 the fine-tune; a model against itself
// is unchanged by any α.
import { beforeAll, describe, expect, it } from 'vitest';
import { createCpuBackend } from '../../gpu/cpu-backend.ts';
import type { ModelPair } from '../activations/run.ts';
import { archPair } from '../activations/testing.ts';
import { createRng } from '../crosscoder/rng.ts';
import { amplifiedModel, amplify, sampleLogits, sampleModel } from './amplify.ts';

const PROMPT = [105, 116, 158, 23, 27, 211];
let pair: ModelPair;

beforeAll(async () => {
  pair = await archPair('llama', createCpuBackend());
});

describe('amplification', () => {
  it('logit-diff α = 0 samples exactly what the fine-tune samples with the same seed', async () => {
    for (const seed of [0, 5]) {
      const [s] = await amplify(pair, PROMPT, { alphas: [0], mode: 'logits', maxNew: 10, seed, temperature: 1 });
      expect(s!.ids).toEqual(await sampleModel(pair.ft, PROMPT, { maxNew: 10, seed, temperature: 1 }));
    }
  });

  it('α > 0 moves away from the fine-tune; a model against itself is unchanged by α', async () => {
    const ft = await sampleModel(pair.ft, PROMPT, { maxNew: 10, temperature: 0 });
    const far = await amplify(pair, PROMPT, { alphas: [8], mode: 'logits', maxNew: 10, temperature: 0 });
    expect(far[0]!.ids).not.toEqual(ft);
    const self = { base: pair.ft, ft: pair.ft };
    const same = await amplify(self, PROMPT, { alphas: [3], mode: 'logits', maxNew: 10, seed: 2, temperature: 1 });
    expect(same[0]!.ids).toEqual(await sampleModel(pair.ft, PROMPT, { maxNew: 10, seed: 2, temperature: 1 }));
  });

  it('weight amplification: α = 0 has the base weights, α = 1 the fine-tune (greedy text as in ground truth)', async () => {
    const zero = amplifiedModel(pair, 0);
    const one = amplifiedModel(pair, 1);
    try {
      for (const [name, w] of pair.base.weights) {
        const a = (await zero.backend.read(zero.weight(name))) as Float32Array;
        const b = (await pair.base.backend.read(w)) as Float32Array;
        expect(a).toEqual(b);
      }
      const oProj = 'blocks.2.attn.W_O';
      const got = (await one.backend.read(one.weight(oProj))) as Float32Array;
      const want = (await pair.ft.backend.read(pair.ft.weight(oProj))) as Float32Array;
      for (let i = 0; i < want.length; i++) expect(Math.abs(got[i]! - want[i]!)).toBeLessThanOrEqual(1e-6 * (1 + Math.abs(want[i]!)));
      // Greedy continuations from the fixture's ground truth (transformers).
      expect(await sampleModel(zero, PROMPT, { maxNew: 8, temperature: 0 })).toEqual([211, 1, 24, 109, 106, 67, 98, 163]);
      expect(await sampleModel(one, PROMPT, { maxNew: 8, temperature: 0 })).toEqual(await pair.ft.generate(PROMPT, 8));
    } finally {
      zero.dispose();
      one.dispose();
    }
    const samples = await amplify(pair, PROMPT, { alphas: [-1, 2], mode: 'weights', maxNew: 4, samples: 2, seed: 1 });
    expect(samples.map((s) => [s.alpha, s.seed])).toEqual([
      [-1, 1],
      [-1, 2],
      [2, 1],
      [2, 2],
    ]);
  });

  it('sampleLogits draws by probability and is greedy at temperature 0', () => {
    const z = Float32Array.from([0, Math.log(3), -Infinity]);
    expect(sampleLogits(z, 0, createRng(0))).toBe(1);
    const rng = createRng(4);
    let ones = 0;
    for (let i = 0; i < 4000; i++) ones += sampleLogits(z, 1, rng) === 1 ? 1 : 0;
    expect(Math.abs(ones / 4000 - 0.75)).toBeLessThan(0.03);
  });
});

describe('amplification is cancelled between tokens', () => {
  for (const mode of ['logits', 'weights'] as const) {
    it(`${mode}: an abort after the third token stops there; progress counts tokens of alphas × samples × maxNew`, async () => {
      const full: number[] = [];
      const all = await amplify(pair, PROMPT, { alphas: [0, 2], mode, maxNew: 5, samples: 2, seed: 1, onProgress: (p) => full.push(p.done) });
      expect(all.length).toBe(4);
      expect(full).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));

      const stop = new AbortController();
      const seen: { done: number; total: number }[] = [];
      const run = amplify(pair, PROMPT, {
        alphas: [0, 2],
        mode,
        maxNew: 5,
        samples: 2,
        seed: 1,
        signal: stop.signal,
        onProgress: (p) => {
          seen.push({ done: p.done, total: p.total });
          if (p.done === 3) stop.abort(new DOMException('the analysis was cancelled', 'AbortError'));
        },
      });
      await expect(run).rejects.toThrow('the analysis was cancelled');
      expect(seen).toEqual([1, 2, 3].map((done) => ({ done, total: 20 })));
    });
  }

  it('weights: an abort while the amplified model is built stops before any token', async () => {
    const stop = new AbortController();
    stop.abort(new DOMException('the analysis was cancelled', 'AbortError'));
    expect(() => amplifiedModel(pair, 2, stop.signal)).toThrow('the analysis was cancelled');
  });
});
