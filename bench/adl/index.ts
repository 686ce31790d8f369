// Activation Difference Lens on the demo organism (demo/base vs demo/ocean/model) over 200 generic
// stories × 64 tokens: mean activation differences at positions 0–4 of the middle layer and their
// signed logit lens (top 20), no Patchscope. Ours on the CPU backend (and on WebGPU through Dawn on
// a subset: SwiftShader is a CPU rasteriser) against the same computation in PyTorch.
import { readFile } from 'node:fs/promises';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { activationDifferenceLens, type AdlResult } from '../../src/analysis/activations/adl.ts';
import { corpusLines, tokenizeCorpus } from '../../src/analysis/activations/corpus.ts';
import type { ModelPair } from '../../src/analysis/activations/run.ts';
import { createCpuBackend } from '../../src/gpu/cpu-backend.ts';
import { pathFileSet } from '../../src/io/node-source.ts';
import { readHfTokenizer } from '../../src/io/tokenizer.ts';
import type { Backend } from '../../src/model/backend.ts';
import { loadModel } from '../../src/model/load.ts';
import { measureAdaptive } from '../lib/adaptive.ts';
import type { Bench, BenchArgs } from '../lib/args.ts';
import { dawnBackend } from '../lib/backends.ts';
import { cpuBackendThreads } from '../lib/cpu-threads.ts';
import { maxDiff, sci, topkOverlap } from '../lib/compare.ts';
import { peakRssMb } from '../lib/memory.ts';
import { FIXTURES_DIR } from '../lib/models.ts';
import { pythonEnvText, runPython, type PythonResult } from '../lib/python.ts';
import { loadText, writeResults } from '../lib/results.ts';
import { fmt, formatTable } from '../lib/table.ts';
import type { Timing } from '../lib/timing.ts';
import { readTensors, tensor, writeTensors } from '../lib/tensors-file.ts';

const SAMPLES = 200;
const TOKENS = 64;
const TOP = 20;
const WEBGPU_SAMPLES = 4;
const BATCH = 16;
const PEER_THREADS = 2;

function log(line: string): void {
  console.error(line);
}

async function demoPair(be: Backend): Promise<ModelPair> {
  return {
    base: await loadModel(await pathFileSet(join(FIXTURES_DIR, 'demo', 'base')), be),
    ft: await loadModel(await pathFileSet(join(FIXTURES_DIR, 'demo', 'ocean', 'model')), be),
  };
}

/** Top ids as [2·P, TOP]: the lens of +δ_p for every position, then of −δ_p (the peer's layout). */
function topIds(r: AdlResult): Int32Array {
  const rows = [...r.positions.map((p) => p.top), ...r.positions.map((p) => p.topNegative)];
  return Int32Array.from(rows.flatMap((row) => row.map((t) => t.id)));
}

function flatDelta(r: AdlResult): Float32Array {
  const d = r.difference.delta;
  const out = new Float32Array(d.length * (d[0]?.length ?? 0));
  d.forEach((v, i) => out.set(v, i * v.length));
  return out;
}

interface Row {
  impl: string;
  samples: number;
  timing: Timing;
  /** Against the CPU run on the same samples (WebGPU) or against PyTorch (CPU). */
  against: string;
  deltaMaxAbs: number;
  deltaMaxRel: number;
  topOverlap: number;
}

