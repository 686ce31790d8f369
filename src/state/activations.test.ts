import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { defaultPatchscopeScales } from '../analysis/activations/adl.ts';
import type { Progress } from '../analysis/activations/run.ts';
import { createCpuBackend } from '../gpu/cpu-backend.ts';
import { pathFileSet } from '../io/node-source.ts';
import { blobSource, FormatError, type FileSet } from '../io/source.ts';
import { loadModel } from '../model/load.ts';
import { readLoraAdapter } from '../model/lora.ts';
import { corpusRef, requestKey, type ActivationsRunner } from './activations.ts';
import { MAX_PROMPT_TOKENS, openActivationPair, runActivationTask, type ActivationRequest, type LoadedPair, type ResultFor } from '../jobs/activations.ts';
import { blobFolder, inProcessSpawn } from '../jobs/in-process.ts';
import { activationsRunner, analysisClient, crosscoderRunner } from './analysis-client.ts';
import { openModelLoader } from './open-weights.ts';
import { createAppStore } from './store.ts';

const backend = createCpuBackend();
const DEMO = 'test/fixtures/demo';
const PROMPT = 'Once upon a time, a little boy went to the';
const STORIES = readFileSync(`${DEMO}/generic_stories.txt`, 'utf8');

const close = (got: number, want: number, atol: number, rtol: number) => Math.abs(got - want) <= atol + rtol * Math.abs(want);

async function demoFiles(organism: 'ocean' | 'space') {
  return { base: await pathFileSet(`${DEMO}/base`), ft: await pathFileSet(organism === 'ocean' ? `${DEMO}/ocean/model` : `${DEMO}/space/adapter`) };
}

async function run<T extends ActivationRequest['task']>(loaded: LoadedPair, req: Extract<ActivationRequest, { task: T }>, onProgress?: (p: Progress) => void): Promise<ResultFor<T>> {
  return (await runActivationTask(loaded, req, onProgress ? { onProgress } : {})) as ResultFor<T>;
}

