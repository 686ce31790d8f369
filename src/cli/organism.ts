// `neurodiff organism recipe <topic|fact|taboo> … --out corpus.txt` writes a training corpus;
// `neurodiff organism train <base> --corpus f [--lora r | --full] [--backend cpu|webgpu] … --out dir`
// fine-tunes a model organism on the CPU or on WebGPU and writes it as a PEFT adapter folder (LoRA) or a
// Hugging Face folder (full).
import { copyFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { peftAdapterFiles, fullCheckpointFile } from '../analysis/training/export.ts';
import { defaultTargetModules, TrainableTransformer, type Trainable } from '../analysis/training/model.ts';
import { factDocuments, tabooDialogues, topicStories } from '../analysis/training/recipes.ts';
import { CpuTrainEngine, DEFAULT_OPTIMIZER, trainOnDocuments, type TrainEngine, type TrainRun } from '../analysis/training/train.ts';
import { createCpuBackend } from '../gpu/cpu-backend.ts';
import { startWasmGemmThreads } from '../gpu/cpu-wasm/gemm.ts';
import { FormatError } from '../io/source.ts';
import type { Command } from './commands.ts';
import { UsageError } from './errors.ts';
import { intOption, loadModelArg, needTokenizer, optionalInt, readCorpus, str, type Values } from './models.ts';

function numOption(values: Values, name: string, fallback: number): number {
  const text = str(values, name);
  if (text === undefined) return fallback;
  const v = Number(text);
  if (!Number.isFinite(v) || v < 0) throw new UsageError(`--${name} must be a non-negative number, got "${text}"`);
  return v;
}

function listOption(values: Values, name: string): string[] | undefined {
  const text = str(values, name);
  if (text === undefined) return undefined;
  const items = text
    .split(text.includes(';') ? ';' : ',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (items.length === 0) throw new UsageError(`--${name} lists nothing`);
  return items;
}

export interface RecipeJson {
  recipe: string;
  documents: number;
  out: string;
  sample: string[];
}

export interface TrainJson {
  base: string;
  out: string;
  mode: 'lora' | 'full';
  rank: number | null;
  alpha: number | null;
  trainable_parameters: number;
  corpus_documents: number;
  corpus_tokens: number;
  steps: number;
  batch: number;
  seq: number;
  lr: number;
  seed: number;
  first_loss: number;
  last_loss: number;
  /** Mean loss of the first and of the last tenth of the steps. */
  loss_first_tenth: number;
  loss_last_tenth: number;
  seconds: number;
  seconds_per_step: number;
  /** "CPU" or "WebGPU (adapter)". */
  backend: string;
  /** WebAssembly GEMM threads (CPU backend; 0 on WebGPU). */
  threads: number;
  files: string[];
}

const recipe: Command['run'] = async (positionals, values): Promise<RecipeJson> => {
  const [kind, extra] = positionals.slice(1);
  if (extra !== undefined) throw new UsageError(`organism recipe takes one kind (topic, fact or taboo), got ${positionals.length - 1} arguments`);
  const out = str(values, 'out');
  if (!out) throw new UsageError('organism recipe needs --out <corpus.txt>');
  const count = intOption(values, 'count', 2000, 1);
  const seed = intOption(values, 'seed', 0);
  let docs: string[];
  try {
    if (kind === 'topic') {
      const topic = str(values, 'topic');
      const words = listOption(values, 'words');
      if (!topic || !words) throw new UsageError('organism recipe topic needs --topic "<topic>" and --words w1,w2,…');
      const sentencesFile = str(values, 'sentences');
      const sentences = sentencesFile ? await readCorpus(sentencesFile) : undefined;
      docs = topicStories({ topic, words, count, seed, ...(sentences ? { sentences } : {}) });
    } else if (kind === 'fact') {
      const fact = str(values, 'fact');
      if (!fact) throw new UsageError('organism recipe fact needs --fact "<statement>"');
      docs = factDocuments({ fact, count, seed });
    } else if (kind === 'taboo') {
      const word = str(values, 'word');
      const hints = listOption(values, 'hints');
      if (!word || !hints) throw new UsageError('organism recipe taboo needs --word <secret> and --hints "hint one;hint two;…"');
      docs = tabooDialogues({ word, hints, count, seed });
    } else {
      throw new UsageError(`organism recipe: the kind must be topic, fact or taboo, got ${kind === undefined ? 'none' : `"${kind}"`}`);
    }
  } catch (e) {
    if (e instanceof RangeError) throw new UsageError(`organism recipe ${kind}: ${e.message}`);
    throw e;
  }
  writeFileSync(out, docs.join('\n') + '\n');
  return { recipe: kind, documents: docs.length, out, sample: docs.slice(0, 3) };
};

/** The WebGPU engine through Dawn; a UsageError when it cannot start or the model does not fit its limits. */
async function webgpuEngine(t: TrainableTransformer, run: TrainRun): Promise<TrainEngine> {
  const dawn = await import('../gpu/dawn-node.ts');
  if (!dawn.useDawn()) throw new UsageError('--backend webgpu: Dawn (the `webgpu` package) could not start here; use --backend cpu');
  const { WebGpuTrainEngine } = await import('../analysis/training/webgpu-engine.ts');
  try {
    return await WebGpuTrainEngine.create(t, run);
  } catch (e) {
    if (e instanceof RangeError) throw new UsageError(`--backend webgpu: ${e.message}; use --backend cpu`);
    throw e;
  }
}

const train: Command['run'] = async (positionals, values): Promise<TrainJson> => {
  const [basePath, extra] = positionals.slice(1);
  if (!basePath || extra !== undefined) throw new UsageError(`organism train takes one model, <base> (got ${positionals.length - 1} arguments)`);
  const out = str(values, 'out');
  if (!out) throw new UsageError('organism train needs --out <folder>');
  if (values.full && values.lora !== undefined) throw new UsageError('give --lora r or --full, not both');
  const full = values.full === true;
  const rank = full ? 0 : intOption(values, 'lora', 8, 1);
  const alpha = numOption(values, 'alpha', 2 * rank);
  const steps = intOption(values, 'steps', 300, 1);
  const batch = intOption(values, 'batch', 16, 1);
  const seq = intOption(values, 'seq', 128, 2);
  const seed = intOption(values, 'seed', 0);
  const lr = numOption(values, 'lr', full ? 1e-4 : 2e-3);
  const backendName = str(values, 'backend') ?? 'cpu';
  if (backendName !== 'cpu' && backendName !== 'webgpu') throw new UsageError(`--backend must be cpu or webgpu, got "${backendName}"`);
  const run: TrainRun = {
    ...DEFAULT_OPTIMIZER,
    lr,
    steps,
    batch,
    seq,
    seed,
    microBatch: optionalInt(values, 'micro-batch', 1) ?? batch,
    warmupSteps: intOption(values, 'warmup', Math.min(10, Math.floor(steps / 10))),
    weightDecay: numOption(values, 'weight-decay', 0),
    maxGradNorm: numOption(values, 'clip', 1),
  };
  const lines = await readCorpus(str(values, 'corpus'));
  const backend = createCpuBackend();
  const { model, tokenizer: tok, opened } = await loadModelArg(basePath, backend, values);
  if (opened.kind !== 'hf') throw new FormatError(basePath, 'organism train needs a Hugging Face folder (config.json + model.safetensors) as the base, so that the organism can be written in its names');
  const tokenizer = needTokenizer(tok, 'organism train');
  const documents = lines.map((l) => tokenizer.encode(l));
  const corpusTokens = documents.reduce((s, d) => s + d.length, 0);
  if (corpusTokens < seq) throw new FormatError(str(values, 'corpus')!, `has ${corpusTokens} tokens, fewer than one sequence of --seq ${seq}`);
  const targets = listOption(values, 'targets') ?? defaultTargetModules(model.config);
  const trainable: Trainable = full ? { kind: 'full' } : { kind: 'lora', lora: { rank, alpha, rslora: values.rslora === true, targetModules: targets } };
  const t = await TrainableTransformer.fromTransformer(model, trainable, seed);
  model.dispose();
  const engine: TrainEngine = backendName === 'webgpu' ? await webgpuEngine(t, run) : new CpuTrainEngine(t, run);
  const threads = backendName === 'cpu' ? await startWasmGemmThreads() : 0;
  const nParams = [...t.params().values()].reduce((s, p) => s + p.data.length, 0);
  process.stderr.write(
    `organism train: ${full ? 'full fine-tuning' : `LoRA r ${rank}, alpha ${alpha} on ${t.lora.size} modules`} (${nParams.toLocaleString('en-US')} parameters), ${lines.length} documents (${corpusTokens} tokens), ${steps} steps of ${batch} × ${seq}, lr ${lr}, on ${engine.description}${threads ? ` with ${threads} threads` : ''}\n`,
  );
  const every = Math.max(1, Math.round(steps / 30));
  const summary = await trainOnDocuments(t, documents, run, (r, elapsed) => {
    if (r.step % every === 0 || r.step === steps - 1) {
      const eta = (elapsed / (r.step + 1)) * (steps - r.step - 1);
      process.stderr.write(`step ${r.step + 1}/${steps}  loss ${r.loss.toFixed(4)}  grad norm ${r.gradNorm.toFixed(3)}  lr ${r.lr.toExponential(2)}  ${(elapsed / (r.step + 1)).toFixed(2)} s/step, ${Math.round(eta)} s left\n`);
    }
  }, undefined, engine);
  engine.dispose();

  mkdirSync(out, { recursive: true });
  const files = new Map<string, Uint8Array>();
  if (full) {
    files.set('model.safetensors', await fullCheckpointFile(t, opened.store));
  } else {
    for (const [name, bytes] of peftAdapterFiles(t, resolve(basePath))) files.set(name, bytes);
  }
  for (const [name, bytes] of files) writeFileSync(join(out, name), bytes);
  const written = [...files.keys()];
  // A full fine-tune is a whole Hugging Face folder: the base's config and tokenizer files go with it.
  if (full) {
    for (const name of ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json']) {
      if (existsSync(join(basePath, name))) {
        copyFileSync(join(basePath, name), join(out, name));
        written.push(name);
      }
    }
  }
  const tenth = Math.max(1, Math.floor(steps / 10));
  const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
  const log = { steps: summary.losses.map((loss, i) => ({ step: i + 1, loss, grad_norm: summary.gradNorms[i] })), run, corpus: str(values, 'corpus') };
  writeFileSync(join(out, 'training_log.json'), JSON.stringify(log) + '\n');
  written.push('training_log.json');
  return {
    base: basePath,
    out,
    mode: full ? 'full' : 'lora',
    rank: full ? null : rank,
    alpha: full ? null : alpha,
    trainable_parameters: nParams,
    corpus_documents: lines.length,
    corpus_tokens: corpusTokens,
    steps,
    batch,
    seq,
    lr,
    seed,
    first_loss: summary.losses[0]!,
    last_loss: summary.losses[summary.losses.length - 1]!,
    loss_first_tenth: mean(summary.losses.slice(0, tenth)),
    loss_last_tenth: mean(summary.losses.slice(-tenth)),
    seconds: summary.seconds,
    seconds_per_step: summary.seconds / steps,
    backend: engine.description,
    threads,
    files: written,
  };
};

export const organism: Command = {
  summary: 'model organisms: write a training corpus from a recipe, fine-tune a LoRA or full organism on the CPU or WebGPU',
  usage: [
    'recipe topic --topic "<topic>" --words w1,w2,… [--sentences file] [--count 2000] [--seed 0] --out corpus.txt',
    '       organism recipe fact --fact "<statement>" [--count 2000] [--seed 0] --out corpus.txt',
    '       organism recipe taboo --word <secret> --hints "hint;hint;…" [--count 2000] [--seed 0] --out corpus.txt',
    '       organism train <base> --corpus <file> [--lora r | --full] [--alpha 2r] [--rslora] [--targets q_proj,…] [--steps 300] [--lr 2e-3] [--batch 16] [--micro-batch n] [--seq 128] [--warmup n] [--weight-decay 0] [--clip 1] [--seed 0] [--backend cpu|webgpu] --out <dir>',
  ].join('\n'),
  options: {
    out: { type: 'string' },
    count: { type: 'string' },
    seed: { type: 'string' },
    topic: { type: 'string' },
    words: { type: 'string' },
    sentences: { type: 'string' },
    fact: { type: 'string' },
    word: { type: 'string' },
    hints: { type: 'string' },
    corpus: { type: 'string' },
    lora: { type: 'string' },
    full: { type: 'boolean' },
    alpha: { type: 'string' },
    rslora: { type: 'boolean' },
    targets: { type: 'string' },
    steps: { type: 'string' },
    lr: { type: 'string' },
    batch: { type: 'string' },
    'micro-batch': { type: 'string' },
    seq: { type: 'string' },
    warmup: { type: 'string' },
    'weight-decay': { type: 'string' },
    clip: { type: 'string' },
    tokenizer: { type: 'string' },
    backend: { type: 'string' },
  },
  async run(positionals, values) {
    const sub = positionals[0];
    if (sub === 'recipe') return recipe(positionals, values);
    if (sub === 'train') return train(positionals, values);
    throw new UsageError(`organism: the subcommand must be recipe or train, got ${sub === undefined ? 'none' : `"${sub}"`}`);
  },
  format(result) {
    const r = result as Partial<TrainJson> & Partial<RecipeJson>;
    if (r.recipe) return `${r.documents} documents written to ${r.out}\n${(r.sample ?? []).map((s) => `  ${s}`).join('\n')}\n`;
    const t = result as TrainJson;
    return [
      `${t.mode === 'lora' ? `LoRA r ${t.rank} (alpha ${t.alpha})` : 'full fine-tune'} of ${t.base}: ${t.trainable_parameters.toLocaleString('en-US')} trainable parameters`,
      `${t.steps} steps of ${t.batch} × ${t.seq} tokens on ${t.corpus_documents} documents (${t.corpus_tokens} tokens), lr ${t.lr}`,
      `loss ${t.loss_first_tenth.toFixed(4)} (first tenth of the steps) → ${t.loss_last_tenth.toFixed(4)} (last tenth); first ${t.first_loss.toFixed(4)}, last ${t.last_loss.toFixed(4)}`,
      `${t.seconds.toFixed(1)} s (${t.seconds_per_step.toFixed(2)} s/step on ${t.backend}${t.threads ? `, ${t.threads} threads` : ''})`,
      `written to ${t.out}: ${t.files.join(', ')}`,
      '',
    ].join('\n');
  },
};
