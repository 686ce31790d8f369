// One entry point for every model format: whatever was dropped or named, the result is a
// WeightStore under Hugging Face tensor names plus a Hugging Face config.json object, so the model
// layer only ever sees Hugging Face checkpoints.
import { checkFinite, type CheckedStore, type FiniteOptions } from './finite.ts';
import { openGguf } from './gguf.ts';
import { openLlama2c, readLlama2cTokenizer } from './llama2c.ts';
import { onnxFile } from './onnx.ts';
import { openOnnxStore, type OnnxNaming } from './onnx-names.ts';
import { openSafetensorsFolder } from './safetensors.ts';
import { FormatError, readJson, type ByteSource, type FileSet } from './source.ts';
import type { WeightStore } from './store.ts';
import { readHfTokenizer, type Tokenizer } from './tokenizer.ts';

export type ModelSourceKind = 'hf' | 'gguf' | 'llama2c' | 'onnx' | 'peft-adapter';

export interface OpenedModel {
  readonly kind: ModelSourceKind;
  /** Every read checked for NaN and infinity (finite.ts): refused, or recorded with `allowNonfinite`. */
  readonly store: CheckedStore;
  /** config.json, as found or as synthesized from the format's header; adapter_config.json for an adapter. */
  readonly config: Record<string, unknown>;
  readonly tokenizer?: Tokenizer;
  readonly label: string;
  /** What could not be provided but did not stop the loading (e.g. no tokenizer found). */
  readonly warnings: readonly string[];
  /** ONNX: which initializers got Hugging Face names, and how. */
  readonly onnxNames?: OnnxNaming;
}

const topLevel = (files: FileSet) => [...files.keys()].filter((n) => !n.includes('/'));
const withExt = (files: FileSet, ext: string) => topLevel(files).filter((n) => n.toLowerCase().endsWith(ext)).sort();
const listing = (files: FileSet) => {
  const names = [...files.keys()].sort();
  return names.length === 0 ? 'none' : names.length > 20 ? `${names.slice(0, 20).join(', ')}, … (${names.length} in all)` : names.join(', ');
};

/** The .bin files whose header and size make a llama2.c checkpoint, and why each other one is not. */
async function llama2cCheckpoints(files: FileSet): Promise<{ found: ByteSource[]; failures: FormatError[] }> {
  const found: ByteSource[] = [];
  const failures: FormatError[] = [];
  for (const name of withExt(files, '.bin')) {
    const src = files.get(name)!;
    try {
      await openLlama2c(src);
      found.push(src);
    } catch (e) {
      if (!(e instanceof FormatError)) throw e;
      if (!isTokenizerName(name)) failures.push(e);
    }
  }
  return { found, failures };
}

const isTokenizerName = (name: string) => name === 'tokenizer.bin' || /^tok.*\.bin$/.test(name);

export async function detectModel(files: FileSet): Promise<ModelSourceKind> {
  const has = (n: string) => files.has(n);
  if (has('adapter_config.json')) {
    if (has('adapter_model.safetensors')) return 'peft-adapter';
    throw new FormatError('adapter_config.json', has('adapter_model.bin') ? 'the adapter weights are a PyTorch pickle (adapter_model.bin), which is not supported: save the adapter with safetensors' : `no adapter_model.safetensors beside it (files: ${listing(files)})`);
  }
  const safetensors = withExt(files, '.safetensors');
  if (has('config.json') && (safetensors.length > 0 || has('model.safetensors.index.json'))) return 'hf';
  if (safetensors.length > 0) throw new FormatError(safetensors[0]!, `has no config.json beside it, so the architecture is unknown (files: ${listing(files)})`);
  const ggufs = withExt(files, '.gguf');
  if (ggufs.length > 1) throw new FormatError(ggufs.join(', '), 'more than one .gguf file: split GGUF files are not supported, give one model at a time');
  if (ggufs.length === 1) return 'gguf';
  if (onnxFile(files)) return 'onnx';
  const llama2c = await llama2cCheckpoints(files);
  if (llama2c.found.length > 0) return 'llama2c';
  if (has('config.json') && withExt(files, '.bin').length > 0) {
    throw new FormatError('config.json', 'the weights beside it are PyTorch pickles (.bin), which are not supported: convert them to safetensors');
  }
  // A lone .bin that is not a checkpoint: say why it is not, rather than "no model recognised".
  const failure = llama2c.failures[0];
  if (failure) throw new FormatError(failure.file, `${failure.detail} (read as a llama2.c checkpoint, the only model format a .bin can be here)`);
  throw new FormatError(
    'folder',
    `no model recognised: expected a Hugging Face folder (config.json + *.safetensors), a PEFT adapter (adapter_config.json + adapter_model.safetensors), a .gguf file, a llama2.c .bin checkpoint or an .onnx file (files seen: ${listing(files)})`,
  );
}