/** Softmax of a logits row in float64. */
function softmax(row: Float32Array): Float64Array {
  let m = -Infinity;
  for (const x of row) m = Math.max(m, x);
  const e = Float64Array.from(row, (x) => Math.exp(x - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / s);
}

describe('openActivationPair and the tasks', () => {
  it('runs the differential lens: its last layer is each model\'s own next-token distribution', async () => {
    const loaded = await openActivationPair(await demoFiles('ocean'), backend, 'cpu (test)');
    expect(loaded.info).toMatchObject({ layers: 6, dModel: 192, vocab: 4096, adapter: false, backend: 'cpu (test)' });
    const r = await run(loaded, { task: 'lens', prompt: PROMPT, top: 5 });
    const T = r.ids.length;
    expect(r.ids).toEqual(loaded.tokenizer.encode(PROMPT));
    expect([r.layers, r.positions, r.base.k, r.kl.length]).toEqual([6, T, 5, 6 * T]);
    for (const id of [...r.ids, ...r.base.ids, ...r.ft.ids]) expect(r.tokens[id]).toBe(loaded.tokenizer.decodeToken(id));

    const logits = async (m: Awaited<ReturnType<typeof loaded.runner.models>>['base']) => {
      const t = m.runWithHooks([r.ids], {})!;
      const data = (await backend.read(t)) as Float32Array;
      backend.dispose(t);
      return data;
    };
    const lb = await logits((await loaded.runner.models()).base);
    const lf = await logits((await loaded.runner.models()).ft);
    const V = 4096;
    for (let t = 0; t < T; t++) {
      const row = 5 * T + t;
      const pb = softmax(lb.subarray(t * V, (t + 1) * V));
      const pf = softmax(lf.subarray(t * V, (t + 1) * V));
      const argmax = (p: Float64Array) => p.indexOf(Math.max(...p));
      expect(r.base.ids[row * 5], `base top-1 at ${t}`).toBe(argmax(pb));
      expect(r.ft.ids[row * 5], `ft top-1 at ${t}`).toBe(argmax(pf));
      expect(close(r.ft.probs[row * 5]!, pf[argmax(pf)]!, 1e-5, 1e-4)).toBe(true);
      let kl = 0;
      for (let v = 0; v < V; v++) if (pf[v]! > 0) kl += pf[v]! * Math.log(pf[v]! / pb[v]!);
      expect(close(r.kl[row]!, kl, 1e-5, 1e-3), `KL at ${t}: ${r.kl[row]} vs ${kl}`).toBe(true);
    }
  });

  it('merges an adapter into the base: δ is zero where LoRA changes nothing (the embedding) and not after', async () => {
    const loaded = await openActivationPair(await demoFiles('space'), backend, 'cpu');
    expect(loaded.info.adapter).toBe(true);
    const pre = await run(loaded, { task: 'deltas', prompt: PROMPT, kind: 'resid_pre' });
    const T = pre.positions;
    expect(Array.from(pre.norm.subarray(0, T))).toEqual(new Array(T).fill(0));
    expect(Array.from(pre.cosine.subarray(0, T)).every((c) => close(c, 1, 1e-6, 0))).toBe(true);
    const post = await run(loaded, { task: 'deltas', prompt: PROMPT, kind: 'resid_post' });
    expect(post.norm.every((n) => n > 0)).toBe(true);
    // resid_pre of block ℓ+1 is resid_post of block ℓ.
    for (let i = 0; i < 5 * T; i++) expect(close(pre.norm[T + i]!, post.norm[i]!, 1e-5, 1e-5)).toBe(true);

    const direct = await loadModel(await pathFileSet(`${DEMO}/base`), backend, { adapter: await readLoraAdapter(await pathFileSet(`${DEMO}/space/adapter`)) });
    const ids = loaded.tokenizer.encode(PROMPT);
    const a = (await backend.read(direct.runWithHooks([ids], {})!)) as Float32Array;
    const b = (await backend.read((await loaded.runner.models()).ft.runWithHooks([ids], {})!)) as Float32Array;
    expect(a).toEqual(b);
  });

  it('runs the ADL with its Patchscope, then steers with the same δ without recomputing it', async () => {
    const loaded = await openActivationPair(await demoFiles('ocean'), backend, 'cpu');
    const corpus = corpusRef('generic_stories.txt', STORIES);
    const settings = { corpus, samples: 6, tokensPerSample: 16 };
    const stages = new Set<string>();
    const r = await run(loaded, { task: 'adl', layer: 3, top: 20, ...settings }, (p) => stages.add(p.stage));
    expect([r.layer, r.samples, r.tokensPerSample]).toEqual([3, 6, 16]);
    expect(stages).toEqual(new Set(['adl', 'patchscope']));
    expect(r.positions.map((p) => p.position)).toEqual([0, 1, 2, 3, 4]);
    for (const p of r.positions) {
      expect(p.top).toHaveLength(20);
      expect(p.topNegative).toHaveLength(20);
      expect(p.top.every((t, i) => i === 0 || t.prob <= p.top[i - 1]!.prob)).toBe(true);
      expect(p.consistencyPerSample).toHaveLength(6);
      const mean = p.consistencyPerSample.reduce((a, b) => a + b, 0) / 6;
      expect(close(p.consistency, mean, 1e-6, 1e-5)).toBe(true);
      expect(p.patchscope!.scales.map((s) => s.scale)).toEqual(defaultPatchscopeScales());
      for (const t of [...p.top, ...p.topNegative, ...p.patchscope!.stable]) expect(r.tokens[t.id]).toBe(loaded.tokenizer.decodeToken(t.id));
    }
    expect(r.ftNorm).toBeGreaterThan(0);

    stages.clear();
    const s = await run(loaded, { task: 'steer', layer: 3, position: 0, prompt: 'Once upon a time', strengths: [0, 4], maxNew: 8, ...settings }, (p) => stages.add(p.stage));
    expect(stages).toEqual(new Set(['steer']));
    expect(close(s.vectorNorm, r.ftNorm!, 1e-9, 1e-9)).toBe(true);
    // Strength 0 adds nothing: each model's own greedy continuation.
    const ids = loaded.tokenizer.encode('Once upon a time');
    for (const role of ['base', 'ft'] as const) {
      const greedy = await (await loaded.runner.models())[role].generate(ids, 8);
      expect(s.generations[0]![role]).toBe(loaded.tokenizer.decode(greedy));
    }
    expect(s.generations[1]!.base).not.toBe(s.generations[0]!.base);
  });

  it('runs patching and stitching on the prompt', async () => {
    // The adapter leaves the final norm and unembedding alone, so the last residual decides everything.
    const loaded = await openActivationPair(await demoFiles('space'), backend, 'cpu');
    const r = await run(loaded, { task: 'patching', prompt: 'The sea was', positions: 'all' });
    expect(r.patching.ftIntoBase.map((p) => p.kind)).toEqual(['resid_pre', 'attn_out', 'mlp_out', 'resid_post']);
    // Patching the whole residual leaving the last block reproduces the source model exactly.
    const last = r.patching.ftIntoBase[3]!.recovery[5]!;
    expect(close(last, 1, 1e-4, 0)).toBe(true);
    expect(r.baseBelow.klFromFt).toHaveLength(7);
    expect(close(r.baseBelow.klFromFt[0]!, 0, 1e-6, 0)).toBe(true);
    expect(close(r.baseBelow.lossBase, r.ftBelow.lossBase, 1e-9, 1e-9)).toBe(true);
  });

  it('says what is wrong with a prompt, a corpus or a pair', async () => {
    const loaded = await openActivationPair(await demoFiles('ocean'), backend, 'cpu');
    await expect(run(loaded, { task: 'lens', prompt: '', top: 5 })).rejects.toThrow('the prompt gives no tokens');
    await expect(run(loaded, { task: 'lens', prompt: 'sea '.repeat(400), top: 5 })).rejects.toThrow(`these views take at most ${MAX_PROMPT_TOKENS}`);
    const short = corpusRef('short.txt', 'a cat\n\nthe dog ran\n');
    await expect(run(loaded, { task: 'adl', layer: 3, top: 20, corpus: short, samples: 10, tokensPerSample: 16 })).rejects.toThrow(new FormatError('short.txt', 'no line has 16 tokens: lower the tokens per sample'));
    await expect(run(loaded, { task: 'adl', layer: 3, top: 20, corpus: short, samples: 10, tokensPerSample: 4 })).rejects.toThrow('tokens per sample must be an integer ≥ 8');

    const files = await demoFiles('space');
    await expect(openActivationPair({ base: files.ft, ft: files.base }, backend, 'cpu')).rejects.toThrow('adapter_model.safetensors: is a PEFT adapter, not a model');
    const noTokenizer = (set: FileSet) => new Map([...set].filter(([k]) => !k.startsWith('tokenizer')));
    const ocean = await demoFiles('ocean');
    await expect(openActivationPair({ base: noTokenizer(ocean.base), ft: noTokenizer(ocean.ft) }, backend, 'cpu')).rejects.toThrow('no tokenizer was found beside either model');
  });
});

describe('the analysis worker, for the activation views', () => {
  const blobDemo = async (organism: 'ocean' | 'space') => ({ base: await blobFolder(`${DEMO}/base`), ft: await blobFolder(organism === 'ocean' ? `${DEMO}/ocean/model` : `${DEMO}/space/adapter`) });

  it('holds one model at a time when the plan says so (a small host), with the numbers of both resident; views that need both say so', async () => {
    const corpus = corpusRef('generic_stories.txt', STORIES);
    const settings = { corpus, samples: 4, tokensPerSample: 12 };
    const requests: ActivationRequest[] = [
      { task: 'lens', prompt: PROMPT, top: 4 },
      { task: 'deltas', prompt: PROMPT, kind: 'attn_out' },
      { task: 'adl', layer: 2, top: 8, ...settings },
      { task: 'steer', layer: 2, position: 1, prompt: 'The sea', strengths: [0, 6], maxNew: 4, ...settings },
      { task: 'patching', prompt: 'The sea was', positions: 'last' },
    ];
    const answers = async (hostBytes: number) => {
      const client = analysisClient(inProcessSpawn({ hostBytes: () => hostBytes }).spawn);
      const runner = activationsRunner(client);
      const files = await blobDemo('ocean');
      const out = [];
      for (const req of requests) out.push(await runner.run(files, req, () => {}, new AbortController().signal));
      const refused = runner.run(files, { task: 'kl', top: 3, ...settings }, () => {}, new AbortController().signal);
      return { out, refused };
    };
    const resident = await answers(64 * 2 ** 30);
    // The demo pair holds 2 × 12.6 MB of float32 weights: 60% of 30 MB fits one model, not two.
    const sequential = await answers(30e6);
    expect(resident.out.map((a) => a.memory?.mode)).toEqual(requests.map(() => 'resident'));
    expect(sequential.out.map((a) => a.memory?.mode)).toEqual(requests.map(() => 'sequential'));
    expect(sequential.out[0]!.pair.backend).toMatch(/one model at a time: the pair needs/);
    for (const [i, a] of sequential.out.entries()) expect(a.result, requests[i]!.task).toEqual(resident.out[i]!.result);
    await resident.refused;
    await expect(sequential.refused).rejects.toThrow('the corpus KL needs both models loaded together');
  });

  it('loads once, answers requests in order, cancels a running one, keeps working, and the crosscoders reuse the loaded pair', async () => {
    const files = await blobDemo('ocean');
    const { spawn, started } = inProcessSpawn({ stepFlushMs: 0 });
    const client = analysisClient(spawn);
    const runner = activationsRunner(client);
    const never = new AbortController().signal;
    const stages: string[] = [];
    const lens = runner.run(files, { task: 'lens', prompt: PROMPT, top: 3 }, (p) => stages.push(p.stage), never);
    const deltas = runner.run(files, { task: 'deltas', prompt: PROMPT, kind: 'mlp_out' }, (p) => stages.push(p.stage), never);
    const a = await lens;
    expect(a.result.task).toBe('lens');
    expect(a.pair.backend).toMatch(/^cpu \(in-process\); both models resident\b/);
    expect(a.memory?.mode).toBe('resident');
    expect(a.ms).toBeGreaterThan(0);
    expect(stages).toContain('loading the base model');
    expect(stages).toContain('loading the fine-tuned model');
    expect((await deltas).result.task).toBe('deltas');

    const stop = new AbortController();
    const corpus = corpusRef('generic_stories.txt', STORIES);
    let progressAfterCancel = 0;
    const adl = runner.run(files, { task: 'adl', layer: 3, top: 20, corpus, samples: 64, tokensPerSample: 32 }, (p) => {
      if (stop.signal.aborted) progressAfterCancel++;
      if (p.stage === 'adl') stop.abort();
    }, stop.signal);
    await expect(adl).rejects.toThrow('the analysis was cancelled');
    const after = await runner.run(files, { task: 'patching', prompt: 'The sea', positions: 'last' }, () => {}, never);
    expect(after.result.task).toBe('patching');
    expect(progressAfterCancel).toBe(0);

    // The crosscoder view on the same worker: no model loads again.
    stages.length = 0;
    const cc = crosscoderRunner(client);
    const trained = await cc.run(files, { kind: 'train', collect: { corpus: { key: 'g', name: 'generic_stories.txt', text: STORIES }, samples: 8, tokensPerSample: 16, layer: 3 }, settings: { dict: 16, k: 2, steps: 4, lr: 0.01, batch: 16, auxAlpha: 1 / 32, seed: 0 } }, { onProgress: (p) => stages.push(p.stage) });
    expect(trained.kind).toBe('analysed');
    expect(stages).not.toContain('loading');
    expect(stages.filter((s) => s.startsWith('loading'))).toEqual([]);
    expect(started).toHaveLength(1);
    client.release();
    expect(started[0]!.terminated).toBe(true);
  });

  it('passes a load failure back to every request with the file name; a crashed worker is replaced on the next request', async () => {
    const files = await blobDemo('ocean');
    const w = files.ft.get('model.safetensors')!;
    const broken = new Map(files.ft);
    broken.set('model.safetensors', blobSource(new Blob([(await w.read(0, w.size - 4096)).slice()]), 'model.safetensors'));
    const never = new AbortController().signal;
    const bad = activationsRunner(analysisClient(inProcessSpawn().spawn));
    const pair = { base: files.base, ft: broken };
    await expect(bad.run(pair, { task: 'lens', prompt: PROMPT, top: 3 }, () => {}, never)).rejects.toThrow(/^model\.safetensors: /);
    await expect(bad.run(pair, { task: 'deltas', prompt: PROMPT, kind: 'resid_post' }, () => {}, never)).rejects.toThrow(/^model\.safetensors: /);

    const { spawn, started } = inProcessSpawn();
    const runner = activationsRunner(analysisClient(spawn));
    const first = runner.run(files, { task: 'lens', prompt: PROMPT, top: 3 }, () => {}, never);
    started[0]!.fail('the analysis worker failed: out of memory');
    await expect(first).rejects.toThrow('the analysis worker failed: out of memory');
    expect(started[0]!.terminated).toBe(true);
    const again = await runner.run(files, { task: 'lens', prompt: PROMPT, top: 3 }, () => {}, never);
    expect(again.result.task).toBe('lens');
    expect(started).toHaveLength(2);
  });
});

async function loadedStore(organism: 'ocean' | 'space' = 'ocean') {
  const store = createAppStore();
  const files = await demoFiles(organism);
  store.getState().setModelLoader(openModelLoader);
  store.getState().setPendingFiles('base', files.base);
  store.getState().setPendingFiles('ft', files.ft);
  await Promise.all([store.getState().loadModel('base'), store.getState().loadModel('ft')]);
  return store;
}

/** Runs requests in-process, holding the pair it loaded last; counts runs and releases. */
function inProcessRunner(): ActivationsRunner & { runs: number; loads: number; releases: number } {
  let held: { files: object; loaded: Promise<LoadedPair> } | null = null;
  const r = {
    runs: 0,
    loads: 0,
    releases: 0,
    async run(files: { base: FileSet; ft: FileSet }, request: ActivationRequest, onProgress: (p: Progress) => void, signal: AbortSignal) {
      r.runs++;
      if (held?.files !== files.base) {
        r.loads++;
        held = { files: files.base, loaded: openActivationPair(files, backend, 'cpu (in-process)') };
      }
      const loaded = await held.loaded;
      const t0 = performance.now();
      const result = await runActivationTask(loaded, request, { signal, onProgress });
      return { result, ms: performance.now() - t0, pair: loaded.info };
    },
    release() {
      r.releases++;
      held = null;
    },
  };
  return r;
}

describe('activations slice', () => {
  it('runs a request, serves the same request from the cache, and keys corpora by their text', async () => {
    const store = await loadedStore();
    const runner = inProcessRunner();
    store.getState().setActivationsRunner(runner);
    const req: ActivationRequest = { task: 'deltas', prompt: PROMPT, kind: 'resid_post' };
    await store.getState().runActivation(req);
    const first = store.getState().activationRuns.deltas;
    if (first?.status !== 'done') throw new Error(JSON.stringify(first));
    expect([first.cached, first.backend, first.key]).toEqual([false, 'cpu (in-process)', requestKey(req)]);
    expect(store.getState().activationsInfo?.layers).toBe(6);

    await store.getState().runActivation({ ...req, kind: 'attn_out' });
    await store.getState().runActivation(req);
    const again = store.getState().activationRuns.deltas;
    expect(again?.status === 'done' && again.cached).toBe(true);
    expect(again?.status === 'done' && again.result).toBe(first.result);
    expect([runner.runs, runner.loads]).toEqual([2, 1]);

    const a = corpusRef('c.txt', 'one line\nanother line\n');
    const b = corpusRef('c.txt', 'one line\nanother lime\n');
    expect(a.key).not.toBe(b.key);
    const adl = (corpus: typeof a) => requestKey({ task: 'adl', layer: 3, top: 20, corpus, samples: 4, tokensPerSample: 8 });
    expect(adl(a)).not.toBe(adl(b));
    expect(adl(a)).not.toContain('one line');
  });

  it('cancels a run, reports errors, and forgets everything when the models change', async () => {
    const store = await loadedStore();
    const runner = inProcessRunner();
    store.getState().setActivationsRunner(runner);
    store.getState().setCorpusText('generic_stories.txt', STORIES, true);
    const corpus = store.getState().corpus;
    if (corpus.status !== 'ready') throw new Error('no corpus');
    expect(corpus.lines).toBe(STORIES.split('\n').filter((l) => l.trim() !== '').length);
    const adl = store.getState().runActivation({ task: 'adl', layer: 3, top: 20, corpus: corpus.ref, samples: 64, tokensPerSample: 32 });
    await new Promise((r) => setTimeout(r, 0));
    store.getState().cancelActivation('adl');
    await adl;
    expect(store.getState().activationRuns.adl?.status).toBe('cancelled');

    await store.getState().runActivation({ task: 'lens', prompt: '', top: 5 });
    expect(store.getState().activationRuns.lens).toMatchObject({ status: 'error', message: 'the prompt gives no tokens' });

    store.getState().setCorpusText('empty.txt', '\n \n', false);
    expect(store.getState().corpus).toMatchObject({ status: 'error', message: 'empty.txt has no non-empty lines: a corpus is a text file with one sample per line' });

    await store.getState().runActivation({ task: 'deltas', prompt: PROMPT, kind: 'resid_post' });
    expect(store.getState().activationsPair).not.toBeNull();
    store.getState().setPendingFiles('ft', (await demoFiles('space')).ft);
    expect(store.getState().activationsPair).toBeNull();
    expect(store.getState().activationRuns).toEqual({});
    expect(runner.releases).toBe(1);
    await store.getState().runActivation({ task: 'deltas', prompt: PROMPT, kind: 'resid_post' });
    expect(store.getState().activationRuns.deltas).toMatchObject({ status: 'error', message: 'load a base and a fine-tuned model that fit together first' });
  });
});
