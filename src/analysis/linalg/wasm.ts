// The float64 kernels of the full spectrum, in WebAssembly SIMD (f64x2) on the CPU backend's
// threads: the Gram matrix of a float32 matrix summed in float64, and the fused pass of the
// Householder tridiagonalisation (dense.ts's TridiagonalWorkspace); and the float32 products of the
// randomized top-k with a resident matrix, on the GEMM's own micro-kernel and packings
// (gemmKernelFunctions). Written with the GEMM's emitter and run on its thread pool: the module's `work` export takes the GEMM's 14 arguments, with the
// share [p0, p1) of "chunks" at the same places, so GemmThreads splits it the same way.
//
// Memory: the first page holds the thread pool's control words; then the float64 operands.
import {
  add,
  and,
  encodeModule,
  eq,
  f64,
  f64Add,
  f64Load,
  f64Mul,
  f64Store,
  f64Sub,
  f64x2Add,
  f64x2Lane,
  f64x2Mul,
  f64x2RelaxedMadd,
  f64x2Splat,
  f64x2Sub,
  forRange,
  FunctionBuilder,
  call,
  geS,
  get,
  i32,
  ifThen,
  int,
  ltS,
  mul,
  set,
  sub,
  v128,
  vLoad,
  vStore,
  vZero,
  type Code,
  type Local,
} from '../../gpu/cpu-wasm/emit.ts';
import { wasmGemmOptions, wasmGemmRelaxed } from '../../gpu/cpu-wasm/gemm.ts';
import { gemmKernelFunctions, GEMM_PANEL_COLS, GEMM_TILE_ROWS } from '../../gpu/cpu-wasm/gemm-module.ts';
import { canBlockHere, GemmThreads } from '../../gpu/cpu-wasm/threads.ts';
import type { TridiagonalWorkspace } from './dense.ts';

const PAGE = 65536;
/** 1 GiB, as the GEMM's memory: larger operands (an unembedding's top-k) take the backend's route. */
const MAX_PAGES = 16384;
/** Rows of a Gram block; the Gram is padded to a multiple of it. */
const GRAM_ROWS = 4;
/** Columns of the long side per Gram call: 4 + 2 rows of this many float64 stay in L1. */
const GRAM_PANEL = 256;

const OP_GRAM = 0;
const OP_TRIDIAGONAL = 1;
const OP_PACK_ROWS = 2;
const OP_PACK_COLUMNS = 3;
const OP_GEMM = 4;

/** The 13 i32 arguments of `work`: (thread, p0, p1, op, a1…a8, chunks), the range [p0, p1) first as the thread pool splits it. */
type WorkArgs = [number, number, number, number, number, number, number, number, number, number, number, number, number];

/**
 * g[i0 + r, j + c] += Σ_t x[i0 + r, t]·x[j + c, t] for r < 4, c < 2, j < i0 + 4 (the lower triangle
 * and the diagonal 4×4 block); x rows of `bytes` (a multiple of 16) at row stride ld.
 */
