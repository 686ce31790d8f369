// The diff-SAE job on the demo pair (base vs ocean): δ collected from the loaded pair, the SAE
// trained with its curve in the progress, latents listed by frequency with the fine-tune's lens of
// their decoder directions; a cancel stops it between steps; bad settings and a δ of zero say why.
import { PairedRunner } from '../model/paired.ts';
import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Progress } from '../analysis/activations/run.ts';
import { createCpuBackend } from '../gpu/cpu-backend.ts';
import { pathFileSet } from '../io/node-source.ts';
import { latentDirection } from '../analysis/diff-sae/diff-sae.ts';
import { openActivationPair, runActivationTask, type ActivationRequest, type LoadedPair, type ResultFor } from './activations.ts';
import { trainOnDifferences } from './diff-sae.ts';

const backend = createCpuBackend();
const DEMO = 'test/fixtures/demo';
const CORPUS = { key: 'mixed_stories.txt (test)', name: 'mixed_stories.txt', text: readFileSync(`${DEMO}/mixed_stories.txt`, 'utf8') };
const SMALL = { corpus: CORPUS, samples: 12, tokensPerSample: 24 };
const SETTINGS = { layer: 3, dict: 48, k: 4, steps: 60, batch: 64, lr: 4e-3, seed: 0 };

let loaded: LoadedPair;

beforeAll(async () => {
  loaded = await openActivationPair({ base: await pathFileSet(`${DEMO}/base`), ft: await pathFileSet(`${DEMO}/ocean/model`) }, backend, 'cpu (test)');
});

const request = (over: Partial<Extract<ActivationRequest, { task: 'diff-sae' }>> = {}): Extract<ActivationRequest, { task: 'diff-sae' }> => ({ task: 'diff-sae', ...SETTINGS, ...SMALL, ...over });

/** Softmax top-k of W_U · RMSNorm(v) on the host in float64 (the demo model: RMS norm, tied unembedding, no soft-cap). */
async function hostLens(v: Float32Array, k: number): Promise<{ id: number; prob: number }[]> {
  const { ft } = await loaded.runner.models();
  const c = ft.config;
  const d = c.dModel;
  const w = (await backend.read(ft.weight('ln_final.w'))) as Float32Array;
  const U = (await backend.read(ft.unembed)) as Float32Array;
  let ms = 0;
  for (const x of v) ms += x * x;
  const r = 1 / Math.sqrt(ms / d + c.norm.eps);
  const h = Float64Array.from(v, (x, i) => x * r * w[i]!);
  const z = new Float64Array(c.vocab);
  for (let t = 0; t < c.vocab; t++) {
    let s = 0;
    for (let i = 0; i < d; i++) s += U[t * d + i]! * h[i]!;
    z[t] = s;
  }
  const m = Math.max(...z);
  let sum = 0;
  for (const x of z) sum += Math.exp(x - m);
  return [...z.keys()]
    .sort((a, b) => z[b]! - z[a]!)
    .slice(0, k)
    .map((id) => ({ id, prob: Math.exp(z[id]! - m) / sum }));
}

