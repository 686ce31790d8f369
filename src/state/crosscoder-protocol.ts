// The Crosscoders view's Web Worker. It opens the pair once, over proxy file sets whose reads the
// main thread serves from the files or URLs the user gave (as the weights worker does), and keeps
// the models, the last collected activations, a training in progress and the last analysis. It runs
// one operation at a time. A running operation is paused, finished early or cancelled through a
// shared flag polled between steps and batches (a worker busy on the CPU reads no messages), or,
// where memory cannot be shared, through a message the training loop reads when it yields.
import { loadCrosscoder, saveCrosscoder } from '../analysis/crosscoder/file.ts';
import type { CrosscoderEngine } from '../analysis/crosscoder/engine.ts';
import { blobSource, type FileSet } from '../io/source.ts';
import type { Backend } from '../model/backend.ts';
import {
  analyseCrosscoder,
  collectForCrosscoder,
  collectKey,
  continueTraining,
  latentDetail,
  openCrosscoderPair,
  startTraining,
  steerLatent,
  trainedModel,
  type Analysis,
  type CollectRequest,
  type Collected,
  type CrosscoderSummary,
  type LatentDetail,
  type CrosscoderPair,
  type PairInfo,
  type Progress,
  type SteerOut,
  type SteerRequest,
  type StepPoint,
  type Training,
  type TrainSettings,
} from '../jobs/crosscoder.ts';
import type { Role } from './models.ts';
import { createFileProxy, errorMessage, fileManifest, READ_CHUNK, serveRead, type FileEntry, type Port, type ReadReply, type ReadRequest } from './file-proxy.ts';


export type CrosscoderOp =
  | { kind: 'train'; collect: CollectRequest; settings: TrainSettings }
  | { kind: 'resume' }
  /** A dropped file goes to the worker as a Blob: it reads the tensors by byte range, never the whole file at once. */
  | { kind: 'load'; file: Blob; name: string; collect: CollectRequest }
  | { kind: 'latent'; latent: number }
  | { kind: 'steer'; request: SteerRequest }
  | { kind: 'save' };

export interface Timings {
  /** Collecting activations (0 when the last collection was reused). */
  collectMs: number;
  /** Training steps, over every resume. */
  trainMs: number;
  analyseMs: number;
}

export type CrosscoderOpResult =
  | { kind: 'paused'; steps: number }
  | { kind: 'analysed'; summary: CrosscoderSummary; timings: Timings; pair: PairInfo }
  | { kind: 'latent'; detail: LatentDetail }
  | { kind: 'steer'; out: SteerOut }
  | { kind: 'save'; bytes: ArrayBuffer; name: string };

/** What the page asks of a running operation. */
export type Command = 'pause' | 'finish' | 'cancel';
const COMMAND_CODES: Record<Command, number> = { pause: 1, finish: 2, cancel: 3 };
const CODE_COMMANDS: Record<number, Command> = { 1: 'pause', 2: 'finish', 3: 'cancel' };

type ToWorker =
  | { type: 'open'; files: Record<Role, FileEntry[]>; control: SharedArrayBuffer | null }
  | { type: 'op'; id: number; op: CrosscoderOp }
  | { type: 'command'; id: number; command: Command }
  | ReadReply;

type FromWorker =
  | ReadRequest
  | { type: 'progress'; id: number; progress: Progress }
  | { type: 'steps'; id: number; points: StepPoint[] }
  | { type: 'result'; id: number; result: CrosscoderOpResult }
  | { type: 'error'; id: number; message: string; cancelled: boolean };

export const cancelledError = () => new DOMException('the crosscoder run was cancelled', 'AbortError');

