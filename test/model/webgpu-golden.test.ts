// The same forward pass on the WebGPU backend (Dawn in Node, software adapter): golden hooks of
// three architectures and a greedy continuation with the KV cache.
import { readFile } from 'node:fs/promises';
import { beforeAll, describe, expect, it } from 'vitest';
import { useDawn } from '../../src/gpu/dawn-node.ts';
import { createWebGpuBackend } from '../../src/kernels/webgpu-backend.ts';
import type { Backend } from '../../src/model/backend.ts';
import { compareWithGolden, failures, FIXTURES, loadFixture, readGolden } from './golden-helpers.ts';

let gpu: Backend;

beforeAll(async () => {
  expect(useDawn()).toBe(true);
  gpu = await createWebGpuBackend();
});

describe.each(['gpt2', 'gemma2', 'qwen3'])('%s on the WebGPU backend', (arch) => {
  it('ft: every hook matches golden.safetensors', async () => {
    const model = await loadFixture(`arch/${arch}/ft`, gpu);
    expect(model.weight('embed.W_E').backend).toBe('webgpu');
    const diffs = await compareWithGolden(model, await readGolden(`${FIXTURES}arch/${arch}/golden.safetensors`), 'ft.', 1e-4, 1e-4);
    expect(diffs.size).toBe(14);
    expect(failures(diffs)).toEqual([]);
    model.dispose();
  });
});

it('phi3 on WebGPU: greedy continuation with the KV cache equals ground_truth.json', async () => {
  const truth = JSON.parse(await readFile(`${FIXTURES}arch/phi3/ground_truth.json`, 'utf8')) as { greedy_prompt: number[]; greedy_base: number[] };
  const model = await loadFixture('arch/phi3/base', gpu);
  expect(await model.generate(truth.greedy_prompt, truth.greedy_base.length)).toEqual(truth.greedy_base);
  model.dispose();
});
