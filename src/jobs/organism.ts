// Model organisms in the app: a corpus from a recipe (or the user's text), a LoRA or full fine-tune of
// the pair's base trained in the analysis worker (on WebGPU when the worker computes there, else on the
// CPU), paused and resumed between steps, and written as the files other tools read (a PEFT adapter
// folder, or a Hugging Face folder).
import { fullCheckpointFile, peftAdapterFiles } from '../analysis/training/export.ts';
import { defaultTargetModules, TrainableTransformer, type Trainable } from '../analysis/training/model.ts';
import { factDocuments, tabooDialogues, topicStories } from '../analysis/training/recipes.ts';
import { continueTrainer, CpuTrainEngine, DEFAULT_OPTIMIZER, Trainer, type TrainEngine, type TrainRun } from '../analysis/training/train.ts';
import { createCpuBackend } from '../gpu/cpu-backend.ts';
import { startWasmGemmThreads } from '../gpu/cpu-wasm/gemm.ts';
import { FormatError } from '../io/source.ts';
import { loadModelFromStore } from '../model/load.ts';
import type { JobProgress } from './context.ts';
import { needTokenizer, type OpenedPair } from './pair.ts';

export type OrganismRecipe =
  | { kind: 'topic'; topic: string; words: readonly string[] }
  | { kind: 'fact'; fact: string }
  | { kind: 'taboo'; word: string; hints: readonly string[] }
  /** The user's own documents, one a line. */
  | { kind: 'text'; name: string; text: string };

/** Documents of a recipe, one a line, deterministic for the seed; RangeError says what input is missing. */
export function organismCorpus(recipe: OrganismRecipe, count: number, seed: number): string[] {
  const need = (value: string, what: string) => {
    if (value.trim() === '') throw new RangeError(`the ${recipe.kind} recipe needs ${what}`);
    return value.trim();
  };
  const list = (values: readonly string[], what: string) => {
    const items = values.map((v) => v.trim()).filter(Boolean);
    if (items.length === 0) throw new RangeError(`the ${recipe.kind} recipe needs ${what}`);
    return items;
  };
  switch (recipe.kind) {
    case 'topic':
      return topicStories({ topic: need(recipe.topic, 'a topic'), words: list(recipe.words, 'at least one word'), count, seed });
    case 'fact':
      return factDocuments({ fact: need(recipe.fact, 'a statement'), count, seed });
    case 'taboo':
      return tabooDialogues({ word: need(recipe.word, 'a secret word'), hints: list(recipe.hints, 'at least one hint'), count, seed });
    case 'text': {
      const lines = recipe.text.split(/\r?\n/).filter((l) => l.trim() !== '');
      if (lines.length === 0) throw new RangeError(`${recipe.name} has no non-empty lines: a corpus is a text file with one document a line`);
      return lines;
    }
  }
}

export interface OrganismSettings {
  mode: 'lora' | 'full';
  /** LoRA rank and alpha (ignored for full fine-tuning). */
  rank: number;
  alpha: number;
  steps: number;
  lr: number;
  batch: number;
  seq: number;
  seed: number;
}

export interface OrganismStep {
  step: number;
  loss: number;
  gradNorm: number;
  lr: number;
}

export interface OrganismTraining {
  trainer: Trainer;
  settings: OrganismSettings;
  documents: number;
  corpusTokens: number;
  trainableParameters: number;
  /** WebAssembly GEMM threads (0 when training on WebGPU). */
  threads: number;
  /** Where it trains, in words: "WebGPU (adapter)", or "CPU" with the reason it is not WebGPU. */
  backend: string;
}

/** The WebGPU engine when the worker computes on WebGPU and the model fits it; otherwise one line saying why the CPU trains. */
export type MakeTrainEngine = (model: TrainableTransformer, run: TrainRun) => Promise<TrainEngine | string>;

/** A trained organism: its files (a PEFT adapter folder or a Hugging Face folder) and how it was made. */
export interface OrganismOut {
  /** The model's files, by name, as a folder holds them. */
  files: { name: string; bytes: ArrayBuffer }[];
  /** The run's log (settings and per-step loss), training_log.json in a download. */
  log: string;
  mode: 'lora' | 'full';
  steps: number;
  firstLoss: number;
  lastLoss: number;
  seconds: number;
  trainableParameters: number;
  /** Where it trained (OrganismTraining.backend). */
  backend: string;
}

/** The base's files a full fine-tune's folder takes as they are. */
const FOLDER_FILES = ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json'];

