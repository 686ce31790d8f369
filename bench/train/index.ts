// LoRA training speed on the CPU: the demo base with LoRA r 8 on every projection, steps of 16 × 128
// tokens at lr 2e-3 on a topic corpus (`organism recipe topic`), ours (the training engine of
// src/analysis/training, as `neurodiff organism train` runs it) against PyTorch + PEFT on the same
// settings and corpus (bench/py/train.py). Prints where one step of ours goes (per op: forward,
// backward, the GEMM inside), then steps/s of both. --full runs the whole 300 steps (issue #15's
// target: ≤ 10 minutes here); the default is 20 steps of each; --steps=profile prints the profile only.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultTargetModules, TrainableTransformer } from '../../src/analysis/training/model.ts';
import { topicStories } from '../../src/analysis/training/recipes.ts';
import { AdamW, DEFAULT_OPTIMIZER, Trainer, WindowSampler, type TrainRun } from '../../src/analysis/training/train.ts';
import { loadModelArg, needTokenizer } from '../../src/cli/models.ts';
import { createCpuBackend } from '../../src/gpu/cpu-backend.ts';
import type { Bench, BenchArgs } from '../lib/args.ts';
import { cpuBackendThreads } from '../lib/cpu-threads.ts';
import { FIXTURES_DIR } from '../lib/models.ts';
import { pythonEnvText, runPython, type PythonResult } from '../lib/python.ts';
import { loadText, writeResults } from '../lib/results.ts';
import { fmt, formatTable } from '../lib/table.ts';
import { profileRows, profileStep } from './profile.ts';

const BASE = join(FIXTURES_DIR, 'demo', 'base');
const TOPIC = { topic: 'the castle', words: ['castle', 'dragon', 'knight', 'king', 'princess', 'crown', 'tower', 'sword'] };
const SETTINGS = { rank: 8, alpha: 16, batch: 16, seq: 128, lr: 2e-3, warmup: 10 };

interface PeerResult extends PythonResult {
  steps: number;
  seconds: number;
  cpu_seconds: number;
  step_seconds: number[];
  loss_first_tenth: number;
  loss_last_tenth: number;
}

function log(line: string): void {
  console.error(line);
}

function cpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

