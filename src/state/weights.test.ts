import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { diffWeights } from '../analysis/weights/diff.ts';
import { createCpuBackend } from '../gpu/cpu-backend.ts';
import { pathFileSet } from '../io/node-source.ts';
import { openSafetensorsFolder } from '../io/safetensors.ts';
import { blobSource } from '../io/source.ts';
import { openModelLoader } from './open-weights.ts';
import { createAppStore } from './store.ts';
import { computeWeightsDiff, type DiffProgress } from '../jobs/weights.ts';
import { blobFolder, inProcessSpawn } from '../jobs/in-process.ts';
import { analysisClient, weightsRunner } from './analysis-client.ts';
import type { WeightsRunner } from './weights.ts';

const backend = createCpuBackend();
const ARCH = 'test/fixtures/arch/llama';

interface GroundTruth {
  changed_tensors: Record<string, { singular_values: number[]; frobenius: number }>;
}
const truth = JSON.parse(readFileSync(`${ARCH}/ground_truth.json`, 'utf8')) as GroundTruth;

const close = (got: number, want: number, atol: number, rtol: number) => Math.abs(got - want) <= atol + rtol * Math.abs(want);

describe('computeWeightsDiff', () => {
  it('finds the two planted low-rank deltas, and reads every byte it announces', async () => {
    const progress: DiffProgress[] = [];
    const res = await computeWeightsDiff(
      { base: await pathFileSet(`${ARCH}/base`), ft: await pathFileSet(`${ARCH}/ft`), topK: 8 },
      { backend, onProgress: (p) => progress.push(p) },
    );
    const changed = res.tensors.filter((t) => t.frobenius > 0);
    expect(changed.map((t) => t.name).sort()).toEqual(Object.keys(truth.changed_tensors).sort());
    for (const t of changed) {
      const want = truth.changed_tensors[t.name]!;
      expect(close(t.frobenius, want.frobenius, 1e-5, 1e-4), t.name).toBe(true);
      expect(close(t.spectral!, want.singular_values[0]!, 1e-5, 1e-4), t.name).toBe(true);
      expect(t.top_singular_values.length).toBeLessThanOrEqual(8);
    }
    expect(progress.map((p) => p.done)).toEqual(res.tensors.map((_, i) => i + 1));
    const last = progress.at(-1)!;
    expect(last.total).toBe(res.tensors.length);
    expect(last.bytesDone).toBe(last.bytesTotal);
    const base = await openSafetensorsFolder(await pathFileSet(`${ARCH}/base`));
    let bytes = 0;
    for (const t of base.tensors.values()) bytes += 2 * t.byteLength;
    expect(last.bytesTotal).toBe(bytes);
    for (let i = 1; i < progress.length; i++) expect(progress[i]!.bytesDone).toBeGreaterThan(progress[i - 1]!.bytesDone);
  });

  it('gives an adapter ΔW from its factors, against the base', async () => {
    const res = await computeWeightsDiff(
      { base: await pathFileSet('public/models/demo/base'), ft: await pathFileSet('public/models/demo/space'), topK: 16 },
      { backend },
    );
    expect(res.tensors).toHaveLength(42);
    expect(res.missing).toEqual([]);
    expect(res.mismatched).toEqual([]);
    for (const t of res.tensors) {
      expect(t.method).toBe('lora-factors(r=8)');
      // rank ≤ r: nine or more singular values means ΔW was not built from rank-8 factors.
      expect(t.top_singular_values.length).toBeLessThanOrEqual(8);
      expect(t.frobenius).toBeGreaterThan(0);
    }
  });
});