export const adlBench: Bench = {
  description: `ADL over ${SAMPLES} stories × ${TOKENS} tokens (demo base vs ocean): ours (CPU; WebGPU on ${WEBGPU_SAMPLES} samples) against PyTorch`,
  run: async (args: BenchArgs) => {
    if (!args.envs.includes('node')) {
      console.log('adl runs in Node only');
      return;
    }
    const threads = args.threads ?? PEER_THREADS;
    const started = performance.now();
    const loadAtStart = loadText();
    const work = mkdtempSync(join(tmpdir(), 'neurodiff-adl-'));
    const notes = [await cpuBackendThreads(threads)];
    const rows: Row[] = [];
    try {
      const cpu = createCpuBackend();
      const pair = await demoPair(cpu);
      const tokenizer = (await readHfTokenizer(await pathFileSet(join(FIXTURES_DIR, 'demo', 'base'))))!;
      const lines = corpusLines(await readFile(join(FIXTURES_DIR, 'demo', 'generic_stories.txt'), 'utf8'));
      const { samples } = tokenizeCorpus(tokenizer, lines, { maxSamples: SAMPLES, tokensPerSample: TOKENS });
      if (samples.length < SAMPLES) throw new Error(`the demo corpus gave ${samples.length} samples of ${TOKENS} tokens, not ${SAMPLES}`);
      await writeTensors(join(work, 'inputs.safetensors'), { samples: { shape: [SAMPLES, TOKENS], data: Int32Array.from(samples.flat()) } });

      const rssLoaded = peakRssMb();
      const full = await measureAdaptive(() => activationDifferenceLens(pair, samples, { top: TOP, batchSize: BATCH }));
      const rssAdl = peakRssMb();
      log(`ours CPU ADL, ${SAMPLES} samples: ${full.timing.medianMs.toFixed(0)} ms (layer ${full.first.layer})`);
      notes.push(`ours CPU: Node peak RSS ${fmt(rssLoaded)} MiB with both models loaded, ${fmt(rssAdl)} MiB after ADL`);

      const peer = await runPython<PythonResult & { timing: Timing; ftNorm: number; rssAfterLoadMb: number }>(
        'adl.py',
        { base: join(FIXTURES_DIR, 'demo', 'base'), ft: join(FIXTURES_DIR, 'demo', 'ocean', 'model'), inputs: join(work, 'inputs.safetensors'), out: join(work, 'out.safetensors'), threads, layer: full.first.layer, positions: full.first.difference.positions, top: TOP, batch: BATCH },
        log,
      );
      notes.push(pythonEnvText(peer.env), `PyTorch: peak RSS ${fmt(peer.rssAfterLoadMb)} MiB with both models loaded, ${fmt(peer.peakRssMb)} MiB at the end; mean ‖h_ft‖ ours ${fmt(full.first.ftNorm)}, PyTorch ${fmt(peer.ftNorm)}`);
      const out = await readTensors(join(work, 'out.safetensors'));
      const P = full.first.positions.length;
      const vsPeer = maxDiff(flatDelta(full.first), tensor(out, 'delta').data);
      rows.push({ impl: 'ours CPU', samples: SAMPLES, timing: full.timing, against: 'PyTorch', deltaMaxAbs: vsPeer.abs, deltaMaxRel: vsPeer.rel, topOverlap: topkOverlap(topIds(full.first), tensor(out, 'top_ids').data, 2 * P, TOP) });
      rows.push({ impl: `PyTorch (${threads} threads)`, samples: SAMPLES, timing: peer.timing, against: '-', deltaMaxAbs: NaN, deltaMaxRel: NaN, topOverlap: NaN });

      const subset = samples.slice(0, WEBGPU_SAMPLES);
      const gpu = await dawnBackend();
      if ('error' in gpu) {
        notes.push(`WebGPU: ${gpu.error}`);
      } else {
        const cpuSubset = await measureAdaptive(() => activationDifferenceLens(pair, subset, { top: TOP, batchSize: BATCH }));
        rows.push({ impl: 'ours CPU', samples: WEBGPU_SAMPLES, timing: cpuSubset.timing, against: '-', deltaMaxAbs: NaN, deltaMaxRel: NaN, topOverlap: NaN });
        const gpair = await demoPair(gpu.backend);
        const g = await measureAdaptive(() => activationDifferenceLens(gpair, subset, { top: TOP, batchSize: BATCH }));
        const d = maxDiff(flatDelta(g.first), flatDelta(cpuSubset.first));
        rows.push({ impl: gpu.software ? 'ours WebGPU (SwiftShader)' : 'ours WebGPU', samples: WEBGPU_SAMPLES, timing: g.timing, against: `ours CPU, ${WEBGPU_SAMPLES} samples`, deltaMaxAbs: d.abs, deltaMaxRel: d.rel, topOverlap: topkOverlap(topIds(g.first), topIds(cpuSubset.first), 2 * P, TOP) });
        notes.push(`WebGPU adapter: ${gpu.adapter}${gpu.software ? ` (a CPU rasteriser: run on ${WEBGPU_SAMPLES} samples only; ${SAMPLES} would take about ${fmt((g.timing.medianMs * SAMPLES) / WEBGPU_SAMPLES / 1000)} s)` : ''}`);
        gpair.base.dispose();
        gpair.ft.dispose();
      }
      const oursTop = full.first.positions.map((p) => `p${p.position}: ${p.top.slice(0, 6).map((t) => JSON.stringify(tokenizer.decodeToken(t.id))).join(' ')}`);
      notes.push(`demo/base vs demo/ocean, layer ${full.first.layer} resid_post, positions ${full.first.difference.positions.join(',')}, ${SAMPLES} × ${TOKENS} tokens, batch ${BATCH}; ours' top lens tokens of δ_p: ${oursTop.join(' | ')}`);
      notes.push(`${loadAtStart} at start, ${loadText()} at end`);
      const peerMs = peer.timing.medianMs;
      const table = formatTable(
        ['impl', 'samples', 'ms', 'tokens/s', `÷ PyTorch (time, per sample)`, 'compared with', 'δ max|Δ| (rel)', `top-${TOP} overlap`],
        rows.map((r) => [
          r.impl,
          String(r.samples),
          fmt(r.timing.medianMs),
          fmt((r.samples * TOKENS) / (r.timing.medianMs / 1000)),
          r.impl.startsWith('ours') ? `${fmt(r.timing.medianMs / r.samples / (peerMs / SAMPLES))}×` : '-',
          r.against,
          Number.isNaN(r.deltaMaxAbs) ? '-' : `${sci(r.deltaMaxAbs)} (${sci(r.deltaMaxRel)})`,
          Number.isNaN(r.topOverlap) ? '-' : fmt(r.topOverlap),
        ]),
      );
      console.log(`== adl\n${notes.join('\n')}\n\n${table}\n(time ratio above 1: ours takes longer)\n(${((performance.now() - started) / 1000).toFixed(0)} s)\n`);
      const path = writeResults('adl', { samples: SAMPLES, tokens: TOKENS, top: TOP, batch: BATCH, peerThreads: threads, notes, rows, oursPeakRssMb: rssAdl, peerPeakRssMb: peer.peakRssMb });
      console.log(`wrote ${path}`);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  },
};
