// The page's side of the one analysis worker: one WorkerSession per loaded pair, shared by every
// view (weights, activations, crosscoders), and the runners each view's slice calls through it.
import type { WeightsAnswer, ActivationAnswer, CrosscoderOp, CrosscoderOpResult, OrganismOpResult, WorkerOptions } from '../jobs/analysis-worker-state.ts';
import type { OrganismStep } from '../jobs/organism.ts';
import type { PairFiles } from '../jobs/pair.ts';
import { WorkerSession, type Spawn } from '../jobs/transport.ts';
import type { StepPoint } from '../jobs/crosscoder.ts';
import type { ActivationsRunner } from './activations.ts';
import type { CrosscoderRunner } from './crosscoder.ts';
import type { OrganismRunner } from './organisms.ts';
import type { WeightsRunner } from './weights.ts';

export interface AnalysisClient {
  /** The session for `files`: the current one, or a new one (the old worker ends) when the pair changed. */
  session(files: PairFiles): WorkerSession;
  /** Ends the worker (the compute setting changed). */
  release(reason?: string): void;
  /** Ends the worker if it holds `files` (a view let go of a pair that is no longer loaded). */
  releaseIf(files: PairFiles | null): void;
}

export function analysisClient(spawn: Spawn, options: () => WorkerOptions = () => ({})): AnalysisClient {
  let current: WorkerSession | null = null;
  return {
    session(files) {
      if (!current || current.files.base !== files.base || current.files.ft !== files.ft) {
        current?.close('the models changed');
        current = new WorkerSession(files, spawn, options());
      }
      return current;
    },
    release(reason = 'the models were closed') {
      current?.close(reason);
      current = null;
    },
    releaseIf(files) {
      if (files && current && current.files.base === files.base && current.files.ft === files.ft) this.release();
    },
  };
}

/** The app's worker: a module Web Worker running analysis-worker.ts. */
export const browserSpawn: Spawn = (onFailure) => {
  const worker = new Worker(new URL('./analysis-worker.ts', import.meta.url), { type: 'module', name: 'analysis' });
  worker.addEventListener('error', (e) => onFailure(`the analysis worker failed: ${e.message || 'it could not start'}`));
  return { port: worker, terminate: () => worker.terminate() };
};

export function weightsRunner(client: AnalysisClient): WeightsRunner {
  return async (req, onProgress, signal) => {
    const a = await client.session(req).call<WeightsAnswer>('weights', { topK: req.topK }, { onProgress: (p) => onProgress(p as Parameters<typeof onProgress>[0]), signal });
    return { result: a.result, backend: a.backend, memory: a.memory };
  };
}

export function activationsRunner(client: AnalysisClient): ActivationsRunner {
  let held: PairFiles | null = null;
  return {
    async run(files, request, onProgress, signal) {
      held = files;
      const a = await client.session(files).call<ActivationAnswer>('activation', request, { onProgress, signal });
      return { result: a.result, ms: a.ms, pair: a.pair, memory: a.memory };
    },
    release: () => client.releaseIf(held),
  };
}

export function crosscoderRunner(client: AnalysisClient): CrosscoderRunner {
  let last: WorkerSession | null = null;
  return {
    run(files, op: CrosscoderOp, handlers) {
      last = client.session(files);
      return last.call<CrosscoderOpResult>('crosscoder', op, {
        ...(handlers.onProgress ? { onProgress: handlers.onProgress as (p: unknown) => void } : {}),
        ...(handlers.onSteps ? { onEvent: (e: unknown) => handlers.onSteps?.(e as StepPoint[]) } : {}),
      });
    },
    command(command) {
      last?.command(command);
    },
    release: () => client.releaseIf(last?.files ?? null),
  };
}

export function organismRunner(client: AnalysisClient): OrganismRunner {
  let last: WorkerSession | null = null;
  return {
    run(files, op, handlers) {
      last = client.session(files);
      return last.call<OrganismOpResult>('organism', op, {
        ...(handlers.onProgress ? { onProgress: handlers.onProgress } : {}),
        ...(handlers.onSteps ? { onEvent: (e: unknown) => handlers.onSteps?.(e as OrganismStep[]) } : {}),
      });
    },
    command(command) {
      last?.command(command);
    },
  };
}
