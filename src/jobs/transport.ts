// One transport for the analysis worker. The page side (WorkerSession) queues calls, runs them one at
// a time, passes progress and events back, cancels a running call through shared memory (a worker busy
// on the CPU reads no messages until it is done), and starts a new worker after a crash or a lost
// device. The worker side (serve) answers calls with named handlers. The pair's files go to the worker
// as Blobs or URLs (ByteSource.origin), which it reads itself: no bytes pass through the page.
import { FormatError, sourceFromOrigin, type ByteSource, type FileSet, type SourceOrigin } from '../io/source.ts';
import type { JobProgress } from './context.ts';
import type { PairFiles } from './pair.ts';

/** A Worker, a worker's global scope, or a MessagePort. */
export interface Port {
  postMessage(message: unknown, transfer: Transferable[]): void;
  addEventListener(type: 'message', cb: (e: MessageEvent) => void): void;
  removeEventListener(type: 'message', cb: (e: MessageEvent) => void): void;
}

/** What a running call is asked to do besides running: stop early keeping its work, or stop. */
export type Command = 'pause' | 'finish' | 'cancel';
const COMMAND_CODES: Record<Command, number> = { pause: 1, finish: 2, cancel: 3 };
const CODE_COMMANDS: Record<number, Command> = { 1: 'pause', 2: 'finish', 3: 'cancel' };

/** A file as the worker is sent it. */
export interface FileEntry {
  path: string;
  name: string;
  size: number;
  origin: SourceOrigin;
}

export type SentPair = Record<keyof PairFiles, FileEntry[]>;

type ToWorker =
  | { type: 'open'; pair: SentPair; control: SharedArrayBuffer | null; options: unknown }
  | { type: 'call'; id: number; op: string; args: unknown }
  | { type: 'command'; id: number; command: Command };

type FromWorker =
  | { type: 'progress'; id: number; progress: JobProgress }
  | { type: 'event'; id: number; event: unknown }
  | { type: 'result'; id: number; result: unknown }
  | { type: 'error'; id: number; message: string; cancelled: boolean; fatal: boolean };

export const errorMessage = (e: unknown) => (e instanceof Error ? e.message : String(e));
export const cancelledError = () => new DOMException('the analysis was cancelled', 'AbortError');

