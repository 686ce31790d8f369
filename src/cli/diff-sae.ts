// `neurodiff diff-sae train|latents`: a BatchTopK sparse autoencoder on δ = h_ft − h_base (the crosscoder
// engine with δ as its one input), saved as a crosscoder file, and its latents read like crosscoder
// latents: frequency, top contexts, and the fine-tune's logit lens of each decoder direction.
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { lensTop } from '../analysis/activations/lens.ts';
import { HOOK_KINDS, type HookKind } from '../analysis/crosscoder/collect.ts';
import { createCpuEngine } from '../analysis/crosscoder/cpu-engine.ts';
import type { CrosscoderEngine } from '../analysis/crosscoder/engine.ts';
import { loadCrosscoder, saveCrosscoder } from '../analysis/crosscoder/file.ts';
import type { CrosscoderModel } from '../analysis/crosscoder/model.ts';
import { createDiffSaeTrainer, diffSaeLatentStats, differenceActivations, differenceNormalization, latentDirection, trainDiffSae } from '../analysis/diff-sae/diff-sae.ts';
import { createCpuBackend } from '../gpu/cpu-backend.ts';
import { pathSource } from '../io/node-source.ts';
import { FormatError } from '../io/source.ts';
import type { Command } from './commands.ts';
import { placeText, tokenList } from './contexts.ts';
import { defaultCacheDir, openPair, prepareActivations } from './crosscoder-pair.ts';
import { DICTIONARY_OPTIONS } from './crosscoder.ts';
import { UsageError } from './errors.ts';
import { intOption, optionalInt, str, tokenText, type Values } from './models.ts';

const USAGE = [
  'train <base> <ft> --corpus f --out file.safetensors [--dict D] [--k 32] [--steps 1000] [--layer i] [--hook resid_post] [--batch 512] [--lr 1e-3]',
  '        [--k-max k --anneal-steps n] [--aux-alpha a] [--dead-tokens n] [--warmup n] [--seed s] [--tokens-per-sample 128] [--max-samples n]',
  '        [--skip-positions 1] [--cache dir | --no-cache] [--backend cpu|webgpu] [--tokenizer f]',
  '  latents <file.safetensors> <base> <ft> --corpus f [--top 10] [--sort frequency|activation] [--examples 5] [--logits 10]',
].join('\n');

const log = (line: string) => process.stderr.write(line + '\n');

function num(values: Values, name: string, fallback: number, integer = true, min = 0): number {
  const raw = str(values, name);
  if (raw === undefined) return fallback;
  const v = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(v) || (integer && !Number.isInteger(v)) || v < min) throw new UsageError(`--${name} must be ${integer ? 'an integer' : 'a number'} ≥ ${min}, got "${raw}"`);
  return v;
}

function hookOption(values: Values): HookKind | undefined {
  const h = str(values, 'hook');
  if (h === undefined) return undefined;
  if (!(HOOK_KINDS as readonly string[]).includes(h)) throw new UsageError(`--hook must be one of ${HOOK_KINDS.join(', ')}, got "${h}"`);
  return h as HookKind;
}

interface Settings {
  layer?: number;
  hook?: HookKind;
  tokensPerSample: number;
  skipPositions?: number;
  maxSamples?: number;
}

async function deltas(basePath: string, ftPath: string, values: Values, s: Settings) {
  const corpus = str(values, 'corpus');
  if (!corpus) throw new UsageError('diff-sae needs --corpus <file> (a text file, one sample per line)');
  const be = createCpuBackend();
  const pair = await openPair(basePath, ftPath, be, values);
  if (s.layer !== undefined && s.layer >= pair.nLayers) throw new UsageError(`--layer ${s.layer} is outside 0..${pair.nLayers - 1}`);
  const prepared = await prepareActivations(pair, be, {
    corpusPath: corpus,
    tokensPerSample: s.tokensPerSample,
    cacheDir: values['no-cache'] === true ? null : (str(values, 'cache') ?? defaultCacheDir()),
    log,
    ...(s.layer !== undefined ? { layer: s.layer } : {}),
    ...(s.hook !== undefined ? { hook: s.hook } : {}),
    ...(s.skipPositions !== undefined ? { skipPositions: s.skipPositions } : {}),
    ...(s.maxSamples !== undefined ? { maxSamples: s.maxSamples } : {}),
  });
  return { pair, prepared, delta: differenceActivations(prepared.acts) };
}