export type OpenOptions = FiniteOptions;

export async function openModel(files: FileSet, opts: OpenOptions = {}): Promise<OpenedModel> {
  const opened = await openUnchecked(files);
  return { ...opened, store: checkFinite(opened.store, opts) };
}

async function openUnchecked(files: FileSet): Promise<Omit<OpenedModel, 'store'> & { store: WeightStore }> {
  const kind = await detectModel(files);
  const warnings: string[] = [];
  const asRecord = (v: unknown, file: string): Record<string, unknown> => {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new FormatError(file, 'is not a JSON object');
    return v as Record<string, unknown>;
  };
  switch (kind) {
    case 'hf':
    case 'peft-adapter': {
      const configName = kind === 'hf' ? 'config.json' : 'adapter_config.json';
      const config = asRecord(await readJson(files.get(configName)!), configName);
      const store = await openSafetensorsFolder(files, kind === 'hf' ? 'model' : 'adapter_model');
      const tokenizer = await readHfTokenizer(files);
      if (!tokenizer && kind === 'hf') warnings.push('no tokenizer.json in the folder: text cannot be tokenized');
      const vocab = Object.hasOwn(config, 'vocab_size') ? config.vocab_size : undefined;
      if (tokenizer && typeof vocab === 'number' && tokenizer.vocabSize > vocab) {
        const ordinary = tokenizer.ordinaryVocabSize ?? tokenizer.vocabSize;
        if (ordinary > vocab) throw new FormatError('tokenizer.json', `has token ids up to ${ordinary - 1}, but the model's vocabulary (vocab_size in config.json) has ${vocab} tokens: the tokenizer belongs to another model`);
        // Only special tokens lie past the model's rows (as Gemma 3's <image_soft_token>): text never encodes to them unless it names them.
        const beyond = tokenizer.vocabSize - vocab === 1 ? `the special token ${vocab} (${JSON.stringify(tokenizer.decodeToken(vocab))}) lies` : `the special tokens ${vocab}..${tokenizer.vocabSize - 1} lie`;
        warnings.push(`tokenizer.json: ${beyond} past the model's ${vocab} tokens; a prompt that names one cannot run`);
      }
      return { kind, store, config, ...(tokenizer ? { tokenizer } : {}), label: store.label, warnings };
    }
    case 'gguf': {
      const src = files.get(withExt(files, '.gguf')[0]!)!;
      const g = await openGguf(src);
      if (g.tokenizerProblem) warnings.push(g.tokenizerProblem);
      return { kind, store: g.store, config: g.config, ...(g.tokenizer ? { tokenizer: g.tokenizer } : {}), label: src.name, warnings };
    }
    case 'onnx': {
      const src = onnxFile(files)!;
      const configFile = files.get('config.json');
      const config = configFile ? asRecord(await readJson(configFile), configFile.name) : {};
      const store = await openOnnxStore(src, files, config);
      const lost = store.naming.unrecovered;
      if (lost.length > 0) {
        const names = lost.slice(0, 5).map((u) => `${u.name} (${u.reason})`).join('; ');
        warnings.push(`${src.name}: ${lost.length} weight-like initializers keep their ONNX names, no Hugging Face name could be recovered from the graph: ${names}${lost.length > 5 ? ', …' : ''}`);
      }
      if (!configFile) warnings.push(`${src.name}: no config.json beside it, so the architecture is unknown`);
      const tokenizer = await readHfTokenizer(files);
      return { kind, store, config, ...(tokenizer ? { tokenizer } : {}), label: src.name, warnings, onnxNames: store.naming };
    }
    case 'llama2c': {
      const checkpoints = (await llama2cCheckpoints(files)).found;
      if (checkpoints.length > 1) throw new FormatError(checkpoints.map((c) => c.name).join(', '), 'more than one llama2.c checkpoint: give one model at a time');
      const src = checkpoints[0]!;
      const { store, config, header } = await openLlama2c(src);
      const candidates = withExt(files, '.bin').filter((n) => n !== src.name && isTokenizerName(n));
      let tokenizer: Tokenizer | undefined;
      for (const name of candidates) {
        try {
          tokenizer = await readLlama2cTokenizer(files.get(name)!, header.vocabSize);
          break;
        } catch (e) {
          if (!(e instanceof FormatError)) throw e;
          warnings.push(e.message);
        }
      }
      if (!tokenizer && candidates.length === 0) warnings.push(`no llama2.c tokenizer beside ${src.name} (tokenizer.bin or tok*.bin with ${header.vocabSize} tokens)`);
      return { kind, store, config, ...(tokenizer ? { tokenizer } : {}), label: src.name, warnings };
    }
  }
}
