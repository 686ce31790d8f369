import 'fake-indexeddb/auto';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { hashKey } from '@tanstack/react-query';
import { describe, expect, it } from 'vitest';
import { pathFileSet } from '../io/node-source.ts';
import type { ActivationRequest, LensResult, PairInfo } from '../jobs/activations.ts';
import { blobFolder, inProcessSpawn } from '../jobs/in-process.ts';
import type { Port, Spawn } from '../jobs/transport.ts';
import { corpusRef, type ActivationsRunner } from './activations.ts';
import { activationsRunner, analysisClient } from './analysis-client.ts';
import { openModelLoader } from './open-weights.ts';
import { activationSettings, analysisKey, ANALYSIS, queriedActivationsRunner, queriedWeightsRunner } from './queries.ts';
import { fingerprintOf } from './session.ts';
import { createAppStore } from './store.ts';
import { storedResults } from './stored-results.ts';
import type { WeightsRunner } from './weights.ts';

const DEMO = 'test/fixtures/demo';
const STORIES = readFileSync(`${DEMO}/generic_stories.txt`, 'utf8');
const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

describe('analysis keys', () => {
  const models = { base: 'a'.repeat(64), ft: 'b'.repeat(64) };
  const corpus = corpusRef('stories.txt', 'one story\nanother story\n');
  const adl: ActivationRequest = { task: 'adl', layer: 3, top: 20, corpus, samples: 16, tokensPerSample: 24 };
  const key = async (request: ActivationRequest, m = models) => hashKey(analysisKey(request.task, m, await activationSettings(request)));

  it('name both fingerprints, the analysis, and every setting, the corpus by the digest of its text', async () => {
    expect(analysisKey('adl', models, await activationSettings(adl))).toEqual([ANALYSIS, 'adl', models, { layer: 3, top: 20, corpus: sha256(corpus.text), samples: 16, tokensPerSample: 24 }]);
    const steer: ActivationRequest = { task: 'steer', layer: 2, position: 1, prompt: 'Once', strengths: [0, 1], maxNew: 8, corpus, samples: 4, tokensPerSample: 8 };
    expect(await activationSettings(steer)).toEqual({ layer: 2, position: 1, prompt: 'Once', strengths: [0, 1], maxNew: 8, corpus: sha256(corpus.text), samples: 4, tokensPerSample: 8 });
    expect(await activationSettings({ task: 'patching', prompt: 'Once', positions: 'last' })).toEqual({ prompt: 'Once', positions: 'last' });
  });

  it('differ with either fingerprint, the analysis and each setting; not with the order of fields or the corpus name', async () => {
    const base = await key(adl);
    const variants: ActivationRequest[] = [
      { ...adl, layer: 4 },
      { ...adl, top: 21 },
      { ...adl, samples: 17 },
      { ...adl, tokensPerSample: 25 },
      { ...adl, corpus: corpusRef('stories.txt', 'one story\nanother storm\n') },
      { task: 'pca', layer: 3, hook: 'resid_post', components: 20, corpus, samples: 16, tokensPerSample: 24 },
    ];
    const keys = [base, ...(await Promise.all(variants.map((v) => key(v)))), await key(adl, { ...models, base: 'c'.repeat(64) }), await key(adl, { ...models, ft: 'c'.repeat(64) }), await key(adl, { base: models.ft, ft: models.base })];
    expect(new Set(keys).size).toBe(keys.length);

    const reordered: ActivationRequest = { tokensPerSample: 24, samples: 16, corpus: corpusRef('renamed.txt', corpus.text), top: 20, layer: 3, task: 'adl' };
    expect(await key(reordered)).toBe(base);
  });

  it('two ADL runs at different layers are two queries', async () => {
    expect(await key({ ...adl, layer: 2 })).not.toBe(await key({ ...adl, layer: 5 }));
  });
});

/** A store with the demo pair loaded (headers only), its results kept in IndexedDB database `db`. */
async function demoStore(db: string) {
  const store = createAppStore();
  store.getState().setModelLoader(openModelLoader);
  store.getState().setStoredResults(storedResults(store.getState().queryClient, { name: db }));
  store.getState().setPendingFiles('base', await pathFileSet(`${DEMO}/base`));
  store.getState().setPendingFiles('ft', await pathFileSet(`${DEMO}/ocean/model`));
  await Promise.all([store.getState().loadModel('base'), store.getState().loadModel('ft')]);
  return store;
}

const stored = (store: ReturnType<typeof createAppStore>) =>
  new Promise<void>((resolve) => {
    const off = store.getState().storedResults!.onChange(() => {
      off();
      resolve();
    });
  });