export interface DiffSaeTrainJson {
  kind: 'train';
  out: string;
  layer: number;
  hook: string;
  d: number;
  D: number;
  k: number;
  steps: number;
  rows: number;
  final: { loss: number; fvu: number; dead: number; threshold: number } | null;
  curve: { step: number; loss: number; fvu: number; dead: number }[];
  seconds: { activations: number; train: number; total: number };
}

async function runTrain(args: string[], values: Values): Promise<DiffSaeTrainJson> {
  if (args.length !== 2) throw new UsageError(`diff-sae train takes <base> <ft>\nusage: neurodiff diff-sae ${USAGE}`);
  const out = str(values, 'out');
  if (!out) throw new UsageError(`diff-sae train needs --out <file.safetensors>\nusage: neurodiff diff-sae ${USAGE}`);
  const t0 = performance.now();
  const steps = num(values, 'steps', 1000, true, 1);
  const batch = num(values, 'batch', 512, true, 1);
  const seed = num(values, 'seed', 0);
  const k = num(values, 'k', 32, true, 1);
  const backendName = str(values, 'backend') ?? 'cpu';
  if (backendName !== 'cpu' && backendName !== 'webgpu') throw new UsageError(`--backend must be cpu or webgpu, got "${backendName}"`);
  const tokensPerSample = num(values, 'tokens-per-sample', 128, true, 2);
  const layer = optionalInt(values, 'layer');
  const hook = hookOption(values);
  const skipPositions = optionalInt(values, 'skip-positions');
  const maxSamples = optionalInt(values, 'max-samples', 1);
  const { prepared, delta } = await deltas(args[0]!, args[1]!, values, {
    tokensPerSample,
    ...(layer !== undefined ? { layer } : {}),
    ...(hook !== undefined ? { hook } : {}),
    ...(skipPositions !== undefined ? { skipPositions } : {}),
    ...(maxSamples !== undefined ? { maxSamples } : {}),
  });
  const { d, rows } = delta;
  const D = num(values, 'dict', 16 * d, true, 1);
  if (k > D) throw new UsageError(`--k ${k} is larger than the dictionary (${D} latents)`);
  let engine: CrosscoderEngine;
  if (backendName === 'webgpu') {
    const dawn = await import('../gpu/dawn-node.ts');
    if (!dawn.useDawn()) throw new UsageError('--backend webgpu: Dawn (the `webgpu` package) could not start here; use --backend cpu');
    const { createWebGpuEngine } = await import('../analysis/crosscoder/webgpu-engine.ts');
    engine = await createWebGpuEngine(d, D);
  } else engine = createCpuEngine({ d, D });
  const trainer = createDiffSaeTrainer({
    d,
    D,
    k,
    kMax: num(values, 'k-max', k, true, k),
    kAnnealSteps: num(values, 'anneal-steps', 0),
    lr: num(values, 'lr', 1e-3, false, 0),
    auxAlpha: num(values, 'aux-alpha', 1 / 32, false, 0),
    deadTokens: num(values, 'dead-tokens', 10_000_000, true, 1),
    warmupSteps: num(values, 'warmup', Math.min(1000, Math.floor(steps / 10))),
    thresholdStartStep: Math.min(1000, Math.floor(steps / 2)),
    seed,
    engine,
    normalization: differenceNormalization(delta.delta, rows, d),
  });
  log(`diff-sae train: ${rows} rows of δ at ${delta.hook}, d=${d}, D=${D}, k=${k}, ${steps} steps of ${batch} tokens on ${backendName}`);
  const curve: DiffSaeTrainJson['curve'] = [];
  const every = Math.max(1, Math.floor(steps / 20));
  const tTrain = performance.now();
  const last = await trainDiffSae(trainer, delta, {
    steps,
    batch,
    seed,
    onStep: (p) => {
      if (p.step % every !== 0 && p.step !== steps - 1) return;
      curve.push({ step: p.step, loss: p.loss, fvu: p.fvu, dead: p.dead });
      log(`diff-sae train: step ${p.step + 1}/${steps} loss ${p.loss.toFixed(4)} fvu ${p.fvu.toFixed(4)} dead ${p.dead}`);
    },
  });
  const trainSeconds = (performance.now() - tTrain) / 1000;
  const trained = await trainer.model();
  const model: CrosscoderModel = {
    ...trained,
    info: {
      ...trained.info,
      layer: String(delta.layer),
      hook: delta.hook,
      hook_kind: delta.hook.replace(/^blocks\.\d+\.hook_/, ''),
      base_model: args[0]!,
      ft_model: args[1]!,
      corpus: str(values, 'corpus')!,
      tokens_per_sample: String(tokensPerSample),
      skip_positions: prepared.acts.info.skip_positions ?? '1',
      ...(maxSamples !== undefined ? { max_samples: String(maxSamples) } : {}),
    },
  };
  await writeFile(out, saveCrosscoder(model));
  log(`diff-sae train: saved ${out}`);
  return {
    kind: 'train',
    out,
    layer: delta.layer,
    hook: delta.hook,
    d,
    D,
    k,
    steps,
    rows,
    final: last ? { loss: last.loss, fvu: last.fvu, dead: last.dead, threshold: last.threshold } : null,
    curve,
    seconds: { activations: prepared.seconds, train: trainSeconds, total: (performance.now() - t0) / 1000 },
  };
}

