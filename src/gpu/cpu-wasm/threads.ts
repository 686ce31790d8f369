// Worker threads for the kernel module over one shared WebAssembly.Memory. Backend ops are
// synchronous, so the calling thread posts a job in shared memory, does its own share, and blocks
// in Atomics.wait until the workers are done. Atomics.wait is allowed in Node (main thread too) and
// in browser workers, not on a page's main thread: there the kernels run on the calling thread only.
//
// A threaded export takes (thread, from, to, ...rest). A job's range [from, to) is cut into chunks
// that the threads take in turn from a shared counter (Atomics.add) until none is left, so a thread
// that the OS deschedules on a loaded machine delays the job by one chunk, not by its whole share.
//
// Control words (Int32, first page of the memory): a generation counter the workers wait on, the
// count of workers still busy, a failure flag, the number of threads of the current job, the export
// to run, its argument count, the chunk size and the next chunk, per worker a ready flag and a job
// flag, and the job's arguments.
// A worker runs only when its job flag is set and clears it, so a worker woken late never takes a
// job's arguments for another's.

const GENERATION = 0;
/** OPEN | the number of workers in the job. */
const STATE = 1;
const OPEN = 1 << 16;
const FAILED = 2;
const COUNT = 3;
const FUNCTION = 4;
const ARGC = 5;
const CHUNK = 6;
const NEXT = 7;
const MAX_WORKERS = 64;
const READY = 8;
const JOB = READY + MAX_WORKERS;
const ARGS = JOB + MAX_WORKERS;
/** The most arguments a threaded export takes. */
const ARG_COUNT = 24;

// Plain JavaScript, run as a classic browser worker (from a Blob URL) or a Node eval worker.
const WORKER_SOURCE = `
const start = ({ bytes, memory, index, names }) => {
  const instance = new WebAssembly.Instance(new WebAssembly.Module(bytes), { env: { memory } });
  const fns = names.map((name) => instance.exports[name]);
  const ctrl = new Int32Array(memory.buffer, 0, ${ARGS + ARG_COUNT});
  let seen = Atomics.load(ctrl, ${GENERATION});
  Atomics.store(ctrl, ${READY} + index, 1);
  for (;;) {
    Atomics.wait(ctrl, ${GENERATION}, seen);
    seen = Atomics.load(ctrl, ${GENERATION});
    let state = Atomics.load(ctrl, ${STATE});
    let joined = false;
    while (state & ${OPEN}) {
      const was = Atomics.compareExchange(ctrl, ${STATE}, state, state + 1);
      if (was === state) {
        joined = true;
        break;
      }
      state = was;
    }
    if (!joined) continue;
    if (Atomics.load(ctrl, ${JOB} + index) === Atomics.load(ctrl, ${GENERATION})) try {
      const args = Array.from(ctrl.subarray(${ARGS}, ${ARGS} + ctrl[${ARGC}]));
      const fn = fns[ctrl[${FUNCTION}]];
      const from = args[1];
      const to = args[2];
      const chunk = ctrl[${CHUNK}];
      args[0] = index;
      for (let c = Atomics.add(ctrl, ${NEXT}, 1); from + c * chunk < to; c = Atomics.add(ctrl, ${NEXT}, 1)) {
        args[1] = from + c * chunk;
        args[2] = Math.min(to, args[1] + chunk);
        fn(...args);
      }
    } catch (e) {
      Atomics.store(ctrl, ${FAILED}, 1);
    }
    // The last worker out of a closed job wakes the calling thread.
    if (Atomics.sub(ctrl, ${STATE}, 1) === 1) Atomics.notify(ctrl, ${STATE});
  }
};
if (typeof require === 'function') require('node:worker_threads').parentPort.once('message', start);
else self.onmessage = (event) => start(event.data);
`;

type NodeProcess = { versions?: { node?: string }; getBuiltinModule?: (id: string) => unknown };
type NodeWorkerThreads = { Worker: new (source: string, options: { eval: true }) => NodeWorker };
type NodeWorker = { postMessage(value: unknown): void; unref(): void; terminate(): unknown; on(event: 'error', listener: (e: unknown) => void): void };

function nodeProcess(): NodeProcess | undefined {
  const p = (globalThis as { process?: NodeProcess }).process;
  return typeof p?.versions?.node === 'string' ? p : undefined;
}

/** Logical cores (Node: availableParallelism; browsers: hardwareConcurrency). */
export function hardwareThreads(): number {
  const os = nodeProcess()?.getBuiltinModule?.('node:os') as { availableParallelism?: () => number } | undefined;
  const n = os?.availableParallelism?.() ?? (typeof navigator === 'object' ? navigator.hardwareConcurrency : 1);
  return Math.max(1, n || 1);
}

/** Whether this thread may block in Atomics.wait with shared memory: Node, or a cross-origin isolated browser worker. */
export function canBlockHere(): boolean {
  if (typeof SharedArrayBuffer !== 'function' || typeof Atomics !== 'object') return false;
  if (nodeProcess()) return true;
  const g = globalThis as { window?: unknown; crossOriginIsolated?: boolean };
  return g.window === undefined && g.crossOriginIsolated === true && typeof Worker === 'function';
}

