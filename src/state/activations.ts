// The activation views' state: their settings (in permalinks), the corpus, and one run per task
// (lens, δ per token, ADL, steering, patching, the Methods view's analyses) done by a pluggable runner
// that keeps the loaded pair (a Web Worker in the app, in-process in tests). The app's runner answers
// through the query layer (queries.ts), which keeps results for the session and in IndexedDB.
import type { StateCreator } from 'zustand/vanilla';
import type { HookKind } from '../analysis/activations/differences.ts';
import type { PositionsCompared } from '../analysis/activations/patching.ts';
import type { Progress } from '../analysis/activations/run.ts';
import { DEFAULT_ADL_SAMPLES, DEFAULT_TOKENS_PER_SAMPLE } from '../analysis/activations/adl.ts';
import type { ActivationRequest, ActivationResult, ActivationTask, CorpusRef, PairFiles, PairInfo, ResultFor } from '../jobs/activations.ts';
import type { MemoryPlan } from '../jobs/memory.ts';

export interface ActivationOutcome {
  result: ActivationResult;
  /** Time the worker spent on the request (the pair's loading left out). */
  ms: number;
  pair: PairInfo;
  /** The worker's memory plan (both models resident or one at a time, and why). */
  memory?: MemoryPlan;
  /** Set when the outcome was not computed now: from the query cache ('memory') or IndexedDB ('stored'), and when it was computed (ms since the epoch). */
  cached?: { from: 'memory' | 'stored'; computedAt: number };
}
import { pairReady, type ModelsSlice } from './models.ts';
import { loadBuiltinCorpusInto } from './builtin-corpus.ts';

export const DELTA_SCALES = ['norm', 'relative', 'cosine'] as const;
export type DeltaScale = (typeof DELTA_SCALES)[number];
export const PATCH_POSITIONS = ['all', 'last'] as const satisfies readonly PositionsCompared[];

export const DEFAULT_PROMPT = 'Once upon a time, a little boy went to the';
export { DEFAULT_ADL_SAMPLES, DEFAULT_TOKENS_PER_SAMPLE };
export const MAX_ADL_SAMPLES = 100_000;
export const MAX_TOKENS_PER_SAMPLE = 2048;
export const LENS_TOP = 5;
export const ADL_TOP = 20;
export const STEER_STRENGTHS = [0, 0.25, 0.5, 1];
export const STEER_MAX_NEW = 32;
/** The corpus served with the app (the demo's generic stories), relative to the app's base URL. */
export const BUILTIN_CORPUS = { path: 'models/demo/generic_stories.txt', name: 'generic_stories.txt' } as const;

export type ActivationsRunner = {
  /** Runs a request on the pair of `files`, loading it first when it is not the pair held. */
  run(files: PairFiles, request: ActivationRequest, onProgress: (p: Progress) => void, signal: AbortSignal): Promise<ActivationOutcome>;
  /** Lets go of the pair held (its memory, its worker). */
  release(): void;
};

export type TaskRun =
  | { status: 'running'; key: string; progress: Progress | null; startedAt: number; elapsedMs: number }
  /** `cached`: kept from before rather than computed now; `cachedAt`: when, if it came from IndexedDB (a reload, a reopened link). */
  | { status: 'done'; key: string; result: ActivationResult; ms: number; backend: string; cached: boolean; cachedAt: number | null }
  | { status: 'error'; key: string; message: string }
  | { status: 'cancelled'; key: string };

export type CorpusState =
  | { status: 'none' }
  | { status: 'loading'; name: string }
  | { status: 'ready'; ref: CorpusRef; builtin: boolean; lines: number }
  | { status: 'error'; name: string; message: string };

export interface ActivationsSlice {
  /** The lens's selected column (with `layer`); null: none selected. */
  position: number | null;
  /** The hook point of the δ heat strip. */
  hookKind: HookKind;
  deltaScale: DeltaScale;
  /** ADL corpus: samples used and tokens kept per sample. */
  adlSamples: number;
  adlTokens: number;
  patchPositions: PositionsCompared;
  corpus: CorpusState;
  activationRuns: Partial<Record<ActivationTask, TaskRun>>;
  /** The files the runs belong to. */
  activationsPair: PairFiles | null;
  activationsInfo: PairInfo | null;
  activationsRunner: ActivationsRunner | null;
  setPosition(position: number | null): void;
  setHookKind(kind: HookKind): void;
  setDeltaScale(scale: DeltaScale): void;
  setAdlSamples(n: number): void;
  setAdlTokens(n: number): void;
  setPatchPositions(p: PositionsCompared): void;
  setCorpusState(corpus: CorpusState): void;
  /** A corpus from text (a dropped file, or the built-in one once fetched). */
  setCorpusText(name: string, text: string, builtin: boolean): void;
  setActivationsRunner(runner: ActivationsRunner | null): void;
  /** Runs the request (the runner may answer from its cache), replacing the same task's run. Never rejects. */
  runActivation(request: ActivationRequest): Promise<void>;
  cancelActivation(task: ActivationTask): void;
  /** Forgets the runs and the loaded pair (the models changed). */
  resetActivations(): void;
}

/** FNV-1a over the UTF-16 code units: enough to tell corpora apart in a cache key. */
function textHash(text: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0).toString(16).padStart(8, '0');
}

export function corpusRef(name: string, text: string): CorpusRef {
  return { key: `${name}#${text.length}#${textHash(text)}`, name, text };
}

/** A request in one string, to tell whether a run answers it: its settings, with a corpus named by its key rather than its text. */
export function requestKey(request: ActivationRequest): string {
  return JSON.stringify(request, (k, v: unknown) => (k === 'corpus' && typeof v === 'object' && v !== null ? (v as CorpusRef).key : v));
}

