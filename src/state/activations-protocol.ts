// The activation views' Web Worker. It loads the pair once, over proxy file sets whose reads the main
// thread serves from the files or URLs the user gave (as the weights worker does), keeps it, and runs
// one request at a time. A running request is cancelled through a shared flag, because a worker busy
// on the CPU backend reads no messages until it is done.
import type { Progress } from '../analysis/activations/run.ts';
import type { Backend } from '../model/backend.ts';
import { openActivationPair, runActivationTask, type ActivationRequest, type ActivationResult, type LoadedPair, type PairFiles, type PairInfo } from '../jobs/activations.ts';
import type { Role } from './models.ts';
import { createFileProxy, errorMessage, fileManifest, READ_CHUNK, serveRead, type FileEntry, type Port, type ReadReply, type ReadRequest } from './file-proxy.ts';


/** Run id −1: the pair's loading. */
export const LOAD_ID = -1;

type ToWorker =
  | { type: 'open'; files: Record<Role, FileEntry[]>; cancel: SharedArrayBuffer | null }
  | { type: 'run'; id: number; request: ActivationRequest }
  | ReadReply;

type FromWorker =
  | ReadRequest
  | { type: 'progress'; id: number; progress: Progress }
  | { type: 'result'; id: number; result: ActivationResult; ms: number; info: PairInfo }
  | { type: 'error'; id: number; message: string; cancelled: boolean };

export interface ActivationOutcome {
  result: ActivationResult;
  /** Time the worker spent on the request (the pair's loading left out). */
  ms: number;
  pair: PairInfo;
  /** Set when the outcome came from the session cache: when it was computed (ms since the epoch). */
  cachedAt?: number;
}


const cancelledError = () => new DOMException('the analysis was cancelled', 'AbortError');

