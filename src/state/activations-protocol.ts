// The activation views' Web Worker. It loads the pair once, over proxy file sets whose reads the main
// thread serves from the files or URLs the user gave (as the weights worker does), keeps it, and runs
// one request at a time. A running request is cancelled through a shared flag, because a worker busy
// on the CPU backend reads no messages until it is done.
import type { Progress } from '../analysis/activations/run.ts';
import type { ByteSource, FileSet } from '../io/source.ts';
import type { Backend } from '../model/backend.ts';
import { openActivationPair, runActivationTask, type ActivationRequest, type ActivationResult, type LoadedPair, type PairFiles, type PairInfo } from './activations-compute.ts';
import type { Role } from './models.ts';
import { READ_CHUNK, type Port } from './weights-protocol.ts';

interface FileEntry {
  path: string;
  name: string;
  size: number;
}

/** Run id −1: the pair's loading. */
export const LOAD_ID = -1;

type ToWorker =
  | { type: 'open'; files: Record<Role, FileEntry[]>; cancel: SharedArrayBuffer | null }
  | { type: 'run'; id: number; request: ActivationRequest }
  | { type: 'bytes'; id: number; bytes: ArrayBuffer }
  | { type: 'read-error'; id: number; message: string };

type FromWorker =
  | { type: 'read'; id: number; role: Role; path: string; offset: number; length: number }
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

const message = (e: unknown) => (e instanceof Error ? e.message : String(e));

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
    const manifest = (set: FileSet) => [...set].map(([path, src]) => ({ path, name: src.name, size: src.size }));
    this.post({ type: 'open', files: { base: manifest(files.base), ft: manifest(files.ft) }, cancel: this.flag ? (this.flag.buffer as SharedArrayBuffer) : null });
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
      case 'read': {
        const src = (m.role === 'base' ? this.files.base : this.files.ft).get(m.path);
        if (!src) {
          this.post({ type: 'read-error', id: m.id, message: `${m.path}: no such file` });
          return;
        }
        src.read(m.offset, m.length, this.life.signal).then(
          (bytes) => {
            const copy = bytes.slice();
            this.post({ type: 'bytes', id: m.id, bytes: copy.buffer }, [copy.buffer]);
          },
          (err: unknown) => this.post({ type: 'read-error', id: m.id, message: message(err) }),
        );
        return;
      }
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
  let nextRead = 0;
  const pending = new Map<number, { resolve: (b: Uint8Array) => void; reject: (e: Error) => void }>();
  const post = (m: FromWorker) => port.postMessage(m, []);
  let flag: Int32Array | null = null;
  let loaded: Promise<LoadedPair> | null = null;
  let chain: Promise<void> = Promise.resolve();

  const request = (role: Role, path: string, offset: number, length: number) =>
    new Promise<Uint8Array>((resolve, reject) => {
      const id = nextRead++;
      pending.set(id, { resolve, reject });
      post({ type: 'read', id, role, path, offset, length });
    });
  const proxy = (role: Role, entries: FileEntry[]): FileSet =>
    new Map(
      entries.map(({ path, name, size }) => {
        const src: ByteSource = {
          name,
          size,
          async read(offset, length) {
            if (length <= chunk) return request(role, path, offset, length);
            const out = new Uint8Array(length);
            for (let pos = 0; pos < length; pos += chunk) out.set(await request(role, path, offset + pos, Math.min(chunk, length - pos)), pos);
            return out;
          },
        };
        return [path, src];
      }),
    );

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
      post({ type: 'error', id, message: message(err), cancelled: signal.aborted });
    }
  };

  port.addEventListener('message', (e: MessageEvent) => {
    const m = e.data as ToWorker;
    switch (m.type) {
      case 'bytes':
      case 'read-error': {
        const p = pending.get(m.id);
        pending.delete(m.id);
        if (m.type === 'bytes') p?.resolve(new Uint8Array(m.bytes));
        else p?.reject(new Error(m.message));
        return;
      }
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
