// Opening `<base> <ft>` for the crosscoder commands, and the paired activations over a corpus with
// their cache file. An `<ft>` that is a PEFT adapter folder is applied to `<base>`.
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { collectPairedActivations, defaultLayer, tokenizeCorpus, type CollectSettings, type PairedActivations } from '../analysis/crosscoder/collect.ts';
import { activationCacheKey, decodeActivations, encodeActivations, sha256Hex } from '../analysis/crosscoder/collect-cache.ts';
import { pathSource } from '../io/node-source.ts';
import { FormatError } from '../io/source.ts';
import type { Tokenizer } from '../io/tokenizer.ts';
import type { Backend } from '../model/backend.ts';
import { PairedRunner, type ModelSource } from '../model/paired.ts';
import { checkMemory, openPairAt, type Values } from './models.ts';

export interface OpenedPair {
  readonly base: ModelSource;
  readonly ft: ModelSource;
  readonly tokenizer: Tokenizer;
  /** File fingerprints (collect-cache.ts) of the base model and of the fine-tune (base + adapter for an adapter). */
  readonly fingerprints: { readonly base: string; readonly ft: string };
  readonly nLayers: number;
}

/** `values`: the command's options (--tokenizer replaces the tokenizer found beside the models; --allow-nonfinite). */
export async function openPair(basePath: string, ftPath: string, backend: Backend, values: Values, signal?: AbortSignal): Promise<OpenedPair> {
  const opened = await openPairAt(basePath, ftPath, values);
  checkMemory(opened, backend, values);
  const { base, ft } = opened.sources(backend);
  if (!opened.tokenizer) throw new FormatError(basePath, 'has no tokenizer (tokenizer.json, or one inside the GGUF / beside the llama2.c file), so the corpus cannot be tokenized; give one with --tokenizer');
  return { base, ft, tokenizer: opened.tokenizer, fingerprints: await opened.fingerprints(signal), nLayers: base.config.nLayers };
}

export interface ActivationRequest extends CollectSettings {
  readonly corpusPath: string;
  readonly tokensPerSample: number;
  readonly maxSamples?: number;
  /** Folder of activation files; null: no cache. */
  readonly cacheDir: string | null;
  readonly signal?: AbortSignal;
  readonly log: (line: string) => void;
  readonly onProgress?: (done: number, total: number) => void;
}

export interface PreparedActivations {
  readonly acts: PairedActivations;
  readonly samples: number[][];
  readonly cacheFile: string | null;
  readonly cached: boolean;
  readonly seconds: number;
}

export function defaultCacheDir(): string {
  const env = process.env.NEURODIFF_CACHE;
  if (env) return env;
  return join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'neurodiff', 'activations');
}

/** The corpus tokenized, and the paired activations: read from the cache when it holds them, else collected (and cached). */
export async function prepareActivations(pair: OpenedPair, backend: Backend, req: ActivationRequest): Promise<PreparedActivations> {
  const t0 = performance.now();
  if (!existsSync(req.corpusPath)) throw new FormatError(req.corpusPath, 'no such corpus file');
  const corpusBytes = new Uint8Array(await readFile(req.corpusPath));
  const samples = tokenizeCorpus(new TextDecoder().decode(corpusBytes), pair.tokenizer, {
    tokensPerSample: req.tokensPerSample,
    ...(req.maxSamples !== undefined ? { maxSamples: req.maxSamples } : {}),
  });
  if (samples.length === 0) throw new FormatError(req.corpusPath, 'has no non-empty lines: a corpus is a text file with one sample per line');
  const layer = req.layer ?? defaultLayer(pair.nLayers);
  const hook = req.hook ?? 'resid_post';
  const skipPositions = req.skipPositions ?? 1;
  const targetRms = req.targetRms ?? 1;
  const key = await activationCacheKey({
    base: pair.fingerprints.base,
    ft: pair.fingerprints.ft,
    corpus: await sha256Hex(corpusBytes),
    layer,
    hook,
    settings: { tokensPerSample: req.tokensPerSample, maxSamples: req.maxSamples ?? null, skipPositions, targetRms },
  });
  const cacheFile = req.cacheDir === null ? null : join(req.cacheDir, `${key}.safetensors`);
  if (cacheFile && existsSync(cacheFile)) {
    const acts = await decodeActivations(await pathSource(cacheFile), key, req.signal);
    req.log(`activations: ${acts.rows} rows from the cache (${cacheFile})`);
    return { acts, samples, cacheFile, cached: true, seconds: (performance.now() - t0) / 1000 };
  }
  req.log(`activations: ${samples.length} samples, ${hook} of layer ${layer}, both models`);
  const runner = new PairedRunner(pair.base, pair.ft, backend, req.signal ? { signal: req.signal } : {});
  let acts: PairedActivations;
  try {
    acts = await collectPairedActivations(runner, samples, {
      layer,
      hook,
      skipPositions,
      targetRms,
      ...(req.signal ? { signal: req.signal } : {}),
      ...(req.onProgress ? { onProgress: (p: { done: number; total: number }) => req.onProgress!(p.done, p.total) } : {}),
    });
  } finally {
    runner.dispose();
  }
  acts = { ...acts, info: { ...acts.info, corpus: req.corpusPath, tokens_per_sample: String(req.tokensPerSample) } };
  if (cacheFile && req.cacheDir) {
    await mkdir(req.cacheDir, { recursive: true });
    const tmp = `${cacheFile}.${process.pid}.tmp`;
    await writeFile(tmp, encodeActivations(acts, key));
    await rename(tmp, cacheFile);
    req.log(`activations: ${acts.rows} rows cached in ${cacheFile}`);
  }
  return { acts, samples, cacheFile, cached: false, seconds: (performance.now() - t0) / 1000 };
}