function gramRowsFunction(relaxed: boolean): { fn: FunctionBuilder; body: Code } {
  const fn = new FunctionBuilder('gramRows', [i32, i32, i32, i32, i32, i32]);
  const [x, ld, bytes, g, ldg, i0] = fn.params() as [Local, Local, Local, Local, Local, Local];
  const j = fn.local(i32);
  const o = fn.local(i32);
  const rows = Array.from({ length: GRAM_ROWS }, () => fn.local(i32));
  const cols = [fn.local(i32), fn.local(i32)];
  const acc = rows.map(() => [fn.local(v128), fn.local(v128)]);
  const y = [fn.local(v128), fn.local(v128)];
  const xv = fn.local(v128);
  const out = fn.local(i32);
  const madd = (a: Code, b: Code, c: Code): Code => (relaxed ? f64x2RelaxedMadd(a, b, c) : f64x2Add(c, f64x2Mul(a, b)));
  const setup: Code[] = rows.map((r, k) => set(r, add(get(x), mul(add(get(i0), int(k)), get(ld)))));
  const step: Code[] = [set(y[0]!, vLoad(add(get(cols[0]!), get(o)))), set(y[1]!, vLoad(add(get(cols[1]!), get(o))))];
  rows.forEach((r, k) => {
    step.push(set(xv, vLoad(add(get(r), get(o)))));
    for (let c = 0; c < 2; c++) step.push(set(acc[k]![c]!, madd(get(xv), get(y[c]!), get(acc[k]![c]!))));
  });
  const store: Code[] = [];
  for (let k = 0; k < GRAM_ROWS; k++) {
    for (let c = 0; c < 2; c++) {
      const at = add(get(g), add(mul(add(get(i0), int(k)), get(ldg)), mul(add(get(j), int(c)), int(8))));
      store.push(set(out, at), f64Store(get(out), f64Add(f64Load(get(out)), f64Add(f64x2Lane(get(acc[k]![c]!), 0), f64x2Lane(get(acc[k]![c]!), 1)))));
    }
  }
  const block: Code[] = [
    set(cols[0]!, add(get(x), mul(get(j), get(ld)))),
    set(cols[1]!, add(get(cols[0]!), get(ld))),
    ...acc.flat().map((a) => set(a, vZero())),
    forRange(o, int(0), get(bytes), int(16), step.flat()),
    ...store,
  ];
  return { fn, body: [...setup.flat(), ...forRange(j, int(0), add(get(i0), int(GRAM_ROWS)), int(2), block.flat())] };
}

/**
 * Rows i of one group of 4 (from i0, below n): the fused pass of TridiagonalWorkspace, with the
 * products a·v_i summed into this chunk's own p (pc): chunks run at once on different rows.
 */
function tridiagonalRowsFunction(): { fn: FunctionBuilder; body: Code } {
  const fn = new FunctionBuilder('tridiagonalRows', [i32, i32, i32, i32, i32, i32, i32, i32, i32]);
  const [a, lda, n, k, vAt, vpAt, wpAt, pc, i0] = fn.params() as [Local, Local, Local, Local, Local, Local, Local, Local, Local];
  const i = fn.local(i32);
  const iEnd = fn.local(i32);
  const row = fn.local(i32);
  const j = fn.local(i32);
  const jVecEnd = fn.local(i32);
  const vi = fn.local(f64);
  const vpi = fn.local(f64);
  const wpi = fn.local(f64);
  const s = fn.local(f64);
  const aij = fn.local(f64);
  const vvi = fn.local(v128);
  const vvp = fn.local(v128);
  const vwp = fn.local(v128);
  const vs = fn.local(v128);
  const va = fn.local(v128);
  const at = (base: Local, index: Code): Code => add(get(base), mul(index, int(8)));
  const vector = [
    set(va, f64x2Sub(vLoad(at(row, get(j))), f64x2Add(f64x2Mul(get(vvp), vLoad(at(wpAt, get(j)))), f64x2Mul(get(vwp), vLoad(at(vpAt, get(j))))))),
    vStore(at(row, get(j)), get(va)),
    set(vs, f64x2Add(get(vs), f64x2Mul(get(va), vLoad(at(vAt, get(j)))))),
    vStore(at(pc, get(j)), f64x2Add(vLoad(at(pc, get(j))), f64x2Mul(get(va), get(vvi)))),
  ].flat();
  const scalar = [
    set(aij, f64Sub(f64Load(at(row, get(j))), f64Add(f64Mul(get(vpi), f64Load(at(wpAt, get(j)))), f64Mul(get(wpi), f64Load(at(vpAt, get(j))))))),
    f64Store(at(row, get(j)), get(aij)),
    set(s, f64Add(get(s), f64Mul(get(aij), f64Load(at(vAt, get(j)))))),
    f64Store(at(pc, get(j)), f64Add(f64Load(at(pc, get(j))), f64Mul(get(aij), get(vi)))),
  ].flat();
  const perRow = [
    set(row, add(get(a), mul(get(i), get(lda)))),
    set(vi, f64Load(at(vAt, get(i)))),
    set(vpi, f64Load(at(vpAt, get(i)))),
    set(wpi, f64Load(at(wpAt, get(i)))),
    set(vvi, f64x2Splat(get(vi))),
    set(vvp, f64x2Splat(get(vpi))),
    set(vwp, f64x2Splat(get(wpi))),
    set(vs, vZero()),
    // Columns k+1 .. i-1: pairs, then one more when their count is odd.
    set(jVecEnd, sub(get(i), and(sub(get(i), add(get(k), int(1))), int(1)))),
    forRange(j, add(get(k), int(1)), get(jVecEnd), int(2), vector),
    set(s, f64Add(f64x2Lane(get(vs), 0), f64x2Lane(get(vs), 1))),
    forRange(j, get(jVecEnd), get(i), int(1), scalar),
    // The diagonal.
    set(aij, f64Sub(f64Load(at(row, get(i))), f64Mul(f64Add(get(vpi), get(vpi)), get(wpi)))),
    f64Store(at(row, get(i)), get(aij)),
    f64Store(at(pc, get(i)), f64Add(f64Load(at(pc, get(i))), f64Add(get(s), f64Mul(get(aij), get(vi))))),
  ].flat();
  return {
    fn,
    body: [
      ...set(iEnd, add(get(i0), int(4))),
      ...ifThen(ltS(get(n), get(iEnd)), set(iEnd, get(n))),
      ...forRange(i, get(i0), get(iEnd), int(1), perRow),
    ],
  };
}

