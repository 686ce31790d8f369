// The analysis worker's state and operations: the pair is opened once (headers parsed once), the
// models load once on first use and serve every view (weights, activations, crosscoders), and each
// operation is a job run on them. To add an analysis: write its job (pair, settings, ctx) → result in
// src/jobs, add a handler here under a new name, and call it from the page with
// `session.call('name', args, { onProgress, signal })` (src/state/analysis-client.ts).
import { loadCrosscoder, saveCrosscoder } from '../analysis/crosscoder/file.ts';
import type { CrosscoderEngine } from '../analysis/crosscoder/engine.ts';
import { blobSource } from '../io/source.ts';
import type { Backend } from '../model/backend.ts';
import { loadActivationPair, runActivationTask, type ActivationRequest, type ActivationResult, type LoadedPair, type PairInfo } from './activations.ts';
import {
  analyseCrosscoder,
  collectForCrosscoder,
  collectKey,
  continueTraining,
  latentDetail,
  startTraining,
  steerLatent,
  trainedModel,
  type Analysis,
  type CollectRequest,
  type Collected,
  type CrosscoderPair,
  type CrosscoderSummary,
  type LatentDetail,
  type Progress as CrosscoderProgress,
  type SteerOut,
  type SteerRequest,
  type StepPoint,
  type Training,
  type TrainSettings,
} from './crosscoder.ts';
import type { JobProgress } from './context.ts';
import { planMemory, type MemoryPlan } from './memory.ts';
import { continueOrganism, organismFiles, startOrganism, type MakeTrainEngine, type OrganismOut, type OrganismSettings, type OrganismStep, type OrganismTraining } from './organism.ts';
import { needTokenizer, openPair, type OpenedPair, type PairFiles } from './pair.ts';
import type { Answer, CallContext, Handler } from './transport.ts';
import { weightsJob } from './weights.ts';
import type { WeightsDiff } from '../analysis/weights/types.ts';

/** An engine that holds device memory says so with dispose (the WebGPU engine). */
export type WorkerEngine = CrosscoderEngine & { dispose?(): void };

export interface WorkerDeps {
  /** The backend the options ask for, and its name in words. */
  makeBackend(options: WorkerOptions): Promise<{ backend: Backend; name: string; kind: 'cpu' | 'webgpu'; limits?: { maxBufferSize: number; maxStorageBufferBindingSize: number } }>;
  /** The crosscoder engine for training and inference (the CPU engine when absent). */
  makeEngine?(d: number, D: number): Promise<WorkerEngine | undefined>;
  /** The organism training engine (the CPU engine, with the reason, when absent or when it gives a string). */
  makeTrainEngine?: MakeTrainEngine;
  /** Bytes of host memory the worker may use (navigator.deviceMemory, os.totalmem()). */
  hostBytes?(): number | undefined;
  /** Training steps go to the page at most this often (default STEP_FLUSH_MS). */
  stepFlushMs?: number;
}

export interface WorkerOptions {
  /** Compute on: auto (WebGPU on a hardware adapter, else CPU), webgpu (even on a software adapter), cpu. */
  backend?: 'auto' | 'webgpu' | 'cpu';
  /** Test only: WebGPU keeps tensors above this many bytes as row blocks, as if the device's storage bindings were this small. */
  testBindingBytes?: number;
}

export interface WorkerState {
  opened: OpenedPair;
  backend: Backend;
  backendName: string;
  memory: MemoryPlan;
  deps: WorkerDeps;
  /** The pair for every view (both models loaded on first use, or one at a time, as the plan says). */
  models: Promise<LoadedPair> | null;
  /** Where loading progress goes: the request running when a model loads. */
  progress: ((p: JobProgress) => void) | null;
  crosscoder: CrosscoderPair | null;
  collected: Collected | null;
  training: (Training & { trainMs: number; collectMs: number; engine: WorkerEngine | undefined }) | null;
  analysis: Analysis | null;
  /** A model organism being trained from the base (kept while paused). */
  organism: (OrganismTraining & { baseName: string }) | null;
}

