// End to end through the command line: train a tiny crosscoder on the demo pair, then list its
// latents, and check the printed numbers against direct computations.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, ROOT } from './cli-testing.ts';
import { readFileSync } from 'node:fs';
import { tokenizeCorpus } from '../analysis/crosscoder/collect.ts';
import { decodeActivations } from '../analysis/crosscoder/collect-cache.ts';
import { loadCrosscoder } from '../analysis/crosscoder/file.ts';
import { createInference } from '../analysis/crosscoder/inference.ts';
import { classifyRatio, decoderVector } from '../analysis/crosscoder/latents.ts';
import { createCpuBackend } from '../gpu/cpu-backend.ts';
import { pathFileSet, pathSource } from '../io/node-source.ts';
import { readHfTokenizer } from '../io/tokenizer.ts';
import { loadModel } from '../model/load.ts';

const DEMO = join(ROOT, 'test/fixtures/demo');
const CORPUS = join(DEMO, 'mixed_stories.txt');

const close = (got: number, want: number, abs: number, rel: number) => Math.abs(got - want) <= abs + rel * Math.abs(want);

interface Summary {
  steps: number;
  D: number;
  k: number;
  layer: number;
  rows: number;
  train_rows: number;
  activations: { cached: boolean; file: string };
  curve: Array<{ step: number; loss: number }>;
  eval: { fvu: number; relative_error: number; tokens: number; dead: number; on: string };
  ratios: { counts: number[]; classes: Record<string, number> };
}

interface Latent {
  id: number;
  ratio: number;
  class: string;
  nu_error: number | null;
  nu_recon: number | null;
  frequency: number;
  top_tokens: Array<{ token: string; id: number; activation: number; sample: number; position: number; context: string }>;
  logit_direction: 'ft' | 'base';
  logit_effects: { positive: Array<{ id: number; token: string; value: number }>; negative: Array<{ id: number; token: string; value: number }> };
}