// Functions 0-3 are the float32 product's (gemmKernelFunctions).
const PACK_ROWS_FN = 1;
const PACK_COLUMNS_FN = 2;
const GEMM_FN = 3;
const GRAM_ROWS_FN = 4;
const TRIDIAGONAL_ROWS_FN = 5;

/**
 * work(thread, p0, p1, op, …, chunks): chunk c of `chunks` takes the groups (4-row blocks) q with
 * q mod 2·chunks equal to c or 2·chunks − 1 − c, so that every chunk gets a like share of a
 * triangle. OP_GRAM: (x, ld, bytes, g, ldg, blocks). OP_TRIDIAGONAL: (a, lda, n, k, v, vp, wp,
 * p-buffers of n floats per chunk), groups from row k + 1.
 */
function workFunction(): { fn: FunctionBuilder; body: Code } {
  const fn = new FunctionBuilder('work', Array.from({ length: 13 }, () => i32));
  const [, p0, p1, op, a1, a2, a3, a4, a5, a6, a7, a8, chunks] = fn.params() as Local[] as [Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local];
  const c = fn.local(i32);
  const q = fn.local(i32);
  const group = fn.local(i32);
  const groups = fn.local(i32);
  const period = fn.local(i32);
  const doGroup = (g: Code): Code => {
    const run = ifThen(
      eq(get(op), int(OP_GRAM)),
      call(GRAM_ROWS_FN, get(a1), get(a2), get(a3), get(a4), get(a5), mul(get(group), int(GRAM_ROWS))),
      call(
        TRIDIAGONAL_ROWS_FN,
        get(a1), get(a2), get(a3), get(a4), get(a5), get(a6), get(a7),
        add(get(a8), mul(get(c), get(a2))),
        add(add(get(a4), int(1)), mul(get(group), int(4))),
      ),
    );
    return [...set(group, g), ...ifThen(ltS(get(group), get(groups)), run)];
  };
  const perChunk = forRange(q, int(0), get(groups), get(period), [...doGroup(add(get(q), get(c))), ...doGroup(sub(add(get(q), sub(get(period), int(1))), get(c)))]);
  const pack = [get(a1), get(a2), get(a3), get(a4), get(p0), get(p1)];
  const products = ifThen(
    eq(get(op), int(OP_GEMM)),
    call(GEMM_FN, get(a1), get(a2), get(a3), get(a4), get(a5), get(a6), get(p0), get(p1), get(a7), get(a8), int(0)),
    ifThen(eq(get(op), int(OP_PACK_ROWS)), call(PACK_ROWS_FN, ...pack), call(PACK_COLUMNS_FN, ...pack)),
  );
  return {
    fn,
    body: [
      // The resident matrix's packing and products, split by panels: [p0, p1) is the share.
      ...ifThen(geS(get(op), int(OP_PACK_ROWS)), [...products, 0x0f]),
      ...set(period, add(get(chunks), get(chunks))),
      // Groups: the Gram's row blocks, or the rows below k in fours (⌈(n − k − 1)/4⌉).
      ...ifThen(eq(get(op), int(OP_GRAM)), set(groups, get(a6)), set(groups, shrU(add(sub(get(a3), get(a4)), int(2)), int(2)))),
      ...forRange(c, get(p0), get(p1), int(1), perChunk),
    ],
  };
}