export async function openWorkerState(files: PairFiles, options: WorkerOptions, deps: WorkerDeps): Promise<WorkerState> {
  const opened = await openPair(files);
  const made = await deps.makeBackend(options);
  const memory = planMemory(opened, { backend: made.kind, ...(made.limits ? { gpu: made.limits } : {}), hostBytes: deps.hostBytes?.() });
  // Status lines name the backend and the memory plan: "CPU in a worker; both models resident: …".
  return { opened, backend: made.backend, backendName: `${made.name}; ${memory.reason}`, memory, deps, models: null, progress: null, crosscoder: null, collected: null, training: null, analysis: null, organism: null };
}

const now = () => performance.now();

/** The pair once for every view: both models loaded on first use, or (one model at a time) a runner that loads each in turn. */
function models(s: WorkerState, ctx: CallContext): Promise<LoadedPair> {
  s.progress = ctx.onProgress;
  if (!s.models) {
    s.models = loadActivationPair(s.opened, { backend: s.backend, backendName: s.backendName, onProgress: (p) => s.progress?.(p) }, s.memory.mode);
    s.models.catch(() => (s.models = null));
  }
  return s.models;
}

/** The crosscoder's paired runner: the same one as every view's, so the pair is held once. */
async function crosscoderPair(s: WorkerState, ctx: CallContext): Promise<CrosscoderPair> {
  if (!s.crosscoder) {
    const tokenizer = needTokenizer(s.opened, 'crosscoders are trained on a tokenized corpus');
    const { runner, info } = await models(s, ctx);
    s.crosscoder = { runner, tokenizer, info: { layers: info.layers, dModel: info.dModel, vocab: info.vocab, backend: s.backendName } };
  }
  s.progress = (p) => ctx.onProgress({ ...p, stage: 'loading' });
  return s.crosscoder;
}

// —— weights and activations ——

export interface WeightsAnswer {
  result: WeightsDiff;
  backend: string;
  memory: MemoryPlan;
}

export interface ActivationAnswer {
  result: ActivationResult;
  /** Time the worker spent on the request (the pair's loading left out). */
  ms: number;
  pair: PairInfo;
  memory: MemoryPlan;
}

// —— crosscoders ——

export type CrosscoderOp =
  | { kind: 'train'; collect: CollectRequest; settings: TrainSettings }
  | { kind: 'resume' }
  /** A dropped file goes to the worker as a Blob: it reads the tensors by byte range, never the whole file at once. */
  | { kind: 'load'; file: Blob; name: string; collect: CollectRequest }
  | { kind: 'latent'; latent: number }
  | { kind: 'steer'; request: SteerRequest }
  | { kind: 'save' };

export interface Timings {
  collectMs: number;
  trainMs: number;
  analyseMs: number;
}

export type CrosscoderOpResult =
  | { kind: 'paused'; steps: number }
  | { kind: 'analysed'; summary: CrosscoderSummary; timings: Timings; pair: CrosscoderPair['info']; memory: MemoryPlan }
  | { kind: 'latent'; detail: LatentDetail }
  | { kind: 'steer'; out: SteerOut }
  | { kind: 'save'; bytes: ArrayBuffer; name: string };

/** Training steps go to the page at most this often. */
export const STEP_FLUSH_MS = 150;

const dropTraining = (s: WorkerState) => {
  s.training?.engine?.dispose?.();
  s.training = null;
};

async function collect(s: WorkerState, pair: CrosscoderPair, req: CollectRequest, ctx: CallContext) {
  const key = collectKey(req);
  if (s.collected?.key === key) return { collected: s.collected, ms: 0 };
  s.collected = null;
  const t0 = now();
  const c = await collectForCrosscoder(pair, req, { signal: ctx.signal, onProgress: ctx.onProgress });
  s.collected = c;
  return { collected: c, ms: now() - t0 };
}

async function analyse(s: WorkerState, pair: CrosscoderPair, model: Analysis['model'], c: Collected, source: CrosscoderSummary['source'], ctx: CallContext) {
  s.analysis = null;
  const engine = await s.deps.makeEngine?.(model.params.d, model.params.D);
  try {
    s.analysis = await analyseCrosscoder(pair, model, c, source, { signal: ctx.signal, onProgress: ctx.onProgress as (p: CrosscoderProgress) => void, ...(engine ? { engine } : {}) });
  } finally {
    engine?.dispose?.();
  }
  return s.analysis;
}

