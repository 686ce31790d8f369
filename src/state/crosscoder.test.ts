import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { loadCrosscoder, saveCrosscoder } from '../analysis/crosscoder/file.ts';
import { createCpuEngine } from '../analysis/crosscoder/cpu-engine.ts';
import { createInference } from '../analysis/crosscoder/inference.ts';
import { decoderVector, normRatios } from '../analysis/crosscoder/latents.ts';
import { createCpuBackend } from '../gpu/cpu-backend.ts';
import { pathFileSet } from '../io/node-source.ts';
import { bytesSource } from '../io/source.ts';
import { loadModel } from '../model/load.ts';
import { readLoraAdapter } from '../model/lora.ts';
import { hookName } from '../model/transformer.ts';
import type { CrosscoderRunner, OpHandlers } from './crosscoder.ts';
import {
  analyseCrosscoder,
  collectForCrosscoder,
  continueTraining,
  latentDetail,
  openCrosscoderPair,
  startTraining,
  steerLatent,
  trainedModel,
  type CollectRequest,
  type TrainSettings,
} from '../jobs/crosscoder.ts';
import type { CrosscoderOp } from '../jobs/analysis-worker-state.ts';
import { blobFolder, inProcessSpawn } from '../jobs/in-process.ts';
import type { Command } from '../jobs/transport.ts';
import { analysisClient, crosscoderRunner } from './analysis-client.ts';
import { openModelLoader } from './open-weights.ts';
import { createAppStore } from './store.ts';

const backend = createCpuBackend();
const DEMO = 'test/fixtures/demo';
const TEXT = readFileSync(`${DEMO}/mixed_stories.txt`, 'utf8');
const CORPUS = { key: 'mixed#test', name: 'mixed_stories.txt', text: TEXT };
const COLLECT: CollectRequest = { corpus: CORPUS, samples: 12, tokensPerSample: 16, layer: 3 };
const SETTINGS: TrainSettings = { dict: 32, k: 4, steps: 24, lr: 0.01, batch: 32, auxAlpha: 1 / 32, seed: 0 };

const close = (got: number, want: number, atol: number, rtol: number) => Math.abs(got - want) <= atol + rtol * Math.abs(want);

async function demoFiles() {
  return { base: await blobFolder(`${DEMO}/base`), ft: await blobFolder(`${DEMO}/ocean/model`) };
}

/** The analysis worker in-process, as the app's runner has it; engines are counted. */
async function session() {
  const engines = { made: 0, disposed: 0 };
  const { spawn } = inProcessSpawn({
    stepFlushMs: 0,
    makeEngine: async (d, D) => {
      engines.made++;
      return Object.assign(createCpuEngine({ d, D }), { dispose: () => engines.disposed++ });
    },
  });
  const client = analysisClient(spawn);
  const files = await demoFiles();
  const runner = crosscoderRunner(client);
  return { s: { run: (op: CrosscoderOp, handlers: OpHandlers = {}) => runner.run(files, op, handlers), command: (c: Command) => runner.command(c) }, close: () => client.release(), engines };
}

