// `neurodiff crosscoder train|latents`: a BatchTopK crosscoder on the paired activations of a base
// model and its fine-tune over a corpus, and the analysis of its latents.
import { tokenDisplay, visibleText } from '../io/token-text.ts';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { HOOK_KINDS, shuffledBatches, type HookKind, type PairedActivations } from '../analysis/crosscoder/collect.ts';
import { createCpuEngine } from '../analysis/crosscoder/cpu-engine.ts';
import type { CrosscoderEngine } from '../analysis/crosscoder/engine.ts';
import { loadCrosscoder, saveCrosscoder } from '../analysis/crosscoder/file.ts';
import { createInference } from '../analysis/crosscoder/inference.ts';
import { classifyRatio, createLatentStats, SPECIFIC_NU, decoderVector, logitEffects, normRatios, type LatentClass, type LatentInfo } from '../analysis/crosscoder/latents.ts';
import type { CrosscoderModel } from '../analysis/crosscoder/model.ts';
import { createRng } from '../analysis/crosscoder/rng.ts';
import { createTrainer, train, type StepStats } from '../analysis/crosscoder/trainer.ts';
import { createCpuBackend } from '../gpu/cpu-backend.ts';
import { pathSource } from '../io/node-source.ts';
import { FormatError } from '../io/source.ts';
import type { Tokenizer } from '../io/tokenizer.ts';
import type { Backend } from '../model/backend.ts';
import type { Command } from './commands.ts';
import { str, type Values } from './models.ts';
import { defaultCacheDir, openPair, prepareActivations, type OpenedPair, type PreparedActivations } from './crosscoder-pair.ts';
import { UsageError } from './errors.ts';


const USAGE = [
  'train <base> <ft> --corpus f --dict D --k k --steps n --out file.safetensors [--layer i] [--hook resid_post] [--seed s] [--backend cpu|webgpu]',
  '        [--batch tokens] [--lr x] [--k-max k --anneal-steps n] [--aux-alpha a] [--dead-tokens n] [--init-norm x] [--warmup n] [--decay-start n]',
  '        [--tokens-per-sample n] [--max-samples n] [--skip-positions n] [--holdout fraction] [--eval-tokens n] [--cache dir | --no-cache] [--tokenizer f]',
  '  latents <file.safetensors> <base> <ft> --corpus f [--top 10] [--sort ft|ft-nu|base|frequency] [--min-count 10] [--ids 1,2] [--examples 5] [--logits 10]',
].join('\n');

const SUBCOMMANDS = ['train', 'latents'] as const;

/** The options a sparse dictionary's train and latents share: the crosscoder's, and diff-sae's (all of its own). */
export const DICTIONARY_OPTIONS = {
  corpus: { type: 'string' },
  layer: { type: 'string' },
  hook: { type: 'string' },
  dict: { type: 'string' },
  k: { type: 'string' },
  steps: { type: 'string' },
  out: { type: 'string' },
  seed: { type: 'string' },
  backend: { type: 'string' },
  batch: { type: 'string' },
  lr: { type: 'string' },
  'k-max': { type: 'string' },
  'anneal-steps': { type: 'string' },
  'aux-alpha': { type: 'string' },
  'dead-tokens': { type: 'string' },
  warmup: { type: 'string' },
  'tokens-per-sample': { type: 'string' },
  'max-samples': { type: 'string' },
  'skip-positions': { type: 'string' },
  cache: { type: 'string' },
  tokenizer: { type: 'string' },
  'no-cache': { type: 'boolean' },
  top: { type: 'string' },
  sort: { type: 'string' },
  examples: { type: 'string' },
  logits: { type: 'string' },
} satisfies Command['options'];

export const crosscoder: Command = {
  summary: 'train a crosscoder on both models\' activations (train), or describe its latents (latents)',
  usage: USAGE,
  options: {
    ...DICTIONARY_OPTIONS,
    'init-norm': { type: 'string' },
    'decay-start': { type: 'string' },
    holdout: { type: 'string' },
    'eval-tokens': { type: 'string' },
    ids: { type: 'string' },
    'min-count': { type: 'string' },
  },
  async run(positionals, values) {
    const [sub, ...rest] = positionals;
    if (sub === 'train') return runTrain(rest, values);
    if (sub === 'latents') return runLatents(rest, values);
    throw new UsageError(`crosscoder needs a subcommand: ${SUBCOMMANDS.join(' or ')}${sub ? ` (got "${sub}")` : ''}\nusage: neurodiff crosscoder ${USAGE}`);
  },
  format(result) {
    const r = result as { kind?: string };
    return r.kind === 'train' ? formatTrain(result as TrainSummary) : formatLatents(result as LatentsResult);
  },
};

