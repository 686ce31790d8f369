// Corpus analyses over a PairedRunner: with a memory budget too small for both models they run one
// model at a time (base over every batch, then the fine-tune) and give exactly the results of both
// models resident (CPU backend: the same operations on the same values).
import { describe, expect, it } from 'vitest';
import { createCpuBackend } from '../../gpu/cpu-backend.ts';
import { pathFileSet } from '../../io/node-source.ts';
import { folderSource, PairedRunner, type ModelSource } from '../../model/paired.ts';
import { activationDifferenceLens, adlDifferences, steer } from './adl.ts';
import { corpusDifferences, promptDifferences } from './differences.ts';
import { differentialLogitLens } from './lens.ts';
import { patchAndStitch } from './patching.ts';
import type { Progress } from './run.ts';
import { FIXTURES } from './testing.ts';

const be = createCpuBackend();

const SAMPLES = [
  [3, 17, 99, 4, 250, 61, 7, 12],
  [8, 8, 140, 33, 2, 9, 10],
  [100, 101, 102, 103, 104, 105, 106, 107],
  [9, 90, 190, 12, 45, 6, 6],
  [77, 1, 5, 222, 31, 64, 128, 2],
];

/** A fixture model source that counts how many of the pair's models are loaded at once. */
function counted(source: ModelSource, live: { now: number; max: number }): ModelSource {
  return {
    ...source,
    load: async (signal) => {
      const m = await source.load(signal);
      live.max = Math.max(live.max, ++live.now);
      const dispose = m.dispose.bind(m);
      m.dispose = (keep) => {
        live.now--;
        dispose(keep);
      };
      return m;
    },
  };
}

async function runner(arch: string, budget?: number): Promise<{ runner: PairedRunner; live: { now: number; max: number } }> {
  const live = { now: 0, max: 0 };
  const base = counted(await folderSource(await pathFileSet(`${FIXTURES}arch/${arch}/base`), be, `${arch} base`), live);
  const ft = counted(await folderSource(await pathFileSet(`${FIXTURES}arch/${arch}/ft`), be, `${arch} ft`), live);
  return { runner: new PairedRunner(base, ft, be, budget === undefined ? {} : { memoryBudgetBytes: budget }), live };
}

