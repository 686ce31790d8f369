// Attention and activations on the WebAssembly kernels of gemm-module.ts, in the GEMM's module and
// memory and on its worker threads. Each call copies its inputs into the module's memory, runs the
// kernels (split over the threads in chunks) and copies the result out. Both return false (output
// untouched) where the kernels do not apply or are unavailable, so that the caller runs its own code.
import { ACTIVATION_KINDS, attendBackwardScratch, GEMM_PANEL_COLS as NR, GEMM_TILE_ROWS as MR } from './gemm-module.ts';
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
 * [B, S, nKv·hd], softmax(scale · q·kᵀ)·v per head; with probs [B, nHeads, T, S], the softmax too
 * (0 where a query does not see a key). False (outputs untouched) where headDim is not a multiple of
 * 8 or scale is not positive, or without the kernels.
 */
export function wasmAttention(q: Float32Array, k: Float32Array, v: Float32Array, out: Float32Array, s: AttentionShape, probs?: Float32Array): boolean {
  const { batch, T, S, nHeads, nKvHeads, headDim: hd, scale, queryOffset, window } = s;
  if (hd % NR !== 0 || !(scale > 0) || hd === 0 || T === 0) return false;
  const Dq = nHeads * hd;
  const Dk = nKvHeads * hd;
  const Tq = Math.ceil(T / MR) * MR;
  const Sp = Math.ceil(S / NR) * NR;
  const R = BLOCK_TILES * MR;
  const scratch = R * hd + 2 * R * Sp;
  const threadsMax = Math.max(1, wasmGemmOptions.threads);
  const sizes = { q: Tq * Dq, k: Sp * Dk, v: Sp * Dk, kp: nKvHeads * Sp * hd, vp: nKvHeads * Sp * hd, out: Tq * Dq, scratch: threadsMax * scratch, probs: probs ? nHeads * T * Sp : 0 };
  const w = wasmKernels(4 * Object.values(sizes).reduce((a, b) => a + b, 0));
  if (!w) return false;
  const qAt = w.at;
  const kAt = qAt + sizes.q;
  const vAt = kAt + sizes.k;
  const kpAt = vAt + sizes.v;
  const vpAt = kpAt + sizes.kp;
  const outAt = vpAt + sizes.vp;
  const scAt = outAt + sizes.out;
  const probsAt = scAt + sizes.scratch;
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
    if (probs) heap.fill(0, probsAt, probsAt + sizes.probs);
    const args = [0, 0, items, qAt * 4, Dq * 4, kpAt * 4, vpAt * 4, outAt * 4, Dq * 4, scAt * 4, scratch * 4, T, Sp, hd, nHeads, nHeads / nKvHeads, BLOCK_TILES, queryOffset, window, f32Bits(scale), probs ? probsAt * 4 : 0];
    w.run('attend', args, threads);
    out.set(heap.subarray(outAt, outAt + T * Dq), b * T * Dq);
    if (probs) {
      const at = b * nHeads * T * S;
      if (Sp === S) probs.set(heap.subarray(probsAt, probsAt + nHeads * T * S), at);
      else for (let r = 0; r < nHeads * T; r++) probs.set(heap.subarray(probsAt + r * Sp, probsAt + r * Sp + S), at + r * S);
    }
  }
  return true;
}

/**
 * The backward of causal self-attention (T queries over as many keys, as in training) from the
 * forward's probabilities: gq, gk, gv (overwritten) = the gradients of q [B, T, nHeads·hd], k and v
 * [B, T, nKv·hd] given dO, the gradient of the output. False (outputs untouched) where T or headDim
 * is not a multiple of 8, or without the kernels.
 */
