// Attention and activations on the WebAssembly kernels of gemm-module.ts, in the GEMM's module and
// memory and on its worker threads. Each call copies its inputs into the module's memory, runs the
// kernels (split over the threads in chunks) and copies the result out. Both return false (output
// untouched) where the kernels do not apply or are unavailable, so that the caller runs its own code.
import { ACTIVATION_KINDS, GEMM_PANEL_COLS as NR, GEMM_TILE_ROWS as MR } from './gemm-module.ts';
import { wasmGemmOptions, wasmKernels } from './gemm.ts';

/** Tiles of 4 query rows per work item of attention (its scores block is 16 rows × the keys). */
const BLOCK_TILES = 4;
/** Vectors of 4 values per chunk of an activation on the threads. */
const ACTIVATION_GRAIN = 4096;

export interface AttentionShape {
  readonly batch: number;
  /** Queries per sequence. */
  readonly T: number;
  /** Keys (and values) per sequence; queries sit at positions queryOffset.. of them. */
  readonly S: number;
  readonly nHeads: number;
  readonly nKvHeads: number;
  readonly headDim: number;
  readonly scale: number;
  readonly queryOffset: number;
  /** Sliding window (keys within the last `window` positions); 0: the whole causal prefix. */
  readonly window: number;
}

function f32Bits(x: number): number {
  return new Int32Array(new Float32Array([x]).buffer)[0]!;
}

/**
 * out [B, T, nHeads·hd] = causal grouped-query attention of q [B, T, nHeads·hd] over k and v
 * [B, S, nKv·hd], softmax(scale · q·kᵀ)·v per head. False (out untouched) where headDim is not a
 * multiple of 8 or scale is not positive, or without the kernels.
 */
export function wasmAttention(q: Float32Array, k: Float32Array, v: Float32Array, out: Float32Array, s: AttentionShape): boolean {
  const { batch, T, S, nHeads, nKvHeads, headDim: hd, scale, queryOffset, window } = s;
  if (hd % NR !== 0 || !(scale > 0) || hd === 0 || T === 0) return false;
  const Dq = nHeads * hd;
  const Dk = nKvHeads * hd;
  const Tq = Math.ceil(T / MR) * MR;
  const Sp = Math.ceil(S / NR) * NR;
  const R = BLOCK_TILES * MR;
  const scratch = R * hd + 2 * R * Sp;
  const threadsMax = Math.max(1, wasmGemmOptions.threads);
  const sizes = { q: Tq * Dq, k: Sp * Dk, v: Sp * Dk, kp: nKvHeads * Sp * hd, vp: nKvHeads * Sp * hd, out: Tq * Dq, scratch: threadsMax * scratch };
  const w = wasmKernels(4 * Object.values(sizes).reduce((a, b) => a + b, 0));
  if (!w) return false;
  const qAt = w.at;
  const kAt = qAt + sizes.q;
  const vAt = kAt + sizes.k;
  const kpAt = vAt + sizes.v;
  const vpAt = kpAt + sizes.kp;
  const outAt = vpAt + sizes.vp;
  const scAt = outAt + sizes.out;
  const heap = w.heap;
  const blocks = Math.ceil(T / R);
  const items = nHeads * blocks;
  // Multiply-adds of scores and of P·V over the causal band (each query sees up to queryOffset + its row).
  const flops = 4 * hd * nHeads * T * (queryOffset + T / 2);
  const threads = Math.max(1, Math.min(w.threads, items, Math.floor(flops / wasmGemmOptions.flopsPerThread)));
  for (let b = 0; b < batch; b++) {
    heap.set(q.subarray(b * T * Dq, (b + 1) * T * Dq), qAt);
    heap.fill(0, qAt + T * Dq, qAt + Tq * Dq);
    heap.set(k.subarray(b * S * Dk, (b + 1) * S * Dk), kAt);
    heap.fill(0, kAt + S * Dk, kAt + Sp * Dk);
    heap.set(v.subarray(b * S * Dk, (b + 1) * S * Dk), vAt);
    heap.fill(0, vAt + S * Dk, vAt + Sp * Dk);
    w.run('packKv', [0, 0, nKvHeads, kAt * 4, vAt * 4, Dk * 4, kpAt * 4, vpAt * 4, hd, Sp], Math.min(threads, nKvHeads));
    const args = [0, 0, items, qAt * 4, Dq * 4, kpAt * 4, vpAt * 4, outAt * 4, Dq * 4, scAt * 4, scratch * 4, T, Sp, hd, nHeads, nHeads / nKvHeads, BLOCK_TILES, queryOffset, window, f32Bits(scale)];
    w.run('attend', args, threads);
    out.set(heap.subarray(outAt, outAt + T * Dq), b * T * Dq);
  }
  return true;
}

