// Float32 matrix products on the WebAssembly SIMD kernels of gemm-module.ts, with worker threads
// over one shared memory where the environment allows (threads.ts).
//
// Per call, A is packed into the module's memory by row blocks and B is copied in by column blocks
// (both bounded by `options.blockFloats`, so a [128256, 2048] unembedding never needs 1 GB of wasm
// memory); each thread packs its own panels of the B block and multiplies them; C comes back by rows.
// Every entry is a float32 sum in k order (each product and each addition rounded to float32), so
// its bits do not depend on M, on the block sizes or on the number of threads.
import { Bf16Bits } from '../../io/chunks.ts';
import { GEMM_FORMATS, GEMM_PANEL_COLS, GEMM_TILE_ROWS, gemmModuleBytes, THREADED, THREADED_EXPORTS, type GemmExports } from './gemm-module.ts';
import { canBlockHere, GemmThreads, hardwareThreads } from './threads.ts';

// Local copies: where the modules run as CommonJS (tsx in Node), every use of an imported binding is a
// getter call, which costs in the loops below.
const MR = GEMM_TILE_ROWS;
const NR = GEMM_PANEL_COLS;

export interface WasmGemmOptions {
  /** Use the WebAssembly kernels when the environment has wasm SIMD (else the JavaScript ones). */
  enabled: boolean;
  /** Threads per product, the calling one included; 1 disables workers. Default: hardware threads, at most 8. */
  threads: number;
  /** Each thread gets at least this many flops (2·M·N·K, M rounded up to 4): waking a worker costs tens of µs. */
  flopsPerThread: number;
  /** Depth of a K block: a packed panel of B (kcBlock × 8 floats) should stay in L1. */
  kcBlock: number;
  /** Tiles of 4 rows of A swept over one panel of B before the next panel (mcTiles × 4 × kcBlock floats in L2). */
  mcTiles: number;
  /** Floats of A (and of B) moved into wasm memory per block; a block of C holds up to twice as many. */
  blockFloats: number;
  /**
   * Use relaxed SIMD's fused multiply-add where the engine validates it (Chromium; Node from 22, or
   * Node 20 with --experimental-wasm-relaxed-simd); plain SIMD multiply and add otherwise. Read
   * when the kernels are first used (resetWasmGemm() to change it later).
   */
  relaxed: boolean;
}

export const wasmGemmOptions: WasmGemmOptions = {
  enabled: true,
  threads: Math.min(8, hardwareThreads()),
  flopsPerThread: 4e6,
  kcBlock: 256,
  mcTiles: 32,
  blockFloats: 1 << 21,
  relaxed: true,
};

/**
 * Time spent when `enabled` (for the benchmarks' profiles): in the kernels (packing B and multiplying,
 * all threads) and in whole calls (plus packing A and copying into and out of the module's memory).
 */
export const wasmGemmStats = { enabled: false, kernelMs: 0, totalMs: 0 };

const PAGE = 65536;
/** The first page holds the thread pool's control words; data starts after it. */
const DATA_START = PAGE;
const MAX_PAGES = 16384;

interface Engine {
  /** The kernels use relaxed SIMD's fused multiply-add. */
  relaxed: boolean;
  memory: WebAssembly.Memory;
  gemm: GemmExports;
  threads: GemmThreads | undefined;
  heap: Float32Array;
}

let engine: Engine | null | undefined;

function instantiate(shared: boolean): Engine | null {
  const memoryType = { initialPages: 2, maximumPages: MAX_PAGES, shared };
  // The module is wasm SIMD (threads when shared, relaxed SIMD when asked): validation fails where the engine lacks them.
  let relaxed = wasmGemmOptions.relaxed;
  let bytes = gemmModuleBytes(memoryType, relaxed);
  if (relaxed && !WebAssembly.validate(bytes)) {
    relaxed = false;
    bytes = gemmModuleBytes(memoryType, false);
  }
  if (!WebAssembly.validate(bytes)) return null;
  try {
    const memory = new WebAssembly.Memory({ initial: memoryType.initialPages, maximum: MAX_PAGES, shared });
    const instance = new WebAssembly.Instance(new WebAssembly.Module(bytes), { env: { memory } });
    return {
      relaxed,
      memory,
      gemm: instance.exports as unknown as GemmExports,
      threads: shared ? new GemmThreads(bytes, memory, THREADED_EXPORTS) : undefined,
      heap: new Float32Array(memory.buffer),
    };
  } catch {
    return null;
  }
}

/**
 * Node 20's V8 has relaxed SIMD behind a flag (standard in WebAssembly 3.0, on by default in
 * Chromium and in Node from 22); turn it on before the kernels are validated.
 */
function enableRelaxedSimdInNode(): void {
  const proc = (globalThis as { process?: { versions?: { node?: string }; getBuiltinModule?: (id: string) => unknown } }).process;
  if (typeof proc?.versions?.node !== 'string') return;
  const v8 = proc.getBuiltinModule?.('node:v8') as { setFlagsFromString?: (flags: string) => void } | undefined;
  v8?.setFlagsFromString?.('--experimental-wasm-relaxed-simd');
}