/** i32.shr_u */
function shrU(x: Code, bits: Code): Code {
  return [...x, ...bits, 0x76];
}

function moduleBytes(shared: boolean, relaxed: boolean): Uint8Array<ArrayBuffer> {
  return encodeModule({ initialPages: 2, maximumPages: MAX_PAGES, shared }, [...gemmKernelFunctions(relaxed), gramRowsFunction(relaxed), tridiagonalRowsFunction(), workFunction()]);
}

interface Engine {
  /** Counts the uses of the memory: a ResidentMatrix is valid while it holds the latest. */
  generation: number;
  memory: WebAssembly.Memory;
  exports: { work(...args: WorkArgs): void };
  threads: GemmThreads | undefined;
}

let engine: Engine | null | undefined;

function instantiate(shared: boolean): Engine | null {
  let bytes = moduleBytes(shared, wasmGemmRelaxed());
  if (!WebAssembly.validate(bytes)) bytes = moduleBytes(shared, false);
  if (!WebAssembly.validate(bytes)) return null;
  try {
    const memory = new WebAssembly.Memory({ initial: 2, maximum: MAX_PAGES, shared });
    const instance = new WebAssembly.Instance(new WebAssembly.Module(bytes), { env: { memory } });
    const threads = shared ? new GemmThreads(bytes, memory, ['work']) : undefined;
    threads?.ensure(wasmGemmOptions.threads);
    return { generation: 0, memory, exports: instance.exports as unknown as Engine['exports'], threads };
  } catch {
    return null;
  }
}

function getEngine(): Engine | null {
  if (engine === undefined) engine = typeof WebAssembly === 'object' && wasmGemmOptions.enabled ? ((canBlockHere() ? instantiate(true) : null) ?? instantiate(false)) : null;
  return engine;
}

/** Whether the float64 WebAssembly kernels run here. */
export function wasmLinalgAvailable(): boolean {
  return getEngine() !== null;
}

/** A float64 view of the memory from byte 0, grown to hold `bytes`; null if it cannot grow. */
function heap(e: Engine, bytes: number): Float64Array | null {
  const have = e.memory.buffer.byteLength / PAGE;
  const pages = Math.ceil(bytes / PAGE);
  if (pages > have) {
    if (pages > MAX_PAGES) return null;
    try {
      e.memory.grow(pages - have);
    } catch {
      return null;
    }
  }
  return new Float64Array(e.memory.buffer);
}

function run(e: Engine, args: WorkArgs, threads: number): void {
  if (threads > 1 && e.threads) e.threads.run(0, e.exports.work, args, threads);
  else e.exports.work(...args);
}

/** Threads (and chunks) for a job of `flops`: a worker's wake-up costs tens of µs. */
function threadsFor(flops: number): number {
  return Math.max(1, Math.min(wasmGemmOptions.threads, Math.floor(flops / wasmGemmOptions.flopsPerThread)));
}

interface GramLayout {
  /** Side padded to GRAM_ROWS; the Gram's row stride in float64s. */
  side4: number;
  /** Float64 offset of the Gram in the heap. */
  gAt: number;
  h: Float64Array;
  e: Engine;
}

/**
 * The Gram of the smaller side of a row-major float32 m×n matrix, summed in float64, into the
 * module's memory (lower triangle and diagonal 4×4 blocks; side4 × side4, rows and columns past
 * the side zero); null where the kernels do not run. `extraFloats` are reserved after it.
 */