describe('the crosscoder compute steps', () => {
  it('collects resid_post of the layer, trains, and analyses: every number checked against a direct computation', async () => {
    const pair = await openCrosscoderPair(await demoFiles(), backend, 'cpu (test)');
    expect(pair.info).toEqual({ layers: 6, dModel: 192, vocab: 4096, backend: 'cpu (test)' });
    const collected = await collectForCrosscoder(pair, COLLECT);
    const { acts, samples } = collected;
    expect(samples).toHaveLength(12);
    expect(acts.rows).toBe(samples.reduce((a, s) => a + s.length - 1, 0));
    expect(acts.hook).toBe('blocks.3.hook_resid_post');
    // Row 0 is the second token of the first sample (the first position is skipped).
    const { base } = await pair.runner.models();
    const cache = base.runWithCache([samples[0]!], [hookName('resid_post', 3)]).cache;
    const direct = (await backend.read(cache.get(hookName('resid_post', 3))!)) as Float32Array;
    for (let i = 0; i < 192; i++) expect(close(acts.base[i]!, direct[192 + i]!, 1e-5, 1e-5)).toBe(true);

    const training = startTraining(collected, SETTINGS, CORPUS.name);
    const curve: number[] = [];
    const run = await continueTraining(training, { onStep: (p) => curve.push(p.step) });
    expect(run.reason).toBe('done');
    expect(curve).toEqual(Array.from({ length: 24 }, (_, i) => i));
    const model = await trainedModel(training);
    expect(model.info).toMatchObject({ layer: '3', hook: 'blocks.3.hook_resid_post', corpus: 'mixed_stories.txt', steps: '24' });

    const a = await analyseCrosscoder(pair, model, collected, { kind: 'trained', name: 'test' });
    const s = a.summary;
    expect([s.D, s.d, s.k, s.layer, s.tokens, s.steps]).toEqual([32, 192, 4, 3, acts.rows, 24]);
    const r = normRatios(model.params);
    for (let j = 0; j < 32; j++) expect(s.latents.ratio[j]).toBe(Math.fround(r[j]!));
    const live = Object.values(s.classes).reduce((x, y) => x + y, 0);
    expect(live + s.dead).toBe(32);
    expect(live).toBeGreaterThan(0);

    // FVU and L0 over all rows, recomputed with a fresh inference (threshold known after step 12).
    expect(model.threshold).toBeGreaterThanOrEqual(0);
    const out = await createInference(model).run(acts.base, acts.ft, acts.rows);
    let err = 0;
    let total = 0;
    const mean = [new Float64Array(192), new Float64Array(192)];
    for (const m of [0, 1] as const) {
      for (let i = 0; i < acts.rows * 192; i++) {
        err += (out.x[m][i]! - out.recon[m][i]!) ** 2;
        total += out.x[m][i]! ** 2;
        mean[m]![i % 192]! += out.x[m][i]! / acts.rows;
      }
    }
    for (const mu of mean) for (const v of mu) total -= acts.rows * v * v;
    expect(close(s.fvu, err / total, 1e-9, 1e-6)).toBe(true);
    expect(close(s.l0, out.code.rowPtr[acts.rows]! / acts.rows, 1e-12, 0)).toBe(true);

    // The latent page of the most frequent latent.
    let j = 0;
    for (let i = 1; i < 32; i++) if (s.latents.frequency[i]! > s.latents.frequency[j]!) j = i;
    const d = latentDetail(a, pair.tokenizer, j);
    const fired = Math.round(s.latents.frequency[j]! * s.tokens);
    expect(d.histogram.counts.reduce((x, y) => x + y, 0)).toBe(fired);
    expect(d.contexts.length).toBeGreaterThan(0);
    expect(close(d.contexts[0]!.maxActivation, s.latents.maxActivation[j]!, 1e-6, 1e-6)).toBe(true);
    for (const c of d.contexts) {
      const ids = samples[c.sample]!;
      expect(c.tokens).toEqual(ids.map((id) => pair.tokenizer.decodeToken(id)));
      expect(Math.max(...c.acts)).toBe(c.maxActivation);
      expect(c.acts[0]).toBe(0);
    }
    // Logit effects: the largest entry of W_U · (gain ⊙ d_j^ft) over the vocabulary, in float64.
    const { ft } = await pair.runner.models();
    const W = (await backend.read(ft.unembed)) as Float32Array;
    const g = (await backend.read(ft.weight('ln_final.w'))) as Float32Array;
    const u = decoderVector(model.params, 1, j);
    let best = -Infinity;
    let bestId = -1;
    for (let v = 0; v < 4096; v++) {
      let x = 0;
      for (let i = 0; i < 192; i++) x += W[v * 192 + i]! * g[i]! * u[i]!;
      x /= model.normalization.scale[1];
      if (x > best) [best, bestId] = [x, v];
    }
    expect(d.logits.ft.positive).toHaveLength(10);
    expect(d.logits.ft.positive[0]!.token).toBe(pair.tokenizer.decodeToken(bestId));
    expect(close(d.logits.ft.positive[0]!.value, best, 1e-5, 1e-4)).toBe(true);
    expect(() => latentDetail(a, pair.tokenizer, 32)).toThrow(/latent 32 is outside 0\.\.31/);

    // Steering at strength 0 is each model's greedy story; the vector's length is mean ‖h_ft‖.
    const steer = await steerLatent(pair, a, { latent: j, prompt: 'Once upon a time', strengths: [0, 1], maxNew: 6 });
    let norm = 0;
    for (let t = 0; t < acts.rows; t++) norm += Math.hypot(...acts.ft.subarray(t * 192, (t + 1) * 192));
    expect(close(steer.norm, norm / acts.rows, 1e-6, 1e-6)).toBe(true);
    const prompt = pair.tokenizer.encode('Once upon a time');
    const models = await pair.runner.models();
    for (const role of ['base', 'ft'] as const) {
      const stop = pair.tokenizer.eosId === undefined ? [] : [pair.tokenizer.eosId];
      const greedy = await models[role].generate(prompt, 6, { stop });
      expect(steer.generations[0]![role]).toBe(pair.tokenizer.decode(greedy.filter((id) => !stop.includes(id))));
    }
    await expect(steerLatent(pair, a, { latent: j, prompt: '', strengths: [0], maxNew: 2 })).rejects.toThrow(/no tokens/);
    pair.runner.dispose();
  });

  it('applies a PEFT adapter to the base for the fine-tuned side', async () => {
    const files = { base: await pathFileSet(`${DEMO}/base`), ft: await pathFileSet(`${DEMO}/space/adapter`) };
    const pair = await openCrosscoderPair(files, backend, 'cpu');
    const { acts, samples } = await collectForCrosscoder(pair, { ...COLLECT, samples: 2, layer: 2 });
    const merged = await loadModel(files.base, backend, { adapter: await readLoraAdapter(files.ft) });
    const name = hookName('resid_post', 2);
    const direct = (await backend.read(merged.runWithCache([samples[0]!], [name]).cache.get(name)!)) as Float32Array;
    let delta = 0;
    for (let i = 0; i < 192; i++) {
      expect(close(acts.ft[i]!, direct[192 + i]!, 1e-5, 1e-5)).toBe(true);
      delta += Math.abs(acts.ft[i]! - acts.base[i]!);
    }
    expect(delta).toBeGreaterThan(1e-3);
    pair.runner.dispose();
  });

  it('refuses settings that cannot train, naming the number at fault', async () => {
    const pair = await openCrosscoderPair(await demoFiles(), backend, 'cpu');
    const collected = await collectForCrosscoder(pair, { ...COLLECT, samples: 2 });
    expect(() => startTraining(collected, { ...SETTINGS, k: 64 }, 'c')).toThrow(/k \(64\) is larger than the dictionary \(32 latents\)/);
    expect(() => startTraining(collected, { ...SETTINGS, batch: 1000 }, 'c')).toThrow(/a batch of 1000 tokens needs that many activation rows; the corpus gives \d+/);
    await expect(collectForCrosscoder(pair, { ...COLLECT, layer: 6 })).rejects.toThrow(/layer 6 is outside 0\.\.5/);
    await expect(collectForCrosscoder(pair, { ...COLLECT, corpus: { key: 'e', name: 'empty.txt', text: '\n \n' } })).rejects.toThrow(/empty\.txt.*no non-empty lines/);
    pair.runner.dispose();
  });
});

