// Whole-model weight diff of two generated ~500M-parameter bf16 checkpoints (sharded): ours as the
// command line runs it (diffWeights over two weight stores, CPU backend) against a PyTorch script
// computing the same per-tensor statistics. Each side runs in a fresh process, so its peak RSS is
// its own and can be set against the model's size: neither may hold a model whole.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { WeightsDiff } from '../../src/analysis/weights/types.ts';
import { parameterCount, PRESETS } from '../../scripts/make-random-model.ts';
import type { Bench, BenchArgs } from '../lib/args.ts';
import { sci } from '../lib/compare.ts';
import { mb } from '../lib/memory.ts';
import { randomModel } from '../lib/models.ts';
import { pythonEnvText, runPython, type PythonResult } from '../lib/python.ts';
import { loadText, writeResults } from '../lib/results.ts';
import { fmt, formatTable } from '../lib/table.ts';

const PRESET = 'llama-500m';
const TOP_K = 16;
const PEER_THREADS = 2;
const CHILD = join(dirname(fileURLToPath(import.meta.url)), 'ours-child.ts');

interface RunSummary {
  totalMs: number;
  perTensorMs: Record<string, number>;
  peakRssMb: number;
  tensors: number;
}

interface PeerTensor {
  name: string;
  frobenius: number;
  top_singular_values: number[];
  nuclear: number | null;
  effective_rank: number | null;
}

function log(line: string): void {
  console.error(line);
}

function runChild(options: object): Promise<RunSummary & { cpuText: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CHILD, JSON.stringify(options)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => {
      for (const line of s.split('\n')) if (line.trim()) log(line);
    });
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) return reject(new Error(`ours-child.ts exited with ${code}`));
      resolve(JSON.parse(stdout.trim().split('\n').pop()!) as RunSummary & { cpuText: string });
    });
  });
}

async function folderBytes(dir: string): Promise<number> {
  let n = 0;
  for (const f of await readdir(dir)) if (f.endsWith('.safetensors')) n += statSync(join(dir, f)).size;
  return n;
}

/** Time spent on tensors whose ΔW is non-zero (spectra) and on the rest (elementwise statistics only). */
function split(perTensorMs: Record<string, number>, changed: ReadonlySet<string>): { changedMs: number; unchangedMs: number } {
  let changedMs = 0;
  let unchangedMs = 0;
  for (const [name, ms] of Object.entries(perTensorMs)) {
    if (changed.has(name)) changedMs += ms;
    else unchangedMs += ms;
  }
  return { changedMs, unchangedMs };
}

interface Worst {
  relDiff: number;
  tensor: string;
  ours: number;
  peer: number;
}

/** Largest relative difference ours vs peer per quantity, with where it occurs. */
function agreement(ours: WeightsDiff, peer: PeerTensor[], rank: number): Record<string, Worst> {
  const byName = new Map(ours.tensors.map((t) => [t.name, t]));
  const worst: Record<string, Worst> = {};
  const note = (key: string, tensor: string, mine: number | null | undefined, theirs: number | null | undefined) => {
    if (theirs === null || theirs === undefined) return;
    const m = mine ?? NaN;
    const rel = theirs === 0 ? Math.abs(m) : Math.abs(m - theirs) / Math.abs(theirs);
    if (!(rel <= (worst[key]?.relDiff ?? -1))) worst[key] = { relDiff: rel, tensor, ours: m, peer: theirs };
  };
  for (const p of peer) {
    const o = byName.get(p.name);
    if (!o) throw new Error(`ours has no result for "${p.name}"`);
    note('frobenius', p.name, o.frobenius, p.frobenius);
    p.top_singular_values.forEach((s, i) => note(i < rank ? `σ1..σ${rank}` : `σ${rank + 1}..σ${TOP_K}`, p.name, o.top_singular_values[i], s));
    note('nuclear', p.name, o.nuclear, p.nuclear);
    note('effective_rank', p.name, o.effective_rank, p.effective_rank);
  }
  return worst;
}

