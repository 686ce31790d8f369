// The query layer over the analysis worker (@tanstack/react-query): every analysis result is a
// query keyed by both models' fingerprints, the analysis and its settings. Its query function runs
// the job in the worker with the query's AbortSignal (cancel reaches the worker through it); the
// query cache keeps results for the session and the persister (stored-results.ts) keeps them in
// IndexedDB, so a result already computed for the same key is read back, not recomputed. Run status
// and progress stay in the zustand store (weights.ts, activations.ts).
import { isCancelledError, type QueryKey } from '@tanstack/react-query';
import { sha256Hex } from '../io/fingerprint.ts';
import type { FileSet } from '../io/source.ts';
import type { ActivationRequest, CorpusRef } from '../jobs/activations.ts';
import type { ActivationsRunner } from './activations.ts';
import { isDemoRef, isUrlRef, refLabel } from './model-ref.ts';
import { fingerprintOf } from './session.ts';
import type { AppStore } from './store.ts';
import type { AnalysisMeta } from './stored-results.ts';
import type { WeightsRunner } from './weights.ts';

/** The first element of every analysis query's key. */
export const ANALYSIS = 'analysis';

/** An analysis's key: both models' fingerprints, the analysis, and its settings (hashed with sorted object keys). */
export function analysisKey(kind: string, models: { base: string; ft: string }, settings: Record<string, unknown>): QueryKey {
  return [ANALYSIS, kind, models, settings];
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

/** A request's settings for its key: every field but the task, the corpus by the digest of its text. */
export async function activationSettings(request: ActivationRequest): Promise<Record<string, unknown>> {
  const { task: _task, ...rest } = request;
  return 'corpus' in rest ? { ...rest, corpus: await corpusDigest(rest.corpus) } : rest;
}

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

export interface AnalysisWork {
  /** The analysis: the key's second element and the cache panel's first column. */
  kind: string;
  pair: { base: FileSet; ft: FileSet };
  settings(): Promise<Record<string, unknown>>;
  /** What was computed, in words, after the pair's label ("" for nothing more). */
  detail: string;
}

/** Where a result came from: computed now, the query cache of this session, or IndexedDB. */
export type Provenance = 'computed' | 'memory' | 'stored';

export interface Answered<T> {
  value: T;
  from: Provenance;
  /** When the value was computed (ms since the epoch). */
  computedAt: number;
}

const message = (e: unknown) => (e instanceof Error ? e.message : String(e));

/**
 * The result of `work` as a query: read from the query cache or IndexedDB when there, else
 * `compute(signal)` with the query's signal. `signal` (the caller's) cancels the query, which
 * aborts the query's signal. Models that cannot be fingerprinted are computed without the cache.
 */
export async function throughQuery<T>(store: AppStore, work: AnalysisWork, compute: (signal: AbortSignal) => Promise<T>, signal: AbortSignal): Promise<Answered<T>> {
  const { queryClient, storedResults } = store.getState();
  let queryKey: QueryKey;
  try {
    const [base, ft, settings] = await Promise.all([fingerprintOf(work.pair.base), fingerprintOf(work.pair.ft), work.settings()]);
    queryKey = analysisKey(work.kind, { base: base.fingerprint, ft: ft.fingerprint }, settings);
  } catch (e) {
    signal.throwIfAborted();
    console.warn(`the ${work.kind} result is not cached: ${message(e)}`);
    return { value: await compute(signal), from: 'computed', computedAt: Date.now() };
  }
  signal.throwIfAborted();
  const inMemory = queryClient.getQueryData(queryKey) !== undefined;
  const askedAt = Date.now();
  let ran = false;
  const cancel = () => void queryClient.cancelQueries({ queryKey, exact: true });
  signal.addEventListener('abort', cancel, { once: true });
  try {
    const meta: AnalysisMeta = { kind: work.kind, label: work.detail ? `${pairLabel(store)} · ${work.detail}` : pairLabel(store) };
    const data = await queryClient.fetchQuery<{ value: T; computedAt: number }>({
      queryKey,
      queryFn: async ({ signal: querySignal }) => {
        ran = true;
        return { value: await compute(querySignal), computedAt: Date.now() };
      },
      meta,
      ...(storedResults ? { persister: storedResults.persister } : {}),
    });
    // Not run here: in memory already, or restored by the persister (or another caller's run of the same key, just now).
    const from: Provenance = inMemory ? 'memory' : ran || data.computedAt >= askedAt ? 'computed' : 'stored';
    return { value: data.value, from, computedAt: data.computedAt };
  } catch (e) {
    if (isCancelledError(e)) signal.throwIfAborted();
    throw e;
  } finally {
    signal.removeEventListener('abort', cancel);
  }
}

/** The weights view's runner as a query. */
export function queriedWeightsRunner(inner: WeightsRunner, store: AppStore): WeightsRunner {
  return async (req, onProgress, signal) => {
    const work: AnalysisWork = { kind: 'weights', pair: req, settings: async () => ({ topK: req.topK }), detail: '' };
    const { value, from, computedAt } = await throughQuery(store, work, (s) => inner(req, onProgress, s), signal);
    return from === 'computed' ? value : { ...value, cachedAt: computedAt };
  };
}

const MAX_DETAIL = 60;

/** Fields the detail names in their own words; every other setting is listed as "name value". */
const DETAIL_NAMED = new Set(['task', 'prompt', 'corpus', 'samples', 'tokensPerSample']);

/** A request in words for the cache panel: the prompt, the corpus, then every other setting. */
export function activationDetail(request: ActivationRequest): string {
  const prompt = 'prompt' in request ? `“${request.prompt.length > MAX_DETAIL ? request.prompt.slice(0, MAX_DETAIL - 1) + '…' : request.prompt}”` : '';
  const corpus = 'corpus' in request ? `${request.corpus.name}, ${request.samples} × ${request.tokensPerSample} tokens` : '';
  const settings = Object.entries(request)
    .filter(([k, v]) => !DETAIL_NAMED.has(k) && v !== undefined)
    .map(([k, v]) => `${k} ${Array.isArray(v) ? v.join(',') : typeof v === 'object' ? JSON.stringify(v) : String(v)}`)
    .join(', ');
  return [prompt, corpus, settings].filter((s) => s !== '').join(' · ');
}

/** The activation views' runner as queries; a result already there needs no worker and no loaded pair. */
export function queriedActivationsRunner(inner: ActivationsRunner, store: AppStore): ActivationsRunner {
  return {
    async run(files, request, onProgress, signal) {
      const work: AnalysisWork = { kind: request.task, pair: files, settings: () => activationSettings(request), detail: activationDetail(request) };
      const { value, from, computedAt } = await throughQuery(store, work, (s) => inner.run(files, request, onProgress, s), signal);
      return from === 'computed' ? value : { ...value, cached: { from, computedAt } };
    },
    release: () => inner.release(),
  };
}
