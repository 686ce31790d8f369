// Training speed of the two engines on one model: LoRA steps of the CPU engine (WebAssembly GEMM) and
// of the WebGPU engine (Dawn in Node) on the demo base, after one warm-up step each (pipelines,
// threads). No peer here (`npm run bench -- train` runs the CPU engine against PyTorch + PEFT). On a
// software adapter (SwiftShader, llvmpipe) the WebGPU figures say nothing about a GPU.
import { join } from 'node:path';
import { defaultTargetModules, TrainableTransformer } from '../../src/analysis/training/model.ts';
import { CpuTrainEngine, DEFAULT_OPTIMIZER, type OptimizerOptions, type TrainEngine } from '../../src/analysis/training/train.ts';
import { WebGpuTrainEngine } from '../../src/analysis/training/webgpu-engine.ts';
import { createCpuBackend } from '../../src/gpu/cpu-backend.ts';
import { useDawn as startDawn } from '../../src/gpu/dawn-node.ts';
import { getGpu } from '../../src/gpu/device.ts';
import { pathFileSet } from '../../src/io/node-source.ts';
import { loadModel } from '../../src/model/load.ts';
import type { Bench, BenchArgs } from '../lib/args.ts';
import { cpuBackendThreads } from '../lib/cpu-threads.ts';
import { FIXTURES_DIR } from '../lib/models.ts';
import { writeResults } from '../lib/results.ts';
import { formatTable } from '../lib/table.ts';

const BASE = join(FIXTURES_DIR, 'demo', 'base');
const RUN = { batch: 4, seq: 64, rank: 8, steps: 5 };

async function lora(): Promise<TrainableTransformer> {
  const model = await loadModel(await pathFileSet(BASE), createCpuBackend());
  const t = await TrainableTransformer.fromTransformer(model, { kind: 'lora', lora: { rank: RUN.rank, alpha: 2 * RUN.rank, rslora: false, targetModules: defaultTargetModules(model.config) } });
  model.dispose();
  return t;
}

/** Seconds per step over RUN.steps steps after one warm-up step, and the losses. */
async function time(engine: TrainEngine, vocab: number): Promise<{ secondsPerStep: number; losses: number[] }> {
  const ids = Int32Array.from({ length: RUN.batch * RUN.seq }, (_, i) => (i * 7919 + 13) % vocab);
  const losses = [(await engine.step(ids, RUN.batch, RUN.seq, RUN.batch)).loss];
  const t0 = performance.now();
  for (let s = 0; s < RUN.steps; s++) losses.push((await engine.step(ids, RUN.batch, RUN.seq, RUN.batch)).loss);
  return { secondsPerStep: (performance.now() - t0) / 1000 / RUN.steps, losses };
}

export const trainWebGpuBench: Bench = {
  description: 'LoRA training steps on the demo base: CPU engine vs WebGPU engine (Dawn)',
  async run(args: BenchArgs): Promise<void> {
    const opt: OptimizerOptions = { ...DEFAULT_OPTIMIZER, lr: 2e-3, steps: RUN.steps + 1 };
    const threads = args.threads ?? 2;
    const cpuText = await cpuBackendThreads(threads);
    const cpuModel = await lora();
    const cpu = await time(new CpuTrainEngine(cpuModel, opt), cpuModel.config.vocab);
    const rows = [['CPU', `WebAssembly GEMM, ${threads} threads asked`, cpu.secondsPerStep.toFixed(3), (1 / cpu.secondsPerStep).toFixed(2), '1.00']];
    const results: Record<string, unknown> = { run: RUN, cpu: { threads, cpuText, ...cpu } };
    if (startDawn()) {
      const info = (await getGpu()).info;
      const adapter = `${info.description || info.architecture}${info.isFallbackAdapter ? ' (software adapter: says nothing about a GPU)' : ''}`;
      const gpuModel = await lora();
      const engine = await WebGpuTrainEngine.create(gpuModel, opt);
      try {
        const gpu = await time(engine, gpuModel.config.vocab);
        rows.push(['WebGPU', adapter, gpu.secondsPerStep.toFixed(3), (1 / gpu.secondsPerStep).toFixed(2), (cpu.secondsPerStep / gpu.secondsPerStep).toFixed(2)]);
        results.webgpu = { adapter: info, ...gpu };
      } finally {
        engine.dispose();
      }
    } else {
      rows.push(['WebGPU', 'Dawn could not start here', '–', '–', '–']);
    }
    console.log(cpuText);
    console.log(`LoRA r ${RUN.rank} on every projection of the demo base, ${RUN.batch} × ${RUN.seq} tokens a step, ${RUN.steps} steps after one warm-up`);
    console.log(formatTable(['engine', 'on', 's/step', 'steps/s', 'vs CPU'], rows));
    console.log(`written to ${writeResults('train', results)}`);
  },
};