/** Cancellation can interrupt a busy worker only where memory can be shared (a cross-origin isolated page). */
export function canShareMemory(): boolean {
  return typeof SharedArrayBuffer !== 'undefined' && (globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated !== false;
}

interface Queued {
  id: number;
  request: ActivationRequest;
  onProgress: (p: Progress) => void;
  signal: AbortSignal;
  resolve: (o: ActivationOutcome) => void;
  reject: (e: unknown) => void;
}

/**
 * Main side of one worker holding one pair: serves its reads, loads the pair on the first request,
 * and sends requests one at a time. `interrupt` is called when a running request is cancelled and
 * memory cannot be shared (the caller then ends the worker).
 */
export class ActivationSession {
  private nextId = 0;
  private queue: Queued[] = [];
  private current: Queued | null = null;
  private readonly flag: Int32Array | null;
  private loaded = false;
  private failed: string | null = null;
  private loadProgress: Progress | null = null;
  private readonly life = new AbortController();
  private readonly onMessage = (e: MessageEvent) => this.receive(e.data as FromWorker);

  constructor(
    private readonly port: Port,
    readonly files: PairFiles,
    private readonly interrupt?: () => void,
  ) {
    this.flag = canShareMemory() ? new Int32Array(new SharedArrayBuffer(4)) : null;
    this.flag?.fill(LOAD_ID - 1);
    port.addEventListener('message', this.onMessage);
    this.post({ type: 'open', files: { base: fileManifest(files.base), ft: fileManifest(files.ft) }, cancel: this.flag ? (this.flag.buffer as SharedArrayBuffer) : null });
  }

  /** Runs a request after those before it; rejects with the worker's message, or an AbortError when cancelled. */
  run(request: ActivationRequest, onProgress: (p: Progress) => void, signal: AbortSignal): Promise<ActivationOutcome> {
    return new Promise((resolve, reject) => {
      if (this.failed !== null) return reject(new Error(this.failed));
      if (signal.aborted) return reject(cancelledError());
      const item: Queued = { id: this.nextId++, request, onProgress, signal, resolve, reject };
      signal.addEventListener('abort', () => this.cancel(item), { once: true });
      this.queue.push(item);
      this.pump();
    });
  }

  /** Stops serving the worker; requests waiting are rejected. */
  close(reason = 'the models changed'): void {
    this.fail(reason);
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
    if (!this.loaded && this.loadProgress) next.onProgress(this.loadProgress);
    this.post({ type: 'run', id: next.id, request: next.request });
  }

  private cancel(item: Queued) {
    if (item !== this.current) {
      const at = this.queue.indexOf(item);
      if (at >= 0) this.queue.splice(at, 1);
      item.reject(cancelledError());
      return;
    }
    item.reject(cancelledError());
    if (this.flag) Atomics.store(this.flag, 0, item.id);
    else this.interrupt?.();
    // The worker still answers for this id; the next request goes when it does.
  }

  private fail(reason: string) {
    if (this.failed !== null) return;
    this.failed = reason;
    for (const q of [...(this.current ? [this.current] : []), ...this.queue]) q.reject(new Error(reason));
    this.queue = [];
    this.current = null;
  }

  private receive(m: FromWorker) {
    switch (m.type) {
      case 'read':
        serveRead(m, this.files, this.life.signal, (reply, transfer) => this.post(reply, transfer));
        return;
      case 'progress':
        if (m.id === LOAD_ID) this.loadProgress = m.progress;
        if (this.current && (m.id === LOAD_ID || m.id === this.current.id) && !this.current.signal.aborted) this.current.onProgress(m.progress);
        return;
      case 'result':
      case 'error': {
        const item = this.current;
        if (!item || item.id !== m.id) return;
        this.current = null;
        if (m.type === 'result') {
          this.loaded = true;
          item.resolve({ result: m.result, ms: m.ms, pair: m.info });
        }
        else item.reject(m.cancelled ? cancelledError() : new Error(m.message));
        this.pump();
        return;
      }
    }
  }
}

/** Worker side: opens the pair on 'open', then answers each 'run' in order. */
export function serveActivations(port: Port, makeBackend: () => Promise<{ backend: Backend; name: string }>, chunk = READ_CHUNK): void {
  const post = (m: FromWorker) => port.postMessage(m, []);
  let flag: Int32Array | null = null;
  let loaded: Promise<LoadedPair> | null = null;
  let chain: Promise<void> = Promise.resolve();

  const fileProxy = createFileProxy(post, chunk);
  const proxy = fileProxy.files;

  /** A signal that also polls the shared flag wherever the analyses check for cancellation. */
  const signalFor = (id: number) => {
    const controller = new AbortController();
    const signal = controller.signal;
    const poll = () => {
      if (flag && Atomics.load(flag, 0) === id && !signal.aborted) controller.abort(cancelledError());
    };
    const check = signal.throwIfAborted.bind(signal);
    signal.throwIfAborted = () => {
      poll();
      check();
    };
    return { signal, poll };
  };

  const runOne = async (id: number, req: ActivationRequest) => {
    const { signal, poll } = signalFor(id);
    try {
      if (!loaded) throw new Error('the pair was not opened');
      const pair = await loaded;
      signal.throwIfAborted();
      const t0 = performance.now();
      const result = await runActivationTask(pair, req, {
        signal,
        onProgress: (progress) => {
          poll();
          post({ type: 'progress', id, progress });
        },
      });
      signal.throwIfAborted();
      post({ type: 'result', id, result, ms: performance.now() - t0, info: pair.info });
    } catch (err) {
      post({ type: 'error', id, message: errorMessage(err), cancelled: signal.aborted });
    }
  };

  port.addEventListener('message', (e: MessageEvent) => {
    const m = e.data as ToWorker;
    switch (m.type) {
      case 'bytes':
      case 'read-error':
        fileProxy.receive(m);
        return;
      case 'open': {
        if (loaded) return;
        flag = m.cancel ? new Int32Array(m.cancel) : null;
        loaded = (async () => {
          const { backend, name } = await makeBackend();
          const files = { base: proxy('base', m.files.base), ft: proxy('ft', m.files.ft) };
          return openActivationPair(files, backend, name, { onProgress: (progress) => post({ type: 'progress', id: LOAD_ID, progress }) });
        })();
        // A failed load is reported to every run, which awaits it.
        loaded.catch(() => {});
        return;
      }
      case 'run':
        chain = chain.then(() => runOne(m.id, m.request));
        return;
    }
  });
}