export function wasmAttentionBackward(
  x: { q: Float32Array; k: Float32Array; v: Float32Array; dO: Float32Array; probs: Float32Array },
  g: { q: Float32Array; k: Float32Array; v: Float32Array },
  s: { batch: number; T: number; nHeads: number; nKvHeads: number; headDim: number; scale: number },
): boolean {
  const { batch, T, nHeads, nKvHeads, headDim: hd, scale } = s;
  if (T % NR !== 0 || hd % NR !== 0 || hd === 0 || T === 0) return false;
  const nq = batch * T * nHeads * hd;
  const nk = batch * T * nKvHeads * hd;
  const np = batch * nHeads * T * T;
  const scratch = attendBackwardScratch(T, hd);
  const threadsMax = Math.max(1, wasmGemmOptions.threads);
  const lengths = [nq, nk, nk, nq, np, nq, nk, nk, threadsMax * scratch];
  const w = kernelsFor(lengths);
  if (!w) return false;
  const [qAt, kAt, vAt, dOAt, pAt, gqAt, gkAt, gvAt, scAt] = w.offsets as [number, number, number, number, number, number, number, number, number];
  const heap = w.heap;
  heap.set(x.q.subarray(0, nq), qAt);
  heap.set(x.k.subarray(0, nk), kAt);
  heap.set(x.v.subarray(0, nk), vAt);
  heap.set(x.dO.subarray(0, nq), dOAt);
  heap.set(x.probs.subarray(0, np), pAt);
  const items = batch * nKvHeads;
  const flops = 8 * T * T * hd * nHeads * batch;
  const threads = Math.max(1, Math.min(w.threads, items, Math.floor(flops / wasmGemmOptions.flopsPerThread)));
  w.run('attendBackward', [0, 0, items, qAt * 4, kAt * 4, vAt * 4, dOAt * 4, pAt * 4, gqAt * 4, gkAt * 4, gvAt * 4, scAt * 4, scratch * 4, T, hd, nHeads, nKvHeads, f32Bits(scale)], threads, 1);
  g.q.set(heap.subarray(gqAt, gqAt + nq));
  g.k.set(heap.subarray(gkAt, gkAt + nk));
  g.v.set(heap.subarray(gvAt, gvAt + nk));
  return true;
}

/**
 * act = act(x) and slope = act'(x) for the activations the kernels have (silu, gelu_tanh); false
 * (outputs untouched) for others or without the kernels.
 */
export function wasmActivateSlope(x: Float32Array, act: Float32Array, slope: Float32Array, kind: string): boolean {
  if (!(kind in ACTIVATION_KINDS)) return false;
  const n = x.length;
  const vectors = Math.ceil(n / 4);
  const w = wasmKernels(4 * 3 * vectors * 4);
  if (!w) return false;
  const heap = w.heap;
  const xAt = w.at;
  const actAt = xAt + vectors * 4;
  const slopeAt = actAt + vectors * 4;
  heap.set(x, xAt);
  heap.fill(0, xAt + n, xAt + vectors * 4);
  const threads = Math.max(1, Math.min(w.threads, Math.floor(vectors / ACTIVATION_GRAIN)));
  w.run('activateSlope', [0, 0, vectors, xAt * 4, actAt * 4, slopeAt * 4, ACTIVATION_KINDS[kind as keyof typeof ACTIVATION_KINDS]], threads, ACTIVATION_GRAIN);
  act.set(heap.subarray(actAt, actAt + n));
  slope.set(heap.subarray(slopeAt, slopeAt + n));
  return true;
}

/** Rows of logits per chunk of the cross-entropy on the threads. */
const CROSS_ENTROPY_GRAIN = 16;

/**
 * Σ over rows with a target ≥ 0 of −log softmax(logits)[target] (logits [rows, vocab]), and into g
 * (overwritten; 0 on rows without a target) weight times its gradient. Undefined (g untouched)
 * where vocab is not a multiple of 4, or without the kernels.
 */