// ---------------------------------------------------------------- options

function required(values: Values, name: string, sub: string): string {
  const v = str(values, name);
  if (v === undefined) throw new UsageError(`crosscoder ${sub} needs --${name}\nusage: neurodiff crosscoder ${USAGE}`);
  return v;
}

function num(values: Values, name: string, opts: { integer?: boolean; min?: number; max?: number } = {}): number | undefined {
  const raw = str(values, name);
  if (raw === undefined) return undefined;
  const v = Number(raw);
  const integer = opts.integer ?? true;
  if (raw.trim() === '' || !Number.isFinite(v) || (integer && !Number.isInteger(v)) || (opts.min !== undefined && v < opts.min) || (opts.max !== undefined && v > opts.max)) {
    const range = [opts.min !== undefined ? `≥ ${opts.min}` : '', opts.max !== undefined ? `≤ ${opts.max}` : ''].filter(Boolean).join(' and ');
    throw new UsageError(`--${name} must be ${integer ? 'an integer' : 'a number'}${range ? ` ${range}` : ''}, got "${raw}"`);
  }
  return v;
}

function hookOption(values: Values): HookKind | undefined {
  const h = str(values, 'hook');
  if (h === undefined) return undefined;
  if (!(HOOK_KINDS as readonly string[]).includes(h)) throw new UsageError(`--hook must be one of ${HOOK_KINDS.join(', ')}, got "${h}"`);
  return h as HookKind;
}

function cacheDir(values: Values): string | null {
  if (values['no-cache'] === true) return null;
  return str(values, 'cache') ?? defaultCacheDir();
}

function positionalCount(args: string[], n: number, sub: string, names: string): void {
  if (args.length !== n) throw new UsageError(`crosscoder ${sub} takes ${names} (got ${args.length} argument${args.length === 1 ? '' : 's'})\nusage: neurodiff crosscoder ${USAGE}`);
}

const log = (line: string) => process.stderr.write(line + '\n');

/** A status line on stderr: rewritten in place on a terminal, a line every few seconds otherwise. */
function progressLine(): { update(text: string): void; done(): void } {
  const tty = process.stderr.isTTY === true;
  let last = 0;
  let shown = false;
  return {
    update(text) {
      const now = performance.now();
      if (now - last < (tty ? 200 : 5000)) return;
      last = now;
      if (tty) process.stderr.write(`\r${text.padEnd(100)}`);
      else process.stderr.write(text + '\n');
      shown = true;
    },
    done() {
      if (tty && shown) process.stderr.write('\n');
    },
  };
}

/** Ctrl-C stops the run cleanly once (a training run is then saved as far as it got); a second one exits. */
function interruptSignal(): { signal: AbortSignal; release(): void } {
  const ac = new AbortController();
  const onInt = () => {
    if (ac.signal.aborted) process.exit(130);
    log('interrupted: finishing the current step (Ctrl-C again to quit at once)');
    ac.abort(new Error('interrupted'));
  };
  process.on('SIGINT', onInt);
  return { signal: ac.signal, release: () => process.off('SIGINT', onInt) };
}

async function activations(sub: string, pair: OpenedPair, be: Backend, values: Values, defaults: { layer?: number; hook?: HookKind; tokensPerSample?: number; skipPositions?: number; maxSamples?: number }, signal: AbortSignal): Promise<PreparedActivations> {
  const layer = num(values, 'layer', { min: 0 }) ?? defaults.layer;
  if (layer !== undefined && layer >= pair.nLayers) throw new UsageError(`--layer ${layer} is outside 0..${pair.nLayers - 1}`);
  const hook = hookOption(values) ?? defaults.hook;
  const skipPositions = num(values, 'skip-positions', { min: 0 }) ?? defaults.skipPositions;
  const maxSamples = num(values, 'max-samples', { min: 1 }) ?? defaults.maxSamples;
  const bar = progressLine();
  try {
    return await prepareActivations(pair, be, {
      corpusPath: required(values, 'corpus', sub),
      tokensPerSample: num(values, 'tokens-per-sample', { min: 2 }) ?? defaults.tokensPerSample ?? 128,
      cacheDir: cacheDir(values),
      signal,
      log,
      onProgress: (done, total) => bar.update(`activations: ${done}/${total} tokens`),
      ...(layer !== undefined ? { layer } : {}),
      ...(hook !== undefined ? { hook } : {}),
      ...(skipPositions !== undefined ? { skipPositions } : {}),
      ...(maxSamples !== undefined ? { maxSamples } : {}),
    });
  } finally {
    bar.done();
  }
}