function startWorker(index: number, bytes: Uint8Array<ArrayBuffer>, memory: WebAssembly.Memory, names: readonly string[]): { terminate(): unknown } | null {
  const message = { bytes, memory, index, names };
  const proc = nodeProcess();
  try {
    if (proc) {
      const threads = proc.getBuiltinModule?.('node:worker_threads') as NodeWorkerThreads | undefined;
      if (!threads) return null;
      const worker = new threads.Worker(WORKER_SOURCE, { eval: true });
      // Workers wait in Atomics.wait forever; they must not keep the process alive.
      worker.unref();
      worker.on('error', () => {});
      worker.postMessage(message);
      return worker;
    } else {
      const url = URL.createObjectURL(new Blob([WORKER_SOURCE], { type: 'text/javascript' }));
      const worker = new Worker(url);
      URL.revokeObjectURL(url);
      worker.postMessage(message);
      return worker;
    }
  } catch {
    return null;
  }
}

export class GemmThreads {
  private readonly ctrl: Int32Array;
  private started = 0;
  private readonly workers: { terminate(): unknown }[] = [];
  /** A worker could not be created here (no worker_threads, a CSP without blob:): stop trying. */
  private unavailable = false;

  constructor(
    private readonly bytes: Uint8Array<ArrayBuffer>,
    private readonly memory: WebAssembly.Memory,
    /** The threaded exports, by the index `run` takes. */
    private readonly names: readonly string[],
  ) {
    this.ctrl = new Int32Array(memory.buffer, 0, ARGS + ARG_COUNT);
  }

  /** Start workers up to `threads - 1` (they get ready asynchronously); returns how many are ready now. */
  ensure(threads: number): number {
    const want = Math.min(MAX_WORKERS, threads - 1);
    while (!this.unavailable && this.started < want) {
      const worker = startWorker(this.started + 1, this.bytes, this.memory, this.names);
      if (worker) {
        this.workers.push(worker);
        this.started++;
      } else {
        this.unavailable = true;
      }
    }
    let ready = 0;
    while (ready < this.started && Atomics.load(this.ctrl, READY + ready + 1) === 1) ready++;
    return ready;
  }

  /** Starts workers up to `threads - 1` and resolves with the threads a job can use once they are ready, or after `timeoutMs`. */
  async whenReady(threads: number, timeoutMs: number): Promise<number> {
    const deadline = performance.now() + timeoutMs;
    let ready = this.ensure(threads);
    while (ready < threads - 1 && performance.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 5));
      ready = this.ensure(threads);
    }
    return 1 + ready;
  }

  /** Ends the workers; the pool takes no more jobs. */
  close(): void {
    for (const w of this.workers) void w.terminate();
    this.workers.length = 0;
    this.unavailable = true;
  }

  /**
   * Runs the threaded export `names[fn]` (`own`: the calling thread's instance of it) over the range
   * [args[1], args[2]) on up to `threads` threads (fewer while workers start), in chunks of at
   * least `grain` items (about four per thread).
   */
  run(fn: number, own: (...args: number[]) => void, args: readonly number[], threads: number, grain = 1): void {
    if (args.length > ARG_COUNT) throw new Error(`a threaded export takes at most ${ARG_COUNT} arguments, got ${args.length}`);
    const n = 1 + this.ensure(threads);
    const mine = [...args];
    mine[0] = 0;
    if (n === 1) {
      own(...mine);
      return;
    }
    const ctrl = this.ctrl;
    const from = args[1]!;
    const to = args[2]!;
    const chunk = Math.max(grain, Math.ceil((to - from) / (4 * n)));
    ctrl.set(args, ARGS);
    ctrl[COUNT] = n;
    ctrl[FUNCTION] = fn;
    ctrl[ARGC] = args.length;
    ctrl[CHUNK] = chunk;
    ctrl[FAILED] = 0;
    Atomics.store(ctrl, NEXT, 0);
    const generation = (Atomics.load(ctrl, GENERATION) + 1) | 0;
    for (let w = 1; w < n; w++) Atomics.store(ctrl, JOB + w, generation);
    Atomics.store(ctrl, STATE, OPEN);
    Atomics.store(ctrl, GENERATION, generation);
    Atomics.notify(ctrl, GENERATION);
    let error: unknown;
    try {
      for (let c = Atomics.add(ctrl, NEXT, 1); from + c * chunk < to; c = Atomics.add(ctrl, NEXT, 1)) {
        mine[1] = from + c * chunk;
        mine[2] = Math.min(to, mine[1] + chunk);
        own(...mine);
      }
    } catch (e) {
      error = e;
      // The workers take no more chunks.
      Atomics.store(ctrl, NEXT, 1 << 30);
    }
    Atomics.and(ctrl, STATE, ~OPEN);
    for (let state = Atomics.load(ctrl, STATE); state !== 0; state = Atomics.load(ctrl, STATE)) Atomics.wait(ctrl, STATE, state);
    if (error !== undefined) throw error;
    if (ctrl[FAILED] !== 0) throw new Error('a WebAssembly worker thread failed');
  }
}