type Token = { id: number; token: string | null; prob: number };

export interface DiffSaeLatentsJson {
  kind: 'latents';
  file: string;
  hook: string;
  tokens: number;
  /** Fraction of δ's variance the SAE leaves unexplained over those tokens. */
  fvu: number;
  live: number;
  latents: { id: number; frequency: number; max_activation: number; top_contexts: { text: string; activation: number; sample: number; position: number }[]; lens: { positive: Token[]; negative: Token[] } }[];
}

function intInfo(model: CrosscoderModel, key: string): number | undefined {
  const v = model.info[key];
  const n = v === undefined ? NaN : Number(v);
  return Number.isInteger(n) ? n : undefined;
}

async function runLatents(args: string[], values: Values): Promise<DiffSaeLatentsJson> {
  if (args.length !== 3) throw new UsageError(`diff-sae latents takes <file.safetensors> <base> <ft>\nusage: neurodiff diff-sae ${USAGE}`);
  const [file, basePath, ftPath] = args as [string, string, string];
  if (!existsSync(file)) throw new FormatError(file, 'no such diff-SAE file');
  const model = await loadCrosscoder(await pathSource(file));
  if (model.info.kind !== 'diff-sae') throw new FormatError(file, 'is not a diff-SAE (a crosscoder file from `neurodiff diff-sae train`); use `neurodiff crosscoder latents` for crosscoders');
  const top = intOption(values, 'top', 10, 1);
  const examples = intOption(values, 'examples', 5, 0);
  const logits = Math.min(32, intOption(values, 'logits', 10, 1));
  const sort = str(values, 'sort') ?? 'frequency';
  if (sort !== 'frequency' && sort !== 'activation') throw new UsageError(`--sort must be frequency or activation, got "${sort}"`);
  const layer = intInfo(model, 'layer');
  const hookKind = model.info.hook_kind;
  const maxSamples = intInfo(model, 'max_samples');
  const skipPositions = intInfo(model, 'skip_positions');
  const { pair, prepared, delta } = await deltas(basePath, ftPath, values, {
    tokensPerSample: intInfo(model, 'tokens_per_sample') ?? 128,
    ...(layer !== undefined ? { layer } : {}),
    ...(hookKind && (HOOK_KINDS as readonly string[]).includes(hookKind) ? { hook: hookKind as HookKind } : {}),
    ...(skipPositions !== undefined ? { skipPositions } : {}),
    ...(maxSamples !== undefined ? { maxSamples } : {}),
  });
  if (delta.d !== model.params.d) throw new FormatError(file, `the diff-SAE is for width ${model.params.d}, the models' ${delta.hook} has width ${delta.d}`);
  const report = await diffSaeLatentStats(model, delta, { topExamples: examples });
  const live = report.latents.filter((l) => l.frequency > 0);
  const order = live.slice().sort(sort === 'frequency' ? (a, b) => b.frequency - a.frequency : (a, b) => b.maxActivation - a.maxActivation);
  const chosen = order.slice(0, top);
  const ft = await pair.ft.load();
  const be = ft.backend;
  const d = delta.d;
  const rows = new Float32Array(2 * chosen.length * d);
  chosen.forEach((l, i) => {
    const v = latentDirection(model, l.id);
    rows.set(v, 2 * i * d);
    rows.set(v.map((x) => -x), (2 * i + 1) * d);
  });
  const t = be.fromArray(rows, [Math.max(1, 2 * chosen.length), d]);
  const lens = chosen.length > 0 ? await lensTop(ft, t, { k: logits }) : null;
  be.dispose(t);
  ft.dispose();
  const tok = pair.tokenizer;
  const lensRow = (row: number): Token[] => (lens ? Array.from({ length: logits }, (_, j) => ({ id: lens.ids[row * logits + j]!, token: tokenText(tok, lens.ids[row * logits + j]!), prob: lens.probs[row * logits + j]! })) : []);
  return {
    kind: 'latents',
    file,
    hook: delta.hook,
    tokens: report.tokens,
    fvu: report.fvu,
    live: live.length,
    latents: chosen.map((l, i) => ({
      id: l.id,
      frequency: l.frequency,
      max_activation: l.maxActivation,
      top_contexts: l.top.flatMap((ex) => {
        const best = ex.tokens.reduce((a, b) => (b.activation > a.activation ? b : a), ex.tokens[0]!);
        const ids = prepared.samples[ex.sample];
        return best && ids ? [{ text: placeText(tok, ids, best.position), activation: best.activation, sample: ex.sample, position: best.position }] : [];
      }),
      lens: { positive: lensRow(2 * i), negative: lensRow(2 * i + 1) },
    })),
  };
}