// ---------------------------------------------------------------- train

interface EvalResult {
  readonly tokens: number;
  /** Σ‖x − x̂‖² / Σ‖x − mean x‖² over tokens and both models, normalised activations. */
  readonly fvu: number;
  /** Mean over tokens and models of ‖x − x̂‖ / ‖x‖ for the normalised (centred) activations. */
  readonly relative_error: number;
  /** The same for the raw activations (not centred). */
  readonly relative_error_raw: number;
  /** FVU of each model alone. */
  readonly fvu_base: number;
  readonly fvu_ft: number;
  /** Mean latents active per token. */
  readonly l0: number;
  readonly mode: 'threshold' | 'topk';
  /** Per latent, 1 when it fired on some evaluation token. */
  readonly fired: Uint8Array;
}

export interface TrainSummary {
  readonly kind: 'train';
  readonly out: string;
  readonly base: string;
  readonly ft: string;
  readonly layer: number;
  readonly hook: string;
  readonly d: number;
  readonly D: number;
  readonly k: number;
  readonly backend: string;
  readonly steps: number;
  readonly reason: string;
  readonly samples: number;
  readonly rows: number;
  readonly train_rows: number;
  readonly batch: number;
  readonly activations: { readonly cached: boolean; readonly file: string | null; readonly seconds: number };
  readonly seconds: { readonly activations: number; readonly train: number; readonly eval: number; readonly total: number };
  readonly final: { readonly loss: number; readonly l2: number; readonly mse: number; readonly fvu: number; readonly auxk: number; readonly dead: number; readonly threshold: number } | null;
  readonly curve: ReadonlyArray<{ step: number; loss: number; fvu: number; dead: number; k: number }>;
  readonly eval: Omit<EvalResult, 'fired'> & { readonly on: 'held-out samples' | 'training samples'; readonly dead: number };
  readonly ratios: { readonly edges: number[]; readonly counts: number[]; readonly classes: Record<LatentClass, number>; readonly min: number; readonly lowest: ReadonlyArray<{ id: number; ratio: number }> };
}

async function webgpuEngine(d: number, D: number): Promise<CrosscoderEngine> {
  const dawn = await import('../gpu/dawn-node.ts');
  if (!dawn.useDawn()) throw new UsageError('--backend webgpu: Dawn (the `webgpu` package) could not start here; use --backend cpu');
  const { createWebGpuEngine } = await import('../analysis/crosscoder/webgpu-engine.ts');
  return createWebGpuEngine(d, D);
}

/** Samples [0, n) split by a seeded draw: `fraction` of them held out, at least one kept for training. */
function splitSamples(acts: PairedActivations, fraction: number, seed: number): { train: Int32Array; held: Int32Array } {
  if (fraction <= 0) return { train: Int32Array.from({ length: acts.rows }, (_, i) => i), held: new Int32Array(0) };
  const rng = createRng(seed ^ 0x5eed);
  const heldSample = new Uint8Array(acts.samples);
  for (let s = 0; s < acts.samples; s++) heldSample[s] = rng.next() < fraction ? 1 : 0;
  const train: number[] = [];
  const held: number[] = [];
  for (let r = 0; r < acts.rows; r++) (heldSample[acts.sample[r]!] ? held : train).push(r);
  return { train: Int32Array.from(train), held: Int32Array.from(held) };
}