describe('the query layer', () => {
  const info: PairInfo = { layers: 6, dModel: 192, vocab: 4096, adapter: false, backend: 'CPU in a test', loadMs: 1234 };
  const lens = (prompt: string): LensResult => ({
    task: 'lens',
    ids: [1, prompt.length],
    layers: 1,
    positions: 2,
    base: { rows: 2, k: 1, ids: Int32Array.from([5, 6]), probs: Float32Array.from([0.5, 0.25]) },
    ft: { rows: 2, k: 1, ids: Int32Array.from([7, 8]), probs: Float32Array.from([0.125, 0.75]) },
    kl: Float64Array.from([0.1, 0.2]),
    direction: 'KL(P_ft || P_base)',
    tokens: { 1: 'a', 5: ' b' },
  });

  function countingRunner() {
    const runs: string[] = [];
    const inner: ActivationsRunner = {
      async run(_files, request) {
        runs.push(request.task === 'lens' ? request.prompt : request.task);
        if (request.task !== 'lens') throw new Error('only the lens in this test');
        return { result: lens(request.prompt), ms: 42, pair: info };
      },
      release: () => {},
    };
    return { runs, inner };
  }

  it('restores a reloaded session from IndexedDB without running, and computes what it lacks', async () => {
    const db = `queries-test-${Date.now()}`;
    const first = await demoStore(db);
    const one = countingRunner();
    first.getState().setActivationsRunner(queriedActivationsRunner(one.inner, first));
    const written = stored(first);
    await first.getState().runActivation({ task: 'lens', prompt: 'Once upon a time', top: 1 });
    await written;
    expect(one.runs).toEqual(['Once upon a time']);
    expect(first.getState().activationRuns.lens).toMatchObject({ status: 'done', cached: false, cachedAt: null, ms: 42 });
    expect(first.getState().activationsInfo).toEqual(info);
    const [entry, ...others] = await first.getState().storedResults!.list();
    expect(others).toEqual([]);
    expect(entry?.kind).toBe('lens');
    expect(entry?.label).toBe('llama 3.1M vs llama 3.1M · “Once upon a time” · top 1');

    // A reload: a new store, new file objects with the same bytes, the same database.
    const second = await demoStore(db);
    const two = countingRunner();
    second.getState().setActivationsRunner(queriedActivationsRunner(two.inner, second));
    await second.getState().runActivation({ task: 'lens', prompt: 'Once upon a time', top: 1 });
    expect(two.runs).toEqual([]);
    const run = second.getState().activationRuns.lens;
    expect(run).toMatchObject({ status: 'done', cached: true, cachedAt: entry!.createdAt, ms: 42, backend: 'CPU in a test' });
    if (run?.status !== 'done' || run.result.task !== 'lens') throw new Error('no lens result');
    expect(Array.from(run.result.ft.probs)).toEqual([0.125, 0.75]);
    expect(Array.from(run.result.kl)).toEqual([0.1, 0.2]);
    expect(second.getState().activationsInfo).toBeNull();

    await second.getState().runActivation({ task: 'lens', prompt: 'Once upon a time', top: 2 });
    await second.getState().runActivation({ task: 'lens', prompt: 'Once upon a day', top: 1 });
    expect(two.runs).toEqual(['Once upon a time', 'Once upon a day']);
  });

  it('keys the weight diff by both fingerprints and topK, and reports a result it did not compute', async () => {
    const store = await demoStore(`queries-weights-${Date.now()}`);
    const calls: number[] = [];
    const inner: WeightsRunner = async (req) => {
      calls.push(req.topK);
      return { result: { tensors: [], missing: [], mismatched: [], unsupported: [] }, backend: 'CPU in a test' };
    };
    const runner = queriedWeightsRunner(inner, store);
    const pair = { base: store.getState().models.base.pending!, ft: store.getState().models.ft.pending! };
    const signal = new AbortController().signal;
    expect(await runner({ ...pair, topK: 8 }, () => {}, signal)).toEqual({ result: { tensors: [], missing: [], mismatched: [], unsupported: [] }, backend: 'CPU in a test' });
    const again = await runner({ ...pair, topK: 8 }, () => {}, signal);
    expect(Math.abs(again.cachedAt! - Date.now())).toBeLessThan(60_000);
    await runner({ ...pair, topK: 16 }, () => {}, signal);
    expect(calls).toEqual([8, 16]);
    const fps = await Promise.all([fingerprintOf(pair.base), fingerprintOf(pair.ft)]);
    const key = analysisKey('weights', { base: fps[0].fingerprint, ft: fps[1].fingerprint }, { topK: 16 });
    expect(store.getState().queryClient.getQueryData(key)).toMatchObject({ value: { backend: 'CPU in a test' } });
  });

  it('reports a failed job as the run\'s error, keeps nothing for it, and computes it again on retry', async () => {
    const store = await demoStore(`queries-error-${Date.now()}`);
    let calls = 0;
    const inner: ActivationsRunner = {
      async run(_files, request) {
        if (++calls === 1) throw new Error('the worker ran out of memory');
        return { result: lens(request.task === 'lens' ? request.prompt : ''), ms: 7, pair: info };
      },
      release: () => {},
    };
    store.getState().setActivationsRunner(queriedActivationsRunner(inner, store));
    const request: ActivationRequest = { task: 'lens', prompt: 'Once', top: 1 };
    await store.getState().runActivation(request);
    expect(store.getState().activationRuns.lens).toMatchObject({ status: 'error', message: 'the worker ran out of memory' });
    const written = stored(store);
    await store.getState().runActivation(request);
    expect(store.getState().activationRuns.lens).toMatchObject({ status: 'done', cached: false, ms: 7 });
    expect(calls).toBe(2);
    await written;
    // Only the result is stored, never the failure.
    expect((await store.getState().storedResults!.list()).map((e) => e.kind)).toEqual(['lens']);
  });

  it('computes without the cache when a model cannot be fingerprinted', async () => {
    const store = createAppStore();
    const unreadable = new Map([['model.safetensors', { name: 'model.safetensors', size: 10, read: () => Promise.reject(new Error('the disk went away')) }]]);
    let calls = 0;
    const runner = queriedWeightsRunner(async () => {
      calls++;
      return { result: { tensors: [], missing: [], mismatched: [], unsupported: [] }, backend: 'CPU in a test' };
    }, store);
    const warnings: unknown[] = [];
    const warn = console.warn;
    console.warn = (m: unknown) => warnings.push(m);
    try {
      for (let i = 0; i < 2; i++) await runner({ base: unreadable as never, ft: unreadable as never, topK: 4 }, () => {}, new AbortController().signal);
    } finally {
      console.warn = warn;
    }
    expect(calls).toBe(2);
    expect(warnings).toEqual(['the weights result is not cached: the disk went away', 'the weights result is not cached: the disk went away']);
  });

  it("cancels through the query's AbortSignal, which reaches the worker", async () => {
    const { spawn } = inProcessSpawn();
    const store = createAppStore();
    // The in-process worker shares this thread, so its messages arrive in bursts: Cancel is pressed
    // as the page sends the job (it is then the worker's current call), and what the worker answers
    // is watched on the page's end of the channel.
    const answers: { type: string; cancelled?: boolean; progress?: { stage: string } }[] = [];
    let fetchingAtCancel: string[] = [];
    const watching: Spawn = (onFailure) => {
      const w = spawn(onFailure);
      const port = w.port as Port;
      port.addEventListener('message', (e) => answers.push(e.data as (typeof answers)[number]));
      const post = port.postMessage.bind(port);
      port.postMessage = (m: unknown, transfer: Transferable[]) => {
        post(m, transfer);
        if ((m as { type: string }).type !== 'call') return;
        fetchingAtCancel = store.getState().queryClient.getQueryCache().findAll({ queryKey: [ANALYSIS, 'adl'] }).map((q) => q.state.fetchStatus);
        store.getState().cancelActivation('adl');
      };
      return w;
    };
    store.getState().setModelLoader(openModelLoader);
    store.getState().setPendingFiles('base', await blobFolder(`${DEMO}/base`));
    store.getState().setPendingFiles('ft', await blobFolder(`${DEMO}/ocean/model`));
    await Promise.all([store.getState().loadModel('base'), store.getState().loadModel('ft')]);
    store.getState().setActivationsRunner(queriedActivationsRunner(activationsRunner(analysisClient(watching)), store));
    const request: ActivationRequest = { task: 'adl', layer: 3, top: 20, corpus: corpusRef('generic_stories.txt', STORIES), samples: 64, tokensPerSample: 32 };

    await store.getState().runActivation(request);
    expect(fetchingAtCancel).toEqual(['fetching']);
    expect(store.getState().activationRuns.adl?.status).toBe('cancelled');
    while (!answers.some((a) => a.type === 'error' || a.type === 'result')) await new Promise((r) => setTimeout(r, 5));
    expect(answers.filter((a) => a.type === 'error' || a.type === 'result')).toEqual([expect.objectContaining({ type: 'error', cancelled: true })]);
    // The worker stopped after loading the pair, before the analysis: no ADL progress.
    expect(answers.filter((a) => a.type === 'progress').every((a) => a.progress!.stage.startsWith('loading'))).toBe(true);
    const [query, ...others] = store.getState().queryClient.getQueryCache().findAll({ queryKey: [ANALYSIS, 'adl'] });
    expect(others).toEqual([]);
    expect(query!.state).toMatchObject({ data: undefined, fetchStatus: 'idle' });
    store.getState().resetActivations();
  });
});
