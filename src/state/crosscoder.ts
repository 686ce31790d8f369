// The Crosscoders view's state: training settings, the latent shown and the browser's filters (all
// in permalinks), the corpus, and the training/analysis run done by a pluggable runner that keeps
// the loaded pair (a Web Worker in the app, in-process in tests).
import { z } from 'zod';
import type { StateCreator } from 'zustand/vanilla';
import type { FileSet } from '../io/source.ts';
import type { CorpusText, CrosscoderSummary, LatentDetail, PairInfo, Progress, SteerOut, StepPoint, TrainSettings } from '../jobs/crosscoder.ts';
import type { CrosscoderOp, CrosscoderOpResult, Timings } from '../jobs/analysis-worker-state.ts';
import type { Command } from '../jobs/transport.ts';

export interface OpHandlers {
  onProgress?: (p: Progress) => void;
  onSteps?: (points: StepPoint[]) => void;
}
import { pairReady, type ModelsSlice } from './models.ts';
import { loadBuiltinCorpusInto } from './builtin-corpus.ts';

/** The corpus served with the app: the demo's generic stories mixed with eight topics (one of them the sea). */
export const CROSSCODER_CORPUS = { path: 'models/demo/mixed_stories.txt', name: 'mixed_stories.txt' } as const;

/** The form's settings; the defaults train on the demo pair in about a minute on the CPU engine. */
export interface CcSettings {
  samples: number;
  tokensPerSample: number;
  dict: number;
  k: number;
  steps: number;
  lr: number;
  batch: number;
  auxAlpha: number;
}

export const DEFAULT_CC_SETTINGS: CcSettings = { samples: 400, tokensPerSample: 64, dict: 768, k: 8, steps: 500, lr: 4e-3, batch: 128, auxAlpha: 1 / 32 };

export const ccSettingsSchema = z.strictObject({
  samples: z.number().int().min(1).max(1_000_000),
  tokensPerSample: z.number().int().min(2).max(4096),
  dict: z.number().int().min(1).max(1 << 20),
  k: z.number().int().min(1).max(4096),
  steps: z.number().int().min(1).max(10_000_000),
  lr: z.number().positive().max(1),
  batch: z.number().int().min(1).max(1 << 16),
  auxAlpha: z.number().min(0).max(100),
});

/** Links may name only some settings or filters; the others take their defaults. */
const withDefaults = <T extends object>(defaults: T) => (p: Partial<Record<keyof T, unknown>>): T => ({ ...defaults, ...Object.fromEntries(Object.entries(p).filter(([, v]) => v !== undefined)) });

export const ccSettingsLink = ccSettingsSchema.partial().transform(withDefaults(DEFAULT_CC_SETTINGS));

export const LATENT_FILTER_CLASSES = ['all', 'ft-only', 'base-only', 'shared', 'other', 'ft-specific', 'base-specific'] as const;
export const LATENT_SORTS = ['ratio', 'ratio-desc', 'frequency', 'nu-error'] as const;
export const MIN_LOG_FREQUENCY = -8;
export const MAX_LATENT = (1 << 20) - 1;

export interface LatentFilter {
  cls: (typeof LATENT_FILTER_CLASSES)[number];
  /** log10 of the activation frequency: latents with frequency in [10^fmin, 10^fmax]. */
  fmin: number;
  fmax: number;
  /** Decoder norm ratio r in [rmin, rmax]. */
  rmin: number;
  rmax: number;
  /** Matches the text of a latent's top tokens (case-insensitive). */
  q: string;
  sort: (typeof LATENT_SORTS)[number];
}

export const DEFAULT_LATENT_FILTER: LatentFilter = { cls: 'all', fmin: MIN_LOG_FREQUENCY, fmax: 0, rmin: 0, rmax: 1, q: '', sort: 'ratio' };

export const latentFilterSchema = z.strictObject({
  cls: z.enum(LATENT_FILTER_CLASSES),
  fmin: z.number().min(MIN_LOG_FREQUENCY).max(0),
  fmax: z.number().min(MIN_LOG_FREQUENCY).max(0),
  rmin: z.number().min(0).max(1),
  rmax: z.number().min(0).max(1),
  q: z.string().max(100),
  sort: z.enum(LATENT_SORTS),
});