describe('corpus analyses one model at a time', () => {
  it('corpusDifferences: the same statistics as both models resident, never two models loaded', async () => {
    const resident = await runner('mistral');
    const sequential = await runner('mistral', 1000);
    expect([resident.runner.mode, sequential.runner.mode]).toEqual(['resident', 'sequential']);
    const opts = { batchSize: 2, fromPosition: 1, layers: [0, 2] };
    const a = await corpusDifferences(resident.runner, SAMPLES, opts);
    const progress: Progress[] = [];
    const b = await corpusDifferences(sequential.runner, SAMPLES, { ...opts, onProgress: (p) => progress.push(p) });
    expect(b).toEqual(a);
    expect(a.layers[1]!.meanNorm).toBeGreaterThan(1e-3);
    expect([resident.live.max, sequential.live.max, sequential.live.now]).toEqual([2, 1, 0]);
    // Two passes over the batches (lengths 8, 8 | 8 | 7, 7): base, then fine-tune.
    expect(progress.map((p) => [p.done, p.total])).toEqual([2, 3, 5, 7, 8, 10].map((n) => [n, 10]));
    resident.runner.dispose();
  });

  it('adlDifferences and the ADL lens: the same δ, consistency, norm and top tokens', async () => {
    const resident = await runner('llama');
    const sequential = await runner('llama', 1000);
    const opts = { positions: [0, 1, 3], batchSize: 3, top: 6 };
    const a = await activationDifferenceLens(resident.runner, SAMPLES, opts);
    const b = await activationDifferenceLens(sequential.runner, SAMPLES, opts);
    expect(b).toEqual(a);
    expect(Math.max(...a.difference.delta[2]!.map(Math.abs))).toBeGreaterThan(1e-3);
    expect(a.ftNorm).toBeGreaterThan(0);
    // The lens loads the fine-tune once more, alone.
    expect([sequential.live.max, sequential.live.now]).toEqual([1, 0]);
    const loaded = await resident.runner.models();
    expect(await adlDifferences(loaded, SAMPLES, opts)).toEqual(a.difference);
    resident.runner.dispose();
  });

  for (const arch of ['llama', 'gemma2', 'gpt2']) {
    it(`${arch}: the differential lens of a prompt, one model at a time, equals both resident (the base's unembedding kept for the KL)`, async () => {
      const resident = await runner(arch);
      const sequential = await runner(arch, 1000);
      const ids = SAMPLES[0]!;
      const a = await differentialLogitLens(resident.runner, ids, { k: 5, maxRows: 16 });
      const b = await differentialLogitLens(sequential.runner, ids, { k: 5, maxRows: 16 });
      expect(b).toEqual(a);
      // The pair differs by the last layers: some KL is positive.
      expect(Math.max(...a.kl)).toBeGreaterThan(1e-6);
      expect([sequential.live.max, sequential.live.now]).toEqual([1, 0]);
      expect(await differentialLogitLens(await resident.runner.models(), ids, { k: 5 })).toEqual(a);
      resident.runner.dispose();
    });
  }

  it('prompt differences, patching with stitching, and steering: the same numbers one model at a time', async () => {
    const resident = await runner('qwen2');
    const sequential = await runner('qwen2', 1000);
    const ids = SAMPLES[2]!;
    expect(await promptDifferences(sequential.runner, ids, { kind: 'mlp_out' })).toEqual(await promptDifferences(resident.runner, ids, { kind: 'mlp_out' }));
    for (const positions of ['all', 'last'] as const) {
      const a = await patchAndStitch(resident.runner, ids, { positions });
      const b = await patchAndStitch(sequential.runner, ids, { positions });
      expect(b).toEqual(a);
      expect(a.patching.klFtBase).toBeGreaterThan(1e-4);
      expect(Object.keys(a.stitched).sort()).toEqual(['base', 'ft']);
    }
    const v = Float32Array.from({ length: resident.runner.base.config.dModel }, (_, i) => Math.sin(i));
    const opts = { layer: 1, strengths: [0, 4], prompt: ids.slice(0, 4), maxNewTokens: 5 };
    const gens = await steer(resident.runner, v, opts);
    expect(await steer(sequential.runner, v, opts)).toEqual(gens);
    expect(gens[1]!.base).not.toEqual(gens[0]!.base);
    // Patching loads the fine-tune, the base, then the fine-tune again: never two at once.
    expect([sequential.live.max, sequential.live.now]).toEqual([1, 0]);
    resident.runner.dispose();
  });

  it('stops when the signal aborts during the base pass and releases the model', async () => {
    const { runner: r, live } = await runner('llama', 1000);
    const controller = new AbortController();
    const run = adlDifferences(r, SAMPLES, {
      batchSize: 2,
      signal: controller.signal,
      onProgress: (p) => {
        if (p.done === 2) controller.abort();
      },
    });
    await expect(run).rejects.toThrow(/abort/i);
    expect(live.now).toBe(0);
  });

  it('refuses a pair whose shapes differ before loading anything', async () => {
    const { runner: r, live } = await runner('llama', 1000);
    const other = await folderSource(await pathFileSet(`${FIXTURES}arch/gpt2/base`), be, 'gpt2');
    const mixed = new PairedRunner(r.base, { ...other, config: { ...other.config, nLayers: 5 } }, be, { memoryBudgetBytes: 1000 });
    await expect(corpusDifferences(mixed, SAMPLES)).rejects.toThrow(/differ in nLayers \(3 and 5\)/);
    expect(live.max).toBe(0);
  });
});
