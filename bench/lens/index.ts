// Differential logit lens on a generated Llama with GPT-2's 50,257-token vocabulary: both models'
// resid_post at every layer and position through their own final norm and unembedding, top-k and
// KL(P_ft ‖ P_base). Ours streams the vocabulary in chunks (CPU backend); the PyTorch peer
// materialises [L, T, V] logits, as plain PyTorch code does.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { differentialLogitLens } from '../../src/analysis/activations/lens.ts';
import { createRng } from '../../src/analysis/linalg/rng.ts';
import { createCpuBackend } from '../../src/gpu/cpu-backend.ts';
import { pathFileSet } from '../../src/io/node-source.ts';
import { loadModel } from '../../src/model/load.ts';
import { measureAdaptive } from '../lib/adaptive.ts';
import type { Bench, BenchArgs } from '../lib/args.ts';
import { cpuBackendThreads } from '../lib/cpu-threads.ts';
import { maxDiff, sci, top1Agreement, topkOverlap } from '../lib/compare.ts';
import { peakRssMb } from '../lib/memory.ts';
import { randomModel } from '../lib/models.ts';
import { pythonEnvText, runPython, type PythonResult } from '../lib/python.ts';
import { loadText, writeResults } from '../lib/results.ts';
import { fmt, formatTable } from '../lib/table.ts';
import type { Timing } from '../lib/timing.ts';
import { readTensors, tensor, writeTensors } from '../lib/tensors-file.ts';

const PRESET = 'lens-50k';
const LENGTHS = [64];
const K = 10;
const PEER_THREADS = 2;

function log(line: string): void {
  console.error(line);
}

export const lensBench: Bench = {
  description: 'differential logit lens (every layer × position, top-10, KL) on a 50k-vocabulary model: ours (CPU backend) against PyTorch',
  run: async (args: BenchArgs) => {
    if (!args.envs.includes('node')) {
      console.log('lens runs in Node only');
      return;
    }
    const threads = args.threads ?? PEER_THREADS;
    const lengths = args.sizes ?? LENGTHS;
    const started = performance.now();
    const loadAtStart = loadText();
    const dir = randomModel(PRESET, log);
    const cpuText = await cpuBackendThreads(threads);
    const work = mkdtempSync(join(tmpdir(), 'neurodiff-lens-'));
    try {
      const be = createCpuBackend();
      const pair = { base: await loadModel(await pathFileSet(join(dir, 'base')), be), ft: await loadModel(await pathFileSet(join(dir, 'ft')), be) };
      const { nLayers: L, vocab: V, dModel: d } = pair.base.config;
      const rng = createRng(5);
      const ids = new Map(lengths.map((T) => [T, Array.from({ length: T }, () => Math.floor(rng.uniform() * V))]));
      await writeTensors(join(work, 'inputs.safetensors'), Object.fromEntries(lengths.map((T) => [`ids.${T}`, { shape: [1, T], data: Int32Array.from(ids.get(T)!) }])));
      const rssBefore = peakRssMb();
      const ours = new Map<number, { timing: Timing; lens: Awaited<ReturnType<typeof differentialLogitLens>> }>();
      for (const T of lengths) {
        const { timing, first } = await measureAdaptive(() => differentialLogitLens(pair, ids.get(T)!, { k: K }));
        ours.set(T, { timing, lens: first });
        log(`ours lens T=${T}: ${timing.medianMs.toFixed(0)} ms`);
      }
      const rssAfter = peakRssMb();
      const peer = await runPython<PythonResult & { cases: { tokens: number; timing: Timing }[] }>(
        'lens.py',
        { base: join(dir, 'base'), ft: join(dir, 'ft'), inputs: join(work, 'inputs.safetensors'), out: join(work, 'out.safetensors'), threads, lengths, k: K, budget_s: 1.5 },
        log,
      );
      const out = await readTensors(join(work, 'out.safetensors'));
      const rows = lengths.map((T) => {
        const o = ours.get(T)!;
        const p = peer.cases.find((c) => c.tokens === T)!;
        const R = L * T;
        const kl = maxDiff(o.lens.kl, tensor(out, `kl.${T}`).data);
        const probs = maxDiff(o.lens.ft.probs, tensor(out, `ft_probs.${T}`).data);
        return {
          tokens: T,
          rows: R,
          ours: o.timing,
          peer: p.timing,
          top1: Math.min(top1Agreement(o.lens.base.ids, tensor(out, `base_ids.${T}`).data, R, K), top1Agreement(o.lens.ft.ids, tensor(out, `ft_ids.${T}`).data, R, K)),
          overlap: Math.min(topkOverlap(o.lens.base.ids, tensor(out, `base_ids.${T}`).data, R, K), topkOverlap(o.lens.ft.ids, tensor(out, `ft_ids.${T}`).data, R, K)),
          klMaxAbs: kl.abs,
          klMaxRel: kl.rel,
          probMaxAbs: probs.abs,
          meanKl: o.lens.kl.reduce((a, b) => a + b, 0) / R,
        };
      });
      const notes = [
        cpuText,
        pythonEnvText(peer.env),
        `model: ${PRESET} (Llama, ${L} layers, d ${d}, vocab ${V}; fine-tune: low-rank deltas on o_proj and down_proj), prompt of random ids, k = ${K}`,
        `ours: differentialLogitLens (both forwards, vocabulary chunks, top-k and KL merged on the host); Node peak RSS ${fmt(rssBefore)} MiB before, ${fmt(rssAfter)} MiB after; PyTorch peak RSS ${fmt(peer.peakRssMb)} MiB`,
        `${loadAtStart} at start, ${loadText()} at end`,
      ];
      const table = formatTable(
        ['tokens', 'rows (L×T)', 'ours ms', 'PyTorch ms', 'ours ÷ PyTorch (time)', 'top-1 agree', `top-${K} overlap`, 'KL max|Δ| (rel)', 'top prob max|Δ|', 'mean KL'],
        rows.map((r) => [String(r.tokens), String(r.rows), fmt(r.ours.medianMs), fmt(r.peer.medianMs), `${fmt(r.ours.medianMs / r.peer.medianMs)}×`, fmt(r.top1), fmt(r.overlap), `${sci(r.klMaxAbs)} (${sci(r.klMaxRel)})`, sci(r.probMaxAbs), fmt(r.meanKl)]),
      );
      console.log(`== lens\n${notes.join('\n')}\n\n${table}\n(time ratio above 1: ours takes longer)\n(${((performance.now() - started) / 1000).toFixed(0)} s)\n`);
      const path = writeResults('lens', { preset: PRESET, k: K, peerThreads: threads, notes, rows, oursPeakRssMb: rssAfter, peerPeakRssMb: peer.peakRssMb });
      console.log(`wrote ${path}`);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  },
};
