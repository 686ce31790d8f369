// The command line as a user runs it: `neurodiff <command> … --json` in a process of its own per
// step (bin/neurodiff.mjs, as npx runs it), its wall time, its own peak RSS (ru_maxrss at exit), and
// the memory plan its JSON names.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { availableBytes } from '../lib/memory.ts';
import { ADL_CORPUS, CROSSCODER_CORPUS, type ScaleModel } from './inputs.ts';
import { ADL_SAMPLES, ADL_TOKENS, CC_SETTINGS, MIN_AVAILABLE_BYTES, type Step, type StepResult } from './steps.ts';

const HERE = dirname(fileURLToPath(import.meta.url));
const BIN = join(HERE, '..', '..', 'bin', 'neurodiff.mjs');
const PEAK = join(HERE, 'peak-on-exit.mjs');

interface Run {
  ms: number;
  peakBytes: number | null;
  json: Record<string, unknown> | null;
  code: number | null;
  stderrTail: string;
  stoppedLow: boolean;
}

function runCli(args: readonly string[], timeoutMs: number, log: (line: string) => void): Promise<Run> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, ['--import', PEAK, BIN, ...args, '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let stoppedLow = false;
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => {
      stderr = (stderr + s).slice(-20000);
    });
    const watch = setInterval(() => {
      if (availableBytes() < MIN_AVAILABLE_BYTES) {
        stoppedLow = true;
        log(`  cli: available memory below ${MIN_AVAILABLE_BYTES / 2 ** 30} GiB: stopping ${args[0]}`);
        child.kill('SIGKILL');
      }
    }, 500);
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearInterval(watch);
      clearTimeout(timer);
      const peak = /neurodiff-peak-rss-kib (\d+)/.exec(stderr);
      let json: Record<string, unknown> | null;
      try {
        json = JSON.parse(stdout) as Record<string, unknown>;
      } catch {
        json = null;
      }
      const stderrTail = stderr.replace(/\nneurodiff-peak-rss-kib \d+\n/, '').trim().split('\n').slice(-3).join(' | ');
      resolve({ ms: performance.now() - t0, peakBytes: peak ? Number(peak[1]) * 1024 : null, json, code, stderrTail, stoppedLow });
    });
  });
}

function modeOf(json: Record<string, unknown> | null): string | null {
  const m = json?.memory as { mode?: string; reason?: string } | undefined;
  return m?.reason ?? null;
}

export async function runCliSteps(model: ScaleModel, steps: readonly Step[], opts: { stepTimeoutMs: number; log(line: string): void }): Promise<StepResult[]> {
  const work = mkdtempSync(join(tmpdir(), 'neurodiff-scale-cli-'));
  const { base, ft } = model;
  const commands: Record<Step, string[][]> = {
    summary: [['inspect', base], ['inspect', ft]],
    weights: [['weights', base, ft]],
    lens: [['lens', base, ft, '--prompt', model.prompt]],
    adl: [['adl', base, ft, '--corpus', ADL_CORPUS, '--max-samples', String(ADL_SAMPLES), '--tokens-per-sample', String(ADL_TOKENS)]],
    crosscoder: [
      ['crosscoder', 'train', base, ft, '--corpus', CROSSCODER_CORPUS, '--max-samples', String(CC_SETTINGS.samples), '--tokens-per-sample', String(CC_SETTINGS.tokensPerSample),
        '--dict', String(CC_SETTINGS.dict), '--k', String(CC_SETTINGS.k), '--steps', String(CC_SETTINGS.steps), '--batch', String(CC_SETTINGS.batch), '--holdout', '0', '--no-cache', '--out', join(work, 'cc.safetensors')],
    ],
  };
  const results: StepResult[] = [];
  try {
    for (const step of steps) {
      let ms = 0;
      let peak = 0;
      let mode: string | null = null;
      let failure: string | null = null;
      let note: string | undefined;
      for (const args of commands[step]) {
        const r = await runCli(args, opts.stepTimeoutMs, opts.log);
        ms += r.ms;
        peak = Math.max(peak, r.peakBytes ?? 0);
        mode = modeOf(r.json) ?? mode;
        if (r.code !== 0 || r.json === null) {
          failure = r.stoppedLow ? 'stopped: available memory fell below 2 GiB' : r.code === null ? `killed after ${(r.ms / 1000).toFixed(0)} s (time limit, or by hand)` : `exit ${r.code}: ${r.stderrTail}`;
          break;
        }
        if (step === 'crosscoder') {
          const s = r.json.seconds as { activations?: number } | undefined;
          const rows = r.json.rows as number | undefined;
          note = `${rows ?? '?'} rows collected in ${s?.activations?.toFixed(1) ?? '?'} s`;
        }
        if (step === 'adl') note = `${String(r.json.samples)} samples × ${String(r.json.tokens_per_sample)} tokens`;
        if (step === 'lens') note = `${(r.json.tokens as unknown[]).length} prompt tokens`;
      }
      const result: StepResult = failure ? { step, ms: null, peakBytes: peak || null, mode, note: failure } : { step, ms, peakBytes: peak, mode, ...(note ? { note } : {}) };
      results.push(result);
      opts.log(`  cli ${step}: ${result.ms === null ? `FAILED: ${result.note}` : `${(ms / 1000).toFixed(1)} s`}, peak ${(peak / 2 ** 30).toFixed(2)} GiB${mode ? `, ${mode}` : ''}`);
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return results;
}
