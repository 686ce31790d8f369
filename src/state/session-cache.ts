// Analysis runners behind the session cache: a result already computed for the same two models (by
// fingerprint), inputs and settings is read back instead of recomputed. One wrapper serves every
// analysis; each runner only says how its request splits into inputs and settings.
import { sha256Hex } from '../io/fingerprint.ts';
import type { FileSet } from '../io/source.ts';
import type { ActivationsRunner } from './activations.ts';
import type { ActivationRequest, CorpusRef } from '../jobs/activations.ts';
import type { ActivationOutcome } from './activations.ts';
import { resultKey, type ResultKeyParts } from './cache.ts';
import { isDemoRef, isUrlRef, refLabel } from './model-ref.ts';
import { fingerprintOf } from './session.ts';
import type { AppStore } from './store.ts';
import type { WeightsOutcome } from './weights.ts';
import type { WeightsRunner } from './weights.ts';

export const WEIGHTS_CACHE_KIND = 'weights';

/** Parameters in words: 3.2M, 1.54B. */
const paramsInWords = (n: number) => (n >= 1e9 ? `${(n / 1e9).toFixed(2)}B` : n >= 1e6 ? `${(n / 1e6).toFixed(1)}M` : `${(n / 1e3).toFixed(0)}K`);

/**
 * "base vs fine-tune" in words: the demo and URLs by their names; dropped files by what they are
 * (architecture and size, or the adapter's rank), with the fingerprint's first characters to tell
 * two such models apart.
 */
export function pairLabel(store: AppStore): string {
  const s = store.getState();
  const name = (role: 'base' | 'ft') => {
    const ref = s.modelRefs[role];
    const status = s.models[role].status;
    if (ref && (isDemoRef(ref) || isUrlRef(ref))) return refLabel(ref);
    if (status.kind === 'loaded') {
      const m = status.summary;
      const what = m.adapter ? `${m.architecture} adapter r ${m.adapter.r}` : `${m.architecture} ${paramsInWords(m.parameterCount)}`;
      return ref ? `${what} (${ref.fingerprint.slice(0, 8)})` : what;
    }
    return ref ? refLabel(ref) : role;
  };
  return `${name('base')} vs ${name('ft')}`;
}

export interface CachedWork {
  /** The analysis: the cache panel's first column, and part of the key. */
  kind: string;
  pair: { base: FileSet; ft: FileSet };
  /** The key's inputs and settings; called only when there is a cache to look in. */
  describe(): Promise<Pick<ResultKeyParts, 'inputs' | 'settings'>>;
  /** What was computed, in words, after the pair's label ("" for nothing more). */
  detail: string;
  /** The analysis in words, for the warning when its result cannot be stored. */
  what: string;
}

const message = (e: unknown) => (e instanceof Error ? e.message : String(e));

/**
 * The cached result of `work` with the time it was computed, or `compute()`'s (then stored, in the
 * background). A cache that cannot be read (private mode, quota, an unreadable file) only costs the
 * recomputation.
 */
export async function throughSessionCache<T>(store: AppStore, work: CachedWork, compute: () => Promise<T>, signal: AbortSignal): Promise<{ value: T; cachedAt?: number }> {
  const cache = store.getState().resultCache;
  let key: string | null = null;
  if (cache) {
    try {
      const [base, ft, parts] = await Promise.all([fingerprintOf(work.pair.base), fingerprintOf(work.pair.ft), work.describe()]);
      key = await resultKey({ kind: work.kind, models: { base: base.fingerprint, ft: ft.fingerprint }, ...parts });
      const hit = await cache.get<T>(key);
      signal.throwIfAborted();
      if (hit) return { value: hit.value, cachedAt: hit.info.createdAt };
    } catch (e) {
      signal.throwIfAborted();
      console.warn(`the session cache was skipped: ${message(e)}`);
    }
  }
  const value = await compute();
  if (cache && key) {
    const label = work.detail ? `${pairLabel(store)} · ${work.detail}` : pairLabel(store);
    cache.put(key, { kind: work.kind, label }, value).catch((e: unknown) => console.warn(`${work.what} was not cached: ${message(e)}`));
  }
  return { value };
}

export function cachedWeightsRunner(inner: WeightsRunner, store: AppStore): WeightsRunner {
  return async (req, onProgress, signal) => {
    const work: CachedWork = { kind: WEIGHTS_CACHE_KIND, pair: req, describe: async () => ({ settings: { topK: req.topK } }), detail: '', what: 'the weight diff' };
    const { value, cachedAt } = await throughSessionCache<WeightsOutcome>(store, work, () => inner(req, onProgress, signal), signal);
    return cachedAt === undefined ? value : { ...value, cachedAt };
  };
}

const corpusDigests = new WeakMap<CorpusRef, Promise<string>>();

/** SHA-256 of a corpus's text, once per corpus: its name does not change the results. */
export function corpusDigest(corpus: CorpusRef): Promise<string> {
  let digest = corpusDigests.get(corpus);
  if (!digest) {
    digest = sha256Hex(corpus.text);
    corpusDigests.set(corpus, digest);
  }
  return digest;
}

/** A request's key parts: what it reads (the prompt, the corpus by digest) and every other field as settings. */
export async function activationKeyParts(request: ActivationRequest): Promise<Pick<ResultKeyParts, 'inputs' | 'settings'>> {
  const { task: _task, ...rest } = request;
  const inputs: Record<string, unknown> = {};
  const settings: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(rest)) {
    if (name === 'prompt') inputs.prompt = value;
    else if (name === 'corpus') inputs.corpus = await corpusDigest(value as CorpusRef);
    else settings[name] = value;
  }
  return { inputs, settings };
}

const MAX_DETAIL = 60;

/** Fields the detail names in their own words; every other setting is listed as "name value". */
const DETAIL_NAMED = new Set(['task', 'prompt', 'corpus', 'samples', 'tokensPerSample']);

function activationDetail(request: ActivationRequest): string {
  const prompt = 'prompt' in request ? `“${request.prompt.length > MAX_DETAIL ? request.prompt.slice(0, MAX_DETAIL - 1) + '…' : request.prompt}”` : '';
  const corpus = 'corpus' in request ? `${request.corpus.name}, ${request.samples} × ${request.tokensPerSample} tokens` : '';
  const settings = Object.entries(request)
    .filter(([k, v]) => !DETAIL_NAMED.has(k) && v !== undefined)
    .map(([k, v]) => `${k} ${Array.isArray(v) ? v.join(',') : typeof v === 'object' ? JSON.stringify(v) : String(v)}`)
    .join(', ');
  return [prompt, corpus, settings].filter((s) => s !== '').join(' · ');
}

/** The activation views' runner behind the session cache; a hit needs no worker and no loaded pair. */
export function cachedActivationsRunner(inner: ActivationsRunner, store: AppStore): ActivationsRunner {
  return {
    async run(files, request, onProgress, signal) {
      const work: CachedWork = { kind: request.task, pair: files, describe: () => activationKeyParts(request), detail: activationDetail(request), what: `the ${request.task} result` };
      const { value, cachedAt } = await throughSessionCache<ActivationOutcome>(store, work, () => inner.run(files, request, onProgress, signal), signal);
      return cachedAt === undefined ? value : { ...value, cachedAt };
    },
    release: () => inner.release(),
  };
}