describe('the crosscoder worker protocol', () => {
  it('pauses, resumes, analyses, answers latent pages, saves, and loads the saved file back to the same analysis', async () => {
    const { s, close: done } = await session();
    const stages = new Set<string>();
    let steps = 0;
    // Here page and worker share one thread: a command reaches the worker when training yields
    // (every 50 ms), so the run is made long enough to be paused part-way.
    const long = { ...SETTINGS, dict: 16, batch: 16, steps: 1500 };
    const paused = await s.run(
      { kind: 'train', collect: COLLECT, settings: long },
      {
        onProgress: (p) => stages.add(p.stage),
        onSteps: (points) => {
          steps += points.length;
          s.command('pause');
        },
      },
    );
    if (paused.kind !== 'paused') throw new Error(`expected a pause, got ${paused.kind}`);
    expect(paused.steps).toBeGreaterThanOrEqual(1);
    expect(paused.steps).toBeLessThan(1500);
    expect(steps).toBe(paused.steps);
    // The models load once in the worker, for every view: their stages name the model.
    expect(['loading the base model', 'loading the fine-tuned model', 'activations', 'training'].every((x) => stages.has(x))).toBe(true);

    const resumed = await s.run({ kind: 'resume' }, { onSteps: (points) => (steps += points.length) });
    if (resumed.kind !== 'analysed') throw new Error(`expected an analysis, got ${resumed.kind}`);
    expect(steps).toBe(1500);
    expect(resumed.summary.steps).toBe(1500);
    expect(resumed.summary.source).toEqual({ kind: 'trained', name: 'trained here (1500 steps)' });
    expect(resumed.timings.collectMs).toBeGreaterThan(0);
    expect(resumed.pair.backend).toMatch(/^cpu \(in-process\); both models resident/);
    await expect(s.run({ kind: 'resume' })).rejects.toThrow(/no paused training/);

    const page = await s.run({ kind: 'latent', latent: 0 });
    expect(page.kind === 'latent' && page.detail.id).toBe(0);

    const saved = await s.run({ kind: 'save' });
    if (saved.kind !== 'save') throw new Error('expected the file');
    expect(saved.name).toBe('crosscoder-layer3-D16-k4.safetensors');
    const model = await loadCrosscoder(bytesSource(new Uint8Array(saved.bytes), saved.name));
    expect([model.params.d, model.params.D, model.k, model.info.layer]).toEqual([192, 16, 4, '3']);

    // The saved file analysed again (at the layer it names, not the one asked for) reuses the activations.
    const loaded = await s.run({ kind: 'load', file: new Blob([saved.bytes]), name: 'cc.safetensors', collect: { ...COLLECT, layer: 1 } });
    if (loaded.kind !== 'analysed') throw new Error('expected an analysis');
    expect(loaded.summary.source.name).toBe('cc.safetensors');
    expect(loaded.summary.layer).toBe(3);
    expect(loaded.timings).toMatchObject({ collectMs: 0, trainMs: 0 });
    expect(Array.from(loaded.summary.latents.ratio)).toEqual(Array.from(resumed.summary.latents.ratio));
    expect(Array.from(loaded.summary.latents.frequency)).toEqual(Array.from(resumed.summary.latents.frequency));

    await expect(s.run({ kind: 'load', file: new Blob(['no header']), name: 'junk.safetensors', collect: COLLECT })).rejects.toThrow(/junk\.safetensors/);
    const narrow = saveCrosscoder({ ...model, params: { d: 8, D: 2, encW: new Float32Array(32), encB: new Float32Array(2), decW: new Float32Array(32), decB: new Float32Array(16) }, normalization: { mean: [new Float32Array(8), new Float32Array(8)], scale: [1, 1], targetRms: 1 } });
    await expect(s.run({ kind: 'load', file: new Blob([narrow.slice()]), name: 'narrow.safetensors', collect: COLLECT })).rejects.toThrow(/narrow\.safetensors: the crosscoder is for width 8, these models have d_model 192/);
    done();
  });

  it('finishes early, and cancels; a cancelled run leaves nothing to resume; engines are disposed', async () => {
    const { s, close: done, engines } = await session();
    const long = { ...SETTINGS, dict: 16, batch: 16, steps: 1500 };
    const finished = await s.run({ kind: 'train', collect: COLLECT, settings: long }, { onSteps: () => s.command('finish') });
    if (finished.kind !== 'analysed') throw new Error(`expected an analysis, got ${finished.kind}`);
    expect(finished.summary.steps).toBeGreaterThanOrEqual(1);
    expect(finished.summary.steps).toBeLessThan(1500);
    expect(engines).toEqual({ made: 2, disposed: 2 });

    const cancelled = s.run({ kind: 'train', collect: COLLECT, settings: long }, { onSteps: () => s.command('cancel') });
    await expect(cancelled).rejects.toMatchObject({ name: 'AbortError' });
    await expect(s.run({ kind: 'resume' })).rejects.toThrow(/no paused training/);
    // The analysis from before still answers.
    expect((await s.run({ kind: 'latent', latent: 1 })).kind).toBe('latent');
    expect(engines).toEqual({ made: 3, disposed: 3 });
    done();
  });
});