export function canShareMemory(): boolean {
  return typeof SharedArrayBuffer !== 'undefined' && (globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated !== false;
}

export interface OpHandlers {
  onProgress?: (p: Progress) => void;
  onSteps?: (points: StepPoint[]) => void;
}

interface Pending extends OpHandlers {
  id: number;
  op: CrosscoderOp;
  /** Cancelled by the page: the worker still answers for it, and nothing more reaches its handlers. */
  cancelled?: boolean;
  resolve: (r: CrosscoderOpResult) => void;
  reject: (e: unknown) => void;
}

/**
 * Main side of one worker holding one pair: serves its reads and sends operations one at a time.
 * `interrupt` is called when a running operation must stop and memory cannot be shared (the caller
 * then ends the worker).
 */
export class CrosscoderSession {
  private nextId = 0;
  private queue: Pending[] = [];
  private current: Pending | null = null;
  private readonly control: Int32Array | null;
  private failed: string | null = null;
  private readonly life = new AbortController();
  private readonly onMessage = (e: MessageEvent) => this.receive(e.data as FromWorker);

  constructor(
    private readonly port: Port,
    readonly files: { base: FileSet; ft: FileSet },
    private readonly interrupt?: () => void,
  ) {
    this.control = canShareMemory() ? new Int32Array(new SharedArrayBuffer(8)) : null;
    this.control?.fill(-1);
    port.addEventListener('message', this.onMessage);
    this.post({ type: 'open', files: { base: fileManifest(files.base), ft: fileManifest(files.ft) }, control: this.control ? (this.control.buffer as SharedArrayBuffer) : null });
  }

  /** Runs an operation after those before it; rejects with the worker's message, or an AbortError when cancelled. */
  run(op: CrosscoderOp, handlers: OpHandlers = {}): Promise<CrosscoderOpResult> {
    return new Promise((resolve, reject) => {
      if (this.failed !== null) return reject(new Error(this.failed));
      this.queue.push({ id: this.nextId++, op, resolve, reject, ...handlers });
      this.pump();
    });
  }

  /** Pauses, finishes or cancels the running operation (queued ones are dropped on cancel). */
  command(command: Command): void {
    if (command === 'cancel') {
      for (const q of this.queue) q.reject(cancelledError());
      this.queue = [];
    }
    const item = this.current;
    if (!item || item.cancelled) return;
    if (this.control) {
      Atomics.store(this.control, 1, COMMAND_CODES[command]);
      Atomics.store(this.control, 0, item.id);
    }
    this.post({ type: 'command', id: item.id, command });
    if (command === 'cancel') {
      item.cancelled = true;
      item.reject(cancelledError());
      if (!this.control) this.interrupt?.();
    }
  }

  get busy(): boolean {
    return this.current !== null;
  }

  /** Stops serving the worker; operations waiting are rejected. */
  close(reason = 'the models changed'): void {
    if (this.failed === null) {
      this.failed = reason;
      for (const q of [...(this.current ? [this.current] : []), ...this.queue]) q.reject(new Error(reason));
      this.queue = [];
      this.current = null;
    }
    this.life.abort();
    this.port.removeEventListener('message', this.onMessage);
  }

  private post(m: ToWorker, transfer: Transferable[] = []) {
    this.port.postMessage(m, transfer);
  }

  private pump() {
    if (this.current || this.queue.length === 0) return;
    const next = this.queue.shift()!;
    this.current = next;
    this.post({ type: 'op', id: next.id, op: next.op });
  }

  private receive(m: FromWorker) {
    switch (m.type) {
      case 'read':
        serveRead(m, this.files, this.life.signal, (reply, transfer) => this.post(reply, transfer));
        return;
      case 'progress':
        if (this.current?.id === m.id && !this.current.cancelled) this.current.onProgress?.(m.progress);
        return;
      case 'steps':
        if (this.current?.id === m.id && !this.current.cancelled) this.current.onSteps?.(m.points);
        return;
      case 'result':
      case 'error': {
        const item = this.current;
        if (!item || item.id !== m.id) return;
        this.current = null;
        if (m.type === 'result') item.resolve(m.result);
        else item.reject(m.cancelled ? cancelledError() : new Error(m.message));
        this.pump();
        return;
      }
    }
  }
}

/** An engine that holds device memory says so with dispose (the WebGPU engine). */
export type WorkerEngine = CrosscoderEngine & { dispose?(): void };

export interface WorkerDeps {
  makeBackend(): Promise<{ backend: Backend; name: string }>;
  /** The crosscoder engine for training and inference (the CPU engine when absent). */
  makeEngine?(d: number, D: number): Promise<WorkerEngine | undefined>;
}

export interface ServeOptions {
  /** Bytes per proxied read. */
  chunk?: number;
  /** Training steps are sent to the page at most this often (default 150 ms). */
  stepFlushMs?: number;
}

/** Worker side: opens the pair on 'open', then answers each 'op' in order. */
export function serveCrosscoder(port: Port, deps: WorkerDeps, opts: ServeOptions = {}): void {
  const chunk = opts.chunk ?? READ_CHUNK;
  const stepFlushMs = opts.stepFlushMs ?? 150;
  const post = (m: FromWorker, transfer: Transferable[] = []) => port.postMessage(m, transfer);
  let control: Int32Array | null = null;
  let opened: Promise<CrosscoderPair> | null = null;
  let chain: Promise<void> = Promise.resolve();
  let collected: Collected | null = null;
  let training: (Training & { trainMs: number; collectMs: number; engine: WorkerEngine | undefined }) | null = null;
  const dropTraining = () => {
    training?.engine?.dispose?.();
    training = null;
  };
  let analysis: Analysis | null = null;
  // Commands that arrived as messages, by operation id.
  const commands = new Map<number, Command>();
  // The models load on first use, within whichever operation needs them first.
  let reportLoad: ((p: Progress) => void) | null = null;

  const fileProxy = createFileProxy(post, chunk);
  const proxy = fileProxy.files;

  /** The command for operation `id`, from the shared flag or a message. */
  const commandFor = (id: number): Command | undefined => {
    if (control && Atomics.load(control, 0) === id) return CODE_COMMANDS[Atomics.load(control, 1)];
    return commands.get(id);
  };

  /** A signal aborted by a cancel, polled wherever the analyses check for cancellation. */
  const signalFor = (id: number) => {
    const controller = new AbortController();
    const signal = controller.signal;
    const poll = () => {
      if (!signal.aborted && commandFor(id) === 'cancel') controller.abort(cancelledError());
    };
    const check = signal.throwIfAborted.bind(signal);
    signal.throwIfAborted = () => {
      poll();
      check();
    };
    return { signal, poll };
  };

  const collect = async (pair: CrosscoderPair, req: CollectRequest, signal: AbortSignal, onProgress: (p: Progress) => void) => {
    const key = collectKey(req);
    if (collected?.key === key) return { collected, ms: 0 };
    collected = null;
    const t0 = performance.now();
    const c = await collectForCrosscoder(pair, req, { signal, onProgress });
    collected = c;
    return { collected: c, ms: performance.now() - t0 };
  };

  const analyse = async (pair: CrosscoderPair, model: Analysis['model'], c: Collected, source: CrosscoderSummary['source'], signal: AbortSignal, onProgress: (p: Progress) => void) => {
    analysis = null;
    const engine = await deps.makeEngine?.(model.params.d, model.params.D);
    try {
      analysis = await analyseCrosscoder(pair, model, c, source, { signal, onProgress, ...(engine ? { engine } : {}) });
    } finally {
      engine?.dispose?.();
    }
    return analysis;
  };

  const runTraining = async (id: number, pair: CrosscoderPair, signal: AbortSignal, poll: () => void, onProgress: (p: Progress) => void): Promise<CrosscoderOpResult> => {
    const t = training!;
    let buffered: StepPoint[] = [];
    let lastFlush = performance.now();
    const flush = () => {
      if (buffered.length) post({ type: 'steps', id, points: buffered });
      buffered = [];
      lastFlush = performance.now();
    };
    const stop = new AbortController();
    const t0 = performance.now();
    await continueTraining(t, {
      signal: stop.signal,
      onStep: (p) => {
        buffered.push(p);
        if (performance.now() - lastFlush >= stepFlushMs) {
          flush();
          onProgress({ stage: 'training', done: p.step + 1, total: t.settings.steps });
        }
        poll();
        if (signal.aborted || commandFor(id) !== undefined) stop.abort();
      },
    });
    t.trainMs += performance.now() - t0;
    flush();
    signal.throwIfAborted();
    if (commandFor(id) === 'pause') return { kind: 'paused', steps: t.trainer.steps };
    const model = await trainedModel(t);
    dropTraining();
    const a = await analyse(pair, model, t.collected, { kind: 'trained', name: `trained here (${t.trainer.steps} steps)` }, signal, onProgress);
    return { kind: 'analysed', summary: a.summary, timings: { collectMs: t.collectMs, trainMs: t.trainMs, analyseMs: a.summary.ms }, pair: pair.info };
  };

  const runOp = async (id: number, op: CrosscoderOp): Promise<CrosscoderOpResult> => {
    const { signal, poll } = signalFor(id);
    const onProgress = (progress: Progress) => {
      poll();
      post({ type: 'progress', id, progress });
    };
    if (!opened) throw new Error('the pair was not opened');
    reportLoad = onProgress;
    const pair = await opened;
    signal.throwIfAborted();
    switch (op.kind) {
      case 'train': {
        dropTraining();
        const { collected: c, ms } = await collect(pair, op.collect, signal, onProgress);
        signal.throwIfAborted();
        const engine = await deps.makeEngine?.(c.acts.d, op.settings.dict);
        try {
          training = { ...startTraining(c, op.settings, op.collect.corpus.name, engine), trainMs: 0, collectMs: ms, engine };
        } catch (e) {
          engine?.dispose?.();
          throw e;
        }
        return runTraining(id, pair, signal, poll, onProgress);
      }
      case 'resume':
        if (!training) throw new Error('there is no paused training to resume');
        return runTraining(id, pair, signal, poll, onProgress);
      case 'load': {
        const model = await loadCrosscoder(blobSource(op.file, op.name), signal);
        const fileLayer = Number(model.info.layer);
        const fromFile = model.info.layer !== undefined && Number.isInteger(fileLayer) && fileLayer >= 0 && fileLayer < pair.info.layers;
        const req = fromFile ? { ...op.collect, layer: fileLayer } : op.collect;
        if (model.params.d !== pair.info.dModel) throw new RangeError(`${op.name}: the crosscoder is for width ${model.params.d}, these models have d_model ${pair.info.dModel}`);
        const { collected: c, ms } = await collect(pair, req, signal, onProgress);
        const a = await analyse(pair, model, c, { kind: 'file', name: `${op.name}${fromFile ? '' : ` (no layer in the file: layer ${req.layer} from the form)`}` }, signal, onProgress);
        return { kind: 'analysed', summary: a.summary, timings: { collectMs: ms, trainMs: 0, analyseMs: a.summary.ms }, pair: pair.info };
      }
      case 'latent':
        if (!analysis) throw new Error('no crosscoder has been analysed yet');
        return { kind: 'latent', detail: latentDetail(analysis, pair.tokenizer, op.latent) };
      case 'steer':
        if (!analysis) throw new Error('no crosscoder has been analysed yet');
        return { kind: 'steer', out: await steerLatent(pair, analysis, op.request, { signal, onProgress }) };
      case 'save': {
        if (!analysis) throw new Error('no crosscoder has been trained or loaded yet');
        const bytes = saveCrosscoder(analysis.model).slice().buffer;
        return { kind: 'save', bytes, name: `crosscoder-layer${analysis.summary.layer}-D${analysis.model.params.D}-k${analysis.model.k}.safetensors` };
      }
    }
  };

  port.addEventListener('message', (e: MessageEvent) => {
    const m = e.data as ToWorker;
    switch (m.type) {
      case 'bytes':
      case 'read-error':
        fileProxy.receive(m);
        return;
      case 'command':
        commands.set(m.id, m.command);
        return;
      case 'open': {
        if (opened) return;
        control = m.control ? new Int32Array(m.control) : null;
        opened = (async () => {
          const { backend, name } = await deps.makeBackend();
          const files = { base: proxy('base', m.files.base), ft: proxy('ft', m.files.ft) };
          return openCrosscoderPair(files, backend, name, { onProgress: (p) => reportLoad?.(p) });
        })();
        // A failed open is reported to every operation, which awaits it.
        opened.catch(() => {});
        return;
      }
      case 'op':
        chain = chain.then(async () => {
          try {
            const result = await runOp(m.id, m.op);
            post({ type: 'result', id: m.id, result }, result.kind === 'save' ? [result.bytes] : []);
          } catch (err) {
            const cancelled = commandFor(m.id) === 'cancel';
            if (cancelled) dropTraining();
            post({ type: 'error', id: m.id, message: errorMessage(err), cancelled });
          } finally {
            commands.delete(m.id);
          }
        });
        return;
    }
  });
}
