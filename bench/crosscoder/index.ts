// BatchTopK crosscoder training: tokens/s and the share of the step spent in the BatchTopK selection,
// ours (the trainer on the CPU engine; on the WebGPU engine through Dawn at the small size) against a
// PyTorch step written as the reference implementation (torch.topk over the flattened batch scores).
// Both start from the same parameters and see the same batches (synthetic paired activations with
// planted features), so their losses must agree step by step before the times count.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCpuEngine } from '../../src/analysis/crosscoder/cpu-engine.ts';
import type { CrosscoderEngine } from '../../src/analysis/crosscoder/engine.ts';
import { wasmGemmStats } from '../../src/gpu/cpu-wasm/gemm.ts';
import { cpuBackendThreads } from '../lib/cpu-threads.ts';
import { profiled, profileText } from '../lib/profile.ts';
import { identityNormalization } from '../../src/analysis/crosscoder/model.ts';
import { createRng } from '../../src/analysis/crosscoder/rng.ts';
import { plantFeatures, sampleActivations } from '../../src/analysis/crosscoder/synthetic.ts';
import { createTrainer, type StepStats } from '../../src/analysis/crosscoder/trainer.ts';
import { createWebGpuEngine } from '../../src/analysis/crosscoder/webgpu-engine.ts';
import type { Bench, BenchArgs } from '../lib/args.ts';
import { dawnBackend } from '../lib/backends.ts';
import { sci } from '../lib/compare.ts';
import { pythonEnvText, runPython, type PythonResult } from '../lib/python.ts';
import { loadText, writeResults } from '../lib/results.ts';
import { fmt, formatTable } from '../lib/table.ts';
import { median } from '../lib/timing.ts';
import { writeTensors, type HostTensor } from '../lib/tensors-file.ts';

interface Config {
  name: string;
  d: number;
  D: number;
  k: number;
  batch: number;
  steps: number;
  /** Run the WebGPU engine too (SwiftShader here: small sizes only). */
  webgpu: boolean;
}

const CONFIGS: readonly Config[] = [
  { name: 'stories260K-size', d: 64, D: 2048, k: 32, batch: 1024, steps: 5, webgpu: true },
  { name: 'demo-size', d: 192, D: 6144, k: 100, batch: 512, steps: 5, webgpu: false },
];
const WEBGPU_STEPS = 3;
const BATCHES = 4;
const LR = 1e-4;
const PEER_THREADS = 2;

interface StepTimes {
  stepMs: number;
  selectMs: number;
  loss: number;
}

interface Row {
  config: string;
  impl: string;
  /** Timed steps (the first step is a warm-up and left out). */
  steps: StepTimes[];
  tokensPerS: number;
  selectShare: number;
  lossMaxRelDiff?: number;
  error?: string;
}

function log(line: string): void {
  console.error(line);
}

function summarise(config: Config, impl: string, all: StepTimes[]): Row {
  const timed = all.slice(1);
  const stepMs = median(timed.map((s) => s.stepMs));
  return { config: config.name, impl, steps: all, tokensPerS: config.batch / (stepMs / 1000), selectShare: median(timed.map((s) => s.selectMs / s.stepMs)) };
}

async function trainOurs(c: Config, label: string, engine: CrosscoderEngine | undefined, batches: { base: Float32Array; ft: Float32Array }[], steps: number): Promise<StepStats[]> {
  const trainer = createTrainer({
    d: c.d,
    D: c.D,
    k: c.k,
    lr: LR,
    warmupSteps: 0,
    normalization: identityNormalization(c.d),
    decoderBiasInit: 'zero',
    seed: 7,
    ...(engine ? { engine } : {}),
  });
  const out: StepStats[] = [];
  for (let s = 0; s < steps; s++) {
    const b = batches[s % batches.length]!;
    out.push(await trainer.step(b.base, b.ft));
    log(`${c.name} ${label} step ${s}: ${out[s]!.stepMs.toFixed(0)} ms, select ${out[s]!.selectMs.toFixed(0)} ms, loss ${out[s]!.loss.toFixed(5)}`);
  }
  return out;
}

function lossDiff(a: readonly StepTimes[], b: readonly StepTimes[]): number {
  let worst = 0;
  for (let i = 0; i < Math.min(a.length, b.length); i++) worst = Math.max(worst, Math.abs(a[i]!.loss - b[i]!.loss) / Math.abs(b[i]!.loss));
  return worst;
}

