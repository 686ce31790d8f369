// The weights view's state: the chosen metric and tensor (both in permalinks), and the diff run
// for the loaded pair, done by a pluggable runner (a Web Worker in the app, in-process in tests).
import type { StateCreator } from 'zustand/vanilla';
import type { FileSet } from '../io/source.ts';
import type { Metric } from './metrics.ts';
import { pairReady, type ModelsSlice } from './models.ts';
import type { DiffProgress, WeightsRequest } from '../jobs/weights.ts';
import type { MemoryPlan } from '../jobs/memory.ts';
import type { WeightsDiff } from '../analysis/weights/types.ts';

export interface WeightsOutcome {
  result: WeightsDiff;
  /** The backend the spectra ran on, in words. */
  backend: string;
  /** The worker's memory plan (both models resident or one at a time, and why). */
  memory?: MemoryPlan;
  /** When the result was computed, if it was not computed now (the query cache or IndexedDB; ms since the epoch). */
  cachedAt?: number;
}

/** Singular values kept per tensor: enough for the spectrum plot and the head of the energy curve. */
export const WEIGHTS_TOP_K = 64;

export type WeightsRunner = (req: WeightsRequest, onProgress: (p: DiffProgress) => void, signal: AbortSignal) => Promise<WeightsOutcome>;

export type WeightsRun =
  | { status: 'idle' }
  /** `elapsedMs`: from the start to the last progress report, for the time-left estimate. */
  | { status: 'running'; progress: DiffProgress | null; startedAt: number; elapsedMs: number }
  | ({ status: 'done'; ms: number } & WeightsOutcome)
  | { status: 'error'; message: string }
  | { status: 'cancelled' };

export interface WeightsSlice {
  metric: Metric;
  /** The tensor whose panel is open (a Hugging Face name), or null. */
  tensor: string | null;
  weightsRun: WeightsRun;
  /** The file sets the run is or was for; a run for other files is stale. */
  weightsPair: { base: FileSet; ft: FileSet } | null;
  weightsRunner: WeightsRunner | null;
  setMetric(metric: Metric): void;
  selectTensor(name: string | null): void;
  setWeightsRunner(runner: WeightsRunner | null): void;
  /** Runs the diff on the loaded pair, replacing any run in flight. Never rejects. */
  runWeights(): Promise<void>;
  cancelWeights(): void;
  /** Forgets the run (the models changed). */
  resetWeights(): void;
}

const now = () => (typeof performance !== 'undefined' ? performance.now() : Date.now());

export const createWeightsSlice: StateCreator<WeightsSlice & ModelsSlice, [], [], WeightsSlice> = (set, get) => {
  let controller: AbortController | null = null;
  const stop = () => {
    controller?.abort(new DOMException('the weight diff was cancelled', 'AbortError'));
    controller = null;
  };
  return {
    metric: 'relative',
    tensor: null,
    weightsRun: { status: 'idle' },
    weightsPair: null,
    weightsRunner: null,
    setMetric: (metric) => set({ metric }),
    selectTensor: (tensor) => set({ tensor }),
    setWeightsRunner: (weightsRunner) => set({ weightsRunner }),
    async runWeights() {
      const { models, weightsRunner } = get();
      const base = models.base.pending;
      const ft = models.ft.pending;
      stop();
      if (!weightsRunner) {
        set({ weightsRun: { status: 'error', message: 'no weights runner is registered' } });
        return;
      }
      if (!base || !ft || !pairReady(models)) {
        set({ weightsRun: { status: 'error', message: 'load a base and a fine-tuned model that fit together first' } });
        return;
      }
      const mine = new AbortController();
      controller = mine;
      const startedAt = now();
      set({ weightsPair: { base, ft }, weightsRun: { status: 'running', progress: null, startedAt, elapsedMs: 0 } });
      const current = () => controller === mine;
      try {
        const outcome = await weightsRunner(
          { base, ft, topK: WEIGHTS_TOP_K },
          (progress) => {
            if (current()) set({ weightsRun: { status: 'running', progress, startedAt, elapsedMs: now() - startedAt } });
          },
          mine.signal,
        );
        if (current()) set({ weightsRun: { status: 'done', ms: now() - startedAt, ...outcome } });
      } catch (e) {
        if (!current()) return;
        set({ weightsRun: mine.signal.aborted ? { status: 'cancelled' } : { status: 'error', message: e instanceof Error ? e.message : String(e) } });
      } finally {
        if (current()) controller = null;
      }
    },
    cancelWeights() {
      if (!controller) return;
      stop();
      set({ weightsRun: { status: 'cancelled' } });
    },
    resetWeights() {
      stop();
      set({ weightsRun: { status: 'idle' }, weightsPair: null });
    },
  };
};

/** The run belongs to the files now loaded. */
export function runIsCurrent(state: WeightsSlice & ModelsSlice): boolean {
  const pair = state.weightsPair;
  return pair !== null && pair.base === state.models.base.pending && pair.ft === state.models.ft.pending;
}