/**
 * out = act(x) (· up, elementwise, when given) for the activations the kernels have (silu,
 * gelu_tanh); false (out untouched) for others or without the kernels.
 */
export function wasmActivate(x: Float32Array, up: Float32Array | undefined, out: Float32Array, act: string): boolean {
  if (!(act in ACTIVATION_KINDS)) return false;
  const n = x.length;
  const vectors = Math.ceil(n / 4);
  const w = wasmKernels(4 * 3 * vectors * 4);
  if (!w) return false;
  const heap = w.heap;
  const xAt = w.at;
  const upAt = xAt + vectors * 4;
  const outAt = upAt + vectors * 4;
  heap.set(x, xAt);
  heap.fill(0, xAt + n, xAt + vectors * 4);
  if (up) {
    heap.set(up, upAt);
    heap.fill(0, upAt + n, upAt + vectors * 4);
  }
  const threads = Math.max(1, Math.min(w.threads, Math.floor(vectors / ACTIVATION_GRAIN)));
  w.run('activate', [0, 0, vectors, xAt * 4, up ? upAt * 4 : 0, outAt * 4, ACTIVATION_KINDS[act as keyof typeof ACTIVATION_KINDS]], threads, ACTIVATION_GRAIN);
  out.set(heap.subarray(outAt, outAt + n));
  return true;
}

/** A sparse code: token t keeps the pairs (idx[q], val[q]) for q in [rowPtr[t], rowPtr[t + 1]). */
export interface SparsePairs {
  readonly n: number;
  readonly rowPtr: Int32Array;
  readonly idx: Int32Array;
  readonly val: Float32Array;
}

/** Float offsets in the kernels' memory for arrays of the given lengths, one after the other. */
function layout(at: number, lengths: readonly number[]): number[] {
  const out: number[] = [];
  for (const n of lengths) {
    out.push(at);
    at += Math.ceil(n / 4) * 4;
  }
  return out;
}

/**
 * A crosscoder's sparse decoder: hb, hf [n, d] = decB (base half, ft half) + Σ over each token's
 * kept pairs of val · decW's row (decW [2·D, d]: base rows, then ft rows). Threads over tokens.
 * False (outputs untouched) where d is not a multiple of 4 or without the kernels.
 */
export function wasmSparseDecode(c: SparsePairs, decW: Float32Array, decB: Float32Array, hb: Float32Array, hf: Float32Array, d: number, D: number): boolean {
  if (d % 4 !== 0 || c.n === 0) return false;
  const nnz = c.rowPtr[c.n]!;
  const lengths = [c.n + 1, nnz, nnz, 2 * D * d, 2 * d, c.n * d, c.n * d];
  const w = wasmKernels(4 * (lengths.reduce((a, b) => a + Math.ceil(b / 4) * 4, 0) + 4));
  if (!w) return false;
  const [rowAt, idxAt, valAt, decWAt, decBAt, hbAt, hfAt] = layout(w.at, lengths) as [number, number, number, number, number, number, number];
  const ints = new Int32Array(w.heap.buffer);
  ints.set(c.rowPtr.subarray(0, c.n + 1), rowAt);
  ints.set(c.idx.subarray(0, nnz), idxAt);
  w.heap.set(c.val.subarray(0, nnz), valAt);
  w.heap.set(decW.subarray(0, 2 * D * d), decWAt);
  w.heap.set(decB.subarray(0, 2 * d), decBAt);
  const threads = Math.max(1, Math.min(w.threads, c.n, Math.floor((4 * nnz * d) / wasmGemmOptions.flopsPerThread)));
  w.run('sparseDecode', [0, 0, c.n, rowAt * 4, idxAt * 4, valAt * 4, decWAt * 4, decBAt * 4, hbAt * 4, hfAt * 4, d, D], threads);
  hb.set(w.heap.subarray(hbAt, hbAt + c.n * d));
  hf.set(w.heap.subarray(hfAt, hfAt + c.n * d));
  return true;
}