function gramInHeap(x: Float32Array, m: number, n: number, extraFloats: number): GramLayout | null {
  const e = getEngine();
  if (!e) return null;
  const side = Math.min(m, n);
  const len = Math.max(m, n);
  const side4 = Math.ceil(side / GRAM_ROWS) * GRAM_ROWS;
  const ld = len + (len % 2);
  const xAt = PAGE / 8;
  const gAt = xAt + side4 * ld;
  const h = heap(e, (gAt + side4 * side4 + extraFloats) * 8);
  if (!h) return null;
  // The smaller side's vectors as rows of length len (float64), zero-padded to side4 × ld.
  h.fill(0, xAt, gAt + side4 * side4);
  if (m <= n) {
    for (let i = 0; i < m; i++) h.set(x.subarray(i * n, (i + 1) * n), xAt + i * ld);
  } else {
    for (let t = 0; t < m; t++) {
      const row = t * n;
      for (let i = 0, d = xAt + t; i < n; i++, d += ld) h[d] = x[row + i]!;
    }
  }
  e.generation++;
  const blocks = side4 / GRAM_ROWS;
  const threads = threadsFor(side * side * len);
  for (let t0 = 0; t0 < ld; t0 += GRAM_PANEL) {
    const width = Math.min(GRAM_PANEL, ld - t0);
    run(e, [0, 0, threads, OP_GRAM, (xAt + t0) * 8, ld * 8, width * 8, gAt * 8, side4 * 8, blocks, 0, 0, threads], threads);
  }
  return { side4, gAt, h, e };
}

/** A·Aᵀ (m ≤ n) or Aᵀ·A (m > n) of a row-major float32 matrix in float64 (as gram.ts's hostGram); null without the kernels. */
export function wasmGram(x: Float32Array, m: number, n: number): Float64Array | null {
  const layout = gramInHeap(x, m, n, 0);
  if (!layout) return null;
  const { side4, gAt, h } = layout;
  const side = Math.min(m, n);
  const g = new Float64Array(side * side);
  for (let i = 0; i < side; i++) {
    for (let j = 0; j <= i; j++) {
      const v = h[gAt + i * side4 + j]!;
      g[i * side + j] = v;
      g[j * side + i] = v;
    }
  }
  return g;
}

/**
 * A TridiagonalWorkspace in the module's memory, whose pass runs on the kernels and threads; the
 * matrix is `g` (n×n) or, when `g` is omitted, the Gram already in the heap. Null without the kernels.
 */
export function wasmTridiagonalWorkspace(n: number, g?: Float64Array, layout?: GramLayout): TridiagonalWorkspace | null {
  const e = layout?.e ?? getEngine();
  if (!e) return null;
  const chunks = Math.max(1, wasmGemmOptions.threads);
  const lda = layout?.side4 ?? n + (n % 2);
  const aAt = layout?.gAt ?? PAGE / 8;
  const vecAt = aAt + lda * lda;
  const h = heap(e, (vecAt + (4 + chunks) * lda) * 8);
  if (!h) return null;
  if (!layout) e.generation++;
  if (g) for (let i = 0; i < n; i++) h.set(g.subarray(i * n, i * n + i + 1), aAt + i * lda);
  const view = (at: number, length: number) => h.subarray(at, at + length);
  const [vAt, vpAt, wpAt, pAt, bufAt] = [0, 1, 2, 3, 4].map((i) => vecAt + i * lda) as [number, number, number, number, number];
  h.fill(0, vecAt, vecAt + (4 + chunks) * lda);
  const ws: TridiagonalWorkspace = {
    a: view(aAt, lda * lda),
    lda,
    v: view(vAt, lda),
    p: view(pAt, lda),
    vp: view(vpAt, lda),
    wp: view(wpAt, lda),
    pass(size, k) {
      const rows = size - k - 1;
      const threads = Math.min(chunks, threadsFor(2 * rows * rows));
      for (let c = 0; c < threads; c++) h.fill(0, bufAt + c * lda + k + 1, bufAt + c * lda + size);
      run(e, [0, 0, threads, OP_TRIDIAGONAL, aAt * 8, lda * 8, size, k, vAt * 8, vpAt * 8, wpAt * 8, bufAt * 8, threads], threads);
      const p = ws.p;
      for (let i = k + 1; i < size; i++) {
        let s = 0;
        for (let c = 0; c < threads; c++) s += h[bufAt + c * lda + i]!;
        p[i] = s;
      }
    },
  };
  return ws;
}

