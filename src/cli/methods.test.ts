// The issue-12 commands end to end through the command line on the demo pair (ocean), with tiny
// corpora: the JSON contracts, and numbers checked against the same analyses run in-process.
import { execFile } from 'node:child_process';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { corpusLines, tokenizeCorpus } from '../analysis/activations/corpus.ts';
import type { ModelPair } from '../analysis/activations/run.ts';
import { demoPair } from '../analysis/activations/testing.ts';
import { sampleModel } from '../analysis/amplify/amplify.ts';
import { corpusKl } from '../analysis/logit-diff/kl.ts';
import { createCpuBackend } from '../gpu/cpu-backend.ts';
import type { Tokenizer } from '../io/tokenizer.ts';
import type { AmplifyJson } from './amplify.ts';
import type { AttentionJson } from './attention.ts';
import type { DiffSaeLatentsJson, DiffSaeTrainJson } from './diff-sae.ts';
import type { KlJson } from './kl.ts';
import type { MineJson } from './mine.ts';
import type { PcaJson } from './pca.ts';

const ROOT = new URL('../../', import.meta.url).pathname;
const DEMO = join(ROOT, 'test/fixtures/demo');
const BASE = join(DEMO, 'base');
const OCEAN = join(DEMO, 'ocean/model');
const CORPUS = join(DEMO, 'generic_stories.txt');
const SMALL = ['--corpus', CORPUS, '--max-samples', '3', '--tokens-per-sample', '16'];
const run = promisify(execFile);

async function json<T>(args: string[]): Promise<T> {
  try {
    const { stdout } = await run(process.execPath, [join(ROOT, 'bin/neurodiff.mjs'), ...args, '--json'], { cwd: ROOT, maxBuffer: 64 * 1024 * 1024 });
    return JSON.parse(stdout) as T;
  } catch (e) {
    throw new Error(`neurodiff ${args.join(' ')} failed: ${(e as { stderr?: string }).stderr ?? String(e)}`, { cause: e });
  }
}

let pair: ModelPair & { tokenizer: Tokenizer };
let samples: number[][];

beforeAll(async () => {
  pair = await demoPair('ocean', createCpuBackend());
  samples = tokenizeCorpus(pair.tokenizer, corpusLines(await readFile(CORPUS, 'utf8')), { maxSamples: 3, tokensPerSample: 16 }).samples;
});

const close = (got: number, want: number, abs: number, rel: number) => expect(Math.abs(got - want)).toBeLessThanOrEqual(abs + rel * Math.abs(want));

describe('issue-12 commands on the demo pair', () => {
  it('mine and kl', async () => {
    const m = await json<MineJson>(['mine', BASE, OCEAN, ...SMALL, '--top', '5', '--k', '4', '--topics', '2']);
    expect(m.positions).toBe(48);
    expect(m.tokens).toHaveLength(5);
    expect(m.tokens[0]).toEqual(expect.objectContaining({ token: expect.any(String), id: expect.any(Number), count: expect.any(Number), mean_diff: expect.any(Number) }));
    expect(m.topics).toHaveLength(2);
    expect(m.topics[0]!.contexts[0]!.text).toContain('[[');
    const k = await json<KlJson>(['kl', BASE, OCEAN, ...SMALL, '--top', '3']);
    const want = await corpusKl(pair, samples);
    close(k.mean_kl, want.meanKl, 1e-6, 1e-5);
    expect(k.per_position).toHaveLength(16);
    expect(k.top_contexts).toHaveLength(3);
    expect(k.top_contexts[0]).toEqual(expect.objectContaining({ text: expect.any(String), position: expect.any(Number), kl: expect.any(Number), base_top: expect.any(Array), ft_top: expect.any(Array) }));
    expect(k.histogram.counts.reduce((a, b) => a + b, 0)).toBe(48);
  });

  it('pca, amplify and attention', async () => {
    const p = await json<PcaJson>(['pca', BASE, OCEAN, ...SMALL, '--layer', '3', '--components', '3']);
    expect(p.components).toHaveLength(3);
    expect(p.components.reduce((s, c) => s + c.variance_ratio, 0)).toBeLessThanOrEqual(1 + 1e-9);
    expect(p.components[0]!.positive_tokens).toHaveLength(20);
    const a = await json<AmplifyJson>(['amplify', BASE, OCEAN, '--prompt', 'One day, Tom went to the', '--alpha', '0,2', '--generate', '6', '--seed', '3']);
    expect(a.samples.map((s) => s.alpha)).toEqual([0, 2]);
    const ft = await sampleModel(pair.ft, a.prompt_ids, { maxNew: 6, seed: 3, temperature: 1, stop: [pair.tokenizer.eosId!] });
    expect(a.samples[0]!.ids).toEqual(ft);
    expect(a.samples[0]!.text).toBe(pair.tokenizer.decode(ft));
    const w = await json<AmplifyJson>(['amplify', BASE, OCEAN, '--ids', '1,2,3', '--alpha=-1', '--mode', 'weights', '--generate', '3']);
    expect(w.samples[0]).toEqual(expect.objectContaining({ alpha: -1, mode: 'weights' }));
    const t = await json<AttentionJson>(['attention', BASE, OCEAN, '--prompt', 'One day, Tom went to the']);
    const { nLayers, nHeads } = pair.base.config;
    expect(t.heads).toHaveLength(nLayers * nHeads);
    expect(t.patching).toHaveLength(nLayers * nHeads);
    expect(t.heads.every((h) => h.js >= 0 && h.max_abs <= 1)).toBe(true);
  });

  it('diff-sae train and latents', async () => {
    const out = join(await mkdtemp(join(tmpdir(), 'neurodiff-sae-')), 'sae.safetensors');
    const args = ['--corpus', CORPUS, '--max-samples', '8', '--tokens-per-sample', '16', '--no-cache'];
    const tr = await json<DiffSaeTrainJson>(['diff-sae', 'train', BASE, OCEAN, ...args, '--out', out, '--dict', '64', '--k', '4', '--steps', '30', '--batch', '64', '--layer', '3']);
    expect(tr).toEqual(expect.objectContaining({ kind: 'train', d: 192, D: 64, k: 4, steps: 30, rows: 8 * 15 }));
    expect(tr.final!.fvu).toBeLessThan(1.5);
    const lt = await json<DiffSaeLatentsJson>(['diff-sae', 'latents', out, BASE, OCEAN, '--corpus', CORPUS, '--no-cache', '--top', '3', '--logits', '5']);
    expect(lt.hook).toBe('blocks.3.hook_resid_post');
    expect(lt.tokens).toBe(120);
    expect(lt.fvu).toBeGreaterThan(0);
    expect(lt.fvu).toBeLessThan(1.5);
    expect(lt.latents.length).toBeGreaterThan(0);
    expect(lt.latents[0]!.lens.positive).toHaveLength(5);
    expect(lt.latents[0]!.frequency).toBeGreaterThan(0);
  });
});