async function evaluate(model: CrosscoderModel, acts: PairedActivations, rows: Int32Array): Promise<EvalResult> {
  const { d, D } = model.params;
  const inference = createInference(model);
  const mode = model.activation === 'batchtopk' && model.threshold < 0 ? 'topk' : 'threshold';
  const fired = new Uint8Array(D);
  const err2 = [0, 0];
  const sumX = [new Float64Array(d), new Float64Array(d)];
  const sumX2 = [0, 0];
  let rel = 0;
  let relRaw = 0;
  let kept = 0;
  const chunk = 1024;
  for (let start = 0; start < rows.length; start += chunk) {
    const n = Math.min(chunk, rows.length - start);
    const base = new Float32Array(n * d);
    const ft = new Float32Array(n * d);
    for (let t = 0; t < n; t++) {
      const r = rows[start + t]!;
      base.set(acts.base.subarray(r * d, (r + 1) * d), t * d);
      ft.set(acts.ft.subarray(r * d, (r + 1) * d), t * d);
    }
    const out = await inference.run(base, ft, n, mode);
    kept += out.code.rowPtr[n]!;
    for (let q = 0; q < out.code.rowPtr[n]!; q++) fired[out.code.index[q]!] = 1;
    const raw = [base, ft];
    for (const m of [0, 1] as const) {
      const x = out.x[m];
      const xh = out.recon[m];
      const scale = model.normalization.scale[m];
      for (let t = 0; t < n; t++) {
        let e = 0;
        let xx = 0;
        let rr = 0;
        for (let i = 0; i < d; i++) {
          const v = x[t * d + i]!;
          const diff = v - xh[t * d + i]!;
          e += diff * diff;
          xx += v * v;
          rr += raw[m]![t * d + i]! ** 2;
          sumX[m]![i]! += v;
        }
        err2[m]! += e;
        sumX2[m]! += xx;
        rel += xx > 0 ? Math.sqrt(e / xx) : 0;
        relRaw += rr > 0 ? Math.sqrt(e) / scale / Math.sqrt(rr) : 0;
      }
    }
  }
  const n = rows.length;
  const variance = (m: 0 | 1) => {
    let mm = 0;
    for (let i = 0; i < d; i++) mm += (sumX[m]![i]! / n) ** 2;
    return sumX2[m]! - n * mm;
  };
  const vb = variance(0);
  const vf = variance(1);
  return {
    tokens: n,
    fvu: (err2[0]! + err2[1]!) / (vb + vf),
    fvu_base: err2[0]! / vb,
    fvu_ft: err2[1]! / vf,
    relative_error: rel / (2 * n),
    relative_error_raw: relRaw / (2 * n),
    l0: kept / n,
    mode,
    fired,
  };
}

function ratioSummary(model: CrosscoderModel, alive: Uint8Array): TrainSummary['ratios'] {
  const r = normRatios(model.params);
  const bins = 20;
  const counts = new Array<number>(bins).fill(0);
  const classes: Record<LatentClass, number> = { 'ft-only': 0, 'base-only': 0, shared: 0, other: 0 };
  const live: Array<{ id: number; ratio: number }> = [];
  for (let j = 0; j < r.length; j++) {
    if (!alive[j] || !Number.isFinite(r[j]!)) continue;
    counts[Math.min(bins - 1, Math.floor(r[j]! * bins))]!++;
    classes[classifyRatio(r[j]!)]++;
    live.push({ id: j, ratio: r[j]! });
  }
  live.sort((a, b) => a.ratio - b.ratio);
  return {
    edges: Array.from({ length: bins + 1 }, (_, i) => i / bins),
    counts,
    classes,
    min: live[0]?.ratio ?? NaN,
    lowest: live.slice(0, 10),
  };
}

