// npm run bench -- [name|all] [--full] [--node|--browser] [--sizes=256,512] [--threads=N]
// Each benchmark is a module under bench/ registered here; it prints its tables and writes
// bench/results/<name>.json.

import type { Bench, BenchArgs } from './lib/args.ts';

const BENCHES: Record<string, () => Promise<Bench>> = {
  matmul: async () => (await import('./matmul/index.ts')).matmulBench,
  prefill: async () => (await import('./prefill/index.ts')).prefillBench,
  svd: async () => (await import('./svd/index.ts')).svdBench,
  'weights-500m': async () => (await import('./weights-500m/index.ts')).weights500mBench,
  lens: async () => (await import('./lens/index.ts')).lensBench,
  adl: async () => (await import('./adl/index.ts')).adlBench,
  crosscoder: async () => (await import('./crosscoder/index.ts')).crosscoderBench,
  organisms: async () => (await import('./organisms/index.ts')).organismsBench,
  train: async () => (await import('./train/index.ts')).trainBench,
  'train-webgpu': async () => (await import('./train/webgpu.ts')).trainWebGpuBench,
  kernels: async () => (await import('./kernels/index.ts')).kernelsBench,
  gpu: async () => (await import('./gpu.ts')).gpuBench,
  scale: async () => (await import('./scale/index.ts')).scaleBench,
};

const USAGE = `usage: npm run bench -- [${Object.keys(BENCHES).join('|')}|all] [--full] [--node|--browser] [--sizes=a,b] [--threads=n] [--models=a,b] [--steps=a,b] [--step-timeout=s]
  (default: matmul; --full adds the large sizes; --node / --browser run one environment only)`;

function positiveInt(text: string, flag: string): number {
  const v = Number(text);
  if (!Number.isInteger(v) || v <= 0) throw new Error(`${flag} expects positive integers, got "${text}"`);
  return v;
}

function parse(argv: readonly string[]): { names: string[]; args: BenchArgs } {
  let name = 'matmul';
  const args: BenchArgs = { full: false, envs: ['node', 'browser'] };
  for (const a of argv) {
    if (a === '--full') args.full = true;
    else if (a === '--node') args.envs = ['node'];
    else if (a === '--browser') args.envs = ['browser'];
    else if (a.startsWith('--sizes=')) args.sizes = a.slice(8).split(',').map((s) => positiveInt(s, '--sizes'));
    else if (a.startsWith('--threads=')) args.threads = positiveInt(a.slice(10), '--threads');
    else if (a.startsWith('--models=')) args.models = a.slice(9).split(',');
    else if (a.startsWith('--steps=')) args.steps = a.slice(8).split(',');
    else if (a.startsWith('--step-timeout=')) args.stepTimeoutS = positiveInt(a.slice(15), '--step-timeout');
    else if (!a.startsWith('-') && (a === 'all' || a in BENCHES)) name = a;
    else throw new Error(`unknown argument "${a}"\n${USAGE}`);
  }
  // 'gpu' is a group of the others.
  return { names: name === 'all' ? Object.keys(BENCHES).filter((n) => n !== 'gpu') : [name], args };
}

async function main(): Promise<void> {
  if (process.argv.includes('--help') || process.argv.includes('-h')) {
    console.log(USAGE);
    return;
  }
  const { names, args } = parse(process.argv.slice(2));
  for (const name of names) {
    const bench = await BENCHES[name]!();
    console.error(`bench ${name}: ${bench.description}`);
    await bench.run(args);
  }
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    console.error(e instanceof Error ? e.message : String(e));
    process.exit(1);
  },
);
