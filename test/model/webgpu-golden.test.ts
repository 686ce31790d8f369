// The same forward pass on the WebGPU backend (Dawn in Node, software adapter): golden hooks of
// every architecture, base and fine-tune, and their greedy continuations with the KV cache.
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

const ARCHS = ['gpt2', 'llama', 'mistral', 'qwen2', 'qwen3', 'phi3', 'gemma2', 'gemma3'];

describe.each(ARCHS)('%s on the WebGPU backend', (arch) => {
  it.each(['base', 'ft'] as const)('%s: every hook matches golden.safetensors and the greedy continuation equals ground_truth.json', async (role) => {
    const model = await loadFixture(`arch/${arch}/${role}`, gpu);
    expect(model.weight('embed.W_E').backend).toBe('webgpu');
    const diffs = await compareWithGolden(model, await readGolden(`${FIXTURES}arch/${arch}/golden.safetensors`), `${role}.`, 1e-4, 1e-4);
    expect(diffs.size).toBe(14);
    expect(failures(diffs)).toEqual([]);
    const truth = JSON.parse(await readFile(`${FIXTURES}arch/${arch}/ground_truth.json`, 'utf8')) as Record<string, number[]>;
    const prompt = truth.greedy_prompt!;
    const expected = truth[`greedy_${role}`]!;
    expect(await model.generate(prompt, expected.length)).toEqual(expected);
    model.dispose();
  });
});