/**
 * The Gram of a float32 matrix summed in float64 and its tridiagonal form, on the kernels without
 * leaving the module's memory; null without them.
 */
export function wasmGramTridiagonalWorkspace(x: Float32Array, m: number, n: number): TridiagonalWorkspace | null {
  const side = Math.min(m, n);
  const side4 = Math.ceil(side / GRAM_ROWS) * GRAM_ROWS;
  const layout = gramInHeap(x, m, n, (4 + Math.max(1, wasmGemmOptions.threads)) * side4);
  return layout && wasmTridiagonalWorkspace(side, undefined, layout);
}

/**
 * A float32 m×n matrix copied once into the kernels' memory, packed as the float32 product's B
 * operand both ways (panels of 8 columns of A for q·A, of 8 rows of A for w·Aᵀ), for repeated
 * products with thin matrices (the randomized top-k): per product only the thin operand is packed,
 * and the 4×8 micro-kernel of the GEMM runs on the resident panels. Valid until the next use of the
 * kernels' memory (a Gram, another upload).
 */
/** Rows of A staged at a time while ResidentMatrix.upload packs it (a multiple of the panel width). */
const UPLOAD_BLOCK_ROWS = 256;

export class ResidentMatrix {
  private constructor(
    private readonly e: Engine,
    private readonly generation: number,
    readonly m: number,
    readonly n: number,
    /** Byte offsets: A packed for q·A, A packed for w·Aᵀ, then the products' scratch space. */
    private readonly forwardAt: number,
    private readonly transposedAt: number,
    private readonly scratchAt: number,
  ) {}

  /** Null where the kernels do not run or the memory cannot hold the matrix. */
  static upload(x: Float32Array, m: number, n: number): ResidentMatrix | null {
    const e = getEngine();
    if (!e) return null;
    const mPanels = Math.ceil(m / GEMM_PANEL_COLS);
    const nPanels = Math.ceil(n / GEMM_PANEL_COLS);
    const [m8, n8] = [mPanels * GEMM_PANEL_COLS, nPanels * GEMM_PANEL_COLS];
    const forwardAt = PAGE;
    const transposedAt = forwardAt + n8 * m * 4;
    // A is staged a block of rows at a time (padded to whole panels) and packed both ways from there,
    // so the memory holds the two packings and two blocks, not a third copy of A; the blocks' space
    // is then the products' scratch.
    const R = Math.min(UPLOAD_BLOCK_ROWS, m8);
    const stageAt = transposedAt + m8 * n * 4;
    const blockAt = stageAt + R * n8 * 4;
    if (!heap(e, blockAt + R * n8 * 4)) return null;
    const h = new Float32Array(e.memory.buffer);
    const [s0, b0, f0] = [stageAt / 4, blockAt / 4, forwardAt / 4];
    for (let r0 = 0; r0 < m; r0 += R) {
      const rows = Math.min(R, m - r0);
      const rows8 = Math.ceil(rows / GEMM_PANEL_COLS) * GEMM_PANEL_COLS;
      if (n8 === n) h.set(x.subarray(r0 * n, (r0 + rows) * n), s0);
      else {
        for (let i = 0; i < rows; i++) {
          h.set(x.subarray((r0 + i) * n, (r0 + i + 1) * n), s0 + i * n8);
          h.fill(0, s0 + i * n8 + n, s0 + (i + 1) * n8);
        }
      }
      h.fill(0, s0 + rows * n8, s0 + rows8 * n8);
      const threads = threadsFor(rows * n * 8);
      // w·Aᵀ: the block's rows are whole panels of the transposed packing ([panel][n][8]).
      const tPanels = rows8 / GEMM_PANEL_COLS;
      run(e, [0, 0, tPanels, OP_PACK_COLUMNS, stageAt, n8 * 4, transposedAt + (r0 / GEMM_PANEL_COLS) * n * GEMM_PANEL_COLS * 4, n, 0, 0, 0, 0, 0], Math.min(tPanels, threads));
      // q·A ([panel][m][8]): the block packed on its own, then each panel's rows moved into place.
      run(e, [0, 0, nPanels, OP_PACK_ROWS, stageAt, n8 * 4, blockAt, rows, 0, 0, 0, 0, 0], Math.min(nPanels, threads));
      const width = rows * GEMM_PANEL_COLS;
      for (let p = 0; p < nPanels; p++) h.copyWithin(f0 + (p * m + r0) * GEMM_PANEL_COLS, b0 + p * width, b0 + (p + 1) * width);
    }
    return new ResidentMatrix(e, ++e.generation, m, n, forwardAt, transposedAt, stageAt);
  }