/** Cancellation can interrupt a busy worker only where memory can be shared (a cross-origin isolated page). */
export function canShareMemory(): boolean {
  return typeof SharedArrayBuffer !== 'undefined' && (globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated !== false;
}

/** What the worker is sent of a file set; a source without an origin cannot be read by a worker. */
export function sendFiles(set: FileSet): FileEntry[] {
  return [...set].map(([path, src]) => {
    if (!src.origin) throw new FormatError(src.name, 'cannot be read by the analysis worker (it is neither a file nor a URL)');
    return { path, name: src.name, size: src.size, origin: src.origin };
  });
}

export function receiveFiles(entries: readonly FileEntry[]): FileSet {
  return new Map(entries.map((e): [string, ByteSource] => [e.path, sourceFromOrigin(e.origin, e.name, e.size)]));
}

export interface CallHandlers {
  onProgress?: (p: JobProgress) => void;
  /** Anything else the handler sends while it runs (training steps, …). */
  onEvent?: (event: unknown) => void;
  signal?: AbortSignal;
}

interface Pending extends CallHandlers {
  id: number;
  op: string;
  args: unknown;
  /** Cancelled by the page: the worker still answers for it, and nothing more reaches its handlers. */
  cancelled?: boolean;
  resolve: (r: unknown) => void;
  reject: (e: unknown) => void;
}

/** A started worker: its port, and how to end it. `onFailure` is told when it crashes. */
export interface Spawned {
  port: Port;
  terminate(): void;
}
export type Spawn = (onFailure: (reason: string) => void) => Spawned;

/**
 * Page side of the analysis worker for one pair. The worker starts on the first call and opens the
 * pair once; calls run one at a time in order. A crash, or a call that fails with a fatal error (a
 * lost device), fails the calls in flight; the next call starts a new worker.
 */
export class WorkerSession {
  private nextId = 0;
  private queue: Pending[] = [];
  private current: Pending | null = null;
  private worker: (Spawned & { control: Int32Array | null; onMessage: (e: MessageEvent) => void }) | null = null;
  private closed: string | null = null;

  constructor(
    readonly files: PairFiles,
    private readonly spawn: Spawn,
    /** Sent with the pair (the worker's settings: backend choice, memory budget). */
    private readonly options: unknown = {},
  ) {}

  /** Runs `op` after the calls before it; rejects with the worker's message, or an AbortError when cancelled. */
  call<R>(op: string, args: unknown, handlers: CallHandlers = {}): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      if (this.closed !== null) return reject(new Error(this.closed));
      const { signal } = handlers;
      if (signal?.aborted) return reject(cancelledError());
      const item: Pending = { id: this.nextId++, op, args, ...handlers, resolve: resolve as (r: unknown) => void, reject };
      signal?.addEventListener('abort', () => this.cancel(item), { once: true });
      this.queue.push(item);
      this.pump();
    });
  }

  /** Pauses, finishes or cancels the running call (on cancel, queued ones are dropped too). */
  command(command: Command): void {
    if (command === 'cancel') {
      for (const q of this.queue) q.reject(cancelledError());
      this.queue = [];
    }
    const item = this.current;
    if (item && !item.cancelled) this.signal(item, command);
  }

  get busy(): boolean {
    return this.current !== null;
  }

  /** Ends the worker; calls waiting are rejected with `reason`. */
  close(reason = 'the models changed'): void {
    this.closed = reason;
    this.stop(reason);
  }

  private start() {
    // Checked before a worker starts: a file set the worker cannot read fails here, naming the file.
    const pair = { base: sendFiles(this.files.base), ft: sendFiles(this.files.ft) };
    const control = canShareMemory() ? new Int32Array(new SharedArrayBuffer(8)) : null;
    control?.fill(-1);
    let spawned: Spawned | null = null;
    const failure = (reason: string) => {
      if (this.worker?.port === spawned?.port) this.stop(reason);
    };
    spawned = this.spawn(failure);
    const onMessage = (e: MessageEvent) => this.receive(e.data as FromWorker);
    spawned.port.addEventListener('message', onMessage);
    this.worker = { ...spawned, control, onMessage };
    this.post({ type: 'open', pair, control: control ? (control.buffer as SharedArrayBuffer) : null, options: this.options });
  }

  /** Ends the worker and fails every call in flight; the next call starts another. */
  private stop(reason: string) {
    const w = this.worker;
    this.worker = null;
    if (w) {
      w.port.removeEventListener('message', w.onMessage);
      w.terminate();
    }
    const failed = [...(this.current ? [this.current] : []), ...this.queue];
    this.current = null;
    this.queue = [];
    for (const q of failed) if (!q.cancelled) q.reject(new Error(reason));
  }

  private post(m: ToWorker) {
    this.worker?.port.postMessage(m, []);
  }

  private pump() {
    if (this.current || this.queue.length === 0) return;
    if (!this.worker) {
      try {
        this.start();
      } catch (e) {
        const failed = this.queue;
        this.queue = [];
        for (const q of failed) q.reject(e);
        return;
      }
    }
    const next = this.queue.shift()!;
    this.current = next;
    this.post({ type: 'call', id: next.id, op: next.op, args: next.args });
  }

  private signal(item: Pending, command: Command) {
    const control = this.worker?.control;
    if (control) {
      Atomics.store(control, 1, COMMAND_CODES[command]);
      Atomics.store(control, 0, item.id);
    }
    this.post({ type: 'command', id: item.id, command });
    if (command === 'cancel') {
      item.cancelled = true;
      item.reject(cancelledError());
      // Without shared memory a busy worker cannot be interrupted: end it (the next call starts another).
      if (!control) this.stop('the analysis was cancelled');
    }
  }

  private cancel(item: Pending) {
    if (item === this.current) {
      this.signal(item, 'cancel');
      return;
    }
    const at = this.queue.indexOf(item);
    if (at >= 0) this.queue.splice(at, 1);
    item.reject(cancelledError());
  }

  private receive(m: FromWorker) {
    const item = this.current;
    if (!item || item.id !== m.id) return;
    switch (m.type) {
      case 'progress':
        if (!item.cancelled) item.onProgress?.(m.progress);
        return;
      case 'event':
        if (!item.cancelled) item.onEvent?.(m.event);
        return;
      case 'result':
      case 'error':
        this.current = null;
        if (m.type === 'result') item.resolve(m.result);
        else item.reject(m.cancelled ? cancelledError() : new Error(m.message));
        if (m.type === 'error' && m.fatal) this.stop(m.message);
        this.pump();
        return;
    }
  }
}

