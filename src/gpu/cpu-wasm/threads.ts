// Worker threads for the GEMM module over one shared WebAssembly.Memory. Backend ops are
// synchronous, so the calling thread posts a job in shared memory, does its own share, and blocks
// in Atomics.wait until the workers are done. Atomics.wait is allowed in Node (main thread too) and
// in browser workers, not on a page's main thread: there the kernels run on the calling thread only.
//
// Control words (Int32, first page of the memory): a generation counter the workers wait on, the
// count of workers still busy, a failure flag, the number of threads of the current job, per worker
// a ready flag and a job flag, and the job's arguments. A worker runs only when its job flag is set
// and clears it, so a worker woken late never takes a job's arguments for another's. Thread i of n
// takes panels [⌊P·i/n⌋, ⌊P·(i+1)/n⌋).
import type { GemmExports } from './gemm-module.ts';

const GENERATION = 0;
const PENDING = 1;
const FAILED = 2;
const COUNT = 3;
const MAX_WORKERS = 64;
const READY = 8;
const JOB = READY + MAX_WORKERS;
const ARGS = JOB + MAX_WORKERS;
/** Indices of p0 and p1 (the whole job's panels) in the arguments of `work`. */
const P0 = 9;
const P1 = 10;
const ARG_COUNT = 14;

// Plain JavaScript, run as a classic browser worker (from a Blob URL) or a Node eval worker.
const WORKER_SOURCE = `
const start = ({ bytes, memory, index }) => {
  const instance = new WebAssembly.Instance(new WebAssembly.Module(bytes), { env: { memory } });
  const work = instance.exports.work;
  const ctrl = new Int32Array(memory.buffer, 0, ${ARGS + ARG_COUNT});
  let seen = Atomics.load(ctrl, ${GENERATION});
  Atomics.store(ctrl, ${READY} + index, 1);
  for (;;) {
    Atomics.wait(ctrl, ${GENERATION}, seen);
    seen = Atomics.load(ctrl, ${GENERATION});
    if (Atomics.exchange(ctrl, ${JOB} + index, 0) !== 1) continue;
    const n = ctrl[${COUNT}];
    try {
      const args = Array.from(ctrl.subarray(${ARGS}, ${ARGS + ARG_COUNT}));
      const panels = args[${P1}];
      args[${P0}] = Math.floor((panels * index) / n);
      args[${P1}] = Math.floor((panels * (index + 1)) / n);
      work(...args);
    } catch (e) {
      Atomics.store(ctrl, ${FAILED}, 1);
    }
    if (Atomics.sub(ctrl, ${PENDING}, 1) === 1) Atomics.notify(ctrl, ${PENDING});
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

function startWorker(index: number, bytes: Uint8Array<ArrayBuffer>, memory: WebAssembly.Memory): { terminate(): unknown } | null {
  const message = { bytes, memory, index };
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
  ) {
    this.ctrl = new Int32Array(memory.buffer, 0, ARGS + ARG_COUNT);
  }

  /** Start workers up to `threads - 1` (they get ready asynchronously); returns how many are ready now. */
  ensure(threads: number): number {
    const want = Math.min(MAX_WORKERS, threads - 1);
    while (!this.unavailable && this.started < want) {
      const worker = startWorker(this.started + 1, this.bytes, this.memory);
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

  /** Ends the workers; the pool takes no more jobs. */
  close(): void {
    for (const w of this.workers) void w.terminate();
    this.workers.length = 0;
    this.unavailable = true;
  }

  /** Runs `work(args)` split by panels over up to `threads` threads (fewer while workers start). */
  run(gemm: GemmExports, args: readonly number[], threads: number): void {
    const n = 1 + this.ensure(threads);
    const panels = args[P1]!;
    const own = [...args] as Parameters<GemmExports['work']>;
    if (n === 1) {
      gemm.work(...own);
      return;
    }
    const ctrl = this.ctrl;
    ctrl.set(args, ARGS);
    ctrl[COUNT] = n;
    ctrl[FAILED] = 0;
    Atomics.store(ctrl, PENDING, n - 1);
    for (let w = 1; w < n; w++) Atomics.store(ctrl, JOB + w, 1);
    Atomics.add(ctrl, GENERATION, 1);
    Atomics.notify(ctrl, GENERATION);
    own[P0] = 0;
    own[P1] = Math.floor(panels / n);
    let error: unknown;
    try {
      gemm.work(...own);
    } catch (e) {
      error = e;
    }
    for (let left = Atomics.load(ctrl, PENDING); left !== 0; left = Atomics.load(ctrl, PENDING)) Atomics.wait(ctrl, PENDING, left);
    if (error !== undefined) throw error;
    if (ctrl[FAILED] !== 0) throw new Error('matmul: a WebAssembly worker thread failed');
  }
}