  /** q [l, m] (row-major) · A → [l, n]. */
  times(q: Float32Array, l: number): Float32Array {
    return this.product(q, l, this.m, this.n, this.forwardAt);
  }

  /** w [l, n] (row-major) · Aᵀ → [l, m]. */
  timesTransposed(w: Float32Array, l: number): Float32Array {
    return this.product(w, l, this.n, this.m, this.transposedAt);
  }

  /** x [l, k] times the resident operand packed at `packedAt` ([k, cols]) → [l, cols]. */
  private product(x: Float32Array, l: number, k: number, cols: number, packedAt: number): Float32Array {
    if (this.e.generation !== this.generation) throw new Error("ResidentMatrix: the kernels' memory was used for something else since the upload");
    const tiles = Math.ceil(l / GEMM_TILE_ROWS);
    const panels = Math.ceil(cols / GEMM_PANEL_COLS);
    const width = panels * GEMM_PANEL_COLS;
    const aAt = this.scratchAt;
    const cAt = aAt + tiles * GEMM_TILE_ROWS * k * 4;
    if (!heap(this.e, cAt + tiles * GEMM_TILE_ROWS * width * 4)) throw new Error('ResidentMatrix: out of WebAssembly memory');
    // x packed by tiles of 4 rows: for each t, the 4 values x[r, t] side by side (rows past l zero).
    const h = new Float32Array(this.e.memory.buffer);
    const a0 = aAt / 4;
    for (let tile = 0; tile < tiles; tile++) {
      for (let r = 0; r < GEMM_TILE_ROWS; r++) {
        const row = tile * GEMM_TILE_ROWS + r;
        let d = a0 + tile * k * GEMM_TILE_ROWS + r;
        if (row < l) for (let t = row * k, end = t + k; t < end; t++, d += GEMM_TILE_ROWS) h[d] = x[t]!;
        else for (let t = 0; t < k; t++, d += GEMM_TILE_ROWS) h[d] = 0;
      }
    }
    const threads = Math.min(panels, threadsFor(2 * l * k * cols));
    run(this.e, [0, 0, panels, OP_GEMM, aAt, k, packedAt, cAt, width * 4, tiles, wasmGemmOptions.kcBlock, wasmGemmOptions.mcTiles, 0], threads);
    const result = new Float32Array(l * cols);
    const c0 = cAt / 4;
    for (let r = 0; r < l; r++) result.set(h.subarray(c0 + r * width, c0 + r * width + cols), r * cols);
    return result;
  }
}

/**
 * Starts the kernels' worker threads now (they otherwise start with the first use) and resolves
 * with the threads a job can use once they are ready, or after `timeoutMs`.
 */
export async function startWasmLinalgThreads(timeoutMs = 10_000): Promise<number> {
  const e = getEngine();
  if (!e?.threads) return e ? 1 : 0;
  return e.threads.whenReady(wasmGemmOptions.threads, timeoutMs);
}