describe('neurodiff crosscoder', () => {
  let dir: string;
  let summary: Summary;
  const common = ['--corpus', CORPUS, '--max-samples', '48', '--tokens-per-sample', '24', '--layer', '3'];
  const trainArgs = () => ['crosscoder', 'train', join(DEMO, 'base'), join(DEMO, 'ocean/model'), ...common, '--dict', '96', '--k', '4', '--steps', '40', '--batch', '64', '--lr', '2e-3', '--out', join(dir, 'cc.safetensors'), '--cache', join(dir, 'cache'), '--json'];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'neurodiff-cc-'));
    const r = await cli(trainArgs());
    expect(r.stderr).toContain('activations:');
    expect(r.code).toBe(0);
    summary = JSON.parse(r.stdout) as Summary;
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('train prints a summary whose numbers fit the run, and saves a crosscoder', async () => {
    expect(summary.steps).toBe(40);
    expect([summary.D, summary.k, summary.layer]).toEqual([96, 4, 3]);
    expect(summary.train_rows).toBeLessThan(summary.rows);
    expect(summary.eval.on).toBe('held-out samples');
    expect(summary.eval.tokens).toBe(summary.rows - summary.train_rows);
    const first = summary.curve[0]!;
    const last = summary.curve[summary.curve.length - 1]!;
    expect(last.step).toBe(39);
    expect(last.loss).toBeLessThan(0.9 * first.loss);
    expect(summary.eval.fvu).toBeGreaterThan(0);
    expect(summary.eval.fvu).toBeLessThan(1);
    expect(summary.eval.relative_error).toBeGreaterThan(0);
    expect(summary.eval.relative_error).toBeLessThan(1);
    const live = 96 - summary.eval.dead;
    expect(summary.ratios.counts.reduce((a, b) => a + b, 0)).toBe(live);
    expect(Object.values(summary.ratios.classes).reduce((a, b) => a + b, 0)).toBe(live);
    const model = await loadCrosscoder(await pathSource(join(dir, 'cc.safetensors')));
    expect([model.params.d, model.params.D, model.k]).toEqual([192, 96, 4]);
    expect(model.threshold).toBeGreaterThan(0);
    expect(model.info.layer).toBe('3');
  });

  it('a second run reads the activations from the cache', async () => {
    expect(summary.activations.cached).toBe(false);
    const r = await cli([...trainArgs(), '--steps', '2']);
    expect(r.code).toBe(0);
    const again = JSON.parse(r.stdout) as Summary;
    expect(again.activations.cached).toBe(true);
    expect(again.activations.file).toBe(summary.activations.file);
    expect(again.rows).toBe(summary.rows);
  });

  it('--backend webgpu trains through the WebGPU engine (Dawn) to the same losses as the CPU engine', async () => {
    const args = (backend: string) => [...trainArgs().filter((a) => a !== '--json'), '--steps', '6', '--dict', '32', '--json', '--backend', backend, '--out', join(dir, `${backend}.safetensors`)];
    const [cpu, gpu] = [await cli(args('cpu')), await cli(args('webgpu'))];
    expect(gpu.code).toBe(0);
    const a = JSON.parse(cpu.stdout) as Summary & { backend: string; final: { loss: number; fvu: number } };
    const b = JSON.parse(gpu.stdout) as Summary & { backend: string; final: { loss: number; fvu: number } };
    expect([a.backend, b.backend, b.steps]).toEqual(['cpu', 'webgpu', 6]);
    expect(close(b.final.loss, a.final.loss, 1e-4, 1e-3)).toBe(true);
    expect(close(b.final.fvu, a.final.fvu, 1e-4, 1e-3)).toBe(true);
    expect(close(b.eval.fvu, a.eval.fvu, 1e-4, 1e-3)).toBe(true);
  });

  it('latents lists the most fine-tune-leaning latents with contexts and logit effects that match direct computations', async () => {
    const r = await cli(['crosscoder', 'latents', join(dir, 'cc.safetensors'), join(DEMO, 'base'), join(DEMO, 'ocean/model'), '--corpus', CORPUS, '--cache', join(dir, 'cache'), '--top', '4', '--json']);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as { latents: Latent[]; tokens: number };
    expect(out.tokens).toBe(summary.rows);
    const latents = out.latents;
    expect(latents.length).toBe(4);
    for (let i = 1; i < latents.length; i++) expect(latents[i]!.ratio).toBeGreaterThanOrEqual(latents[i - 1]!.ratio);

    const model = await loadCrosscoder(await pathSource(join(dir, 'cc.safetensors')));
    const acts = await decodeActivations(await pathSource(summary.activations.file));
    const tok = (await readHfTokenizer(await pathFileSet(join(DEMO, 'base'))))!;
    const samples = tokenizeCorpus(readFileSync(CORPUS, 'utf8'), tok, { tokensPerSample: 24, maxSamples: 48 });
    const be = createCpuBackend();
    const ft = await loadModel(await pathFileSet(join(DEMO, 'ocean/model')), be);
    const W = (await be.read(ft.unembed)) as Float32Array;
    const gain = (await be.read(ft.weight('ln_final.w'))) as Float32Array;
    ft.dispose();
    const d = 192;
    const V = W.length / d;
    const inference = createInference(model);

    for (const l of latents) {
      expect(l.class).toBe(classifyRatio(l.ratio));
      expect(l.frequency).toBeGreaterThan(0);
      expect(l.top_tokens.length).toBeGreaterThan(0);
      for (const t of l.top_tokens) {
        expect(samples[t.sample]![t.position]).toBe(t.id);
        expect(t.token).toBe(tok.decodeToken(t.id));
        expect(t.context).toContain(`[[${t.token}]]`);
        let row = -1;
        for (let q = 0; q < acts.rows; q++) if (acts.sample[q] === t.sample && acts.position[q] === t.position) row = q;
        const one = await inference.run(acts.base.slice(row * d, (row + 1) * d), acts.ft.slice(row * d, (row + 1) * d), 1);
        let f = 0;
        for (let q = 0; q < one.code.rowPtr[1]!; q++) if (one.code.index[q] === l.id) f = one.code.value[q]!;
        expect(close(t.activation, f, 1e-5, 1e-4)).toBe(true);
      }
      const u = decoderVector(model.params, l.logit_direction === 'ft' ? 1 : 0, l.id);
      const logits = new Float64Array(V);
      for (let v = 0; v < V; v++) {
        let s = 0;
        for (let i = 0; i < d; i++) s += W[v * d + i]! * gain[i]! * u[i]!;
        logits[v] = s / model.normalization.scale[1];
      }
      const order = Array.from(logits.keys()).sort((a, b) => logits[b]! - logits[a]!);
      const pos = l.logit_effects.positive;
      expect(pos.length).toBe(10);
      expect(pos.map((e) => e.id)).toEqual(order.slice(0, 10));
      for (const e of [...pos, ...l.logit_effects.negative]) {
        expect(close(e.value, logits[e.id]!, 1e-4, 1e-4)).toBe(true);
        expect(e.token).toBe(tok.decodeToken(e.id));
      }
      expect(l.logit_effects.negative.map((e) => e.id)).toEqual(order.slice(-10).reverse());
    }
  });

  it('latents --sort ft-nu ranks the fine-tune-leaning half by Latent Scaling', async () => {
    const r = await cli(['crosscoder', 'latents', join(dir, 'cc.safetensors'), join(DEMO, 'base'), join(DEMO, 'ocean/model'), '--corpus', CORPUS, '--cache', join(dir, 'cache'), '--top', '6', '--sort', 'ft-nu', '--logits', '0', '--json']);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as { latents: Latent[]; ft_specific_by_nu: number };
    const score = (l: Latent) => (l.nu_error === null || l.nu_recon === null ? Infinity : Math.max(Math.abs(l.nu_error), Math.abs(l.nu_recon)));
    expect(out.latents.length).toBeGreaterThan(0);
    for (const l of out.latents) {
      expect(l.ratio).toBeLessThan(0.5);
      expect(l.frequency * summary.rows).toBeGreaterThanOrEqual(10 - 1e-9);
      expect(l.logit_effects.positive).toEqual([]);
    }
    for (let i = 1; i < out.latents.length; i++) expect(score(out.latents[i]!)).toBeGreaterThanOrEqual(score(out.latents[i - 1]!));
    const below = out.latents.filter((l) => score(l) < 0.3).length;
    expect(out.ft_specific_by_nu).toBeGreaterThanOrEqual(below);
  });

  it('fails with one clear line on a missing corpus, a bad option or no subcommand', async () => {
    const missing = await cli(['crosscoder', 'train', join(DEMO, 'base'), join(DEMO, 'ocean/model'), '--corpus', join(dir, 'nope.txt'), '--out', join(dir, 'x.safetensors'), '--no-cache']);
    expect(missing.code).toBe(1);
    expect(missing.stderr.trim()).toBe(`neurodiff: ${join(dir, 'nope.txt')}: no such corpus file`);
    const badK = await cli(['crosscoder', 'train', join(DEMO, 'base'), join(DEMO, 'ocean/model'), '--corpus', CORPUS, '--out', join(dir, 'x.safetensors'), '--k', '0', '--no-cache', '--max-samples', '2']);
    expect(badK.code).toBe(2);
    expect(badK.stderr).toContain('--k must be an integer ≥ 1, got "0"');
    const none = await cli(['crosscoder']);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('crosscoder needs a subcommand: train or latents');
    const notCc = await cli(['crosscoder', 'latents', CORPUS, join(DEMO, 'base'), join(DEMO, 'ocean/model'), '--corpus', CORPUS, '--no-cache']);
    expect(notCc.code).toBe(1);
    expect(notCc.stderr).toContain('mixed_stories.txt: ');
  });
});