describe('the diff-SAE job', () => {
  it('trains on δ of the demo pair and lists its latents with their lens and contexts', async () => {
    const progress: Progress[] = [];
    const r = (await runActivationTask(loaded, request(), { onProgress: (p) => progress.push(p) })) as ResultFor<'diff-sae'>;
    const out = r.result;
    const rows = r.corpusSamples.reduce((n, s) => n + s.length - 1, 0);
    expect(out).toMatchObject({ layer: 3, hook: 'blocks.3.hook_resid_post', d: 192, D: 48, k: 4, steps: 60, rows });

    const stages = [...new Set(progress.map((p) => p.stage))];
    expect(stages).toEqual(['activations', 'training', 'latents']);
    const training = progress.filter((p) => p.stage === 'training');
    expect(training[0]!.done).toBe(1);
    expect(training.at(-1)!.done).toBe(60);
    expect(training.at(-1)!.curve).toEqual(out.curve);
    expect(out.curve[0]!.step).toBe(0);
    expect(out.curve.at(-1)!.step).toBe(59);
    expect(out.curve.at(-1)!.loss).toBeLessThan(out.curve[0]!.loss);
    expect(out.fvu).toBeGreaterThan(0);
    expect(out.fvu).toBeLessThan(1);

    expect(out.live).toBeGreaterThan(0);
    expect(out.latents.length).toBe(Math.min(out.live, 256));
    for (const [i, l] of out.latents.entries()) {
      if (i > 0) expect(l.frequency).toBeLessThanOrEqual(out.latents[i - 1]!.frequency);
      // frequency = tokens where the latent fires / tokens
      expect(Math.abs(l.frequency * rows - Math.round(l.frequency * rows))).toBeLessThanOrEqual(1e-6 * rows);
      expect(l.frequency).toBeGreaterThan(0);
      expect(l.top.length).toBeGreaterThan(0);
      expect(Math.abs(l.top[0]!.activation - l.maxActivation)).toBeLessThanOrEqual(1e-6 * Math.abs(l.maxActivation));
      for (const x of l.top) {
        expect(x.position).toBeGreaterThanOrEqual(1);
        expect(x.activation).toBeLessThanOrEqual(l.maxActivation * (1 + 1e-6));
      }
      for (const t of [...l.positive, ...l.negative]) expect(r.tokens[t.id]).toBe(loaded.tokenizer.decodeToken(t.id));
    }
  });

  it("reads each listed latent's decoder direction through the fine-tune's lens, as the host does in float64", async () => {
    const over = { steps: 30 };
    const r = (await runActivationTask(loaded, request(over))) as ResultFor<'diff-sae'>;
    // The same settings and seed train the same SAE: its decoder directions are the ones the job read.
    const samples = r.corpusSamples;
    const { model } = await trainOnDifferences(await loaded.runner.models(), samples, { ...SETTINGS, ...over });
    for (const l of r.result.latents.slice(0, 4)) {
      const v = latentDirection(model, l.id);
      for (const [list, sign] of [[l.positive, 1], [l.negative, -1]] as const) {
        const want = await hostLens(v.map((x) => sign * x), list.length);
        expect(list.map((t) => t.id)).toEqual(want.map((t) => t.id));
        list.forEach((t, j) => expect(Math.abs(t.prob - want[j]!.prob)).toBeLessThanOrEqual(1e-5 + 1e-4 * want[j]!.prob));
      }
    }
  });

  it('stops between training steps when cancelled, before reading any latent', async () => {
    const stop = new AbortController();
    const seen: Progress[] = [];
    const run = runActivationTask(loaded, request({ steps: 5000 }), {
      signal: stop.signal,
      onProgress: (p) => {
        seen.push(p);
        if (p.stage === 'training') stop.abort(new DOMException('the analysis was cancelled', 'AbortError'));
      },
    });
    await expect(run).rejects.toThrow('the analysis was cancelled');
    const training = seen.filter((p) => p.stage === 'training');
    expect(training.map((p) => p.done)).toEqual([1]);
    expect(seen.some((p) => p.stage === 'latents')).toBe(false);
  });

  it('names bad settings, a layer out of range and a δ of zero', async () => {
    await expect(runActivationTask(loaded, request({ k: 64 }))).rejects.toThrow('k (64) is larger than the dictionary (48 latents)');
    await expect(runActivationTask(loaded, request({ layer: 6 }))).rejects.toThrow('layer 6 is outside 0..5');
    await expect(runActivationTask(loaded, request({ lr: 0 }))).rejects.toThrow('the learning rate must be in (0, 1], got 0');
    await expect(runActivationTask(loaded, request({ steps: 1.5 }))).rejects.toThrow("the diff-SAE's steps must be an integer ≥ 1, got 1.5");
    const self: LoadedPair = { ...loaded, runner: new PairedRunner(loaded.runner.base, loaded.runner.base, loaded.runner.backend, { mode: 'resident' }), corpora: new Map(), differences: new Map() };
    await expect(runActivationTask(self, request())).rejects.toThrow('δ is 0 at every token: the two models agree at blocks.3.hook_resid_post on this corpus');
  });
});