export const latentFilterLink = latentFilterSchema.partial().transform(withDefaults(DEFAULT_LATENT_FILTER));

export type CcCorpus =
  | { status: 'none' }
  | { status: 'loading'; name: string }
  | { status: 'ready'; corpus: CorpusText; builtin: boolean; lines: number }
  | { status: 'error'; name: string; message: string };

export type CcRun =
  | { status: 'idle' }
  /** `elapsedMs`: from the start to the last progress report. */
  | { status: 'running'; what: 'train' | 'resume' | 'load'; progress: Progress | null; startedAt: number; elapsedMs: number }
  | { status: 'paused'; steps: number }
  | { status: 'done'; timings: Timings; ms: number }
  | { status: 'error'; message: string }
  | { status: 'cancelled' };

export type OnDemand<T> = { status: 'running'; key: string } | { status: 'done'; key: string; value: T } | { status: 'error'; key: string; message: string };

export interface CrosscoderRunner {
  /** Runs an operation on the pair of `files`, opening it first when it is not the pair held. */
  run(files: { base: FileSet; ft: FileSet }, op: CrosscoderOp, handlers: OpHandlers): Promise<CrosscoderOpResult>;
  command(command: Command): void;
  /** Lets go of the pair held (its memory, its worker). */
  release(): void;
}

export interface CrosscoderSlice {
  ccSettings: CcSettings;
  /** The latent whose page is open, or null for the browser. */
  latent: number | null;
  latentFilter: LatentFilter;
  ccCorpus: CcCorpus;
  ccRun: CcRun;
  /** Loss, FVU and dead latents of every step of the training shown. */
  ccCurve: StepPoint[];
  ccResult: { summary: CrosscoderSummary; pair: PairInfo } | null;
  ccDetail: OnDemand<LatentDetail> | null;
  ccSteer: OnDemand<SteerOut> | null;
  /** The files the run and results belong to. */
  ccPair: { base: FileSet; ft: FileSet } | null;
  ccRunner: CrosscoderRunner | null;
  setCcSettings(patch: Partial<CcSettings>): void;
  setLatent(latent: number | null): void;
  setLatentFilter(patch: Partial<LatentFilter>): void;
  setCcCorpusState(corpus: CcCorpus): void;
  setCcCorpusText(name: string, text: string, builtin: boolean): void;
  setCrosscoderRunner(runner: CrosscoderRunner | null): void;
  /** Collects activations at `layer` and trains with the settings; the analysis follows. Never rejects. */
  trainCrosscoder(layer: number): Promise<void>;
  resumeCrosscoder(): Promise<void>;
  /** Pause, stop early and analyse, or cancel the run in flight. */
  commandCrosscoder(command: Command): void;
  /** Reads a crosscoder file and analyses it over the corpus (at the file's layer, else `layer`). Never rejects. */
  loadCrosscoderFile(file: Blob, name: string, layer: number): Promise<void>;
  /** The crosscoder shown, as safetensors bytes; rejects with the reason. */
  saveCrosscoderFile(): Promise<{ bytes: ArrayBuffer; name: string }>;
  /** Loads the latent page's contexts, histogram and logit effects. Never rejects. */
  loadLatentDetail(latent: number): Promise<void>;
  steerWithLatent(latent: number, prompt: string): Promise<void>;
  /** Forgets the run and results (the models changed). */
  resetCrosscoder(): void;
}

/** Multiples of mean ‖h_ft‖ the steering adds; 0 shows the unsteered generations. */
export const STEER_STRENGTHS = [0, 0.5, 1];
export const STEER_MAX_NEW = 24;

/** FNV-1a over the UTF-16 code units: enough to tell corpora apart in a cache key. */
function textHash(text: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0).toString(16).padStart(8, '0');
}

const now = () => (typeof performance !== 'undefined' ? performance.now() : Date.now());
const errorText = (e: unknown) => (e instanceof Error ? e.message : String(e));
const isAbort = (e: unknown) => e instanceof DOMException && e.name === 'AbortError';

