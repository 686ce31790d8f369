// `npm run bench -- scale`: generated bf16 pairs from GPT-2 small to Qwen2.5-3B through every step a
// user takes — loaded summary, Weights, Lens, ADL, crosscoder collection — in the built app in headless
// Chromium and in the CLI: wall time, peak RSS (Chromium's processes summed; the CLI process's own)
// and the memory mode each front end chose. Results merge into bench/results/scale.json by model and
// front end, so models can be run one at a time.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parameterCount } from '../../scripts/make-random-model.ts';
import type { Bench, BenchArgs } from '../lib/args.ts';
import { availableBytes } from '../lib/memory.ts';
import { commit, loadText, RESULTS_DIR, sourceDirty, writeResults } from '../lib/results.ts';
import { fmt, formatTable } from '../lib/table.ts';
import { buildApp, removeApp, runApp } from './app.ts';
import { runCliSteps } from './cli.ts';
import { scaleModel } from './inputs.ts';
import { STEP_LABELS, STEPS, type Step, type StepResult } from './steps.ts';

const MODELS = ['gpt2-small-bf16', 'llama-500m', 'qwen2.5-1.5b', 'gemma3-1b', 'qwen2.5-3b'];
/** A pair runs only while this much memory beyond its stored size is available. */
const HEADROOM_BYTES = 6 * 2 ** 30;
const STEP_TIMEOUT_S = 30 * 60;

interface ModelRun {
  model: string;
  env: 'chromium' | 'cli';
  date: string;
  commit: string | null;
  srcDirty: boolean | null;
  parameters: number;
  pairBytes: number;
  tokenizer: string;
  loadAtStart: string;
  loadAtEnd: string;
  browser?: string;
  steps: StepResult[];
  /** Why the model was not run. */
  skipped?: string;
}

const gib = (bytes: number | null | undefined) => (bytes === null || bytes === undefined ? undefined : bytes / 2 ** 30);
function log(line: string): void {
  console.error(line);
}

function previousRuns(): ModelRun[] {
  const path = join(RESULTS_DIR, 'scale.json');
  if (!existsSync(path)) return [];
  try {
    return (JSON.parse(readFileSync(path, 'utf8')) as { runs?: ModelRun[] }).runs ?? [];
  } catch {
    return [];
  }
}

/** A new run replaces an earlier one of the same model, front end and commit when it measured every step that one did (runs of other commits stay, for before/after). */
function replaces(run: ModelRun, earlier: ModelRun): boolean {
  return run.model === earlier.model && run.env === earlier.env && run.commit === earlier.commit && earlier.steps.every((s) => run.steps.some((n) => n.step === s.step));
}

function pick<T extends string>(given: readonly string[] | undefined, all: readonly T[], flag: string): T[] {
  if (!given) return [...all];
  for (const g of given) if (!(all as readonly string[]).includes(g)) throw new Error(`${flag}: unknown "${g}" (have: ${all.join(', ')})`);
  return all.filter((a) => given.includes(a));
}

export function scaleTable(runs: readonly ModelRun[]): string {
  const rows: string[][] = [];
  for (const r of runs) {
    if (r.skipped) {
      rows.push([r.model, r.env, '-', '-', '-', '-', `not run: ${r.skipped}`]);
      continue;
    }
    for (const s of r.steps) {
      const peak = gib(s.peakBytes);
      rows.push([r.model, r.env, STEP_LABELS[s.step], s.ms === null ? 'not done' : fmt(s.ms / 1000), fmt(peak), peak === undefined ? '-' : `${fmt(s.peakBytes! / r.pairBytes)}×`, [s.mode, s.note].filter(Boolean).join('; ')]);
    }
  }
  return formatTable(['model', 'front end', 'step', 'time s', 'peak GiB', 'peak ÷ stored pair', 'memory mode; note'], rows);
}

export const scaleBench: Bench = {
  description: 'generated bf16 pairs (124M to 3B) through summary, Weights, Lens, ADL and crosscoder collection in headless Chromium and the CLI: time, peak RSS, memory mode',
  run: async (args: BenchArgs) => {
    const models = pick(args.models, MODELS, '--models');
    const steps: Step[] = pick(args.steps, STEPS, '--steps');
    const envs = args.envs;
    const stepTimeoutMs = (args.stepTimeoutS ?? STEP_TIMEOUT_S) * 1000;
    const runs: ModelRun[] = [];
    // Written after each front end's run, so a stopped bench keeps what it measured.
    let path = '';
    const save = (run: ModelRun) => {
      runs.push(run);
      path = writeResults('scale', {
        note: 'a run replaces an earlier one of the same model, front end and commit that measured no other step; each run carries its own date, commit and load',
        runs: [...previousRuns().filter((p) => !runs.some((r) => replaces(r, p))), ...runs],
      });
    };
    const appDir = envs.includes('browser') ? await buildApp() : null;
    try {
      for (const preset of models) {
        const model = await scaleModel(preset, log);
        const common = { model: preset, parameters: parameterCount(model.spec), pairBytes: model.pairBytes, tokenizer: model.tokenizer };
        log(`${preset}: ${(common.parameters / 1e6).toFixed(0)}M parameters a model, ${fmt(gib(model.pairBytes))} GiB the pair stored; prompt "${model.prompt}" (${model.promptTokens} tokens, tokenizer ${model.tokenizer})`);
        for (const env of ['chromium', 'cli'] as const) {
          if (!envs.includes(env === 'chromium' ? 'browser' : 'node')) continue;
          const loadAtStart = loadText();
          const base = { ...common, env, date: new Date().toISOString(), commit: commit() ?? null, srcDirty: sourceDirty() ?? null, loadAtStart };
          const available = availableBytes();
          if (available < model.pairBytes + HEADROOM_BYTES) {
            const skipped = `${fmt(gib(available))} GiB available, under the stored pair + ${gib(HEADROOM_BYTES)} GiB (${fmt(gib(model.pairBytes + HEADROOM_BYTES))} GiB)`;
            log(`  ${env}: ${skipped}`);
            save({ ...base, loadAtEnd: loadText(), steps: [], skipped });
            continue;
          }
          if (env === 'chromium') {
            const r = await runApp(model, steps, { appDir: appDir!, stepTimeoutMs, log });
            save({ ...base, loadAtEnd: loadText(), browser: r.browser, steps: r.results });
          } else {
            const results = await runCliSteps(model, steps, { stepTimeoutMs, log });
            save({ ...base, loadAtEnd: loadText(), steps: results });
          }
        }
      }
    } finally {
      if (appDir) removeApp(appDir);
    }
    console.log(`== scale (this run)\n${scaleTable(runs)}\n\n${runs.map((r) => `${r.model} ${r.env} (commit ${r.commit ?? '?'}${r.srcDirty ? ', src modified' : ''}): ${r.loadAtStart} at start, ${r.loadAtEnd} at end${r.browser ? `; Chromium ${r.browser}` : ''}`).join('\n')}\n`);
    console.log(`wrote ${path}`);
  },
};
