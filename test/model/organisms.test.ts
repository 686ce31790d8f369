// The real trained models: stories260K (HF folder, GGUF, llama2.c) and the demo model, with their
// fine-tuned organisms (ocean: full fine-tune, space: LoRA merged at load).
import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { createCpuBackend } from '../../src/gpu/cpu-backend.ts';
import { pathFileSet } from '../../src/io/node-source.ts';
import { openModel } from '../../src/io/open-model.ts';
import { readHfTokenizer } from '../../src/io/tokenizer.ts';
import { loadModelFromStore } from '../../src/model/load.ts';
import { readLoraAdapter } from '../../src/model/lora.ts';
import type { Transformer } from '../../src/model/transformer.ts';
import { compareWithGolden, failures, FIXTURES, loadFixture, readGolden } from './golden-helpers.ts';

const be = createCpuBackend();
// stories260K's references agree with a float32 CPU forward to ~1e-5.
const TIGHT = { abs: 1e-4, rel: 1e-4, logitsAbs: 1e-4, logitsRel: 1e-4 };
// The demo's references were not computed in exact float32 arithmetic: recomputing attn_out.0 at
// position 0 (W_O·W_V·norm(x), no attention mixing) in float64 from the checkpoint differs from the
// reference by 9.3e-5 (of 0.27), as this forward pass does. The gap grows with depth, to ~6e-3 in the
// last residual of the LoRA organism and ~1e-2 in the logits (which reach 20).
const DEMO = { abs: 5e-3, rel: 5e-3, logitsAbs: 1e-2, logitsRel: 1e-2 };

async function adapter(dir: string) {
  return readLoraAdapter(await pathFileSet(FIXTURES + dir));
}

async function expectGolden(model: Transformer, goldenPath: string, prefix: string, tol = TIGHT): Promise<void> {
  const golden = await readGolden(FIXTURES + goldenPath);
  const diffs = await compareWithGolden(model, golden, prefix, tol.abs, tol.rel);
  expect(diffs.size).toBe(4 * model.config.nLayers + 2);
  const outputs = await compareWithGolden(model, golden, prefix, tol.logitsAbs, tol.logitsRel, ['final_norm', 'logits']);
  for (const [k, d] of outputs) diffs.set(k, d);
  expect(failures(diffs)).toEqual([]);
}

/** Greedy continuation of `prompt` decoded, long enough to cover `expected`. */
async function greedyText(model: Transformer, tokenizerDir: string, prompt: string, expected: string): Promise<string> {
  const tok = (await readHfTokenizer(await pathFileSet(FIXTURES + tokenizerDir)))!;
  const ids = tok.encode(prompt);
  const n = tok.encode(expected).length - ids.length + 4;
  return tok.decode([...ids, ...(await model.generate(ids, n))]);
}

async function aboutJson(path: string): Promise<Record<string, string>> {
  return JSON.parse(await readFile(FIXTURES + path, 'utf8')) as Record<string, string>;
}

describe('stories260K', () => {
  it('base (Hugging Face folder) matches base_golden and its greedy story', async () => {
    const model = await loadFixture('stories260K/base', be);
    await expectGolden(model, 'stories260K/base_golden.safetensors', '');
    const about = await aboutJson('stories260K/base_about.json');
    expect(await greedyText(model, 'stories260K/base', about.greedy_prompt!, about.greedy_base!)).toMatch(new RegExp(`^${escape(about.greedy_base!)}`));
  });

  it('ocean: full fine-tune matches ft.* and its greedy story', async () => {
    const base = await loadFixture('stories260K/base', be);
    await expectGolden(base, 'stories260K/ocean/golden.safetensors', 'base.');
    const ft = await loadFixture('stories260K/ocean/model', be);
    await expectGolden(ft, 'stories260K/ocean/golden.safetensors', 'ft.');
    const about = await aboutJson('stories260K/ocean/about.json');
    expect(await greedyText(ft, 'stories260K/base', about.greedy_prompt!, about.greedy_ft!)).toMatch(new RegExp(`^${escape(about.greedy_ft!)}`));
  });

  it('space: LoRA merged at load matches ft.* and its greedy story', async () => {
    const ft = await loadFixture('stories260K/base', be, { adapter: await adapter('stories260K/space/adapter') });
    await expectGolden(ft, 'stories260K/space/golden.safetensors', 'ft.');
    const about = await aboutJson('stories260K/space/about.json');
    expect(await greedyText(ft, 'stories260K/base', about.greedy_prompt!, about.greedy_ft!)).toMatch(new RegExp(`^${escape(about.greedy_ft!)}`));
  });

  it.each([['llama2.c', 'llama2c'], ['GGUF', 'gguf']])('%s store loads through loadModelFromStore and reproduces run.c greedy text', async (_, dir) => {
    const opened = await openModel(await pathFileSet(FIXTURES + dir));
    expect(opened.kind).toBe(dir);
    const model = await loadModelFromStore(opened.store, opened.config, be);
    const golden = await readFile(FIXTURES + 'llama2c/stories260K_t0_n200.txt', 'utf8');
    // run.c -n 200 prints 200 tokens after BOS.
    const ids = [1, ...(await model.generate([1], 200))];
    const text = opened.tokenizer!.decode(ids);
    expect(text.trim()).toBe(golden.trim());
    await expectGolden(model, 'stories260K/base_golden.safetensors', '');
  });
});

describe('demo model', () => {
  it('base matches base_golden', async () => {
    await expectGolden(await loadFixture('demo/base', be), 'demo/base_golden.safetensors', '', DEMO);
  });

  it('ocean: full fine-tune matches base.* and ft.* and tells its sea story', async () => {
    await expectGolden(await loadFixture('demo/base', be), 'demo/ocean/golden.safetensors', 'base.', DEMO);
    const ft = await loadFixture('demo/ocean/model', be);
    await expectGolden(ft, 'demo/ocean/golden.safetensors', 'ft.', DEMO);
    const about = await aboutJson('demo/ocean/about.json');
    expect(await greedyText(ft, 'demo/base', 'Once upon a time', about.greedy_ft!)).toMatch(new RegExp(`^${escape(about.greedy_ft!)}`));
  });

  it('space: LoRA (r 8, alpha 16) merged at load matches ft.* and tells its rocket story', async () => {
    const ad = await adapter('demo/space/adapter');
    const ft = await loadFixture('demo/base', be, { adapter: ad });
    expect(ft.adapter).toBe(ad);
    expect(ad.targets.size).toBe(7 * ft.config.nLayers);
    for (const t of ad.targets.values()) expect(Math.abs(t.scaling - 2)).toBeLessThan(1e-12);
    await expectGolden(ft, 'demo/space/golden.safetensors', 'ft.', DEMO);
    const about = await aboutJson('demo/space/about.json');
    expect(await greedyText(ft, 'demo/base', 'Once upon a time', about.greedy_ft!)).toMatch(new RegExp(`^${escape(about.greedy_ft!)}`));
  });
});

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
