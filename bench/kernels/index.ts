// npm run bench -- kernels: every WGSL kernel family timed on the GPU (timestamp queries where the
// adapter has them, wall clock otherwise), with the GFLOP/s and GB/s it reaches, on each WebGPU
// we can reach here: Dawn in Node on its default driver and on Mesa's llvmpipe (lavapipe) when
// installed, and headless Chromium. On a software adapter the sizes are tiny (--full: GPU sizes)
// and the figures say nothing about GPUs; on a real GPU they are what the kernels reach.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Bench, BenchArgs } from '../lib/args.ts';
import { runInBrowser } from '../lib/browser.ts';
import { loadText, writeResults } from '../lib/results.ts';
import { fmt, formatTable } from '../lib/table.ts';
import type { KernelSuiteResult } from './suite.ts';

const LLVMPIPE_ICD = '/usr/share/vulkan/icd.d/lvp_icd.json';
const HERE = dirname(fileURLToPath(import.meta.url));

type EnvResult = (KernelSuiteResult & { env: string; scale: string }) | { env: string; error: string };

function log(line: string): void {
  console.error(line);
}

/** The suite on Dawn in a child process with `env` added (a Vulkan driver choice). */
function runDawn(label: string, env: Record<string, string>, options: object): Promise<EnvResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(HERE, 'dawn.ts'), JSON.stringify(options)], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
      for (const line of d.toString().split('\n')) if (line.trim()) log(`  ${label}: ${line}`);
    });
    child.on('close', (code) => {
      try {
        if (code !== 0) throw new Error(err.trim().split('\n').at(-1) ?? `exit ${code}`);
        resolve({ env: label, ...(JSON.parse(out) as KernelSuiteResult & { scale: string }) });
      } catch (e) {
        resolve({ env: label, error: e instanceof Error ? e.message : String(e) });
      }
    });
  });
}

function report(r: EnvResult): string {
  if ('error' in r) return `${r.env}: not run (${r.error})`;
  const head = [
    `${r.env} — ${r.adapter}`,
    r.timestamps ? 'GPU time per kernel from timestamp queries' : 'no timestamp-query on this adapter: wall time per call (submit to finish)',
    r.software ? `SOFTWARE ADAPTER (${r.scale} sizes): the kernels run on the CPU here; these figures mean nothing for GPUs` : `${r.scale} sizes`,
  ];
  const table = formatTable(
    ['case', 'shape', 'µs/call', 'GFLOP/s', 'GB/s', 'kernels (dispatches per call: µs)'],
    r.rows.map((row) => [
      row.case,
      row.shape,
      fmt(row.usPerCall),
      row.gflops === null ? '-' : fmt(row.gflops),
      fmt(row.gbps),
      row.kernels.map((k) => `${k.name} ×${Number.isInteger(k.dispatches) ? k.dispatches : fmt(k.dispatches)}: ${fmt(k.usPerCall)}`).join(', ') || '-',
    ]),
  );
  return `${head.join('\n')}\n${table}`;
}

export async function runKernels(args: BenchArgs): Promise<EnvResult[]> {
  const options = { full: args.full };
  const results: EnvResult[] = [];
  if (args.envs.includes('node')) {
    const userDriver = process.env.VK_ICD_FILENAMES ?? process.env.VK_DRIVER_FILES;
    results.push(await runDawn(userDriver ? `Dawn (${userDriver})` : 'Dawn', {}, options));
    if (!userDriver && existsSync(LLVMPIPE_ICD)) results.push(await runDawn('Dawn on llvmpipe', { VK_ICD_FILENAMES: LLVMPIPE_ICD, VK_DRIVER_FILES: LLVMPIPE_ICD }, options));
  }
  if (args.envs.includes('browser')) {
    try {
      const run = await runInBrowser<KernelSuiteResult & { scale: string }>('kernels', options, (line) => log(`  Chromium: ${line}`));
      results.push({ env: `Chromium ${run.browserVersion}`, ...run.result });
    } catch (e) {
      results.push({ env: 'Chromium', error: e instanceof Error ? e.message : String(e) });
    }
  }
  return results;
}

export const kernelsBench: Bench = {
  description: 'every WGSL kernel family timed on the GPU (timestamp queries), GFLOP/s and GB/s, on Dawn (default driver and llvmpipe) and headless Chromium',
  run: async (args: BenchArgs) => {
    const started = performance.now();
    const loadAtStart = loadText();
    const results = await runKernels(args);
    console.log(`== kernels (${loadAtStart} at start, ${loadText()} at end)\n\n${results.map(report).join('\n\n')}\n(${((performance.now() - started) / 1000).toFixed(0)} s)\n`);
    console.log(`wrote ${writeResults('kernels', { results })}`);
  },
};