/** The app's runner, with the worker in-process. */
function inProcessRunner(): CrosscoderRunner {
  return crosscoderRunner(analysisClient(inProcessSpawn().spawn));
}

describe('the crosscoder slice', () => {
  it('trains on the loaded pair, keeps the curve and results, loads latent pages, and forgets them when the models change', async () => {
    const store = createAppStore();
    const files = await demoFiles();
    store.getState().setModelLoader(openModelLoader);
    store.getState().setCrosscoderRunner(inProcessRunner());
    store.getState().setPendingFiles('base', files.base);
    store.getState().setPendingFiles('ft', files.ft);
    await Promise.all([store.getState().loadModel('base'), store.getState().loadModel('ft')]);

    await store.getState().trainCrosscoder(3);
    expect(store.getState().ccRun).toMatchObject({ status: 'error', message: expect.stringMatching(/corpus is not ready/) });

    store.getState().setCcCorpusText('mixed_stories.txt', TEXT, true);
    store.getState().setCcSettings({ samples: 12, tokensPerSample: 16, dict: 32, k: 4, steps: 24, batch: 32, lr: 0.01 });
    await store.getState().trainCrosscoder(3);
    const s = store.getState();
    expect(s.ccRun.status).toBe('done');
    expect(s.ccCurve.map((p) => p.step)).toEqual(Array.from({ length: 24 }, (_, i) => i));
    expect(s.ccResult?.summary.D).toBe(32);

    s.setLatent(5);
    await s.loadLatentDetail(5);
    expect(store.getState().ccDetail).toMatchObject({ status: 'done', key: '5', value: { id: 5 } });
    await store.getState().steerWithLatent(5, 'The sea');
    const steer = store.getState().ccSteer;
    expect(steer?.status === 'done' && steer.value.generations.map((g) => g.strength)).toEqual([0, 0.5, 1]);
    const file = await store.getState().saveCrosscoderFile();
    expect(file.name).toMatch(/\.safetensors$/);

    store.getState().clearModel('ft');
    expect(store.getState().ccResult).toBeNull();
    expect(store.getState().ccCurve).toEqual([]);
    expect(store.getState().ccRun.status).toBe('idle');
  });

  it('says when the corpus file is empty', () => {
    const store = createAppStore();
    store.getState().setCcCorpusText('blank.txt', '\n  \n', false);
    expect(store.getState().ccCorpus).toEqual({ status: 'error', name: 'blank.txt', message: 'blank.txt has no non-empty lines: a corpus is a text file with one sample per line' });
  });
});