async function runTraining(s: WorkerState, pair: CrosscoderPair, ctx: CallContext): Promise<CrosscoderOpResult> {
  const t = s.training!;
  let buffered: StepPoint[] = [];
  let lastFlush = now();
  const flush = () => {
    if (buffered.length) ctx.emit(buffered);
    buffered = [];
    lastFlush = now();
  };
  const stop = new AbortController();
  const t0 = now();
  await continueTraining(t, {
    signal: stop.signal,
    onStep: (p) => {
      buffered.push(p);
      if (now() - lastFlush >= (s.deps.stepFlushMs ?? STEP_FLUSH_MS)) {
        flush();
        ctx.onProgress({ stage: 'training', done: p.step + 1, total: t.settings.steps });
      }
      try {
        ctx.signal.throwIfAborted();
      } catch {
        stop.abort();
      }
      if (ctx.command() !== undefined) stop.abort();
    },
  });
  t.trainMs += now() - t0;
  flush();
  ctx.signal.throwIfAborted();
  if (ctx.command() === 'pause') return { kind: 'paused', steps: t.trainer.steps };
  const model = await trainedModel(t);
  dropTraining(s);
  const a = await analyse(s, pair, model, t.collected, { kind: 'trained', name: `trained here (${t.trainer.steps} steps)` }, ctx);
  return { kind: 'analysed', summary: a.summary, timings: { collectMs: t.collectMs, trainMs: t.trainMs, analyseMs: a.summary.ms }, pair: pair.info, memory: s.memory };
}

async function crosscoderOp(s: WorkerState, op: CrosscoderOp, ctx: CallContext): Promise<CrosscoderOpResult> {
  const pair = await crosscoderPair(s, ctx);
  switch (op.kind) {
    case 'train': {
      dropTraining(s);
      const { collected: c, ms } = await collect(s, pair, op.collect, ctx);
      ctx.signal.throwIfAborted();
      const engine = await s.deps.makeEngine?.(c.acts.d, op.settings.dict);
      try {
        s.training = { ...startTraining(c, op.settings, op.collect.corpus.name, engine), trainMs: 0, collectMs: ms, engine };
      } catch (e) {
        engine?.dispose?.();
        throw e;
      }
      return runTraining(s, pair, ctx);
    }
    case 'resume':
      if (!s.training) throw new Error('there is no paused training to resume');
      return runTraining(s, pair, ctx);
    case 'load': {
      const model = await loadCrosscoder(blobSource(op.file, op.name), ctx.signal);
      const fileLayer = Number(model.info.layer);
      const fromFile = model.info.layer !== undefined && Number.isInteger(fileLayer) && fileLayer >= 0 && fileLayer < pair.info.layers;
      const req = fromFile ? { ...op.collect, layer: fileLayer } : op.collect;
      if (model.params.d !== pair.info.dModel) throw new RangeError(`${op.name}: the crosscoder is for width ${model.params.d}, these models have d_model ${pair.info.dModel}`);
      const { collected: c, ms } = await collect(s, pair, req, ctx);
      const a = await analyse(s, pair, model, c, { kind: 'file', name: `${op.name}${fromFile ? '' : ` (no layer in the file: layer ${req.layer} from the form)`}` }, ctx);
      return { kind: 'analysed', summary: a.summary, timings: { collectMs: ms, trainMs: 0, analyseMs: a.summary.ms }, pair: pair.info, memory: s.memory };
    }
    case 'latent':
      if (!s.analysis) throw new Error('no crosscoder has been analysed yet');
      return { kind: 'latent', detail: latentDetail(s.analysis, pair.tokenizer, op.latent) };
    case 'steer':
      if (!s.analysis) throw new Error('no crosscoder has been analysed yet');
      return { kind: 'steer', out: await steerLatent(pair, s.analysis, op.request, { signal: ctx.signal, onProgress: ctx.onProgress as (p: CrosscoderProgress) => void }) };
    case 'save': {
      if (!s.analysis) throw new Error('no crosscoder has been trained or loaded yet');
      const bytes = saveCrosscoder(s.analysis.model).slice().buffer;
      return { kind: 'save', bytes, name: `crosscoder-layer${s.analysis.summary.layer}-D${s.analysis.model.params.D}-k${s.analysis.model.k}.safetensors` };
    }
  }
}

