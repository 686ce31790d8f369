// Prefill throughput: one forward over B × T tokens with every position's logits, ours (CPU
// backend; WebGPU through Dawn on the smallest model) against eager PyTorch on the same weights and
// token ids. Logits of the first and last position are compared before a time counts.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRng } from '../../src/analysis/linalg/rng.ts';
import { createCpuBackend } from '../../src/gpu/cpu-backend.ts';
import { pathFileSet } from '../../src/io/node-source.ts';
import type { Backend } from '../../src/model/backend.ts';
import { loadModel } from '../../src/model/load.ts';
import type { Transformer } from '../../src/model/transformer.ts';
import { measureAdaptive } from '../lib/adaptive.ts';
import type { Bench, BenchArgs } from '../lib/args.ts';
import { dawnBackend } from '../lib/backends.ts';
import { cpuBackendThreads } from '../lib/cpu-threads.ts';
import { maxDiff, sci } from '../lib/compare.ts';
import { peakRssMb } from '../lib/memory.ts';
import { profiledBackend, profileText } from '../lib/profile.ts';
import { wasmGemmStats } from '../../src/gpu/cpu-wasm/gemm.ts';
import { FIXTURES_DIR, randomModel } from '../lib/models.ts';
import { pythonEnvText, runPython, type PythonResult } from '../lib/python.ts';
import { loadText, writeResults } from '../lib/results.ts';
import { fmt, formatTable } from '../lib/table.ts';
import type { Timing } from '../lib/timing.ts';
import { readTensors, tensor, writeTensors } from '../lib/tensors-file.ts';

const LENGTHS = [128, 512];
const BATCH = 1;
const PEER_THREADS = 2;

interface PeerCase {
  tokens: number;
  batch: number;
  timing: Timing;
  tokensPerS: number;
}

interface Row {
  model: string;
  tokens: number;
  impl: string;
  timing?: Timing;
  tokensPerS?: number;
  /** Against PyTorch's logits at the first and last position. */
  logitsMaxAbs?: number;
  logitsMaxRel?: number;
  error?: string;
}

function log(line: string): void {
  console.error(line);
}

function tokenIds(vocab: number, count: number, seed: number): Int32Array {
  const rng = createRng(seed);
  return Int32Array.from({ length: count }, () => Math.floor(rng.uniform() * vocab));
}

async function oursForward(model: Transformer, be: Backend, ids: Int32Array, T: number): Promise<Float32Array> {
  const { logits } = model.forward({ ids, batch: BATCH, seq: T });
  const data = await be.read(logits!);
  be.dispose(logits!);
  return data as Float32Array;
}

async function runOurs(label: string, model: Transformer, be: Backend, name: string, lengths: readonly number[], ids: Map<number, Int32Array>, rows: Row[], firstLast: Map<string, Float32Array>): Promise<void> {
  for (const T of lengths) {
    try {
      const { timing, first } = await measureAdaptive(() => oursForward(model, be, ids.get(T)!, T));
      const V = model.config.vocab;
      const pick = new Float32Array(2 * V);
      pick.set(first.subarray(0, V));
      pick.set(first.subarray((T - 1) * V, T * V), V);
      firstLast.set(`${label}.${T}`, pick);
      rows.push({ model: name, tokens: T, impl: label, timing, tokensPerS: (BATCH * T) / (timing.medianMs / 1000) });
      log(`${name} ${label} T=${T}: ${timing.medianMs.toFixed(0)} ms`);
    } catch (e) {
      rows.push({ model: name, tokens: T, impl: label, error: e instanceof Error ? e.message : String(e) });
    }
  }
}

