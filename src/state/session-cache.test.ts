import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { WeightsDiff } from '../analysis/weights/types.ts';
import { pathFileSet } from '../io/node-source.ts';
import { bytesSource, type FileSet } from '../io/source.ts';
import { corpusRef, type ActivationsRunner } from './activations.ts';
import type { ActivationRequest, LensResult, PairInfo } from '../jobs/activations.ts';
import { memoryCache, type ResultCache } from './cache.ts';
import { openModelLoader } from './open-weights.ts';
import { activationKeyParts, cachedActivationsRunner, cachedWeightsRunner, WEIGHTS_CACHE_KIND } from './session-cache.ts';
import { createAppStore } from './store.ts';
import type { WeightsOutcome } from './weights.ts';
import type { WeightsRunner } from './weights.ts';

const files = (text: string): FileSet => new Map([['model.safetensors', bytesSource(new TextEncoder().encode(text), 'model.safetensors')]]);
const noProgress = () => {};
const settle = () => new Promise((r) => setTimeout(r, 0));

describe('cachedWeightsRunner', () => {
  const result: WeightsDiff = { tensors: [], missing: [{ name: 'lm_head.weight', shape: [4, 2], only_in: 'ft' }], mismatched: [], unsupported: [] };

  function setup(cache: ResultCache | null) {
    const store = createAppStore();
    store.getState().setResultCache(cache);
    const calls: number[] = [];
    const inner: WeightsRunner = async (req) => {
      calls.push(req.topK);
      return { result, backend: 'CPU in a test' };
    };
    return { store, calls, runner: cachedWeightsRunner(inner, store) };
  }

  it('computes once per pair of models and settings, then reads the cache', async () => {
    const cache = memoryCache();
    const { calls, runner } = setup(cache);
    const base = files('base weights');
    const ft = files('fine-tuned weights');
    const first = await runner({ base, ft, topK: 8 }, noProgress, new AbortController().signal);
    expect(first).toEqual({ result, backend: 'CPU in a test' });
    await settle();
    const entries = await cache.list();
    expect(entries.map((e) => [e.kind, e.label])).toEqual([[WEIGHTS_CACHE_KIND, 'base vs ft']]);

    const again = await runner({ base: files('base weights'), ft: files('fine-tuned weights'), topK: 8 }, noProgress, new AbortController().signal);
    expect(again).toEqual({ result, backend: 'CPU in a test', cachedAt: entries[0]!.createdAt });
    expect(calls).toEqual([8]);

    await runner({ base, ft, topK: 16 }, noProgress, new AbortController().signal);
    await runner({ base, ft: files('fine-tuned weightz'), topK: 8 }, noProgress, new AbortController().signal);
    expect(calls).toEqual([8, 16, 8]);
  });

  it('computes without a cache, and when the cache fails', async () => {
    const plain = setup(null);
    await plain.runner({ base: files('a'), ft: files('b'), topK: 4 }, noProgress, new AbortController().signal);
    await plain.runner({ base: files('a'), ft: files('b'), topK: 4 }, noProgress, new AbortController().signal);
    expect(plain.calls).toEqual([4, 4]);

    const broken: ResultCache = {
      get: () => Promise.reject(new Error('quota')),
      put: () => Promise.reject(new Error('quota')),
      list: async () => [],
      clear: async () => {},
    };
    const failing = setup(broken);
    const warn = console.warn;
    const warnings: unknown[] = [];
    console.warn = (m: unknown) => warnings.push(m);
    try {
      const outcome: WeightsOutcome = await failing.runner({ base: files('a'), ft: files('b'), topK: 4 }, noProgress, new AbortController().signal);
      expect(outcome.result).toBe(result);
      await settle();
    } finally {
      console.warn = warn;
    }
    expect(failing.calls).toEqual([4]);
    expect(warnings).toEqual(['the session cache was skipped: quota', 'the weight diff was not cached: quota']);
  });

  it('stops when cancelled while reading the cache', async () => {
    const { calls, runner } = setup(memoryCache());
    const controller = new AbortController();
    controller.abort(new DOMException('the weight diff was cancelled', 'AbortError'));
    await expect(runner({ base: files('a'), ft: files('b'), topK: 4 }, noProgress, controller.signal)).rejects.toThrow('the weight diff was cancelled');
    expect(calls).toEqual([]);
  });
});