async function runTrain(args: string[], values: Values): Promise<TrainSummary> {
  positionalCount(args, 2, 'train', '<base> <ft>');
  const [basePath, ftPath] = args as [string, string];
  const out = required(values, 'out', 'train');
  const steps = num(values, 'steps', { min: 1 }) ?? 1000;
  const seed = num(values, 'seed', { min: 0 }) ?? 0;
  const backendName = str(values, 'backend') ?? 'cpu';
  if (backendName !== 'cpu' && backendName !== 'webgpu') throw new UsageError(`--backend must be cpu or webgpu, got "${backendName}"`);
  const batch = num(values, 'batch', { min: 1 }) ?? 512;
  const holdout = num(values, 'holdout', { integer: false, min: 0, max: 0.9 }) ?? 0.1;
  const evalTokens = num(values, 'eval-tokens', { min: 1 }) ?? 8192;

  const dict = num(values, 'dict', { min: 1 });
  const k = num(values, 'k', { min: 1 }) ?? 100;
  if (dict !== undefined && k > dict) throw new UsageError(`--k ${k} is larger than the dictionary (--dict ${dict})`);
  const kMax = num(values, 'k-max', { min: k }) ?? k;
  const kAnnealSteps = num(values, 'anneal-steps', { min: 0 }) ?? 0;
  const lr = num(values, 'lr', { integer: false, min: 0 }) ?? 1e-4;
  const auxAlpha = num(values, 'aux-alpha', { integer: false, min: 0 }) ?? 1 / 32;
  const deadTokens = num(values, 'dead-tokens', { min: 1 }) ?? 10_000_000;
  const initNorm = num(values, 'init-norm', { integer: false, min: 1e-6 }) ?? 1;
  const warmup = num(values, 'warmup', { min: 0 }) ?? Math.min(1000, Math.floor(steps / 10));
  const decayStart = num(values, 'decay-start', { min: 0 });
  if (decayStart !== undefined && decayStart >= steps) throw new UsageError(`--decay-start ${decayStart} must be below --steps ${steps}`);
  const corpus = required(values, 'corpus', 'train');
  hookOption(values);

  const t0 = performance.now();
  const interrupt = interruptSignal();
  try {
    const be = createCpuBackend();
    const pair = await openPair(basePath, ftPath, be, values, interrupt.signal);
    const prepared = await activations('train', pair, be, values, {}, interrupt.signal);
    const acts = prepared.acts;
    const d = acts.d;
    const D = dict ?? 32 * d;
    if (k > D) throw new UsageError(`--k ${k} is larger than the dictionary (${D} latents)`);
    const engine = backendName === 'webgpu' ? await webgpuEngine(d, D) : createCpuEngine({ d, D });
    const split = splitSamples(acts, holdout, seed);
    if (split.train.length < batch) throw new UsageError(`a batch of ${batch} tokens needs that many training rows; the corpus gives ${split.train.length} (lower --batch or --holdout, or raise --tokens-per-sample)`);
    const trainer = createTrainer({
      d,
      D,
      k,
      kMax,
      kAnnealSteps,
      lr,
      auxAlpha,
      deadTokens,
      initNorm,
      warmupSteps: warmup,
      thresholdStartStep: Math.min(1000, Math.floor(steps / 2)),
      seed,
      normalization: acts.normalization,
      engine,
      ...(decayStart !== undefined ? { decayStart, totalSteps: steps } : {}),
    });
    log(`train: ${split.train.length} rows (${acts.rows - split.train.length} held out), d=${d}, D=${D}, k=${k}${kMax > k ? ` (from ${kMax})` : ''}, ${steps} steps of ${batch} tokens on ${backendName}`);
    const curve: Array<{ step: number; loss: number; fvu: number; dead: number; k: number }> = [];
    const every = Math.max(1, Math.floor(steps / 20));
    const bar = progressLine();
    const tTrain = performance.now();
    const run = await train(trainer, shuffledBatches(acts, batch, seed, split.train), {
      steps,
      signal: interrupt.signal,
      onStep: (s: StepStats) => {
        if (s.step % every === 0 || s.step === steps - 1) curve.push({ step: s.step, loss: s.loss, fvu: s.fvu, dead: s.dead, k: s.k });
        bar.update(`train: step ${s.step + 1}/${steps}  loss ${s.loss.toFixed(4)}  fvu ${s.fvu.toFixed(4)}  dead ${s.dead}  k ${s.k}  ${s.stepMs.toFixed(0)} ms/step`);
      },
    });
    bar.done();
    const trainSeconds = (performance.now() - tTrain) / 1000;
    const trained = await trainer.model();
    const model: CrosscoderModel = {
      ...trained,
      info: {
        ...trained.info,
        layer: String(acts.layer),
        hook: acts.hook,
        hook_kind: acts.hook.replace(/^blocks\.\d+\.hook_/, ''),
        base_model: basePath,
        ft_model: ftPath,
        corpus,
        tokens_per_sample: String(num(values, 'tokens-per-sample', { min: 2 }) ?? 128),
        skip_positions: acts.info.skip_positions ?? '1',
        ...(str(values, 'max-samples') !== undefined ? { max_samples: str(values, 'max-samples')! } : {}),
        batch: String(batch),
        seed: String(seed),
      },
    };
    await writeFile(out, saveCrosscoder(model));
    log(`train: ${run.steps} steps (${run.reason}) in ${trainSeconds.toFixed(1)} s; saved ${out}`);

    const tEval = performance.now();
    const heldOut = split.held.length > 0;
    const pool = heldOut ? split.held : split.train;
    const evalRows = pool.length <= evalTokens ? pool : Int32Array.from({ length: evalTokens }, (_, i) => pool[Math.floor((i * pool.length) / evalTokens)]!);
    const ev = await evaluate(model, acts, evalRows);
    const { fired, ...evalNumbers } = ev;
    let dead = 0;
    for (let j = 0; j < D; j++) dead += fired[j] ? 0 : 1;
    const last = run.last;
    return {
      kind: 'train',
      out,
      base: basePath,
      ft: ftPath,
      layer: acts.layer,
      hook: acts.hook,
      d,
      D,
      k,
      backend: backendName,
      steps: run.steps,
      reason: run.reason,
      samples: acts.samples,
      rows: acts.rows,
      train_rows: split.train.length,
      batch,
      activations: { cached: prepared.cached, file: prepared.cacheFile, seconds: prepared.seconds },
      seconds: { activations: prepared.seconds, train: trainSeconds, eval: (performance.now() - tEval) / 1000, total: (performance.now() - t0) / 1000 },
      final: last ? { loss: last.loss, l2: last.l2, mse: last.mse, fvu: last.fvu, auxk: last.auxk, dead: last.dead, threshold: last.threshold } : null,
      curve,
      eval: { ...evalNumbers, on: heldOut ? 'held-out samples' : 'training samples', dead },
      ratios: ratioSummary(model, fired),
    };
  } finally {
    interrupt.release();
  }
}