/**
 * The gradient of a crosscoder's kept pairs, written into gDecW, gEncW [2·D, d] and gEncB [D]
 * (their previous contents are replaced): with a = gb[t], b = gf[t] (dLoss/dx̂ of token t) and each
 * pair (j, v) of the token, df = decW[j]·a + decW[D + j]·b + extra · w[j] (through the ReLU, v > 0),
 * gDecW[j] += v·a, gDecW[D + j] += v·b, gEncW[j] += df·xb[t], gEncW[D + j] += df·xf[t], gEncB[j] += df.
 * One thread (pairs of different tokens add into the same rows). False (outputs untouched) where d
 * is not a multiple of 4 or without the kernels.
 */
export function wasmSparseGrad(
  c: SparsePairs,
  x: { xb: Float32Array; xf: Float32Array; gb: Float32Array; gf: Float32Array },
  decW: Float32Array,
  w: Float32Array,
  extra: number,
  out: { gDecW: Float32Array; gEncW: Float32Array; gEncB: Float32Array },
  d: number,
  D: number,
): boolean {
  if (d % 4 !== 0 || c.n === 0) return false;
  const nnz = c.rowPtr[c.n]!;
  const nd = c.n * d;
  const lengths = [c.n + 1, nnz, nnz, nd, nd, nd, nd, 2 * D * d, 2 * D * d, 2 * D * d, D, D];
  const k = wasmKernels(4 * (lengths.reduce((a, b) => a + Math.ceil(b / 4) * 4, 0) + 4));
  if (!k) return false;
  const [rowAt, idxAt, valAt, xbAt, xfAt, gbAt, gfAt, decWAt, gDecWAt, gEncWAt, gEncBAt, wAt] = layout(k.at, lengths) as number[] as [
    number, number, number, number, number, number, number, number, number, number, number, number,
  ];
  const heap = k.heap;
  const ints = new Int32Array(heap.buffer);
  ints.set(c.rowPtr.subarray(0, c.n + 1), rowAt);
  ints.set(c.idx.subarray(0, nnz), idxAt);
  heap.set(c.val.subarray(0, nnz), valAt);
  heap.set(x.xb.subarray(0, nd), xbAt);
  heap.set(x.xf.subarray(0, nd), xfAt);
  heap.set(x.gb.subarray(0, nd), gbAt);
  heap.set(x.gf.subarray(0, nd), gfAt);
  heap.set(decW.subarray(0, 2 * D * d), decWAt);
  heap.fill(0, gDecWAt, gEncBAt + D);
  heap.set(w.subarray(0, D), wAt);
  const extraBits = f32Bits(extra);
  k.run('sparseGrad', [0, 0, c.n, rowAt * 4, idxAt * 4, valAt * 4, xbAt * 4, xfAt * 4, gbAt * 4, gfAt * 4, decWAt * 4, gDecWAt * 4, gEncWAt * 4, gEncBAt * 4, wAt * 4, extraBits, d, D], 1);
  out.gDecW.set(heap.subarray(gDecWAt, gDecWAt + 2 * D * d));
  out.gEncW.set(heap.subarray(gEncWAt, gEncWAt + 2 * D * d));
  out.gEncB.set(heap.subarray(gEncBAt, gEncBAt + D));
  return true;
}