function createEngine(): Engine | null {
  if (typeof WebAssembly !== 'object') return null;
  if (wasmGemmOptions.relaxed) enableRelaxedSimdInNode();
  return (canBlockHere() ? instantiate(true) : null) ?? instantiate(false);
}

function getEngine(): Engine | null {
  if (engine === undefined) engine = createEngine();
  return engine;
}

/** Whether the WebAssembly SIMD kernels run here (false: the JavaScript kernels do). */
export function wasmGemmAvailable(): boolean {
  return getEngine() !== null;
}

/** Whether the kernels in use are the relaxed-SIMD (fused multiply-add) ones. */
export function wasmGemmRelaxed(): boolean {
  return getEngine()?.relaxed ?? false;
}

/**
 * Drops the kernels (their memory and threads go when nothing refers to them), so that the next
 * product builds them again with the current options (tests of both kernel variants).
 */
export function resetWasmGemm(): void {
  engine?.threads?.close();
  engine = undefined;
}

/** A view of the memory that covers `bytes`, growing it if needed; null if it cannot grow that far. */
function heapFor(e: Engine, bytes: number): Float32Array | null {
  const pages = Math.ceil(bytes / PAGE);
  const have = e.memory.buffer.byteLength / PAGE;
  if (pages > have) {
    if (pages > MAX_PAGES) return null;
    try {
      e.memory.grow(pages - have);
    } catch {
      return null; // out of memory: the JavaScript kernels need none
    }
  }
  if (e.heap.buffer.byteLength !== e.memory.buffer.byteLength) e.heap = new Float32Array(e.memory.buffer);
  return e.heap;
}

/**
 * Rows i0..i0+rows, columns k0..k0+kk of a [?, K] into [tiles][kk][4] at float offset `at`, missing rows
 * as zeros: the rows are copied as they are to `rawAt` and regrouped by the module (a strided gather
 * JavaScript runs slowly).
 */
function packA(e: Engine, a: Float32Array, i0: number, rows: number, K: number, k0: number, kk: number, heap: Float32Array, at: number, rawAt: number): void {
  const tiles = Math.ceil(rows / MR);
  if (kk === K) heap.set(a.subarray(i0 * K, (i0 + rows) * K), rawAt);
  else for (let r = 0; r < rows; r++) heap.set(a.subarray((i0 + r) * K + k0, (i0 + r) * K + k0 + kk), rawAt + r * kk);
  heap.fill(0, rawAt + rows * kk, rawAt + tiles * MR * kk);
  e.gemm.packTiles(rawAt * 4, kk, at * 4, tiles);
}

/**
 * The depth of one pass over K: all of K, or where a block of B would otherwise hold fewer than 64
 * columns (an unembedding's gradient: K is the vocabulary), chunks of whole kcBlocks, sized so that a
 * block of B spans all N columns where it can. The chunks' products are accumulated in C in k order,
 * so the split does not change a bit.
 */
function kChunk(K: number, N: number, o: WasmGemmOptions): number {
  if (K * 64 <= o.blockFloats) return K;
  const width = Math.ceil(N / NR) * NR;
  const depth = Math.floor(o.blockFloats / Math.min(Math.max(width, 64), o.blockFloats / o.kcBlock));
  return Math.max(o.kcBlock, Math.floor(depth / o.kcBlock) * o.kcBlock);
}

/**
 * c [M, N] = a [M, K] · b, b [K, N] or, with transposeB, b [N, K]; b as float32 values, float16 bits
 * (a Uint16Array) or bfloat16 bits (a Bf16Bits): weights kept in 16 bits, widened to float32 as the
 * kernels pack them. Returns
 * false (c untouched) where the WebAssembly kernels are unavailable or disabled, or where the blocks
 * would not fit the module's memory, so that the caller falls back to the JavaScript kernels.
 */