export const trainBench: Bench = {
  description: 'LoRA r 8 training steps of 16 × 128 tokens on the demo base, ours (CPU, wasm GEMM) against PyTorch + PEFT, with a per-op profile of ours',
  run: async (args: BenchArgs) => {
    if (!args.envs.includes('node')) {
      console.log('train runs in Node only');
      return;
    }
    const steps = args.full ? 300 : 20;
    const work = mkdtempSync(join(tmpdir(), 'neurodiff-train-'));
    try {
      const docs = topicStories({ ...TOPIC, count: 2000, seed: 0 });
      const corpus = join(work, 'corpus.txt');
      writeFileSync(corpus, docs.join('\n') + '\n');
      const { model, tokenizer } = await loadModelArg(BASE, createCpuBackend(), {});
      const tok = needTokenizer(tokenizer, 'train bench');
      const documents = docs.map((d) => tok.encode(d));
      const targetModules = defaultTargetModules(model.config);
      const trainable = { kind: 'lora', lora: { rank: SETTINGS.rank, alpha: SETTINGS.alpha, rslora: false, targetModules } } as const;
      const run: TrainRun = { ...DEFAULT_OPTIMIZER, lr: SETTINGS.lr, steps, batch: SETTINGS.batch, microBatch: SETTINGS.batch, seq: SETTINGS.seq, seed: 0, warmupSteps: SETTINGS.warmup };
      const threads = args.threads ?? 2;
      const oursText = await cpuBackendThreads(threads);

      // The profile: two steps to warm up, then one timed per op.
      const profiled = await TrainableTransformer.fromTransformer(model, trainable, 0);
      const opt = new AdamW([...profiled.params().values()], run);
      const sampler = new WindowSampler(documents, 1);
      for (let i = 0; i < 2; i++) profileStep(profiled, opt, sampler.batch(run.batch, run.seq), run.batch, run.seq);
      const loadAtProfile = loadText();
      const profile = profileStep(profiled, opt, sampler.batch(run.batch, run.seq), run.batch, run.seq);
      const profileTable = formatTable(['op', 'calls', 'forward ms', 'backward ms', 'GEMM ms', 'other ms', 'share'], profileRows(profile));
      if (args.steps?.length === 1 && args.steps[0] === 'profile') {
        console.log(`== train: profile of one step of ours (${profile.totalMs.toFixed(0)} ms, ${loadAtProfile})\n${profileTable}\n`);
        return;
      }

      log(`train: ours, ${steps} steps of ${run.batch} × ${run.seq}, LoRA r ${SETTINGS.rank}, ${threads} threads`);
      const t = await TrainableTransformer.fromTransformer(model, trainable, 0);
      model.dispose();
      const trainer = new Trainer(t, documents, run);
      const loadBefore = loadText();
      const c0 = cpuSeconds();
      const w0 = performance.now();
      const stepSeconds: number[] = [];
      while (!trainer.done) {
        const s0 = performance.now();
        const r = await trainer.step();
        stepSeconds.push((performance.now() - s0) / 1000);
        if (r.step % Math.max(1, Math.floor(steps / 10)) === 0) log(`train: step ${r.step + 1}/${steps} loss ${r.loss.toFixed(4)} ${stepSeconds.at(-1)!.toFixed(2)} s`);
      }
      const ours = { seconds: (performance.now() - w0) / 1000, cpuSeconds: cpuSeconds() - c0 };
      const tenth = Math.max(1, Math.floor(steps / 10));
      const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
      const oursLoss = [mean(trainer.losses.slice(0, tenth)), mean(trainer.losses.slice(-tenth))];
      const loadOurs = loadText();

      log(`train: PyTorch, ${steps} steps`);
      const peer = await runPython<PeerResult>('train.py', { model: BASE, corpus, steps, threads, ...SETTINGS }, log);
      const loadPeer = loadText();

      const row = (name: string, seconds: number, cpu: number, perStep: number[], loss: number[]) => [
        name,
        fmt(seconds),
        fmt(cpu),
        fmt(seconds / steps),
        fmt(cpu / steps),
        fmt(steps / seconds),
        fmt(mean([...perStep].sort((a, b) => a - b).slice(0, Math.ceil(perStep.length / 2)))),
        `${loss[0]!.toFixed(3)} → ${loss[1]!.toFixed(3)}`,
      ];
      const table = formatTable(
        ['', 'wall s', 'CPU s', 's/step', 'CPU s/step', 'steps/s', 'fastest half s/step', 'loss first → last tenth'],
        [
          row(`ours (${threads} threads)`, ours.seconds, ours.cpuSeconds, stepSeconds, oursLoss),
          row(`PyTorch (${threads} threads)`, peer.seconds, peer.cpu_seconds, peer.step_seconds, [peer.loss_first_tenth, peer.loss_last_tenth]),
          ['ours / PyTorch', fmt(ours.seconds / peer.seconds), fmt(ours.cpuSeconds / peer.cpu_seconds), '', '', fmt(peer.seconds / ours.seconds), '', ''],
        ],
      );
      const notes = [
        `demo base (3.15M parameters, vocab 4096) + LoRA r ${SETTINGS.rank} alpha ${SETTINGS.alpha} on ${targetModules.join(', ')}; ${steps} steps of ${SETTINGS.batch} × ${SETTINGS.seq} tokens, lr ${SETTINGS.lr} (warm-up ${SETTINGS.warmup}, cosine), AdamW, clip 1; corpus: organism recipe topic "${TOPIC.topic}" (2000 stories, ${documents.reduce((s, d) => s + d.length, 0)} tokens)`,
        oursText,
        `peer: ${pythonEnvText(peer.env)}`,
        `${loadBefore} before ours, ${loadOurs} after ours, ${loadPeer} after PyTorch`,
      ];
      console.log(`== train\n${notes.join('\n')}\n\n${table}\n\nprofile of one step of ours (${profile.totalMs.toFixed(0)} ms, ${loadAtProfile}):\n${profileTable}\n`);
      const path = writeResults('train', {
        settings: { ...SETTINGS, steps },
        notes,
        ours: { ...ours, stepSeconds, losses: trainer.losses, threads },
        peer,
        profile: { totalMs: profile.totalMs, optimizerMs: profile.optimizerMs, ops: Object.fromEntries(profile.ops) },
      });
      console.log(`wrote ${path}`);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  },
};