function formatTrain(s: TrainSummary): string {
  const f = (x: number, p = 4) => (Number.isFinite(x) ? x.toFixed(p) : String(x));
  const lines = [
    `crosscoder ${s.out}: ${s.hook}, d=${s.d}, D=${s.D}, k=${s.k}; ${s.steps} steps (${s.reason}) of ${s.batch} tokens on ${s.backend}`,
    `activations: ${s.rows} rows from ${s.samples} samples${s.activations.cached ? ' (cached)' : ''}; ${f(s.seconds.activations, 1)} s`,
    `training: ${f(s.seconds.train, 1)} s${s.final ? `; last batch loss ${f(s.final.loss)}, FVU ${f(s.final.fvu)}, dead ${s.final.dead}, threshold ${f(s.final.threshold)}` : ''}`,
    `evaluation on ${s.eval.tokens} tokens (${s.eval.on}, ${s.eval.mode}): FVU ${f(s.eval.fvu)} (base ${f(s.eval.fvu_base)}, ft ${f(s.eval.fvu_ft)}), ‖x−x̂‖/‖x‖ ${f(s.eval.relative_error)} (raw ${f(s.eval.relative_error_raw)}), L0 ${f(s.eval.l0, 1)}, never fired ${s.eval.dead}`,
    `decoder-norm ratios of live latents: ft-only ${s.ratios.classes['ft-only']}, shared ${s.ratios.classes.shared}, base-only ${s.ratios.classes['base-only']}, other ${s.ratios.classes.other}; lowest ${f(s.ratios.min, 3)}`,
    'histogram (r from 0 to 1 in steps of 0.05): ' + s.ratios.counts.join(' '),
  ];
  return lines.join('\n') + '\n';
}

// ---------------------------------------------------------------- latents

interface TopTokenOut {
  readonly token: string;
  readonly id: number;
  readonly activation: number;
  readonly sample: number;
  readonly position: number;
  /** The text before the token, the token in [[ ]], and a few tokens after. */
  readonly context: string;
}

interface LatentOut {
  readonly id: number;
  readonly ratio: number;
  readonly class: LatentClass;
  readonly nu_error: number;
  readonly nu_recon: number;
  readonly ft_specific: boolean;
  readonly frequency: number;
  readonly max_activation: number;
  readonly top_tokens: readonly TopTokenOut[];
  /** Which decoder vector went through the fine-tuned model's final norm and unembedding: the larger one. */
  readonly logit_direction: 'ft' | 'base';
  readonly logit_effects: { readonly positive: ReadonlyArray<{ id: number; token: string; value: number }>; readonly negative: ReadonlyArray<{ id: number; token: string; value: number }> };
}

export interface LatentsResult {
  readonly kind: 'latents';
  readonly file: string;
  readonly layer: number;
  readonly hook: string;
  readonly tokens: number;
  readonly live: number;
  readonly classes: Record<LatentClass, number>;
  /** Live latents with r < 0.1, ν^ε < 0.3 and ν^r < 0.3 (ALGORITHMS.md's truly ft-specific). */
  readonly ft_specific: number;
  /** Latents active on ≥ --min-count tokens with r < 0.5, |ν^ε| < 0.3 and |ν^r| < 0.3: fine-tune-specific by Latent Scaling alone. */
  readonly ft_specific_by_nu: number;
  readonly latents: readonly LatentOut[];
}

function intInfo(model: CrosscoderModel, key: string): number | undefined {
  const v = model.info[key];
  if (v === undefined) return undefined;
  const n = Number(v);
  return Number.isInteger(n) && n >= 0 ? n : undefined;
}

