import { describe, expect, it } from 'vitest';
import { bytesSource, type FileSet } from '../io/source.ts';
import { bothModelsLoaded, fileSetBytes, type ModelLoader, type ModelSummary } from './models.ts';
import { createAppStore } from './store.ts';

const files = (...sizes: number[]): FileSet =>
  new Map(sizes.map((n, i) => [`f${i}.bin`, bytesSource(new Uint8Array(n), `f${i}.bin`)]));

const summary: ModelSummary = {
  kind: 'model',
  format: 'hf',
  label: 'model.safetensors',
  architecture: 'llama',
  parameterCount: 1234,
  layers: 2,
  dModel: 8,
  vocabSize: 16,
  dtypes: { F32: 1234 },
  weightBytes: 4936,
  largestTensor: { name: 'model.embed_tokens.weight', elements: 128 },
  shapes: new Map([['model.embed_tokens.weight', [16, 8]]]),
};

function deferred<T>() {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

describe('models slice', () => {
  it('stores dropped files as pending and sums their size', () => {
    const store = createAppStore();
    const set = files(10, 32, 0);
    store.getState().setPendingFiles('base', set);
    expect(store.getState().models.base).toEqual({ pending: set, status: { kind: 'idle' } });
    expect(store.getState().models.ft.pending).toBeNull();
    expect(fileSetBytes(set)).toBe(42);
  });

  it('reports progress, then the summary, from a plugged-in loader', async () => {
    const store = createAppStore();
    const gate = deferred<ModelSummary>();
    const seen: unknown[] = [];
    const loader: ModelLoader = async (fs, role, onProgress) => {
      seen.push([role, [...fs.keys()]]);
      onProgress(5, 42);
      return gate.promise;
    };
    store.getState().setModelLoader(loader);
    store.getState().setPendingFiles('ft', files(10, 32));
    const done = store.getState().loadModel('ft');
    expect(store.getState().models.ft.status).toEqual({ kind: 'loading', bytesDone: 5, bytesTotal: 42 });
    gate.resolve(summary);
    await done;
    expect(seen).toEqual([['ft', ['f0.bin', 'f1.bin']]]);
    expect(store.getState().models.ft.status).toEqual({ kind: 'loaded', summary });
    expect(bothModelsLoaded(store.getState().models)).toBe(false);
  });

  it('turns a loader failure into an error status with its message', async () => {
    const store = createAppStore();
    store.getState().setModelLoader(async () => {
      throw new Error('config.json: missing "hidden_size"');
    });
    store.getState().setPendingFiles('base', files(3));
    await store.getState().loadModel('base');
    expect(store.getState().models.base.status).toEqual({ kind: 'error', message: 'config.json: missing "hidden_size"' });
  });

  it('says so when no loader is registered or nothing was dropped', async () => {
    const store = createAppStore();
    store.getState().setPendingFiles('base', files(3));
    await store.getState().loadModel('base');
    expect(store.getState().models.base.status).toEqual({ kind: 'error', message: 'no model loader is registered' });
    store.getState().setModelLoader(async () => summary);
    await store.getState().loadModel('ft');
    expect(store.getState().models.ft.status).toEqual({ kind: 'error', message: 'no files were dropped for this model' });
  });

  it('aborts a load when new files are dropped and drops its late result', async () => {
    const store = createAppStore();
    const gate = deferred<ModelSummary>();
    let signal: AbortSignal | undefined;
    store.getState().setModelLoader(async (_fs, _role, onProgress, s) => {
      signal = s;
      const result = await gate.promise;
      onProgress(1, 1);
      return result;
    });
    store.getState().setPendingFiles('base', files(3));
    const first = store.getState().loadModel('base');
    const replacement = files(7);
    store.getState().setPendingFiles('base', replacement);
    expect(signal?.aborted).toBe(true);
    gate.resolve(summary);
    await first;
    expect(store.getState().models.base).toEqual({ pending: replacement, status: { kind: 'idle' } });
  });

  it('counts both models loaded only when both are', async () => {
    const store = createAppStore();
    store.getState().setModelLoader(async () => summary);
    store.getState().setPendingFiles('base', files(1));
    store.getState().setPendingFiles('ft', files(1));
    await Promise.all([store.getState().loadModel('base'), store.getState().loadModel('ft')]);
    expect(bothModelsLoaded(store.getState().models)).toBe(true);
    store.getState().clearModel('ft');
    expect(bothModelsLoaded(store.getState().models)).toBe(false);
  });
});
