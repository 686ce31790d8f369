// What the model commands share: opening a model argument (Hugging Face folder, .gguf, llama2.c .bin,
// PEFT adapter), a base / fine-tune pair, the backend, a corpus file, option parsing and progress on stderr.
import { existsSync, statSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { corpusLines } from '../analysis/activations/corpus.ts';
import { bothModels } from '../analysis/activations/passes.ts';
import { checkPairConfigs, type ModelPair, type Progress } from '../analysis/activations/run.ts';
import { createCpuBackend } from '../gpu/cpu-backend.ts';
import { readLlama2cTokenizer } from '../io/llama2c.ts';
import { pathFileSet, pathSource } from '../io/node-source.ts';
import { externalDataLocations } from '../io/onnx.ts';
import { openModel, type OpenedModel } from '../io/open-model.ts';
import { FormatError, readJson, readText, type ByteSource, type FileSet } from '../io/source.ts';
import { hfTokenizer, type Tokenizer } from '../io/tokenizer.ts';
import type { WeightStore } from '../io/store.ts';
import type { Backend } from '../model/backend.ts';
import { loadModelFromStore } from '../model/load.ts';
import { loraAdapterFromStore, type LoraAdapter } from '../model/lora.ts';
import { PairedRunner } from '../model/paired.ts';
import type { Transformer } from '../model/transformer.ts';
import { planMemory, type MemoryPlan } from '../jobs/memory.ts';
import { openPair, type OpenedPair } from '../jobs/pair.ts';
import { plural } from './format.ts';
import { totalmem } from 'node:os';
import { UsageError } from './errors.ts';

export type Values = Record<string, unknown>;

/** Files beside a model file that belong to it (tokenizers, config). */
const COMPANIONS = /^(tokenizer\.json|tokenizer_config\.json|config\.json|tokenizer\.bin|tok.*\.bin)$/;

/** A folder as all its files; a single file with the tokenizer and config files beside it. */
export async function filesAt(path: string, what: string): Promise<FileSet> {
  if (!existsSync(path)) throw new FormatError(path, `no such file or folder (the ${what})`);
  if (statSync(path).isDirectory()) return pathFileSet(path);
  const files = new Map<string, ByteSource>([[basename(path), await pathSource(path)]]);
  const dir = dirname(path);
  for (const name of await readdir(dir)) {
    if (name !== basename(path) && COMPANIONS.test(name) && statSync(join(dir, name)).isFile()) files.set(name, await pathSource(join(dir, name)));
  }
  // An .onnx file's external data files, where they lie beside it.
  if (/\.onnx$/i.test(path)) {
    for (const name of await externalDataLocations(files.get(basename(path))!)) {
      if (existsSync(join(dir, name)) && statSync(join(dir, name)).isFile()) files.set(name, await pathSource(join(dir, name)));
    }
  }
  return files;
}

/**
 * What this run's result must carry (main.ts attaches it to the JSON and the text): the memory plan of
 * the pair, and every store opened, whose non-finite weights --allow-nonfinite let through.
 */
export const runNotes: { memory?: MemoryPlan; stores: WeightStore[] } = { stores: [] };

/** --allow-nonfinite: go on past NaN/infinite weights, flagging every result, instead of refusing. */
const allowNonfinite = (values: Values) => values['allow-nonfinite'] === true;

export async function openModelAt(path: string, what: string, values: Values): Promise<OpenedModel> {
  const opened = await openModel(await filesAt(path, what), { allowNonfinite: allowNonfinite(values) });
  runNotes.stores.push(opened.store);
  return opened;
}

/** --tokenizer: a tokenizer.json or a llama2.c tokenizer .bin. */
export async function readTokenizerFile(path: string, vocabSize: number): Promise<Tokenizer> {
  if (!existsSync(path)) throw new FormatError(path, 'no such tokenizer file');
  const src = await pathSource(path);
  if (path.endsWith('.json')) return hfTokenizer(await readJson(src), {}, path);
  if (path.endsWith('.bin')) return readLlama2cTokenizer(src, vocabSize);
  throw new FormatError(path, 'is not a tokenizer this tool reads: give a tokenizer.json or a llama2.c tokenizer .bin');
}

export async function pickBackend(values: Values): Promise<Backend> {
  const name = str(values, 'backend') ?? 'cpu';
  if (name === 'cpu') return createCpuBackend();
  if (name !== 'webgpu') throw new UsageError(`--backend must be cpu or webgpu, got "${name}"`);
  const dawn = await import('../gpu/dawn-node.ts');
  if (!dawn.useDawn()) throw new UsageError('--backend webgpu: Dawn (the `webgpu` package) could not start here; use --backend cpu');
  const { createWebGpuBackend } = await import('../kernels/webgpu-backend.ts');
  return createWebGpuBackend();
}

function adapterOf(opened: OpenedModel, path: string): LoraAdapter {
  return loraAdapterFromStore(opened.store, opened.config, join(path, 'adapter_config.json'));
}

async function load(opened: OpenedModel, backend: Backend, adapter?: LoraAdapter): Promise<Transformer> {
  return loadModelFromStore(opened.store, opened.config, backend, adapter ? { adapter } : {}, opened.kind === 'hf' ? `${opened.label} (config.json)` : opened.label);
}

export interface LoadedModel {
  model: Transformer;
  tokenizer: Tokenizer | undefined;
  opened: OpenedModel;
}

/** One model argument, with --adapter and --tokenizer applied. */
export async function loadModelArg(path: string, backend: Backend, values: Values): Promise<LoadedModel> {
  const opened = await openModelAt(path, 'model', values);
  if (opened.kind === 'peft-adapter') throw new FormatError(path, 'is a PEFT adapter: give the model it adapts, and the adapter with --adapter');
  const adapterPath = str(values, 'adapter');
  let adapter: LoraAdapter | undefined;
  if (adapterPath) {
    const a = await openModelAt(adapterPath, 'adapter', values);
    if (a.kind !== 'peft-adapter') throw new FormatError(adapterPath, 'is not a PEFT adapter folder (adapter_config.json + adapter_model.safetensors)');
    adapter = adapterOf(a, adapterPath);
  }
  for (const w of opened.warnings) process.stderr.write(`${w}\n`);
  const model = await load(opened, backend, adapter);
  const tokenizerPath = str(values, 'tokenizer');
  const tokenizer = tokenizerPath ? await readTokenizerFile(tokenizerPath, model.config.vocab) : opened.tokenizer;
  return { model, tokenizer, opened };
}

export interface LoadedPair {
  pair: ModelPair;
  tokenizer: Tokenizer | undefined;
  opened: OpenedPair;
}

/** `<base> <ft>` opened (headers only); an <ft> that is a PEFT adapter folder is applied to <base>; --tokenizer replaces the one found. */
export async function openPairArgs(positionals: readonly string[], values: Values, command: string): Promise<OpenedPair> {
  const [basePath, ftPath, extra] = positionals;
  if (!basePath || !ftPath || extra !== undefined) throw new UsageError(`${command} takes two models, <base> and <ft> (got ${plural(positionals.length, 'argument')})`);
  return openPairAt(basePath, ftPath, values);
}

export async function openPairAt(basePath: string, ftPath: string, values: Values, ftWhat = 'fine-tuned model'): Promise<OpenedPair> {
  const tokenizerPath = str(values, 'tokenizer');
  const opened = await openPair(
    { base: await filesAt(basePath, 'base model'), ft: await filesAt(ftPath, ftWhat) },
    { labels: { base: basePath, ft: ftPath }, allowNonfinite: allowNonfinite(values), ...(tokenizerPath ? { tokenizer: (vocab: number) => readTokenizerFile(tokenizerPath, vocab) } : {}) },
  );
  runNotes.stores.push(opened.base.store, opened.ft.store);
  for (const w of opened.warnings) process.stderr.write(`${w}\n`);
  return opened;
}

/** --memory-budget <GiB>: the bytes the two models' weights may take, instead of 60% of this machine's memory. */
export function memoryBudgetOption(values: Values): number | undefined {
  const v = str(values, 'memory-budget');
  if (v === undefined) return undefined;
  const gib = Number(v);
  if (!(gib > 0 && Number.isFinite(gib))) throw new UsageError(`--memory-budget must be a positive number of GiB, got "${v}"`);
  return gib * 2 ** 30;
}

/**
 * The memory plan of the pair (both models resident, or one at a time) from this machine's memory
 * (os.totalmem()) or --memory-budget, and with --backend webgpu the device's buffer limits; refuses, with the numbers, a model that fits neither way,
 * before anything large is allocated.
 */
export function checkMemory(opened: OpenedPair, backend: Backend, values: Values): MemoryPlan {
  const gpu = backend.limits ? { gpu: backend.limits } : {};
  return (runNotes.memory = planMemory(opened, { backend: backend.name === 'webgpu' ? 'webgpu' : 'cpu', ...gpu, hostBytes: totalmem(), budgetBytes: memoryBudgetOption(values) }));
}

export interface PairRunnerArgs {
  /** Both models loaded on first use, or one at a time, as the memory plan says. */
  runner: PairedRunner;
  tokenizer: Tokenizer | undefined;
  opened: OpenedPair;
}

/** `<base> <ft>` opened, for analyses that can run one model at a time (lens, adl, steer, patch). */
export async function pairRunnerArgs(positionals: readonly string[], backend: Backend, values: Values, command: string): Promise<PairRunnerArgs> {
  return pairRunner(await openPairArgs(positionals, values, command), backend, values);
}

/** An opened pair as a runner in its memory plan's mode. */
export function pairRunner(opened: OpenedPair, backend: Backend, values: Values): PairRunnerArgs {
  const plan = checkMemory(opened, backend, values);
  const { base, ft } = opened.sources(backend);
  checkPairConfigs(base.config, ft.config);
  return { runner: new PairedRunner(base, ft, backend, { mode: plan.mode }), tokenizer: opened.tokenizer, opened };
}

/** `<base> <ft>` opened and both models loaded on `backend`; refused when the memory plan holds one model at a time. */
export async function loadPairArgs(positionals: readonly string[], backend: Backend, values: Values, command: string): Promise<LoadedPair> {
  const { runner, tokenizer, opened } = await pairRunnerArgs(positionals, backend, values, command);
  return { pair: await bothModels(runner, `neurodiff ${command}`), tokenizer, opened };
}

export function needTokenizer(tokenizer: Tokenizer | undefined, what: string): Tokenizer {
  if (!tokenizer) throw new UsageError(`${what} needs a tokenizer: none was found beside the model; give one with --tokenizer <tokenizer.json | tokenizer.bin>`);
  return tokenizer;
}

/** --prompt (tokenized) or --ids 1,2,3. */
export function promptIds(values: Values, tokenizer: Tokenizer | undefined): number[] {
  const prompt = str(values, 'prompt');
  const ids = str(values, 'ids');
  if ((prompt === undefined) === (ids === undefined)) throw new UsageError('give exactly one of --prompt <text> and --ids 1,2,3');
  if (ids !== undefined) return intList(ids, '--ids');
  const encoded = needTokenizer(tokenizer, '--prompt').encode(prompt!);
  if (encoded.length === 0) throw new UsageError('--prompt gives no tokens');
  return encoded;
}

export async function readCorpus(path: string | undefined): Promise<string[]> {
  if (!path) throw new UsageError('--corpus <file> is required (a text file, one sample per line)');
  if (!existsSync(path)) throw new FormatError(path, 'no such corpus file');
  const lines = corpusLines(await readText(await pathSource(path)));
  if (lines.length === 0) throw new FormatError(path, 'has no non-empty lines: a corpus is a text file with one sample per line');
  return lines;
}

export function str(values: Values, name: string): string | undefined {
  const v = values[name];
  return typeof v === 'string' ? v : undefined;
}

export function intOption(values: Values, name: string, fallback: number, min = 0): number {
  const v = str(values, name);
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new UsageError(`--${name} must be an integer ≥ ${min}, got "${v}"`);
  return n;
}

export function optionalInt(values: Values, name: string, min = 0): number | undefined {
  return str(values, name) === undefined ? undefined : intOption(values, name, 0, min);
}

export function intList(text: string, what: string): number[] {
  const parts = text.split(',').map((s) => s.trim());
  const out = parts.map(Number);
  if (parts.some((p) => p === '') || out.some((n) => !Number.isInteger(n))) throw new UsageError(`${what} must be integers separated by commas, got "${text}"`);
  return out;
}

export function numberList(text: string, what: string): number[] {
  const parts = text.split(',').map((s) => s.trim());
  const out = parts.map(Number);
  if (parts.some((p) => p === '') || out.some((n) => !Number.isFinite(n))) throw new UsageError(`${what} must be numbers separated by commas, got "${text}"`);
  return out;
}

/** "0-4", "0,2,3" or "1-3,7". */
export function rangeList(text: string, what: string): number[] {
  const out: number[] = [];
  for (const part of text.split(',')) {
    const m = /^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$/.exec(part);
    if (!m) throw new UsageError(`${what} must look like 0-4 or 0,2,3, got "${text}"`);
    const a = Number(m[1]);
    const b = m[2] === undefined ? a : Number(m[2]);
    if (b < a) throw new UsageError(`${what}: the range ${part.trim()} is empty`);
    for (let i = a; i <= b; i++) out.push(i);
  }
  return [...new Set(out)].sort((x, y) => x - y);
}

/** Progress lines on stderr, at most every half second per stage (and the last one). */
export function stderrProgress(): (p: Progress) => void {
  let last = 0;
  let stage = '';
  return (p) => {
    const now = Date.now();
    if (p.stage === stage && now - last < 500 && p.done < p.total) return;
    stage = p.stage;
    last = now;
    process.stderr.write(`${p.stage}: ${p.done}/${p.total}\n`);
  };
}

/** A token's text; null without a tokenizer, or for an id past the tokenizer's vocabulary (a model may pad its own). */
export function tokenText(tokenizer: Tokenizer | undefined, id: number): string | null {
  return tokenizer && id < tokenizer.vocabSize ? tokenizer.decodeToken(id) : null;
}

/** The text of ids (null without a tokenizer); an id past the tokenizer's vocabulary shows as ⟨id⟩. */
export function decodeText(tokenizer: Tokenizer | undefined, ids: readonly number[]): string | null {
  if (!tokenizer) return null;
  let out = '';
  let run: number[] = [];
  for (const id of ids) {
    if (id < tokenizer.vocabSize) {
      run.push(id);
      continue;
    }
    out += tokenizer.decode(run) + `⟨${id}⟩`;
    run = [];
  }
  return out + tokenizer.decode(run);
}

export function tokenProbs(tokenizer: Tokenizer | undefined, ids: ArrayLike<number>, probs: ArrayLike<number>, from: number, k: number): { id: number; token: string | null; prob: number }[] {
  return Array.from({ length: k }, (_, j) => ({ id: ids[from + j]!, token: tokenText(tokenizer, ids[from + j]!), prob: probs[from + j]! }));
}