export const weights500mBench: Bench = {
  description: 'whole-model weight diff of two ~500M-parameter bf16 checkpoints: ours (CLI path, CPU backend) against a PyTorch script; time and peak RSS',
  run: async (args: BenchArgs) => {
    if (!args.envs.includes('node')) {
      console.log('weights-500m runs in Node only');
      return;
    }
    const threads = args.threads ?? PEER_THREADS;
    const started = performance.now();
    const loadAtStart = loadText();
    const dir = randomModel(PRESET, log);
    const base = join(dir, 'base');
    const ft = join(dir, 'ft');
    const spec = PRESETS[PRESET]!;
    const params = parameterCount(spec);
    const diskBytes = await folderBytes(base);
    const work = mkdtempSync(join(tmpdir(), 'neurodiff-weights-'));
    try {
      const idle = await runChild({ idle: true, threads });
      log('ours: diffWeights over the two folders');
      const ours = await runChild({ base, ft, out: join(work, 'ours.json'), topK: TOP_K, threads });
      const oursDiff = JSON.parse(readFileSync(join(work, 'ours.json'), 'utf8')) as WeightsDiff;
      log('PyTorch peer');
      const peer = await runPython<PythonResult & { baselineRssMb: number; totalMs: number; perTensorMs: Record<string, number>; tensors: number }>(
        'weights.py',
        { base, ft, out: join(work, 'peer.json'), threads, top_k: TOP_K },
        log,
      );
      const peerTensors = (JSON.parse(readFileSync(join(work, 'peer.json'), 'utf8')) as { tensors: PeerTensor[] }).tensors;
      const changed = new Set(oursDiff.tensors.filter((t) => t.frobenius > 0).map((t) => t.name));
      const peerChanged = new Set(peerTensors.filter((t) => t.frobenius > 0).map((t) => t.name));
      const agree = agreement(oursDiff, peerTensors, spec.fineTune!.rank);
      const os = split(ours.perTensorMs, changed);
      const ps = split(peer.perTensorMs, changed);
      const f32Mb = mb(params * 4);
      const rows = [
        ['ours (diffWeights, CPU backend)', ours.totalMs, os.changedMs, os.unchangedMs, ours.peakRssMb, idle.peakRssMb],
        [`PyTorch (${threads} threads)`, peer.totalMs, ps.changedMs, ps.unchangedMs, peer.peakRssMb, peer.baselineRssMb],
      ] as const;
      const methods = [...new Set(oursDiff.tensors.filter((t) => changed.has(t.name)).map((t) => t.method.replace(/householder \d+\/\d+/, 'householder')))];
      const notes = [
        ours.cpuText,
        pythonEnvText(peer.env),
        `models: ${PRESET}, ${(params / 1e6).toFixed(0)}M parameters each, bf16, ${fmt(mb(diskBytes))} MiB on disk each (${fmt(f32Mb)} MiB as float32); ${changed.size} of ${oursDiff.tensors.length} tensors changed (rank-${spec.fineTune!.rank} deltas, then rounded to bf16, which makes ΔW full rank)`,
        `ours' spectral methods on changed tensors: ${methods.join(' | ')}`,
        `peer: torch.linalg.svdvals (LAPACK sgesdd, float32) on changed matrices; reads with np.fromfile, one tensor pair at a time`,
        `changed tensors agree with the peer: ${peerChanged.size === changed.size && [...changed].every((n) => peerChanged.has(n)) ? 'same set' : 'DIFFERENT sets'}`,
        `${loadAtStart} at start, ${loadText()} at end`,
      ];
      const table = formatTable(
        ['impl', 'total s', 'changed tensors s', 'unchanged s', 'peak RSS MiB', 'runtime alone MiB', 'peak RSS ÷ one model on disk'],
        rows.map(([label, total, ch, un, rss, alone]) => [label, fmt(total / 1000), fmt(ch / 1000), fmt(un / 1000), fmt(rss), fmt(alone), `${fmt(rss / mb(diskBytes))}×`]),
      );
      const ratios = formatTable(
        ['ours ÷ PyTorch', 'total time', 'changed tensors', 'unchanged tensors', 'peak RSS'],
        [['', `${fmt(ours.totalMs / peer.totalMs)}×`, `${fmt(os.changedMs / ps.changedMs)}×`, `${fmt(os.unchangedMs / ps.unchangedMs)}×`, `${fmt(ours.peakRssMb / peer.peakRssMb)}×`]],
      );
      const accuracy = formatTable(
        ['ours vs peer', 'max rel diff', 'tensor', 'ours', 'peer'],
        Object.entries(agree).map(([k, w]) => [k, sci(w.relDiff), w.tensor, w.ours.toPrecision(6), w.peer.toPrecision(6)]),
      );
      console.log(`== weights-500m\n${notes.join('\n')}\n\n${table}\n\n${ratios}\n\n${accuracy}\n(${((performance.now() - started) / 1000).toFixed(0)} s)\n`);
      const path = writeResults('weights-500m', {
        preset: PRESET,
        spec,
        parameters: params,
        diskBytesPerModel: diskBytes,
        notes,
        ours: { totalMs: ours.totalMs, ...os, peakRssMb: ours.peakRssMb, runtimeAloneRssMb: idle.peakRssMb },
        peer: { totalMs: peer.totalMs, ...ps, peakRssMb: peer.peakRssMb, runtimeAloneRssMb: peer.baselineRssMb, threads },
        agreement: agree,
      });
      console.log(`wrote ${path}`);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  },
};