// —— model organisms ——

export type OrganismOp =
  /** `baseName` goes into the adapter's base_model_name_or_path. */
  | { kind: 'train'; lines: string[]; settings: OrganismSettings; baseName: string }
  | { kind: 'resume' };

export type OrganismOpResult = { kind: 'paused'; steps: number } | { kind: 'trained'; out: OrganismOut };

/** Trains until done, paused or finished early (the organism is then written), sending steps as events. */
async function runOrganism(s: WorkerState, ctx: CallContext): Promise<OrganismOpResult> {
  const t = s.organism!;
  let buffered: OrganismStep[] = [];
  let lastFlush = now();
  const flush = () => {
    if (buffered.length) ctx.emit(buffered);
    buffered = [];
    lastFlush = now();
  };
  await continueOrganism(
    t,
    (p) => {
      buffered.push(p);
      if (now() - lastFlush >= (s.deps.stepFlushMs ?? STEP_FLUSH_MS)) {
        flush();
        ctx.onProgress({ stage: 'training', done: p.step + 1, total: t.settings.steps });
      }
    },
    () => ctx.command() !== undefined,
    ctx.signal,
  );
  flush();
  ctx.signal.throwIfAborted();
  if (ctx.command() === 'pause') return { kind: 'paused', steps: t.trainer.steps };
  const out = await organismFiles(s.opened, t, t.baseName);
  t.trainer.engine.dispose();
  s.organism = null;
  return { kind: 'trained', out };
}

async function organismOp(s: WorkerState, op: OrganismOp, ctx: CallContext): Promise<OrganismOpResult> {
  if (op.kind === 'resume') {
    if (!s.organism) throw new Error('there is no paused organism to resume');
    return runOrganism(s, ctx);
  }
  s.organism?.trainer.engine.dispose();
  s.organism = null;
  const makeEngine = s.deps.makeTrainEngine ?? (() => Promise.resolve(`${s.backendName.split(';')[0]}: no WebGPU training engine here`));
  s.organism = { ...(await startOrganism(s.opened, op.lines, op.settings, ctx.onProgress, ctx.signal, makeEngine)), baseName: op.baseName };
  return runOrganism(s, ctx);
}

/** Every operation the analysis worker answers, by name. */
export const analysisHandlers: Record<string, Handler<WorkerState>> = {
  async weights(s: WorkerState, args: { topK: number }, ctx: CallContext): Promise<Answer> {
    const result = await weightsJob(s.opened, args, { backend: s.backend, signal: ctx.signal, onProgress: ctx.onProgress });
    return { result: { result, backend: s.backendName, memory: s.memory } satisfies WeightsAnswer };
  },
  async activation(s: WorkerState, request: ActivationRequest, ctx: CallContext): Promise<Answer> {
    const loaded = await models(s, ctx);
    ctx.signal.throwIfAborted();
    const t0 = now();
    const result = await runActivationTask(loaded, request, { signal: ctx.signal, onProgress: ctx.onProgress, ...(s.deps.makeEngine ? { makeEngine: s.deps.makeEngine } : {}) });
    ctx.signal.throwIfAborted();
    return { result: { result, ms: now() - t0, pair: loaded.info, memory: s.memory } satisfies ActivationAnswer };
  },
  async crosscoder(s: WorkerState, op: CrosscoderOp, ctx: CallContext): Promise<Answer> {
    try {
      const result = await crosscoderOp(s, op, ctx);
      return { result, transfer: result.kind === 'save' ? [result.bytes] : [] };
    } catch (e) {
      if (ctx.command() === 'cancel' || ctx.signal.aborted) dropTraining(s);
      throw e;
    }
  },
  async organism(s: WorkerState, op: OrganismOp, ctx: CallContext): Promise<Answer> {
    try {
      const result = await organismOp(s, op, ctx);
      return { result, transfer: result.kind === 'trained' ? result.out.files.map((f) => f.bytes) : [] };
    } catch (e) {
      s.organism = null;
      throw e;
    }
  },
};

export type { JobProgress };
