import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { createCpuBackend } from '../../src/gpu/cpu-backend.ts';
import { compareWithGolden, failures, FIXTURES, loadFixture, readGolden } from './golden-helpers.ts';

const ARCHS = ['gpt2', 'llama', 'mistral', 'qwen2', 'qwen3', 'phi3', 'gemma2', 'gemma3'];
// Float32 reference vs float32 CPU: per element |err| ≤ ABS + REL·|expected|.
const ABS = 1e-4;
const REL = 1e-4;

interface GroundTruth {
  greedy_prompt: number[];
  greedy_base: number[];
  greedy_ft: number[];
}

describe.each(ARCHS)('%s on the CPU backend', (arch) => {
  const be = createCpuBackend();

  it.each(['base', 'ft'])('%s: every hook matches golden.safetensors', async (which) => {
    const model = await loadFixture(`arch/${arch}/${which}`, be);
    const golden = await readGolden(`${FIXTURES}arch/${arch}/golden.safetensors`);
    const diffs = await compareWithGolden(model, golden, `${which}.`, ABS, REL);
    expect(diffs.size).toBe(4 * model.config.nLayers + 2);
    expect(failures(diffs)).toEqual([]);
    model.dispose();
  });

  it.each(['base', 'ft'] as const)('%s: greedy continuation with the KV cache equals ground_truth.json', async (which) => {
    const truth = JSON.parse(await readFile(`${FIXTURES}arch/${arch}/ground_truth.json`, 'utf8')) as GroundTruth;
    const model = await loadFixture(`arch/${arch}/${which}`, be);
    const want = which === 'base' ? truth.greedy_base : truth.greedy_ft;
    expect(await model.generate(truth.greedy_prompt, want.length)).toEqual(want);
    model.dispose();
  });
});