async function benchConfig(c: Config, threads: number, full: boolean, notes: string[]): Promise<Row[]> {
  const rng = createRng(11);
  const features = plantFeatures(rng, c.d, { shared: 2 * c.d, 'base-only': c.d / 4, 'ft-only': c.d / 4 });
  const batches = Array.from({ length: BATCHES }, () => sampleActivations(features, rng, c.batch, { fireProbability: 0.05, noise: 0.05 }));
  const work = mkdtempSync(join(tmpdir(), 'neurodiff-crosscoder-'));
  const rows: Row[] = [];
  try {
    // The trainer's initial parameters (seed 7) for the peer, read before any step.
    const init = await createTrainer({ d: c.d, D: c.D, k: c.k, seed: 7, normalization: identityNormalization(c.d), decoderBiasInit: 'zero' }).model();
    const files: Record<string, HostTensor> = {
      encW: { shape: [2 * c.D * c.d], data: init.params.encW },
      encB: { shape: [c.D], data: init.params.encB },
      decW: { shape: [2 * c.D * c.d], data: init.params.decW },
      decB: { shape: [2 * c.d], data: init.params.decB },
    };
    batches.forEach((b, i) => {
      files[`base.${i}`] = { shape: [c.batch, c.d], data: b.base };
      files[`ft.${i}`] = { shape: [c.batch, c.d], data: b.ft };
    });
    await writeTensors(join(work, 'inputs.safetensors'), files);

    // The CPU engine's phases are timed by a proxy (a clock read around each call).
    const { proxy: cpuEngine, profile } = profiled(createCpuEngine({ d: c.d, D: c.D }), (m) => m);
    wasmGemmStats.enabled = true;
    wasmGemmStats.kernelMs = 0;
    wasmGemmStats.totalMs = 0;
    const started = performance.now();
    const cpu = await trainOurs(c, 'CPU', cpuEngine, batches, c.steps);
    const total = performance.now() - started;
    wasmGemmStats.enabled = false;
    notes.push(`profile ${c.name} ours CPU engine, ${c.steps} steps: ${profileText(profile, total, 'trainer JS')} (encode includes GEMM wasm kernels ${((100 * wasmGemmStats.kernelMs) / total).toFixed(1)}%)`);
    const peer = await runPython<PythonResult & { steps: StepTimes[] }>(
      'crosscoder.py',
      { inputs: join(work, 'inputs.safetensors'), threads, d: c.d, D: c.D, k: c.k, steps: c.steps, lr: LR, batches: BATCHES },
      log,
    );
    notes.push(pythonEnvText(peer.env));
    const peerRow = summarise(c, `PyTorch (${threads} threads)`, peer.steps);
    rows.push({ ...summarise(c, 'ours CPU engine', cpu), lossMaxRelDiff: lossDiff(cpu, peer.steps) }, peerRow);
    notes.push(`${c.name}: ours kept ${cpu[0]!.kept} entries at step 0 (k·B = ${c.k * c.batch}); losses ours ${cpu.map((s) => s.loss.toFixed(5)).join(', ')}; PyTorch ${peer.steps.map((s) => s.loss.toFixed(5)).join(', ')}`);
    if (c.webgpu) {
      const gpu = await dawnBackend();
      if ('error' in gpu) {
        rows.push({ config: c.name, impl: 'ours WebGPU engine', steps: [], tokensPerS: NaN, selectShare: NaN, error: gpu.error });
      } else if (gpu.software && !full) {
        notes.push(`WebGPU adapter: ${gpu.adapter}, a software rasteriser: its steps (minutes, and no measure of a GPU) run with --full only`);
      } else {
        notes.push(`WebGPU adapter: ${gpu.adapter}${gpu.software ? ' (a CPU rasteriser, SwiftShader: says nothing about GPU speed)' : ''}; its select time includes the encoder, which the selection's readback waits for`);
        const engine = await createWebGpuEngine(c.d, c.D);
        const steps = await trainOurs(c, 'WebGPU', engine, batches, WEBGPU_STEPS);
        rows.push({ ...summarise(c, gpu.software ? 'ours WebGPU engine (SwiftShader)' : 'ours WebGPU engine', steps), lossMaxRelDiff: lossDiff(steps, peer.steps) });
      }
    }
    return rows;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

export const crosscoderBench: Bench = {
  description: 'BatchTopK crosscoder training tokens/s and selection share, ours (CPU engine; WebGPU engine at the small size) against a PyTorch reference step',
  run: async (args: BenchArgs) => {
    if (!args.envs.includes('node')) {
      console.log('crosscoder runs in Node only');
      return;
    }
    const threads = args.threads ?? PEER_THREADS;
    const started = performance.now();
    const loadAtStart = loadText();
    const notes = [`ours CPU engine: dense encoder on the ${await cpuBackendThreads(threads)}`];
    const rows: Row[] = [];
    for (const c of CONFIGS) rows.push(...(await benchConfig(c, threads, args.full, notes)));
    notes.push(`${loadAtStart} at start, ${loadText()} at end`);
    const peerOf = (config: string) => rows.find((r) => r.config === config && r.impl.startsWith('PyTorch'));
    const table = formatTable(
      ['config (d, D, k, batch)', 'impl', 'timed steps', 'median step ms', 'tokens/s', 'select share', '÷ PyTorch (tokens/s)', 'loss max rel diff vs PyTorch'],
      rows.map((r) => {
        const c = CONFIGS.find((x) => x.name === r.config)!;
        const p = peerOf(r.config);
        return [
          `${c.name} (${c.d}, ${c.D}, ${c.k}, ${c.batch})`,
          r.impl,
          String(Math.max(0, r.steps.length - 1)),
          fmt(r.steps.length > 1 ? median(r.steps.slice(1).map((s) => s.stepMs)) : undefined),
          fmt(r.tokensPerS),
          r.error ? '-' : `${(r.selectShare * 100).toFixed(0)}%`,
          r.impl.startsWith('ours') && p && !r.error ? `${fmt(r.tokensPerS / p.tokensPerS)}×` : '-',
          r.lossMaxRelDiff === undefined ? '-' : sci(r.lossMaxRelDiff),
        ];
      }),
    );
    const errors = rows.filter((r) => r.error).map((r) => `- ${r.config} ${r.impl}: ${r.error}`);
    console.log(`== crosscoder\n${[...new Set(notes)].join('\n')}\n\n${table}\n${errors.join('\n')}\n(first step of each run is a warm-up, left out of the medians; ${((performance.now() - started) / 1000).toFixed(0)} s)\n`);
    const path = writeResults('crosscoder', { configs: CONFIGS, lr: LR, peerThreads: threads, notes: [...new Set(notes)], rows });
    console.log(`wrote ${path}`);
  },
};