async function benchModel(name: string, dir: string, lengths: readonly number[], withWebGpu: boolean, full: boolean, threads: number, notes: string[]): Promise<Row[]> {
  const rows: Row[] = [];
  const work = mkdtempSync(join(tmpdir(), 'neurodiff-prefill-'));
  try {
    // Ops are timed by the wrapper (a clock read around each call: well under a millisecond a forward).
    const prof = profiledBackend(createCpuBackend());
    const cpu = prof.backend;
    const files = await pathFileSet(dir);
    const model = await loadModel(files, cpu);
    const ids = new Map(lengths.map((T) => [T, tokenIds(model.config.vocab, BATCH * T, 1000 + T)]));
    await writeTensors(join(work, 'inputs.safetensors'), Object.fromEntries(lengths.map((T) => [`ids.${T}`, { shape: [BATCH, T], data: ids.get(T)! }])));
    const ours = new Map<string, Float32Array>();
    await runOurs('ours CPU', model, cpu, name, lengths, ids, rows, ours);
    for (const T of lengths) {
      prof.reset();
      wasmGemmStats.enabled = true;
      const t0 = performance.now();
      await oursForward(model, cpu, ids.get(T)!, T);
      const total = performance.now() - t0;
      wasmGemmStats.enabled = false;
      notes.push(`profile ${name} ours CPU T=${T}: ${profileText(prof.profile, total)}`);
    }
    model.dispose();
    if (withWebGpu) {
      const gpu = await dawnBackend();
      if ('error' in gpu) {
        rows.push(...lengths.map((T) => ({ model: name, tokens: T, impl: 'ours WebGPU', error: gpu.error })));
      } else if (gpu.software && !full) {
        notes.push(`WebGPU adapter: ${gpu.adapter}, a software rasteriser: its prefill (minutes, and no measure of a GPU) runs with --full only`);
      } else {
        notes.push(`WebGPU adapter: ${gpu.adapter}${gpu.software ? ': a software rasteriser on the CPU (SwiftShader), not a GPU' : ''}`);
        const gm = await loadModel(files, gpu.backend);
        await runOurs(gpu.software ? 'ours WebGPU (SwiftShader)' : 'ours WebGPU', gm, gpu.backend, name, lengths, ids, rows, ours);
        gm.dispose();
      }
    }
    const peer = await runPython<PythonResult & { loadMs: number; cases: PeerCase[] }>(
      'prefill.py',
      { model: dir, inputs: join(work, 'inputs.safetensors'), out: join(work, 'out.safetensors'), threads, lengths, budget_s: 1.5 },
      log,
    );
    notes.push(pythonEnvText(peer.env));
    const peerOut = await readTensors(join(work, 'out.safetensors'));
    for (const c of peer.cases) rows.push({ model: name, tokens: c.tokens, impl: 'PyTorch eager', timing: c.timing, tokensPerS: c.tokensPerS });
    for (const r of rows) {
      const mine = ours.get(`${r.impl}.${r.tokens}`);
      if (!mine) continue;
      const d = maxDiff(mine, tensor(peerOut, `logits.${r.tokens}`).data);
      r.logitsMaxAbs = d.abs;
      r.logitsMaxRel = d.rel;
    }
    return rows;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

function report(rows: Row[]): string {
  const keys = [...new Set(rows.map((r) => `${r.model}\u0000${r.tokens}`))];
  const impls = [...new Set(rows.map((r) => r.impl))];
  const ours = impls.filter((i) => i.startsWith('ours'));
  const get = (k: string, impl: string) => rows.find((r) => `${r.model}\u0000${r.tokens}` === k && r.impl === impl);
  const lines = [
    `prefill tokens/s (batch ${BATCH}, all positions' logits; median after warm-up)`,
    formatTable(
      ['model', 'tokens', ...impls, ...ours.map((o) => `${o} ÷ PyTorch`), ...ours.map((o) => `${o} max|Δlogit| (rel)`)],
      keys.map((k) => {
        const [model, tokens] = k.split('\u0000') as [string, string];
        const peer = get(k, 'PyTorch eager')?.tokensPerS;
        return [
          model,
          tokens,
          ...impls.map((i) => fmt(get(k, i)?.tokensPerS)),
          ...ours.map((o) => {
            const mine = get(k, o)?.tokensPerS;
            return mine !== undefined && peer !== undefined ? `${fmt(mine / peer)}×` : '-';
          }),
          ...ours.map((o) => {
            const r = get(k, o);
            return r?.logitsMaxAbs === undefined ? '-' : `${sci(r.logitsMaxAbs)} (${sci(r.logitsMaxRel!)})`;
          }),
        ];
      }),
    ),
  ];
  for (const r of rows) if (r.error) lines.push(`- ${r.model} T=${r.tokens} ${r.impl}: ${r.error}`);
  return lines.join('\n');
}

export const prefillBench: Bench = {
  description: 'prefill tokens/s, ours (CPU; WebGPU on stories260K) against eager PyTorch on the same weights and tokens',
  run: async (args: BenchArgs) => {
    if (!args.envs.includes('node')) {
      console.log('prefill runs in Node only');
      return;
    }
    const lengths = args.sizes ?? LENGTHS;
    const threads = args.threads ?? PEER_THREADS;
    const started = performance.now();
    const loadAtStart = loadText();
    const notes = [await cpuBackendThreads(threads), `PyTorch threads: ${threads}`];
    const rows = [
      ...(await benchModel('stories260K', join(FIXTURES_DIR, 'stories260K', 'base'), lengths, true, args.full, threads, notes)),
      ...(await benchModel('gpt2-small (random)', join(randomModel('gpt2-small', log), 'base'), lengths, false, args.full, threads, notes)),
    ];
    notes.push(`${loadAtStart} at start, ${loadText()} at end; Node peak RSS ${peakRssMb().toFixed(0)} MiB`);
    console.log(`== prefill\n${[...new Set(notes)].join('\n')}\n\n${report(rows)}\n(${((performance.now() - started) / 1000).toFixed(0)} s)\n`);
    const path = writeResults('prefill', { batch: BATCH, lengths, peerThreads: threads, notes: [...new Set(notes)], rows });
    console.log(`wrote ${path}`);
  },
};
