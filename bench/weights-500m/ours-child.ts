// The `weights` analysis as the command line runs it (two folders opened as weight stores,
// diffWeights on the CPU backend), in a process of its own so that its peak RSS is its own.
// argv[2]: JSON { base, ft, out, topK, threads } or { idle: true, threads } (the runtime's own footprint).
import { writeFileSync } from 'node:fs';
import { diffWeights } from '../../src/analysis/weights/diff.ts';
import { createCpuBackend } from '../../src/gpu/cpu-backend.ts';
import { pathFileSet } from '../../src/io/node-source.ts';
import { openSafetensorsFolder } from '../../src/io/safetensors.ts';
import { cpuBackendThreads } from '../lib/cpu-threads.ts';
import { peakRssMb } from '../lib/memory.ts';

const o = JSON.parse(process.argv[2] ?? '{}') as { base?: string; ft?: string; out?: string; topK?: number; idle?: boolean; threads: number };
// Started before anything else, so the runtime-alone footprint includes the GEMM workers.
const cpuText = await cpuBackendThreads(o.threads);
if (o.idle) {
  process.stdout.write(`${JSON.stringify({ peakRssMb: peakRssMb(), cpuText })}\n`);
} else {
  const t0 = performance.now();
  const base = await openSafetensorsFolder(await pathFileSet(o.base!));
  const ft = await openSafetensorsFolder(await pathFileSet(o.ft!));
  const perTensorMs: Record<string, number> = {};
  let last = performance.now();
  const diff = await diffWeights(base, ft, {
    backend: createCpuBackend(),
    topK: o.topK ?? 16,
    onProgress: (done, total, name) => {
      const now = performance.now();
      perTensorMs[name] = now - last;
      last = now;
      if (done % 25 === 0 || done === total) console.error(`  ours: ${done}/${total} tensors, ${((now - t0) / 1000).toFixed(0)} s, peak RSS ${peakRssMb().toFixed(0)} MiB`);
    },
  });
  const totalMs = performance.now() - t0;
  writeFileSync(o.out!, JSON.stringify(diff));
  process.stdout.write(`${JSON.stringify({ totalMs, perTensorMs, peakRssMb: peakRssMb(), tensors: diff.tensors.length, cpuText })}\n`);
}
