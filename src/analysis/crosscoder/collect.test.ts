import { describe, expect, it } from 'vitest';
import { createCpuBackend } from '../../gpu/cpu-backend.ts';
import { pathFileSet } from '../../io/node-source.ts';
import { bytesSource, FormatError } from '../../io/source.ts';
import { readHfTokenizer } from '../../io/tokenizer.ts';
import { writeSafetensors } from '../../io/safetensors.ts';
import { folderSource, PairedRunner } from '../../model/paired.ts';
import { loadModel } from '../../model/load.ts';
import { activationCacheKey, decodeActivations, encodeActivations, fingerprintFiles } from './collect-cache.ts';
import { collectPairedActivations, equalLengthGroups, shuffledBatches, tokenizeCorpus, type PairedActivations } from './collect.ts';
import { normalize } from './model.ts';

const FIXTURES = new URL('../../../test/fixtures/', import.meta.url).pathname;
const be = createCpuBackend();
const close = (got: number, want: number, abs: number, rel: number) => Math.abs(got - want) <= abs + rel * Math.abs(want);

// Lengths differ so that batches group by length and some batches hold one sequence.
const SAMPLES = [
  [5, 17, 200, 3, 9, 44, 120],
  [7, 7, 7, 8, 1],
  [250, 31, 2, 90, 66, 12, 5],
  [1, 2],
  [100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111],
  [42],
];

async function pair(budget?: number) {
  const base = await folderSource(await pathFileSet(`${FIXTURES}arch/llama/base`), be, 'llama base');
  const ft = await folderSource(await pathFileSet(`${FIXTURES}arch/llama/ft`), be, 'llama ft');
  return new PairedRunner(base, ft, be, budget === undefined ? {} : { memoryBudgetBytes: budget });
}

describe('collectPairedActivations', () => {
  it('keeps every position after the skipped ones, sample by sample, equal to a direct runWithCache capture', async () => {
    const runner = await pair();
    const acts = await collectPairedActivations(runner, SAMPLES, { layer: 2, hook: 'resid_post', skipPositions: 1, batchSize: 2 });
    runner.dispose();
    const d = 64;
    const rows = SAMPLES.reduce((n, s) => n + Math.max(0, s.length - 1), 0);
    expect(acts.d).toBe(d);
    expect(acts.rows).toBe(rows);
    expect(acts.hook).toBe('blocks.2.hook_resid_post');
    expect(acts.base.length).toBe(rows * d);
    expect(acts.ft.length).toBe(rows * d);

    let r = 0;
    let worst = 0;
    let baseFtDiffer = 0;
    for (const which of ['base', 'ft'] as const) {
      const model = await loadModel(await pathFileSet(`${FIXTURES}arch/llama/${which}`), be);
      r = 0;
      for (let s = 0; s < SAMPLES.length; s++) {
        const ids = SAMPLES[s]!;
        const { logits, cache } = model.runWithCache(ids, ['blocks.2.hook_resid_post']);
        if (logits) be.dispose(logits);
        const t = cache.get('blocks.2.hook_resid_post')!;
        const want = (await be.read(t)) as Float32Array;
        be.dispose(t);
        for (let p = 1; p < ids.length; p++, r++) {
          expect([acts.sample[r], acts.position[r], acts.tokens[r]]).toEqual([s, p, ids[p]]);
          const got = (which === 'base' ? acts.base : acts.ft).subarray(r * d, (r + 1) * d);
          for (let i = 0; i < d; i++) {
            const w = want[p * d + i]!;
            if (!close(got[i]!, w, 1e-5, 1e-5)) worst++;
            if (which === 'ft' && Math.abs(acts.base[r * d + i]! - got[i]!) > 1e-3) baseFtDiffer++;
          }
        }
      }
      model.dispose();
    }
    expect(r).toBe(rows);
    expect(worst).toBe(0);
    // The fine-tune's low-rank deltas change layer-2 activations: the two halves are not one model twice.
    expect(baseFtDiffer).toBeGreaterThan(rows);
  });

  it('normalises each model to mean 0 and E‖x′‖² = targetRms²', async () => {
    const runner = await pair();
    const acts = await collectPairedActivations(runner, SAMPLES, { hook: 'mlp_out', targetRms: 3 });
    runner.dispose();
    expect(acts.layer).toBe(1);
    expect(acts.hook).toBe('blocks.1.hook_mlp_out');
    const { d, rows } = acts;
    for (const m of [0, 1] as const) {
      const x = normalize(m === 0 ? acts.base : acts.ft, rows, acts.normalization, m, new Float64Array(rows * d));
      let ss = 0;
      let meanWorst = 0;
      for (let i = 0; i < d; i++) {
        let s = 0;
        for (let t = 0; t < rows; t++) s += x[t * d + i]!;
        meanWorst = Math.max(meanWorst, Math.abs(s / rows));
      }
      for (const v of x) ss += v * v;
      expect(meanWorst).toBeLessThan(1e-5);
      expect(Math.abs(ss / rows - 9)).toBeLessThan(9e-5);
    }
  });

  it('gives the same rows when the two models run one after the other', async () => {
    const resident = await pair();
    const a = await collectPairedActivations(resident, SAMPLES, { layer: 0, batchSize: 3 });
    resident.dispose();
    const sequential = await pair(0);
    expect(sequential.mode).toBe('sequential');
    const b = await collectPairedActivations(sequential, SAMPLES, { layer: 0, batchSize: 1 });
    sequential.dispose();
    let worst = 0;
    for (let i = 0; i < a.base.length; i++) {
      worst = Math.max(worst, Math.abs(a.base[i]! - b.base[i]!) / (1e-5 + 1e-5 * Math.abs(a.base[i]!)), Math.abs(a.ft[i]! - b.ft[i]!) / (1e-5 + 1e-5 * Math.abs(a.ft[i]!)));
    }
    expect(worst).toBeLessThanOrEqual(1);
  });

  it('reports progress and stops when cancelled', async () => {
    const runner = await pair();
    const seen: number[] = [];
    const ac = new AbortController();
    const run = collectPairedActivations(runner, SAMPLES, {
      batchSize: 1,
      signal: ac.signal,
      onProgress: (p) => {
        seen.push(p.done);
        expect(p.total).toBe(28);
        if (seen.length === 2) ac.abort(new Error('stop here'));
      },
    });
    await expect(run).rejects.toThrow('stop here');
    runner.dispose();
    expect(seen.length).toBe(2);
    expect(seen[1]!).toBeGreaterThan(seen[0]!);
  });

  it('refuses a layer outside the model and samples too short to keep a row', async () => {
    const runner = await pair();
    await expect(collectPairedActivations(runner, SAMPLES, { layer: 3 })).rejects.toThrow('layer 3 is outside 0..2');
    await expect(collectPairedActivations(runner, [[1], [2]], {})).rejects.toThrow('none longer than 1 token');
    runner.dispose();
  });
});