async function runLatents(args: string[], values: Values): Promise<LatentsResult> {
  positionalCount(args, 3, 'latents', '<file.safetensors> <base> <ft>');
  const [file, basePath, ftPath] = args as [string, string, string];
  const top = num(values, 'top', { min: 1 }) ?? 10;
  const examples = num(values, 'examples', { min: 0 }) ?? 5;
  const logitsTop = num(values, 'logits', { min: 0 }) ?? 10;
  const sort = str(values, 'sort') ?? 'ft';
  if (!['ft', 'ft-nu', 'base', 'frequency'].includes(sort)) throw new UsageError(`--sort must be ft, ft-nu, base or frequency, got "${sort}"`);
  const minCount = num(values, 'min-count', { min: 0 }) ?? 10;
  const idsRaw = str(values, 'ids');
  if (!existsSync(file)) throw new FormatError(file, 'no such crosscoder file');
  const interrupt = interruptSignal();
  try {
    const model = await loadCrosscoder(await pathSource(file));
    const { d, D } = model.params;
    const ids = idsRaw?.split(',').map((s) => {
      const j = Number(s);
      if (!Number.isInteger(j) || j < 0 || j >= D) throw new UsageError(`--ids: "${s}" is not a latent of this crosscoder (0..${D - 1})`);
      return j;
    });
    const be = createCpuBackend();
    const pair = await openPair(basePath, ftPath, be, values, interrupt.signal);
    const hookKind = model.info.hook_kind;
    const layer = intInfo(model, 'layer');
    const tokensPerSample = intInfo(model, 'tokens_per_sample');
    const skipPositions = intInfo(model, 'skip_positions');
    const maxSamples = intInfo(model, 'max_samples');
    const prepared = await activations(
      'latents',
      pair,
      be,
      values,
      {
        ...(layer !== undefined ? { layer } : {}),
        ...(hookKind && (HOOK_KINDS as readonly string[]).includes(hookKind) ? { hook: hookKind as HookKind } : {}),
        ...(tokensPerSample !== undefined ? { tokensPerSample } : {}),
        ...(skipPositions !== undefined ? { skipPositions } : {}),
        ...(maxSamples !== undefined ? { maxSamples } : {}),
      },
      interrupt.signal,
    );
    const acts = prepared.acts;
    if (acts.d !== d) throw new FormatError(file, `the crosscoder is for width ${d}, the models' ${acts.hook} has width ${acts.d}`);
    if (model.info.layer !== undefined && model.info.layer !== String(acts.layer)) log(`note: the crosscoder was trained on layer ${model.info.layer}, the activations are from layer ${acts.layer}`);

    const stats = createLatentStats(model.params, { topExamples: examples });
    const inference = createInference(model);
    const chunk = 1024;
    const bar = progressLine();
    for (let start = 0; start < acts.rows; start += chunk) {
      interrupt.signal.throwIfAborted();
      const n = Math.min(chunk, acts.rows - start);
      const out = await inference.run(acts.base.subarray(start * d, (start + n) * d), acts.ft.subarray(start * d, (start + n) * d), n);
      stats.add(out, { sample: acts.sample.subarray(start, start + n), position: acts.position.subarray(start, start + n) });
      bar.update(`latents: ${start + n}/${acts.rows} tokens`);
    }
    bar.done();
    const report = stats.result();

    const live = report.latents.filter((l) => l.frequency > 0);
    const classes: Record<LatentClass, number> = { 'ft-only': 0, 'base-only': 0, shared: 0, other: 0 };
    for (const l of live) classes[l.class]++;
    let chosen: LatentInfo[];
    if (ids) chosen = ids.map((j) => report.latents[j]!);
    else {
      // ft-nu: the fine-tune-leaning half (r < 0.5) by Latent Scaling, max(|ν^ε|, |ν^r|) ascending,
      // over latents active on enough tokens for β to mean something.
      const order = sort === 'ft-nu' ? live.filter((l) => l.ratio < 0.5 && l.frequency * report.tokens >= minCount) : live.slice();
      const nu = (l: LatentInfo) => {
        const v = Math.max(Math.abs(l.ft.nuError), Math.abs(l.ft.nuRecon));
        return Number.isNaN(v) ? Infinity : v;
      };
      if (sort === 'ft') order.sort((a, b) => a.ratio - b.ratio);
      else if (sort === 'ft-nu') order.sort((a, b) => nu(a) - nu(b) || a.ratio - b.ratio);
      else if (sort === 'base') order.sort((a, b) => b.ratio - a.ratio);
      else order.sort((a, b) => b.frequency - a.frequency);
      chosen = order.slice(0, top);
    }

    const unembed = await unembedding(pair, acts, interrupt.signal);
    const latents = chosen.map((l) => describeLatent(l, model, prepared.samples, pair.tokenizer, unembed, logitsTop));
    return {
      kind: 'latents',
      file,
      layer: acts.layer,
      hook: acts.hook,
      tokens: report.tokens,
      live: live.length,
      classes,
      ft_specific: live.filter((l) => l.ftSpecific).length,
      ft_specific_by_nu: live.filter((l) => l.ratio < 0.5 && l.frequency * report.tokens >= minCount && Math.abs(l.ft.nuError) < SPECIFIC_NU && Math.abs(l.ft.nuRecon) < SPECIFIC_NU).length,
      latents,
    };
  } finally {
    interrupt.release();
  }
}