describe('cachedActivationsRunner', () => {
  const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

  it('keys a request by its prompt and its corpus text (not the corpus name), every other field a setting', async () => {
    const text = 'one story\nanother story\n';
    const adl: ActivationRequest = { task: 'adl', layer: 3, top: 20, corpus: corpusRef('a.txt', text), samples: 16, tokensPerSample: 24 };
    expect(await activationKeyParts(adl)).toEqual({ inputs: { corpus: sha256(text) }, settings: { layer: 3, top: 20, samples: 16, tokensPerSample: 24 } });
    expect(await activationKeyParts({ ...adl, corpus: corpusRef('b.txt', text) })).toEqual(await activationKeyParts(adl));
    const steer: ActivationRequest = { task: 'steer', layer: 2, position: 1, prompt: 'Once', strengths: [0, 1], maxNew: 8, corpus: corpusRef('a.txt', text), samples: 4, tokensPerSample: 8 };
    expect(await activationKeyParts(steer)).toEqual({ inputs: { prompt: 'Once', corpus: sha256(text) }, settings: { layer: 2, position: 1, strengths: [0, 1], maxNew: 8, samples: 4, tokensPerSample: 8 } });
    expect(await activationKeyParts({ task: 'patching', prompt: 'Once', positions: 'last' })).toEqual({ inputs: { prompt: 'Once' }, settings: { positions: 'last' } });
  });

  const FIXTURES = 'test/fixtures/demo';
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

  /** A store with the demo pair loaded (headers only) and an inner runner that counts its runs. */
  async function session(cache: ResultCache) {
    const store = createAppStore();
    store.getState().setModelLoader(openModelLoader);
    store.getState().setResultCache(cache);
    store.getState().setPendingFiles('base', await pathFileSet(`${FIXTURES}/base`));
    store.getState().setPendingFiles('ft', await pathFileSet(`${FIXTURES}/ocean/model`));
    await Promise.all([store.getState().loadModel('base'), store.getState().loadModel('ft')]);
    const runs: string[] = [];
    let releases = 0;
    const inner: ActivationsRunner = {
      async run(_files, request) {
        runs.push(request.task === 'lens' ? request.prompt : request.task);
        if (request.task !== 'lens') throw new Error('only the lens in this test');
        return { result: lens(request.prompt), ms: 42, pair: info };
      },
      release: () => releases++,
    };
    store.getState().setActivationsRunner(cachedActivationsRunner(inner, store));
    return { store, runs, releases: () => releases };
  }

  it('serves a reopened session from the cache without running, and computes what it lacks', async () => {
    const cache = memoryCache();
    const first = await session(cache);
    await first.store.getState().runActivation({ task: 'lens', prompt: 'Once upon a time', top: 1 });
    expect(first.runs).toEqual(['Once upon a time']);
    expect(first.store.getState().activationRuns.lens).toMatchObject({ status: 'done', cached: false, cachedAt: null, ms: 42 });
    expect(first.store.getState().activationsInfo).toEqual(info);
    await settle();
    const [entry] = await cache.list();
    expect(entry?.kind).toBe('lens');
    expect(entry?.label).toMatch(/ vs .* · “Once upon a time” · top 1$/);

    // Another session (new file objects, same bytes): the result is read back, no run, no models loaded for it.
    const second = await session(cache);
    await second.store.getState().runActivation({ task: 'lens', prompt: 'Once upon a time', top: 1 });
    expect(second.runs).toEqual([]);
    const run = second.store.getState().activationRuns.lens;
    expect(run).toMatchObject({ status: 'done', cached: true, cachedAt: entry!.createdAt, ms: 42, backend: 'CPU in a test' });
    if (run?.status !== 'done' || run.result.task !== 'lens') throw new Error('no lens result');
    expect(Array.from(run.result.ft.probs)).toEqual([0.125, 0.75]);
    expect(Array.from(run.result.kl)).toEqual([0.1, 0.2]);
    expect(second.store.getState().activationsInfo).toBeNull();

    await second.store.getState().runActivation({ task: 'lens', prompt: 'Once upon a time', top: 2 });
    await second.store.getState().runActivation({ task: 'lens', prompt: 'Once upon a day', top: 1 });
    expect(second.runs).toEqual(['Once upon a time', 'Once upon a day']);
    second.store.getState().resetActivations();
    expect(second.releases()).toBe(1);
  });
});