describe('tokenizeCorpus', () => {
  it('adds BOS where the tokenizer family does (stories260K) and not where it does not (demo), skips empty lines, cuts and limits', async () => {
    const sp = (await readHfTokenizer(await pathFileSet(`${FIXTURES}stories260K/base`)))!;
    const demo = (await readHfTokenizer(await pathFileSet(`${FIXTURES}demo/base`)))!;
    const text = 'Once upon a time\n\n  \nOnce upon a time there was a cat\r\nthird line\n';
    const withBos = tokenizeCorpus(text, sp, { tokensPerSample: 4 });
    expect(withBos).toEqual([
      [1, 403, 407, 261],
      sp.encode('Once upon a time there was a cat').slice(0, 4),
      sp.encode('third line').slice(0, 4),
    ]);
    const noBos = tokenizeCorpus(text, demo, { maxSamples: 2 });
    expect(noBos).toEqual([demo.encode('Once upon a time'), demo.encode('Once upon a time there was a cat')]);
    expect(noBos[0]![0]).not.toBe(0);
    expect(() => tokenizeCorpus(text, demo, { tokensPerSample: 0 })).toThrow('positive integer');
  });
});

describe('equalLengthGroups and shuffledBatches', () => {
  it('groups by length in order, and every epoch of batches visits each chosen row once', () => {
    expect(equalLengthGroups(SAMPLES, 2)).toEqual([[0, 2], [1], [3], [4], [5]]);
    const d = 3;
    const rows = 10;
    const base = Float32Array.from({ length: rows * d }, (_, i) => i);
    const ft = Float32Array.from({ length: rows * d }, (_, i) => -i);
    const chosen = Int32Array.from([0, 2, 3, 5, 6, 9]);
    const src = shuffledBatches({ base, ft, d, rows }, 2, 7, chosen);
    const epoch: number[] = [];
    for (let b = 0; b < 3; b++) {
      const r = src.next() as IteratorResult<{ base: Float32Array; ft: Float32Array }>;
      if (r.done) throw new Error('a shuffled source never ends');
      for (let t = 0; t < 2; t++) {
        const row = r.value.base[t * d]! / d;
        expect(Array.from(r.value.base.subarray(t * d, t * d + d))).toEqual([row * d, row * d + 1, row * d + 2]);
        expect(r.value.ft[t * d]).toBe(-row * d);
        epoch.push(row);
      }
    }
    expect(epoch.slice().sort((a, b) => a - b)).toEqual(Array.from(chosen));
    expect(epoch).not.toEqual(Array.from(chosen));
    expect(() => shuffledBatches({ base, ft, d, rows }, 11)).toThrow('at least that many rows');
  });
});