/** What a handler gets besides its arguments. */
export interface CallContext {
  signal: AbortSignal;
  onProgress(p: JobProgress): void;
  emit(event: unknown): void;
  /** The command sent for this call, if any (pause and finish are the handler's to honour). */
  command(): Command | undefined;
}

/** A handler's answer; `transfer` lists buffers to move rather than copy. */
export interface Answer {
  result: unknown;
  transfer?: Transferable[];
}

export type Handler<S> = (state: S, args: never, ctx: CallContext) => Promise<Answer>;

/** Worker side: `open(files, options)` makes the worker's state once (the opened pair, the backend); each call runs its handler on it, in order. */
export function serve<S>(
  port: Port,
  open: (pair: PairFiles, options: unknown) => Promise<S>,
  handlers: Readonly<Record<string, Handler<S>>>,
  /** A failure after which this worker is of no more use (a lost device): the page starts another. */
  isFatal: (e: unknown) => boolean = () => false,
): void {
  const post = (m: FromWorker, transfer: Transferable[] = []) => port.postMessage(m, transfer);
  let control: Int32Array | null = null;
  let state: Promise<S> | null = null;
  let chain: Promise<void> = Promise.resolve();
  const commands = new Map<number, Command>();

  const commandFor = (id: number): Command | undefined => {
    if (control && Atomics.load(control, 0) === id) return CODE_COMMANDS[Atomics.load(control, 1)];
    return commands.get(id);
  };

  const runCall = async (id: number, op: string, args: unknown) => {
    const controller = new AbortController();
    const signal = controller.signal;
    const poll = () => {
      if (!signal.aborted && commandFor(id) === 'cancel') controller.abort(cancelledError());
    };
    // The analyses check for cancellation with throwIfAborted: that check also reads the shared flag.
    const check = signal.throwIfAborted.bind(signal);
    signal.throwIfAborted = () => {
      poll();
      check();
    };
    const ctx: CallContext = {
      signal,
      onProgress: (progress) => {
        poll();
        post({ type: 'progress', id, progress });
      },
      emit: (event) => post({ type: 'event', id, event }),
      command: () => commandFor(id),
    };
    try {
      const handler = Object.hasOwn(handlers, op) ? handlers[op] : undefined;
      if (!handler) throw new Error(`the analysis worker has no operation "${op}"`);
      if (!state) throw new Error('the pair was not opened');
      const s = await state;
      signal.throwIfAborted();
      const a = await handler(s, args as never, ctx);
      post({ type: 'result', id, result: a.result }, a.transfer ?? []);
    } catch (err) {
      post({ type: 'error', id, message: errorMessage(err), cancelled: signal.aborted || commandFor(id) === 'cancel', fatal: isFatal(err) });
    } finally {
      commands.delete(id);
    }
  };

  port.addEventListener('message', (e: MessageEvent) => {
    const m = e.data as ToWorker;
    switch (m.type) {
      case 'open':
        if (state) return;
        control = m.control ? new Int32Array(m.control) : null;
        state = open({ base: receiveFiles(m.pair.base), ft: receiveFiles(m.pair.ft) }, m.options);
        // A failed open is reported to every call, which awaits it.
        state.catch(() => {});
        return;
      case 'command':
        commands.set(m.id, m.command);
        return;
      case 'call':
        chain = chain.then(() => runCall(m.id, m.op, m.args));
        return;
    }
  });
}
