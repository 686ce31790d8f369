// A base model and its fine-tune, opened once for every job: headers, configs and tokenizers are
// read here (tensors later, by the analyses); a fine-tune that is a PEFT adapter is applied to the
// base, an adapter given as the base is refused. The CLI and the analysis worker both open pairs
// this way.
import { fingerprintModel, sha256Hex } from '../io/fingerprint.ts';
import { openModel, type OpenedModel } from '../io/open-model.ts';
import { FormatError, type FileSet } from '../io/source.ts';
import type { Tokenizer } from '../io/tokenizer.ts';
import type { Backend } from '../model/backend.ts';
import { parseConfig, type ModelConfig } from '../model/config.ts';
import { loadModelFromStore } from '../model/load.ts';
import { loraAdapterFromStore, type LoraAdapter } from '../model/lora.ts';
import { storeSource, type ModelSource } from '../model/paired.ts';
import type { Transformer } from '../model/transformer.ts';
import { checkPair, type ModelPair } from '../analysis/activations/run.ts';

export interface PairFiles {
  base: FileSet;
  ft: FileSet;
}

export interface OpenPairOptions {
  /** How errors name each side (a path in the CLI); default the opened model's own label. */
  labels?: { base?: string; ft?: string };
  /** Replaces the tokenizer found beside the models (the CLI's --tokenizer). */
  tokenizer?: (vocab: number) => Promise<Tokenizer>;
  /** Go on past NaN/infinite weights, recording them in each store (nonFiniteSummary) instead of refusing. */
  allowNonfinite?: boolean;
}

export interface PairInfo {
  layers: number;
  dModel: number;
  vocab: number;
  /** The fine-tune is a LoRA adapter applied to the base. */
  adapter: boolean;
}

export interface OpenedPair {
  readonly files: PairFiles;
  readonly base: OpenedModel;
  /** The fine-tuned model, or the adapter as opened. */
  readonly ft: OpenedModel;
  readonly adapter: LoraAdapter | undefined;
  readonly tokenizer: Tokenizer | undefined;
  readonly labels: { readonly base: string; readonly ft: string };
  /** The base's parsed config, parsed on first use (the fine-tune's is checked against it where models are paired). */
  readonly config: ModelConfig;
  readonly info: PairInfo;
  readonly warnings: readonly string[];
  /** Fingerprints of the base's files and of the fine-tune (base + adapter for an adapter); computed once, on first use. */
  fingerprints(signal?: AbortSignal): Promise<{ base: string; ft: string }>;
  /** Lazily loading sources of both models on `backend` (PairedRunner's input). */
  sources(backend: Backend, opts?: { dtype?: 'f32' | 'f16'; onProgress?: (side: 'base' | 'ft', done: number, total: number) => void }): { base: ModelSource; ft: ModelSource };
  /** Both models loaded on `backend` and checked to pair (same width, depth, vocabulary). */
  load(backend: Backend, opts?: LoadPairOptions): Promise<ModelPair>;
}

export interface LoadPairOptions {
  signal?: AbortSignal;
  dtype?: 'f32' | 'f16';
  onProgress?: (stage: string, done: number, total: number) => void;
}

/** The label of a model's config, as errors name it. */
const configLabel = (opened: OpenedModel, label: string) => (opened.kind === 'hf' ? `${label} (config.json)` : label);

export async function openPair(files: PairFiles, opts: OpenPairOptions = {}): Promise<OpenedPair> {
  const open = { allowNonfinite: opts.allowNonfinite === true };
  const base = await openModel(files.base, open);
  const baseLabel = opts.labels?.base ?? base.label;
  if (base.kind === 'peft-adapter') throw new FormatError(baseLabel, 'is a PEFT adapter, not a model: give the model it was trained on as the base, and the adapter as the fine-tuned model');
  const ft = await openModel(files.ft, open);
  const ftLabel = opts.labels?.ft ?? ft.label;
  const adapter = ft.kind === 'peft-adapter' ? loraAdapterFromStore(ft.store, ft.config, opts.labels?.ft ? `${ftLabel}/adapter_config.json` : 'adapter_config.json') : undefined;
  // Parsed on first use: the weight diff compares tensors and needs no architecture the forward pass knows.
  let config: ModelConfig | null = null;
  const baseConfig = () => (config ??= parseConfig(base.config, configLabel(base, baseLabel)));
  const tokenizer = opts.tokenizer ? await opts.tokenizer(baseConfig().vocab) : (base.tokenizer ?? ft.tokenizer);
  let fingerprints: Promise<{ base: string; ft: string }> | null = null;

  const sources: OpenedPair['sources'] = (backend, o = {}) => {
    const load = (side: 'base' | 'ft') => ({ ...(o.dtype ? { dtype: o.dtype } : {}), onProgress: (done: number, total: number) => o.onProgress?.(side, done, total) });
    return {
      base: storeSource(base.store, base.config, backend, baseLabel, load('base')),
      ft: adapter ? storeSource(base.store, base.config, backend, `${baseLabel} + ${ftLabel}`, { ...load('ft'), adapter }) : storeSource(ft.store, ft.config, backend, ftLabel, load('ft')),
    };
  };

  return {
    files,
    base,
    ft,
    adapter,
    tokenizer,
    labels: { base: baseLabel, ft: ftLabel },
    get config() {
      return baseConfig();
    },
    get info() {
      const c = baseConfig();
      return { layers: c.nLayers, dModel: c.dModel, vocab: c.vocab, adapter: adapter !== undefined };
    },
    warnings: [...base.warnings, ...ft.warnings],
    fingerprints(signal) {
      if (!fingerprints) {
        fingerprints = (async () => {
          const b = (await fingerprintModel(files.base, signal)).fingerprint;
          const f = (await fingerprintModel(files.ft, signal)).fingerprint;
          return { base: b, ft: adapter ? await sha256Hex(`${b}+${f}`) : f };
        })();
        fingerprints.catch(() => (fingerprints = null));
      }
      return fingerprints;
    },
    sources,
    async load(backend, o = {}) {
      const load = (opened: OpenedModel, label: string, stage: string, withAdapter?: LoraAdapter): Promise<Transformer> =>
        loadModelFromStore(
          opened.store,
          opened.config,
          backend,
          {
            ...(o.signal ? { signal: o.signal } : {}),
            ...(o.dtype ? { dtype: o.dtype } : {}),
            ...(withAdapter ? { adapter: withAdapter } : {}),
            onProgress: (done, total) => o.onProgress?.(stage, done, total),
          },
          configLabel(opened, label),
        );
      const baseModel = await load(base, baseLabel, 'loading the base model');
      let ftModel: Transformer;
      try {
        ftModel = adapter ? await load(base, baseLabel, 'merging the adapter into the base', adapter) : await load(ft, ftLabel, 'loading the fine-tuned model');
      } catch (e) {
        baseModel.dispose();
        throw e;
      }
      const pair = { base: baseModel, ft: ftModel };
      try {
        checkPair(pair);
      } catch (e) {
        baseModel.dispose();
        ftModel.dispose();
        throw e;
      }
      return pair;
    },
  };
}

/** The pair's tokenizer, or a clear error saying why `what` needs one. */
export function needTokenizer(pair: OpenedPair, what: string): Tokenizer {
  if (!pair.tokenizer) throw new FormatError(pair.labels.base, `no tokenizer was found beside either model: ${what}, so give tokenizer.json (or a .gguf with its tokenizer) with the models`);
  return pair.tokenizer;
}