/** The run's result when it answers `key`, else null. */
export function resultFor<T extends ActivationTask>(runs: ActivationsSlice['activationRuns'], task: T, key: string): ResultFor<T> | null {
  const run = runs[task];
  return run?.status === 'done' && run.key === key ? (run.result as ResultFor<T>) : null;
}

const now = () => (typeof performance !== 'undefined' ? performance.now() : Date.now());

export const createActivationsSlice: StateCreator<ActivationsSlice & ModelsSlice, [], [], ActivationsSlice> = (set, get) => {
  const controllers = new Map<ActivationTask, AbortController>();
  const setRun = (task: ActivationTask, run: TaskRun) => set((s) => ({ activationRuns: { ...s.activationRuns, [task]: run } }));
  const stop = (task: ActivationTask) => {
    controllers.get(task)?.abort(new DOMException('the analysis was cancelled', 'AbortError'));
    controllers.delete(task);
  };
  return {
    position: null,
    hookKind: 'resid_post',
    deltaScale: 'norm',
    adlSamples: DEFAULT_ADL_SAMPLES,
    adlTokens: DEFAULT_TOKENS_PER_SAMPLE,
    patchPositions: 'all',
    corpus: { status: 'none' },
    activationRuns: {},
    activationsPair: null,
    activationsInfo: null,
    activationsRunner: null,
    setPosition: (position) => set({ position }),
    setHookKind: (hookKind) => set({ hookKind }),
    setDeltaScale: (deltaScale) => set({ deltaScale }),
    setAdlSamples: (adlSamples) => set({ adlSamples }),
    setAdlTokens: (adlTokens) => set({ adlTokens }),
    setPatchPositions: (patchPositions) => set({ patchPositions }),
    setCorpusState: (corpus) => set({ corpus }),
    setCorpusText(name, text, builtin) {
      const lines = text.split(/\r?\n/).filter((l) => l.trim() !== '').length;
      if (lines === 0) {
        set({ corpus: { status: 'error', name, message: `${name} has no non-empty lines: a corpus is a text file with one sample per line` } });
        return;
      }
      set({ corpus: { status: 'ready', ref: corpusRef(name, text), builtin, lines } });
    },
    setActivationsRunner: (activationsRunner) => set({ activationsRunner }),

    async runActivation(request) {
      const { task } = request;
      const key = requestKey(request);
      const { models, activationsRunner: runner } = get();
      const base = models.base.pending;
      const ft = models.ft.pending;
      if (!runner) return setRun(task, { status: 'error', key, message: 'no activations runner is registered' });
      if (!base || !ft || !pairReady(models)) return setRun(task, { status: 'error', key, message: 'load a base and a fine-tuned model that fit together first' });
      const pair = get().activationsPair;
      if (!pair || pair.base !== base || pair.ft !== ft) {
        for (const t of [...controllers.keys()]) stop(t);
        set({ activationsPair: { base, ft }, activationsInfo: null, activationRuns: {} });
      }
      const existing = get().activationRuns[task];
      if (existing && existing.key === key && (existing.status === 'running' || existing.status === 'done')) return;
      stop(task);
      const mine = new AbortController();
      controllers.set(task, mine);
      const current = () => controllers.get(task) === mine;
      const startedAt = now();
      setRun(task, { status: 'running', key, progress: null, startedAt, elapsedMs: 0 });
      try {
        const outcome = await runner.run(
          { base, ft },
          request,
          (progress) => {
            if (current()) setRun(task, { status: 'running', key, progress, startedAt, elapsedMs: now() - startedAt });
          },
          mine.signal,
        );
        if (!current()) return;
        const { cached } = outcome;
        // A result read back loaded no models: the pair's load time is not known from it.
        if (!cached) set({ activationsInfo: outcome.pair });
        setRun(task, { status: 'done', key, result: outcome.result, ms: outcome.ms, backend: outcome.pair.backend, cached: cached !== undefined, cachedAt: cached?.from === 'stored' ? cached.computedAt : null });
      } catch (e) {
        if (!current()) return;
        setRun(task, mine.signal.aborted ? { status: 'cancelled', key } : { status: 'error', key, message: e instanceof Error ? e.message : String(e) });
      } finally {
        if (current()) controllers.delete(task);
      }
    },
    cancelActivation(task) {
      const run = get().activationRuns[task];
      if (!controllers.has(task) || run?.status !== 'running') return;
      stop(task);
      setRun(task, { status: 'cancelled', key: run.key });
    },
    resetActivations() {
      for (const t of [...controllers.keys()]) stop(t);
      get().activationsRunner?.release();
      set({ activationRuns: {}, activationsPair: null, activationsInfo: null });
    },
  };
};

/** The runs belong to the files now loaded. */
export function activationsPairIsCurrent(state: ActivationsSlice & ModelsSlice): boolean {
  const pair = state.activationsPair;
  return pair !== null && pair.base === state.models.base.pending && pair.ft === state.models.ft.pending;
}

/** Fetches the built-in corpus once (from the app's base URL `root`) unless a corpus is there. */
export function loadBuiltinCorpus(store: { getState(): ActivationsSlice }, root: string): Promise<void> {
  return loadBuiltinCorpusInto(
    {
      status: () => store.getState().corpus.status,
      loading: (name) => store.getState().setCorpusState({ status: 'loading', name }),
      loaded: (name, text) => store.getState().setCorpusText(name, text, true),
      failed: (name, message) => store.getState().setCorpusState({ status: 'error', name, message }),
    },
    BUILTIN_CORPUS,
    root,
  );
}