export const diffSae: Command = {
  summary: 'train a sparse autoencoder on δ = h_ft − h_base (train), or describe its latents (latents)',
  usage: USAGE,
  options: DICTIONARY_OPTIONS,
  async run(positionals, values) {
    const [sub, ...rest] = positionals;
    if (sub === 'train') return runTrain(rest, values);
    if (sub === 'latents') return runLatents(rest, values);
    throw new UsageError(`diff-sae needs a subcommand: train or latents${sub ? ` (got "${sub}")` : ''}\nusage: neurodiff diff-sae ${USAGE}`);
  },
  format(result) {
    const r = result as DiffSaeTrainJson | DiffSaeLatentsJson;
    if (r.kind === 'train') return `diff-SAE at ${r.hook}: d=${r.d}, D=${r.D}, k=${r.k}, ${r.steps} steps on ${r.rows} rows; final fvu ${r.final?.fvu.toFixed(4)} dead ${r.final?.dead}; saved ${r.out} (${r.seconds.total.toFixed(1)} s)\n`;
    const lines = [`${r.file}: ${r.hook}, ${r.tokens} tokens, FVU ${r.fvu.toFixed(4)}, ${r.live} live latents`];
    for (const l of r.latents) {
      lines.push('', `latent ${l.id}: frequency ${l.frequency.toFixed(4)}, max ${l.max_activation.toFixed(2)}`, `  lens +: ${tokenList(l.lens.positive)}`, `  lens −: ${tokenList(l.lens.negative)}`);
      for (const c of l.top_contexts) lines.push(`  ${c.activation.toFixed(2).padStart(7)}  ${c.text.replace(/\s+/g, ' ')}`);
    }
    return lines.join('\n') + '\n';
  },
};