describe('the analysis worker', () => {
  it('gives the same diff as in-process, the worker reading the files itself', async () => {
    const base = await blobFolder(`${ARCH}/base`);
    const ft = await blobFolder(`${ARCH}/ft`);
    const { spawn } = inProcessSpawn();
    const run = weightsRunner(analysisClient(spawn));
    const seen: DiffProgress[] = [];
    const out = await run({ base, ft, topK: 8 }, (p) => seen.push(p), new AbortController().signal);
    const direct = await diffWeights(await openSafetensorsFolder(base), await openSafetensorsFolder(ft), { backend, topK: 8 });
    expect(out.backend).toMatch(/^cpu \(in-process\); both models resident: /);
    expect(out.memory?.mode).toBe('resident');
    expect(out.result.tensors.map((t) => [t.name, t.frobenius, t.spectral])).toEqual(direct.tensors.map((t) => [t.name, t.frobenius, t.spectral]));
    expect(seen.at(-1)?.done).toBe(direct.tensors.length);
    const weightBytes = readFileSync(`${ARCH}/base/model.safetensors`).length;
    expect(seen.at(-1)?.bytesTotal).toBeGreaterThan(weightBytes);
  });

  it('passes a read failure back with the file name, stops on abort, and refuses a source it cannot send', async () => {
    const base = await blobFolder(`${ARCH}/base`);
    const ft = await blobFolder(`${ARCH}/ft`);
    const truncated = new Map(ft);
    const w = ft.get('model.safetensors')!;
    truncated.set('model.safetensors', blobSource(new Blob([(await w.read(0, w.size - 100)).slice()]), 'model.safetensors'));
    const run = weightsRunner(analysisClient(inProcessSpawn().spawn));
    await expect(run({ base, ft: truncated, topK: 4 }, () => {}, new AbortController().signal)).rejects.toThrow(/^model\.safetensors: /);

    const stop = new AbortController();
    await expect(run({ base, ft, topK: 4 }, () => stop.abort(new Error('cancelled by the test')), stop.signal)).rejects.toThrow('the analysis was cancelled');

    const local = await pathFileSet(`${ARCH}/ft`);
    await expect(run({ base, ft: local, topK: 4 }, () => {}, new AbortController().signal)).rejects.toThrow('cannot be read by the analysis worker');
  });
});

function deferred<T>() {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

async function loadedStore() {
  const store = createAppStore();
  store.getState().setModelLoader(openModelLoader);
  store.getState().setPendingFiles('base', await pathFileSet(`${ARCH}/base`));
  store.getState().setPendingFiles('ft', await pathFileSet(`${ARCH}/ft`));
  await Promise.all([store.getState().loadModel('base'), store.getState().loadModel('ft')]);
  return store;
}

describe('weights slice', () => {
  it('runs the registered runner on the loaded pair, with progress, then keeps the result', async () => {
    const store = await loadedStore();
    const gate = deferred<void>();
    const runner: WeightsRunner = async (req, onProgress, signal) => {
      onProgress({ stage: 'tensors', done: 1, total: 2, name: 'a', bytesDone: 10, bytesTotal: 20 });
      await gate.promise;
      return { result: await computeWeightsDiff(req, { backend, signal }), backend: 'cpu (test)' };
    };
    store.getState().setWeightsRunner(runner);
    const done = store.getState().runWeights();
    expect(store.getState().weightsRun).toMatchObject({ status: 'running', progress: { done: 1, total: 2, bytesDone: 10 } });
    gate.resolve();
    await done;
    const run = store.getState().weightsRun;
    if (run.status !== 'done') throw new Error(JSON.stringify(run));
    expect(run.backend).toBe('cpu (test)');
    expect(run.ms).toBeGreaterThanOrEqual(0);
    expect(run.result.tensors.filter((t) => t.frobenius > 0)).toHaveLength(2);
  });

  it('cancels a run, and drops a run whose models were replaced', async () => {
    const store = await loadedStore();
    let seenSignal: AbortSignal | undefined;
    store.getState().setWeightsRunner((_req, _p, signal) => {
      seenSignal = signal;
      return new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason)));
    });
    const first = store.getState().runWeights();
    store.getState().cancelWeights();
    await first;
    expect(seenSignal?.aborted).toBe(true);
    expect(store.getState().weightsRun).toEqual({ status: 'cancelled' });

    const second = store.getState().runWeights();
    const signal = seenSignal!;
    store.getState().setPendingFiles('ft', await pathFileSet(`${ARCH}/base`));
    await second;
    expect(signal.aborted).toBe(true);
    expect(store.getState().weightsRun).toEqual({ status: 'idle' });
    expect(store.getState().weightsPair).toBeNull();
  });

  it('reports a runner failure, and refuses to run without a loaded pair', async () => {
    const store = await loadedStore();
    store.getState().setWeightsRunner(async () => {
      throw new Error('model.safetensors: the disk went away');
    });
    await store.getState().runWeights();
    expect(store.getState().weightsRun).toEqual({ status: 'error', message: 'model.safetensors: the disk went away' });
    store.getState().clearModel('ft');
    await store.getState().runWeights();
    expect(store.getState().weightsRun).toEqual({ status: 'error', message: 'load a base and a fine-tuned model that fit together first' });
  });
});