describe('activation cache file', () => {
  let acts: PairedActivations;
  const get = async () => {
    if (!acts) {
      const runner = await pair();
      acts = await collectPairedActivations(runner, SAMPLES, { layer: 1 });
      runner.dispose();
    }
    return acts;
  };

  it('round-trips the rows, ids and normalisation', async () => {
    const a = await get();
    const bytes = encodeActivations(a, 'k1');
    const b = await decodeActivations(bytesSource(bytes, 'acts.safetensors'), 'k1');
    expect(b.rows).toBe(a.rows);
    expect(b.d).toBe(a.d);
    expect(b.layer).toBe(1);
    expect(b.hook).toBe(a.hook);
    expect(b.samples).toBe(SAMPLES.length);
    expect(b.base).toEqual(a.base);
    expect(b.ft).toEqual(a.ft);
    expect(b.tokens).toEqual(a.tokens);
    expect(b.sample).toEqual(a.sample);
    expect(b.position).toEqual(a.position);
    expect(b.normalization.mean[1]).toEqual(a.normalization.mean[1]);
    expect(Math.abs(b.normalization.scale[0] - a.normalization.scale[0])).toBeLessThanOrEqual(1e-7 * a.normalization.scale[0]);
    expect(b.info.base_model).toBe('llama base');
  });

  it('refuses a file made for other inputs, another format, or with a wrong tensor', async () => {
    const a = await get();
    const bytes = encodeActivations(a, 'k1');
    await expect(decodeActivations(bytesSource(bytes, 'acts.safetensors'), 'k2')).rejects.toThrow(FormatError);
    await expect(decodeActivations(bytesSource(bytes, 'acts.safetensors'), 'k2')).rejects.toThrow('acts.safetensors: was collected for other models');
    const other = writeSafetensors([{ name: 'x', shape: [1], data: new Float32Array(1) }], { format: 'something' });
    await expect(decodeActivations(bytesSource(other, 'other.safetensors'))).rejects.toThrow('other.safetensors: not a NeuroDiff activation file');
    const meta = { format: 'neurodiff-activations', version: '1', key: 'k', layer: '1', hook: 'blocks.1.hook_resid_post', samples: '1', d: '2', rows: '3' };
    const wrong = writeSafetensors([{ name: 'norm_mean', shape: [2, 3], data: new Float32Array(6) }], meta);
    await expect(decodeActivations(bytesSource(wrong, 'wrong.safetensors'))).rejects.toThrow('tensor "norm_mean" is F32[2, 3], expected F32[2, 2]');
  });

  it('keys change with the models, the corpus and every setting', async () => {
    const baseFp = await fingerprintFiles(await pathFileSet(`${FIXTURES}arch/llama/base`));
    const ftFp = await fingerprintFiles(await pathFileSet(`${FIXTURES}arch/llama/ft`));
    expect(baseFp).toMatch(/^[0-9a-f]{64}$/);
    expect(ftFp).not.toBe(baseFp);
    expect(await fingerprintFiles(await pathFileSet(`${FIXTURES}arch/llama/base`))).toBe(baseFp);
    const parts = { base: baseFp, ft: ftFp, corpus: 'c', layer: 1, hook: 'resid_post', settings: { tokensPerSample: 64, skipPositions: 1 } };
    const key = await activationCacheKey(parts);
    expect(await activationCacheKey({ ...parts, settings: { skipPositions: 1, tokensPerSample: 64 } })).toBe(key);
    const variants = [
      { ...parts, base: ftFp, ft: baseFp },
      { ...parts, corpus: 'd' },
      { ...parts, layer: 2 },
      { ...parts, hook: 'mlp_out' },
      { ...parts, settings: { tokensPerSample: 65, skipPositions: 1 } },
      { ...parts, settings: { tokensPerSample: 64, skipPositions: 0 } },
    ];
    const keys = await Promise.all(variants.map((v) => activationCacheKey(v)));
    expect(new Set([key, ...keys]).size).toBe(variants.length + 1);
  });
});