interface Unembedding {
  readonly W: Float32Array;
  readonly V: number;
  /** Final-norm gain divided by the fine-tune's normalisation scale: maps a normalised-space direction to logits. */
  readonly gain: Float32Array;
}

async function unembedding(pair: OpenedPair, acts: PairedActivations, signal: AbortSignal): Promise<Unembedding> {
  const ft = await pair.ft.load(signal);
  try {
    const be = ft.backend;
    const W = (await be.read(ft.unembed)) as Float32Array;
    const w = (await be.read(ft.weight('ln_final.w'))) as Float32Array;
    const addOne = ft.config.norm.kind === 'rms' && ft.config.norm.addOne;
    const s = acts.normalization.scale[1];
    const gain = Float32Array.from(w, (x) => (addOne ? 1 + x : x) / s);
    return { W, V: W.length / w.length, gain };
  } finally {
    ft.dispose();
  }
}

function describeLatent(l: LatentInfo, model: CrosscoderModel, samples: number[][], tok: Tokenizer, u: Unembedding, logitsTop: number): LatentOut {
  const tokenText = (id: number) => {
    try {
      return tok.decodeToken(id);
    } catch {
      return `<${id}>`;
    }
  };
  const top_tokens: TopTokenOut[] = [];
  for (const ex of l.top) {
    let best = ex.tokens[0];
    for (const t of ex.tokens) if (best && t.activation > best.activation) best = t;
    const ids = samples[ex.sample];
    if (!best || !ids) continue;
    const id = ids[best.position]!;
    const before = tok.decode(ids.slice(Math.max(0, best.position - 12), best.position));
    const after = tok.decode(ids.slice(best.position + 1, best.position + 4));
    top_tokens.push({ token: tokenText(id), id, activation: best.activation, sample: ex.sample, position: best.position, context: `${before}[[${tokenText(id)}]]${after}` });
  }
  const direction: 'ft' | 'base' = l.ratio <= 0.5 ? 'ft' : 'base';
  const vec = decoderVector(model.params, direction === 'ft' ? 1 : 0, l.id);
  const eff = logitEffects(u.W, u.V, vec, logitsTop, u.gain);
  const named = (list: ReadonlyArray<{ id: number; value: number }>) => list.map((e) => ({ id: e.id, token: tokenText(e.id), value: e.value }));
  return {
    id: l.id,
    ratio: l.ratio,
    class: l.class,
    nu_error: l.ft.nuError,
    nu_recon: l.ft.nuRecon,
    ft_specific: l.ftSpecific,
    frequency: l.frequency,
    max_activation: l.maxActivation,
    top_tokens,
    logit_direction: direction,
    logit_effects: { positive: named(eff.positive), negative: named(eff.negative) },
  };
}

function formatLatents(r: LatentsResult): string {
  const f = (x: number, p = 3) => (Number.isFinite(x) ? x.toFixed(p) : String(x));
  const lines = [
    `${r.file}: ${r.hook}, ${r.tokens} tokens; live latents ${r.live} (ft-only ${r.classes['ft-only']}, shared ${r.classes.shared}, base-only ${r.classes['base-only']}, other ${r.classes.other}); ft-specific (r < 0.1, ν < 0.3) ${r.ft_specific}; ν < 0.3 with r < 0.5 ${r.ft_specific_by_nu}`,
  ];
  for (const l of r.latents) {
    lines.push('', `latent ${l.id}: r=${f(l.ratio)} (${l.class}) ν^ε=${f(l.nu_error)} ν^r=${f(l.nu_recon)} frequency ${f(l.frequency, 5)}${l.ft_specific ? ' ft-specific' : ''}`);
    for (const t of l.top_tokens) lines.push(`  ${f(t.activation, 2).padStart(7)}  ${visibleText(t.context.replace(/\s+/g, ' '))}`);
    lines.push(`  logits (${l.logit_direction} decoder) +: ${l.logit_effects.positive.map((e) => tokenDisplay(e.token)).join('  ')}`);
    lines.push(`  logits (${l.logit_direction} decoder) −: ${l.logit_effects.negative.map((e) => tokenDisplay(e.token)).join('  ')}`);
  }
  return lines.join('\n') + '\n';
}
