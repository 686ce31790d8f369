// npm run bench -- gpu: the WebGPU benchmarks in one step, in Node (Dawn) and headless Chromium:
// the kernel suite (bench/kernels) and the matmul suite (bench/matmul), then
// bench/results/gpu.json with both. On a machine with a GPU that is the whole set of GPU figures;
// on SwiftShader/llvmpipe they run at tiny sizes and the tables say the figures mean nothing for GPUs.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Bench, BenchArgs } from './lib/args.ts';
import { RESULTS_DIR, writeResults } from './lib/results.ts';

export const gpuBench: Bench = {
  description: 'the WebGPU benchmarks (kernels, matmul) in Node on Dawn and in headless Chromium, into bench/results/gpu.json',
  run: async (args: BenchArgs) => {
    const parts: Record<string, unknown> = {};
    for (const [name, load] of [
      ['kernels', async () => (await import('./kernels/index.ts')).kernelsBench],
      ['matmul', async () => (await import('./matmul/index.ts')).matmulBench],
    ] as const) {
      console.error(`bench gpu: ${name}`);
      await (await load()).run(args);
      parts[name] = JSON.parse(readFileSync(join(RESULTS_DIR, `${name}.json`), 'utf8')) as unknown;
    }
    console.log(`wrote ${writeResults('gpu', parts)}`);
  },
};
