import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { diffWeights } from '../analysis/weights/diff.ts';
import { createCpuBackend } from '../gpu/cpu-backend.ts';
import { pathFileSet } from '../io/node-source.ts';
import { openSafetensorsFolder } from '../io/safetensors.ts';
import type { ByteSource, FileSet } from '../io/source.ts';
import { openModelLoader } from './open-weights.ts';
import { createAppStore } from './store.ts';
import { computeWeightsDiff, type DiffProgress } from '../jobs/weights.ts';
import type { Port } from './file-proxy.ts';
import { runOverPort, serveWeightsDiff } from './weights-protocol.ts';
import type { WeightsRunner } from './weights.ts';

const backend = createCpuBackend();
const ARCH = 'test/fixtures/arch/llama';

interface GroundTruth {
  changed_tensors: Record<string, { singular_values: number[]; frobenius: number }>;
}
const truth = JSON.parse(readFileSync(`${ARCH}/ground_truth.json`, 'utf8')) as GroundTruth;

const close = (got: number, want: number, atol: number, rtol: number) => Math.abs(got - want) <= atol + rtol * Math.abs(want);

/** A MessageChannel's ports as the two ends of the worker protocol. */
function channel(): { main: Port; worker: Port; close(): void } {
  const { port1, port2 } = new MessageChannel();
  port1.start();
  port2.start();
  return { main: port1 as unknown as Port, worker: port2 as unknown as Port, close: () => (port1.close(), port2.close()) };
}

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

describe('the worker protocol', () => {
  it('gives the same diff as in-process, reading through the port in chunks', async () => {
    const base = await pathFileSet(`${ARCH}/base`);
    const ft = await pathFileSet(`${ARCH}/ft`);
    const ch = channel();
    let reads = 0;
    const counted = (set: FileSet): FileSet =>
      new Map(
        [...set].map(([k, src]): [string, ByteSource] => [
          k,
          { name: src.name, size: src.size, read: (o, n, s) => (reads++, src.read(o, n, s)) },
        ]),
      );
    serveWeightsDiff(ch.worker, async () => ({ backend, name: 'cpu (test)' }), 4096);
    const seen: DiffProgress[] = [];
    const out = await runOverPort(ch.main, { base: counted(base), ft: counted(ft), topK: 8 }, (p) => seen.push(p), new AbortController().signal);
    ch.close();
    const direct = await diffWeights(await openSafetensorsFolder(base), await openSafetensorsFolder(ft), { backend, topK: 8 });
    expect(out.backend).toBe('cpu (test)');
    expect(out.result.tensors.map((t) => [t.name, t.frobenius, t.spectral])).toEqual(direct.tensors.map((t) => [t.name, t.frobenius, t.spectral]));
    expect(seen.at(-1)?.done).toBe(direct.tensors.length);
    const weightBytes = readFileSync(`${ARCH}/base/model.safetensors`).length;
    // Every tensor larger than a chunk takes several reads.
    expect(reads).toBeGreaterThan((2 * weightBytes) / 4096);
  });

  it('passes a read failure back with the file name, and stops on abort', async () => {
    const base = await pathFileSet(`${ARCH}/base`);
    const broken = new Map(base);
    const weights = base.get('model.safetensors')!;
    broken.set('model.safetensors', { name: 'model.safetensors', size: weights.size, read: (o, n) => (o === 0 ? weights.read(o, n) : Promise.reject(new Error('model.safetensors: the disk went away'))) });
    const ch = channel();
    serveWeightsDiff(ch.worker, async () => ({ backend, name: 'cpu' }));
    await expect(runOverPort(ch.main, { base, ft: broken, topK: 4 }, () => {}, new AbortController().signal)).rejects.toThrow('model.safetensors: the disk went away');
    ch.close();

    const ch2 = channel();
    serveWeightsDiff(ch2.worker, async () => ({ backend, name: 'cpu' }));
    const stop = new AbortController();
    const run = runOverPort(ch2.main, { base, ft: await pathFileSet(`${ARCH}/ft`), topK: 4 }, () => stop.abort(new Error('cancelled by the test')), stop.signal);
    await expect(run).rejects.toThrow('cancelled by the test');
    ch2.close();
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
