// The activation commands end to end through the command line, on the demo pair and the arch fixtures,
// checked against the same analyses run in-process.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli, ROOT } from './cli-testing.ts';
import { activationDifferenceLens } from '../analysis/activations/adl.ts';
import { corpusLines, tokenizeCorpus } from '../analysis/activations/corpus.ts';
import { differentialLogitLens } from '../analysis/activations/lens.ts';
import { demoPair } from '../analysis/activations/testing.ts';
import { createCpuBackend } from '../gpu/cpu-backend.ts';
import { hookName } from '../model/transformer.ts';

const DEMO = join(ROOT, 'test/fixtures/demo');
const ARCH = join(ROOT, 'test/fixtures/arch');
const be = createCpuBackend();

async function json<T>(args: string[]): Promise<T> {
  const r = await cli([...args, '--json']);
  if (r.code !== 0) throw new Error(`neurodiff ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

const close = (got: number, want: number, abs: number, rel: number) => expect(Math.abs(got - want)).toBeLessThanOrEqual(abs + rel * Math.abs(want));

type Tok = { id: number; token: string | null; prob: number };

describe('neurodiff adl', () => {
  it('prints the lens and Patchscope of δ_p, equal to the in-process analysis (full fine-tune)', async () => {
    const out = await json<{
      layer: number;
      samples: number;
      tokens_per_sample: number;
      ft_norm: number;
      positions: { position: number; consistency: number; top: Tok[]; top_negative: Tok[] }[];
      patchscope: { position: number; scales: { scale: number; top: Tok[] }[]; stable: { id: number; scales: number }[] }[];
    }>(['adl', join(DEMO, 'base'), join(DEMO, 'ocean/model'), '--corpus', join(DEMO, 'generic_stories.txt'), '--layer', '4', '--max-samples', '40', '--tokens-per-sample', '8', '--top', '10', '--scales', '1,2']);
    expect([out.layer, out.samples, out.tokens_per_sample]).toEqual([4, 40, 8]);
    expect(out.positions.map((p) => p.position)).toEqual([0, 1, 2, 3, 4]);

    const pair = await demoPair('ocean', be);
    const corpus = tokenizeCorpus(pair.tokenizer, corpusLines(await readFile(join(DEMO, 'generic_stories.txt'), 'utf8')), { maxSamples: 40, tokensPerSample: 8 });
    const ref = await activationDifferenceLens(pair, corpus.samples, { layer: 4, top: 10 });
    close(out.ft_norm, ref.ftNorm!, 1e-9, 1e-6);
    for (const [i, p] of out.positions.entries()) {
      const r = ref.positions[i]!;
      expect(p.top.map((t) => t.id)).toEqual(r.top.map((t) => t.id));
      expect(p.top_negative.map((t) => t.id)).toEqual(r.topNegative.map((t) => t.id));
      p.top.forEach((t, j) => close(t.prob, r.top[j]!.prob, 1e-9, 1e-5));
      expect(p.top[0]!.token).toBe(pair.tokenizer.decodeToken(p.top[0]!.id));
      close(p.consistency, r.consistency, 1e-9, 1e-6);
    }
    expect(out.patchscope).toHaveLength(5);
    for (const ps of out.patchscope) {
      expect(ps.scales.map((s) => s.scale)).toEqual([1, 2]);
      expect(ps.scales[0]!.top.length).toBeGreaterThan(0);
      for (const s of ps.stable) expect(s.scales).toBeGreaterThanOrEqual(1);
    }
  });

  it('applies an adapter given as <ft>', async () => {
    const out = await json<{ layer: number; positions: { top: Tok[] }[]; patchscope: unknown[] }>(['adl', join(DEMO, 'base'), join(DEMO, 'space/adapter'), '--corpus', join(DEMO, 'generic_stories.txt'), '--max-samples', '30', '--tokens-per-sample', '6', '--positions', '0,2', '--no-patchscope']);
    expect(out.layer).toBe(3);
    expect(out.positions).toHaveLength(2);
    expect(out.patchscope).toEqual([]);
    const pair = await demoPair('space', be);
    const corpus = tokenizeCorpus(pair.tokenizer, corpusLines(await readFile(join(DEMO, 'generic_stories.txt'), 'utf8')), { maxSamples: 30, tokensPerSample: 6 });
    const ref = await activationDifferenceLens(pair, corpus.samples, { positions: [0, 2] });
    expect(out.positions.map((p) => p.top.map((t) => t.id))).toEqual(ref.positions.map((p) => p.top.map((t) => t.id)));
  });

  it('fails with one line naming the file or option', async () => {
    const missing = await cli(['adl', join(DEMO, 'base'), join(DEMO, 'ocean/model'), '--corpus', join(DEMO, 'nope.txt'), '--json']);
    expect(missing.code).toBe(1);
    expect(missing.stderr.trim().split('\n')).toHaveLength(1);
    expect(missing.stderr).toMatch(/nope\.txt: no such corpus file/);
    const positions = await cli(['adl', join(DEMO, 'base'), join(DEMO, 'ocean/model'), '--corpus', join(DEMO, 'generic_stories.txt'), '--positions', '4-2']);
    expect(positions.code).toBe(2);
    expect(positions.stderr).toMatch(/--positions: the range 4-2 is empty/);
    const adapterAsBase = await cli(['adl', join(DEMO, 'space/adapter'), join(DEMO, 'base'), '--corpus', join(DEMO, 'generic_stories.txt')]);
    expect(adapterAsBase.code).toBe(1);
    expect(adapterAsBase.stderr).toMatch(/space\/adapter: is a PEFT adapter/);
    const noModel = await cli(['lens', join(DEMO, 'missing'), join(DEMO, 'base'), '--prompt', 'x']);
    expect(noModel.code).toBe(1);
    expect(noModel.stderr).toMatch(/missing: no such file or folder \(the base model\)/);
  });
});

describe('neurodiff lens, patch, forward, inspect, steer', () => {
  it('lens: both models\' lens per layer and position with KL, as in-process', async () => {
    const out = await json<{
      tokens: { id: number; token: string }[];
      direction: string;
      layers: { layer: number; positions: { position: number; kl: number; delta: { norm: number; cosine: number }; base: Tok[]; ft: Tok[] }[] }[];
    }>(['lens', join(DEMO, 'base'), join(DEMO, 'ocean/model'), '--prompt', 'The boat sailed on the', '--top', '3']);
    const pair = await demoPair('ocean', be);
    const ids = pair.tokenizer.encode('The boat sailed on the');
    expect(out.tokens.map((t) => t.id)).toEqual(ids);
    expect(out.direction).toBe('KL(P_ft || P_base)');
    expect(out.layers).toHaveLength(6);
    const ref = await differentialLogitLens(pair, ids, { k: 3 });
    const T = ids.length;
    for (const l of out.layers) {
      for (const p of l.positions) {
        const row = l.layer * T + p.position;
        close(p.kl, ref.kl[row]!, 1e-9, 1e-6);
        expect(p.ft.map((t) => t.id)).toEqual([...ref.ft.ids.subarray(row * 3, row * 3 + 3)]);
        expect(p.delta.norm).toBeGreaterThan(0);
      }
    }
  });

  it('lens and patch with --memory-budget between one model and two: one model at a time, the same numbers; views needing both refuse', async () => {
    type Out = { memory: { mode: string; reason: string; model_bytes: number; pair_bytes: number; budget_bytes: number } } & Record<string, unknown>;
    const models = [join(DEMO, 'base'), join(DEMO, 'ocean/model')];
    // The demo models hold 12.6 MB of float32 weights each: 0.015 GiB (16.1 MB) fits one, not two.
    const budget = ['--memory-budget', '0.015'];
    for (const args of [['lens', ...models, '--prompt', 'The boat sailed on the', '--top', '3'], ['patch', ...models, '--prompt', 'The sea was', '--kinds', 'resid_post,attn_out']]) {
      const { memory: a, ...resident } = await json<Out>(args);
      const { memory: b, ...sequential } = await json<Out>([...args, ...budget]);
      expect([a.mode, b.mode]).toEqual(['resident', 'sequential']);
      expect(b.budget_bytes).toBe(0.015 * 2 ** 30);
      expect(b.model_bytes).toBeLessThan(b.budget_bytes);
      expect(b.pair_bytes).toBeGreaterThan(b.budget_bytes);
      expect(b.reason).toMatch(/^one model at a time: the pair needs 0\.02 GiB, over the budget of 0\.01 GiB \(the budget given\)/);
      expect(sequential).toEqual(resident);
    }
    const refused = await cli(['kl', ...models, '--corpus', join(DEMO, 'generic_stories.txt'), ...budget]);
    expect(refused.code).toBe(1);
    expect(refused.stderr.trim()).toBe('neurodiff: neurodiff kl needs both models loaded together, and they do not fit the memory budget together (one model at a time)');
    const tiny = await cli(['lens', ...models, '--prompt', 'The', '--memory-budget', '0.001']);
    expect(tiny.stderr).toMatch(/one model needs 0\.01 GiB of weights, over the memory budget of 0\.00 GiB \(the budget given\)/);
    const bad = await cli(['lens', ...models, '--prompt', 'The', '--memory-budget', 'lots']);
    expect([bad.code, bad.stderr.trim()]).toEqual([2, 'neurodiff: --memory-budget must be a positive number of GiB, got "lots"']);
  });

  it('--backend webgpu: the memory plan names the device\'s buffer limits', async () => {
    const models = [join(DEMO, 'base'), join(DEMO, 'ocean/model')];
    const { memory } = await json<{ memory: { mode: string; reason: string } }>(['lens', ...models, '--prompt', 'The', '--top', '3', '--backend', 'webgpu']);
    expect(memory.mode).toBe('resident');
    expect(memory.reason).toMatch(/^both models resident: .*; GPU buffers up to \d+\.\d\d GiB, bindings up to \d+\.\d\d GiB \(larger tensors are kept as row blocks\)$/);
  });

  it('patch: recovery 1 for the last resid_post and stitching ends on the arch fixture', async () => {
    const out = await json<{
      kl_ft_base: number;
      ft_into_base: { kind: string; layers: { layer: number; recovery: number }[] }[];
      stitching: { base_below: { boundary: number; kl_from_ft: number; kl_from_base: number }[] };
    }>(['patch', join(ARCH, 'llama/base'), join(ARCH, 'llama/ft'), '--ids', '105,116,158,23,27,211', '--kinds', 'resid_post,mlp_out']);
    expect(out.kl_ft_base).toBeGreaterThan(1e-3);
    expect(out.ft_into_base.map((k) => k.kind)).toEqual(['resid_post', 'mlp_out']);
    close(out.ft_into_base[0]!.layers[2]!.recovery, 1, 1e-5, 0);
    const s = out.stitching.base_below;
    expect(s.map((x) => x.boundary)).toEqual([0, 1, 2, 3]);
    expect(Math.abs(s[0]!.kl_from_ft)).toBeLessThanOrEqual(1e-7);
    expect(Math.abs(s[3]!.kl_from_base)).toBeLessThanOrEqual(1e-7);
  });

  it('forward: LoRA adapter, hook capture and greedy generation (the space organism\'s reference story)', async () => {
    const about = JSON.parse(await readFile(join(DEMO, 'space/about.json'), 'utf8')) as { greedy_ft: string };
    const out = await json<{ tokens: { id: number }[]; top: Tok[][]; hooks: Record<string, { shape: number[]; data: number[] }>; generated: { text: string } }>([
      'forward',
      join(DEMO, 'base'),
      '--adapter',
      join(DEMO, 'space/adapter'),
      '--prompt',
      'Once upon a time',
      '--hook',
      'blocks.2.hook_mlp_out',
      '--hook',
      'logits',
      '--top',
      '3',
      '--generate',
      '60',
    ]);
    expect(out.generated.text.startsWith(about.greedy_ft)).toBe(true);
    const ids = out.tokens.map((t) => t.id);
    const pair = await demoPair('space', be);
    const { logits, cache } = pair.ft.runWithCache([ids], [hookName('mlp_out', 2)]);
    const mlp = (await be.read(cache.get(hookName('mlp_out', 2))!)) as Float32Array;
    expect(out.hooks['blocks.2.hook_mlp_out']!.shape).toEqual([1, ids.length, 192]);
    out.hooks['blocks.2.hook_mlp_out']!.data.forEach((x, i) => close(x, mlp[i]!, 1e-6, 1e-6));
    const z = (await be.read(logits!)) as Float32Array;
    expect(out.hooks.logits!.shape).toEqual([1, ids.length, 4096]);
    const last = z.subarray((ids.length - 1) * 4096);
    expect(out.top[ids.length - 1]![0]!.id).toBe(last.indexOf(Math.max(...last)));
    const bad = await cli(['forward', join(DEMO, 'base'), '--ids', '1,2', '--hook', 'blocks.9.hook_mlp_out']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--hook blocks\.9\.hook_mlp_out: no such hook point/);
  });

  it('inspect: GGUF and llama2.c checkpoints read from their headers', async () => {
    for (const path of ['test/fixtures/gguf/stories260K.gguf', 'test/fixtures/llama2c/stories260K.bin']) {
      const out = await json<{ format: string; architecture: string; config: { layers: number; vocab: number }; parameters: { total: number }; stored_parameters: number; tokenizer: { vocab_size: number } }>(['inspect', join(ROOT, path)]);
      expect(out.architecture).toBe('llama');
      expect([out.config.layers, out.config.vocab, out.tokenizer.vocab_size]).toEqual([5, 512, 512]);
      expect(out.parameters.total).toBe(out.stored_parameters);
    }
  });

  it('steer: strength 0 leaves both models\' greedy text unchanged', async () => {
    const out = await json<{ generations: { strength: number; base: { text: string }; ft: { text: string } }[] }>([
      'steer',
      join(DEMO, 'base'),
      join(DEMO, 'ocean/model'),
      '--corpus',
      join(DEMO, 'generic_stories.txt'),
      '--max-samples',
      '10',
      '--tokens-per-sample',
      '12',
      '--prompt',
      'Once upon a time',
      '--strengths',
      '0,3',
      '--max-new',
      '12',
    ]);
    const about = JSON.parse(await readFile(join(DEMO, 'ocean/about.json'), 'utf8')) as { greedy_ft: string };
    expect(out.generations.map((g) => g.strength)).toEqual([0, 3]);
    expect(about.greedy_ft.startsWith(out.generations[0]!.ft.text)).toBe(true);
    expect(out.generations[1]!.base.text).not.toBe(out.generations[0]!.base.text);
  });
});