export function wasmMatmul(a: Float32Array, b: Float32Array | Uint16Array, c: Float32Array, M: number, N: number, K: number, transposeB: boolean): boolean {
  const o = wasmGemmOptions;
  if (!o.enabled) return false;
  const e = getEngine();
  if (!e) return false;
  if (M === 0 || N === 0) return true;
  if (K === 0) {
    c.fill(0, 0, M * N);
    return true;
  }
  const half = b instanceof Uint16Array;
  const format = GEMM_FORMATS.indexOf(b instanceof Bf16Bits ? 'bf16' : half ? 'f16' : 'f32');
  const elementBytes = half ? 2 : 4;
  const kc = kChunk(K, N, o);
  const rowsPerBlock = Math.max(MR, Math.floor(o.blockFloats / kc / MR) * MR);
  const colsPerBlock = Math.max(NR, Math.floor(o.blockFloats / kc / NR) * NR);
  const nb = Math.min(Math.ceil(N / NR) * NR, colsPerBlock);
  const rowsPerC = Math.max(MR, Math.floor((2 * o.blockFloats) / nb / MR) * MR);
  const mb = Math.min(Math.ceil(M / MR) * MR, rowsPerBlock, rowsPerC);
  const aAt = DATA_START / 4;
  const aRawAt = aAt + mb * kc;
  const bRawAt = aRawAt + mb * kc;
  const bPackAt = bRawAt + nb * kc;
  const cAt = bPackAt + nb * kc;
  const heap = heapFor(e, (cAt + mb * nb) * 4);
  if (!heap) return false;
  // The raw block of B in its own element type (float16 bits take half of the space reserved).
  const raw: Float32Array | Uint16Array = half ? new Uint16Array(heap.buffer, bRawAt * 4, nb * kc) : heap.subarray(bRawAt, bRawAt + nb * kc);
  const stats = wasmGemmStats.enabled ? wasmGemmStats : undefined;
  const started = stats ? performance.now() : 0;

  for (let i0 = 0; i0 < M; i0 += mb) {
    const rows = Math.min(mb, M - i0);
    const tiles = Math.ceil(rows / MR);
    if (kc === K) packA(e, a, i0, rows, K, 0, K, heap, aAt, aRawAt);
    for (let j0 = 0; j0 < N; j0 += nb) {
      const cols = Math.min(nb, N - j0);
      const panels = Math.ceil(cols / NR);
      const width = panels * NR;
      for (let k0 = 0; k0 < K; k0 += kc) {
        const kk = Math.min(kc, K - k0);
        if (kc !== K) packA(e, a, i0, rows, K, k0, kk, heap, aAt, aRawAt);
        let ldb: number;
        if (transposeB) {
          if (kk === K) raw.set(b.subarray(j0 * K, (j0 + cols) * K), 0);
          else for (let j = 0; j < cols; j++) raw.set(b.subarray((j0 + j) * K + k0, (j0 + j) * K + k0 + kk), j * kk);
          raw.fill(0, cols * kk, width * kk);
          ldb = kk * elementBytes;
        } else if (cols === N && width === N) {
          raw.set(b.subarray(k0 * N, (k0 + kk) * N), 0);
          ldb = N * elementBytes;
        } else {
          for (let k = 0; k < kk; k++) {
            const d = k * width;
            raw.set(b.subarray((k0 + k) * N + j0, (k0 + k) * N + j0 + cols), d);
            raw.fill(0, d + cols, d + width);
          }
          ldb = width * elementBytes;
        }
        const args = [0, 0, panels, aAt * 4, kk, bRawAt * 4, ldb, transposeB ? 1 : 0, bPackAt * 4, cAt * 4, width * 4, tiles, o.kcBlock, o.mcTiles, format, k0 > 0 ? 1 : 0];
        const panelFlops = 2 * tiles * MR * NR * kk;
        const threads = Math.max(1, Math.min(o.threads, panels, Math.floor((panelFlops * panels) / o.flopsPerThread)));
        const kernelStart = stats ? performance.now() : 0;
        if (threads > 1 && e.threads) e.threads.run(THREADED.work, e.gemm.work, args, threads, Math.ceil(o.flopsPerThread / 4 / panelFlops));
        else e.gemm.work(...(args as Parameters<GemmExports['work']>));
        if (stats) stats.kernelMs += performance.now() - kernelStart;
      }
      if (width === N) {
        c.set(heap.subarray(cAt, cAt + rows * N), i0 * N);
      } else {
        for (let r = 0; r < rows; r++) c.set(heap.subarray(cAt + r * width, cAt + r * width + cols), (i0 + r) * N + j0);
      }
    }
  }
  if (stats) stats.totalMs += performance.now() - started;
  return true;
}

/**
 * The kernels' module for other ops (ops.ts): its exports, a view of its memory covering `bytes`
 * from `at` (a float index; the space is the caller's until it returns), and `run` to split a
 * threaded export over the pool (on the calling thread only where there is none). Null where the
 * WebAssembly kernels are unavailable or disabled, or the memory cannot grow that far.
 */
export function wasmKernels(bytes: number): { kernels: GemmExports; heap: Float32Array; at: number; threads: number; run(fn: keyof typeof THREADED, args: readonly number[], threads: number, grain?: number): void } | null {
  if (!wasmGemmOptions.enabled) return null;
  const e = getEngine();
  if (!e) return null;
  const heap = heapFor(e, DATA_START + bytes);
  if (!heap) return null;
  const threads = e.threads ? wasmGemmOptions.threads : 1;
  return {
    kernels: e.gemm,
    heap,
    at: DATA_START / 4,
    threads,
    run(fn, args, n, grain) {
      const own = e.gemm[fn] as (...a: number[]) => void;
      if (n > 1 && e.threads) e.threads.run(THREADED[fn], own, args, n, grain);
      else own(...args);
    },
  };
}

/**
 * Starts the worker threads now (they otherwise start on the first product big enough to split) and
 * resolves with the number of threads a product can use once they are ready, or after `timeoutMs`.
 */
export async function startWasmGemmThreads(timeoutMs = 10_000): Promise<number> {
  const e = getEngine();
  if (!e?.threads) return e ? 1 : 0;
  return e.threads.whenReady(wasmGemmOptions.threads, timeoutMs);
}