export const createCrosscoderSlice: StateCreator<CrosscoderSlice & ModelsSlice, [], [], CrosscoderSlice> = (set, get) => {
  // Each run replaces the one before; results of an older one are dropped.
  let generation = 0;

  /** The loaded pair, or a message saying why there is none; switching pairs drops the old results. */
  const currentFiles = (): { base: FileSet; ft: FileSet } | string => {
    const { models, ccRunner } = get();
    const base = models.base.pending;
    const ft = models.ft.pending;
    if (!ccRunner) return 'no crosscoder runner is registered';
    if (!base || !ft || !pairReady(models)) return 'load a base and a fine-tuned model that fit together first';
    const pair = get().ccPair;
    if (!pair || pair.base !== base || pair.ft !== ft) set({ ccPair: { base, ft }, ccResult: null, ccDetail: null, ccSteer: null, ccCurve: [] });
    return { base, ft };
  };

  const collectRequest = (layer: number) => {
    const { ccCorpus, ccSettings } = get();
    if (ccCorpus.status !== 'ready') return null;
    return { corpus: ccCorpus.corpus, samples: ccSettings.samples, tokensPerSample: ccSettings.tokensPerSample, layer };
  };

  /** Runs a training or loading operation, keeping ccRun, the curve and the results in step. */
  const runMain = async (what: 'train' | 'resume' | 'load', op: CrosscoderOp) => {
    const files = currentFiles();
    if (typeof files === 'string') return set({ ccRun: { status: 'error', message: files } });
    const mine = ++generation;
    const current = () => generation === mine;
    const startedAt = now();
    if (what !== 'resume') set({ ccCurve: [], ccResult: null, ccDetail: null, ccSteer: null });
    set({ ccRun: { status: 'running', what, progress: null, startedAt, elapsedMs: 0 } });
    try {
      const result = await get().ccRunner!.run(files, op, {
        onProgress: (progress) => {
          if (current()) set({ ccRun: { status: 'running', what, progress, startedAt, elapsedMs: now() - startedAt } });
        },
        onSteps: (points) => {
          if (current()) set((s) => ({ ccCurve: s.ccCurve.concat(points) }));
        },
      });
      if (!current()) return;
      if (result.kind === 'paused') set({ ccRun: { status: 'paused', steps: result.steps } });
      else if (result.kind === 'analysed') {
        set({ ccRun: { status: 'done', timings: result.timings, ms: now() - startedAt }, ccResult: { summary: result.summary, pair: result.pair } });
        const latent = get().latent;
        if (latent !== null && latent < result.summary.D) void get().loadLatentDetail(latent);
      }
    } catch (e) {
      if (!current()) return;
      set({ ccRun: isAbort(e) ? { status: 'cancelled' } : { status: 'error', message: errorText(e) } });
    }
  };

  const onDemand = async <T>(read: () => OnDemand<T> | null, write: (v: OnDemand<T>) => void, key: string, op: CrosscoderOp, pick: (r: CrosscoderOpResult) => T) => {
    const files = currentFiles();
    if (typeof files === 'string') return write({ status: 'error', key, message: files });
    write({ status: 'running', key });
    const still = () => read()?.key === key && read()?.status === 'running';
    try {
      const value = pick(await get().ccRunner!.run(files, op, {}));
      if (still()) write({ status: 'done', key, value });
    } catch (e) {
      if (still()) write({ status: 'error', key, message: errorText(e) });
    }
  };
  const unexpected = (r: CrosscoderOpResult): never => {
    throw new Error(`the worker answered with a ${r.kind} result`);
  };

  return {
    ccSettings: DEFAULT_CC_SETTINGS,
    latent: null,
    latentFilter: DEFAULT_LATENT_FILTER,
    ccCorpus: { status: 'none' },
    ccRun: { status: 'idle' },
    ccCurve: [],
    ccResult: null,
    ccDetail: null,
    ccSteer: null,
    ccPair: null,
    ccRunner: null,
    setCcSettings: (patch) => set((s) => ({ ccSettings: { ...s.ccSettings, ...patch } })),
    setLatent: (latent) => set({ latent }),
    setLatentFilter: (patch) => set((s) => ({ latentFilter: { ...s.latentFilter, ...patch } })),
    setCcCorpusState: (ccCorpus) => set({ ccCorpus }),
    setCcCorpusText(name, text, builtin) {
      const lines = text.split(/\r?\n/).filter((l) => l.trim() !== '').length;
      if (lines === 0) return set({ ccCorpus: { status: 'error', name, message: `${name} has no non-empty lines: a corpus is a text file with one sample per line` } });
      set({ ccCorpus: { status: 'ready', corpus: { key: `${name}#${text.length}#${textHash(text)}`, name, text }, builtin, lines } });
    },
    setCrosscoderRunner: (ccRunner) => set({ ccRunner }),

    async trainCrosscoder(layer) {
      const collect = collectRequest(layer);
      if (!collect) return set({ ccRun: { status: 'error', message: 'the corpus is not ready: wait for it to load, or drop a text file with one sample per line' } });
      const { ccSettings: s } = get();
      const settings: TrainSettings = { dict: s.dict, k: s.k, steps: s.steps, lr: s.lr, batch: s.batch, auxAlpha: s.auxAlpha, seed: 0 };
      await runMain('train', { kind: 'train', collect, settings });
    },
    async resumeCrosscoder() {
      if (get().ccRun.status !== 'paused') return;
      await runMain('resume', { kind: 'resume' });
    },
    commandCrosscoder(command) {
      const run = get().ccRun;
      if (run.status !== 'running' && !(run.status === 'paused' && command === 'cancel')) return;
      if (run.status === 'running') get().ccRunner?.command(command);
      if (command === 'cancel') {
        generation++;
        set({ ccRun: { status: 'cancelled' } });
      }
    },
    async loadCrosscoderFile(file, name, layer) {
      const collect = collectRequest(layer);
      if (!collect) return set({ ccRun: { status: 'error', message: 'the corpus is not ready: the latents are analysed over it, so wait for it to load or drop one' } });
      await runMain('load', { kind: 'load', file, name, collect });
    },
    async saveCrosscoderFile() {
      const files = currentFiles();
      if (typeof files === 'string') throw new Error(files);
      const r = await get().ccRunner!.run(files, { kind: 'save' }, {});
      return r.kind === 'save' ? { bytes: r.bytes, name: r.name } : unexpected(r);
    },
    loadLatentDetail: (latent) =>
      onDemand(
        () => get().ccDetail,
        (ccDetail) => set({ ccDetail }),
        String(latent),
        { kind: 'latent', latent },
        (r) => (r.kind === 'latent' ? r.detail : unexpected(r)),
      ),
    steerWithLatent: (latent, prompt) =>
      onDemand(
        () => get().ccSteer,
        (ccSteer) => set({ ccSteer }),
        JSON.stringify([latent, prompt]),
        { kind: 'steer', request: { latent, prompt, strengths: STEER_STRENGTHS, maxNew: STEER_MAX_NEW } },
        (r) => (r.kind === 'steer' ? r.out : unexpected(r)),
      ),
    resetCrosscoder() {
      generation++;
      get().ccRunner?.release();
      set({ ccRun: { status: 'idle' }, ccCurve: [], ccResult: null, ccDetail: null, ccSteer: null, ccPair: null });
    },
  };
};

/** The run and results belong to the files now loaded. */
export function crosscoderPairIsCurrent(state: CrosscoderSlice & ModelsSlice): boolean {
  const pair = state.ccPair;
  return pair !== null && pair.base === state.models.base.pending && pair.ft === state.models.ft.pending;
}

/** Fetches the built-in corpus once (from the app's base URL `root`) unless a corpus is there. */
export function loadCrosscoderCorpus(store: { getState(): CrosscoderSlice }, root: string): Promise<void> {
  return loadBuiltinCorpusInto(
    {
      status: () => store.getState().ccCorpus.status,
      loading: (name) => store.getState().setCcCorpusState({ status: 'loading', name }),
      loaded: (name, text) => store.getState().setCcCorpusText(name, text, true),
      failed: (name, message) => store.getState().setCcCorpusState({ status: 'error', name, message }),
    },
    CROSSCODER_CORPUS,
    root,
  );
}