export function wasmCrossEntropy(logits: Float32Array, vocab: number, targets: Int32Array, weight: number, g: Float32Array): number | undefined {
  const rows = targets.length;
  if (vocab % 4 !== 0 || rows === 0) return undefined;
  const lengths = [rows * vocab, rows * vocab, rows, 2 * rows];
  const w = kernelsFor(lengths);
  if (!w) return undefined;
  const [xAt, gAt, tAt, sAt] = w.offsets as [number, number, number, number];
  const heap = w.heap;
  heap.set(logits.subarray(0, rows * vocab), xAt);
  new Int32Array(heap.buffer).set(targets, tAt);
  const threads = Math.max(1, Math.min(w.threads, Math.floor(rows / CROSS_ENTROPY_GRAIN)));
  w.run('crossEntropy', [0, 0, rows, xAt * 4, vocab, tAt * 4, gAt * 4, f32Bits(weight), sAt * 4], threads, CROSS_ENTROPY_GRAIN);
  let loss = 0;
  for (let r = 0; r < rows; r++) {
    const tg = targets[r]!;
    if (tg < 0) {
      g.fill(0, r * vocab, (r + 1) * vocab);
      continue;
    }
    g.set(heap.subarray(gAt + r * vocab, gAt + (r + 1) * vocab), r * vocab);
    loss += heap[sAt + 2 * r]! + Math.log(heap[sAt + 2 * r + 1]!) - logits[r * vocab + tg]!;
  }
  return loss;
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

/** Rows per chunk of an RMS norm on the threads. */
const NORM_GRAIN = 64;

/**
 * RMS norm of x [rows, n] (n a multiple of 4) with gain [n] (w, or 1 + w): out = x · inv · gain with
 * inv[r] = 1 / √(mean(x[r]²) + eps), written into out and inv. False (outputs untouched) where n is
 * not a multiple of 4, or without the kernels.
 */
export function wasmRmsNorm(x: Float32Array, gain: Float32Array, n: number, eps: number, out: Float32Array, inv: Float32Array): boolean {
  const rows = x.length / n;
  if (n % 4 !== 0 || rows === 0) return false;
  const lengths = [rows * n, n, rows * n, rows];
  const w = kernelsFor(lengths);
  if (!w) return false;
  const [xAt, gainAt, outAt, invAt] = w.offsets as [number, number, number, number];
  const heap = w.heap;
  heap.set(x, xAt);
  heap.set(gain.subarray(0, n), gainAt);
  const threads = Math.max(1, Math.min(w.threads, Math.floor(rows / NORM_GRAIN)));
  w.run('rmsNorm', [0, 0, rows, xAt * 4, gainAt * 4, outAt * 4, invAt * 4, n, f32Bits(eps), f32Bits(1 / n)], threads, NORM_GRAIN);
  out.set(heap.subarray(outAt, outAt + rows * n));
  inv.set(heap.subarray(invAt, invAt + rows));
  return true;
}

/**
 * The backward of wasmRmsNorm from its inv: gx (overwritten) = the gradient of x given g, the gradient
 * of out; and, when wg is given, the gain's gradient Σ over rows of g · x · inv added into it. False
 * (outputs untouched) where n is not a multiple of 4, or without the kernels.
 */
export function wasmRmsNormBackward(x: Float32Array, gain: Float32Array, n: number, g: Float32Array, inv: Float32Array, gx: Float32Array, wg: Float32Array | undefined): boolean {
  const rows = x.length / n;
  if (n % 4 !== 0 || rows === 0) return false;
  const threadsMax = Math.max(1, wasmGemmOptions.threads);
  const lengths = [rows * n, n, rows * n, rows, rows * n, threadsMax * n];
  const w = kernelsFor(lengths);
  if (!w) return false;
  const [xAt, gainAt, gAt, invAt, gxAt, wgAt] = w.offsets as [number, number, number, number, number, number];
  const heap = w.heap;
  heap.set(x, xAt);
  heap.set(gain.subarray(0, n), gainAt);
  heap.set(g, gAt);
  heap.set(inv.subarray(0, rows), invAt);
  const threads = Math.max(1, Math.min(w.threads, Math.floor(rows / NORM_GRAIN)));
  heap.fill(0, wgAt, wgAt + threads * n);
  w.run('rmsNormBackward', [0, 0, rows, xAt * 4, gainAt * 4, gAt * 4, invAt * 4, gxAt * 4, wgAt * 4, n, f32Bits(1 / n)], threads, NORM_GRAIN);
  gx.set(heap.subarray(gxAt, gxAt + rows * n));
  if (wg) for (let t = 0; t < threads; t++) for (let j = 0; j < n; j++) wg[j]! += heap[wgAt + t * n + j]!;
  return true;
}

/** A sparse code: token t keeps the pairs (idx[q], val[q]) for q in [rowPtr[t], rowPtr[t + 1]). */
export interface SparsePairs {
  readonly n: number;
  readonly rowPtr: Int32Array;
  readonly idx: Int32Array;
  readonly val: Float32Array;
}

/**
 * The kernels (wasmKernels) with room for arrays of the given lengths in floats, one after the other,
 * and their float offsets in the memory (each rounded up to whole vectors of 4); null as wasmKernels.
 */
function kernelsFor(lengths: readonly number[]): (NonNullable<ReturnType<typeof wasmKernels>> & { offsets: number[] }) | null {
  const offsets: number[] = [];
  let floats = 0;
  for (const n of lengths) {
    offsets.push(floats);
    floats += Math.ceil(n / 4) * 4;
  }
  const w = wasmKernels(4 * (floats + 4));
  return w ? { ...w, offsets: offsets.map((o) => w.at + o) } : null;
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
  const w = kernelsFor(lengths);
  if (!w) return false;
  const [rowAt, idxAt, valAt, decWAt, decBAt, hbAt, hfAt] = w.offsets as [number, number, number, number, number, number, number];
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
  const k = kernelsFor(lengths);
  if (!k) return false;
  const [rowAt, idxAt, valAt, xbAt, xfAt, gbAt, gfAt, decWAt, gDecWAt, gEncWAt, gEncBAt, wAt] = k.offsets as number[] as [
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