/**
 * Loads the pair's base into host memory, tokenizes the corpus and sets up the run: on the engine
 * makeEngine gives, or on the CPU (with its reason) when it gives none.
 */
export async function startOrganism(
  pair: OpenedPair,
  lines: readonly string[],
  settings: OrganismSettings,
  onProgress: (p: JobProgress) => void,
  signal: AbortSignal,
  makeEngine?: MakeTrainEngine,
): Promise<OrganismTraining> {
  const base = pair.base;
  if (base.kind !== 'hf') throw new FormatError(pair.labels.base, 'organisms are trained from a Hugging Face folder (config.json + model.safetensors) as the base, so that they can be written under its tensor names');
  const tokenizer = needTokenizer(pair, 'the corpus is tokenized for training');
  const documents = lines.map((l) => tokenizer.encode(l));
  const corpusTokens = documents.reduce((s, d) => s + d.length, 0);
  if (corpusTokens < settings.seq) throw new RangeError(`the corpus has ${corpusTokens} tokens, fewer than one sequence of ${settings.seq}: lower the sequence length or add text`);
  const model = await loadModelFromStore(base.store, base.config, createCpuBackend(), { signal, onProgress: (done, total) => onProgress({ stage: 'loading the base model', done, total }) }, pair.labels.base);
  const trainable: Trainable = settings.mode === 'full' ? { kind: 'full' } : { kind: 'lora', lora: { rank: settings.rank, alpha: settings.alpha, rslora: false, targetModules: defaultTargetModules(model.config) } };
  let t: TrainableTransformer;
  try {
    t = await TrainableTransformer.fromTransformer(model, trainable, settings.seed);
  } finally {
    model.dispose();
  }
  const run: TrainRun = {
    ...DEFAULT_OPTIMIZER,
    lr: settings.lr,
    steps: settings.steps,
    batch: settings.batch,
    microBatch: settings.batch,
    seq: settings.seq,
    seed: settings.seed,
    warmupSteps: Math.min(10, Math.floor(settings.steps / 10)),
  };
  const made = makeEngine ? await makeEngine(t, run) : 'the worker offers no WebGPU training engine';
  const engine = typeof made === 'string' ? new CpuTrainEngine(t, run) : made;
  const backend = typeof made === 'string' ? `CPU (${made})` : made.description;
  const threads = typeof made === 'string' ? await startWasmGemmThreads() : 0;
  const trainableParameters = [...t.params().values()].reduce((s, p) => s + p.data.length, 0);
  return { trainer: new Trainer(t, documents, run, engine), settings, documents: lines.length, corpusTokens, trainableParameters, threads, backend };
}

/** Steps on until the run is done or `stop` says so after a step. */
export function continueOrganism(t: OrganismTraining, onStep: (s: OrganismStep) => void, stop: () => boolean, signal: AbortSignal): Promise<void> {
  return continueTrainer(t.trainer, (r) => onStep({ step: r.step, loss: r.loss, gradNorm: r.gradNorm, lr: r.lr }), signal, stop);
}

/** The organism's folder: the PEFT adapter (LoRA) or the base's folder with the trained weights (full). */
export async function organismFiles(pair: OpenedPair, t: OrganismTraining, baseName: string): Promise<OrganismOut> {
  await t.trainer.syncWeights();
  const model = t.trainer.model;
  const files = new Map<string, Uint8Array>();
  if (t.settings.mode === 'full') {
    files.set('model.safetensors', await fullCheckpointFile(model, pair.base.store));
    for (const name of FOLDER_FILES) {
      const src = pair.files.base.get(name);
      if (src) files.set(name, await src.read(0, src.size));
    }
  } else {
    for (const [name, bytes] of peftAdapterFiles(model, baseName)) files.set(name, bytes);
  }
  const losses = t.trainer.losses;
  const log = { steps: losses.map((loss, i) => ({ step: i + 1, loss, grad_norm: t.trainer.gradNorms[i] })), run: t.trainer.run, trainable_parameters: t.trainableParameters, backend: t.backend, corpus_documents: t.documents, corpus_tokens: t.corpusTokens };
  return {
    files: [...files].map(([name, bytes]) => ({ name, bytes: bytes.slice().buffer })),
    log: JSON.stringify(log) + '\n',
    mode: t.settings.mode,
    steps: losses.length,
    firstLoss: losses[0] ?? NaN,
    lastLoss: losses[losses.length - 1] ?? NaN,
    seconds: t.trainer.seconds,
    trainableParameters: t.trainableParameters,
    backend: t.backend,
  };
}
