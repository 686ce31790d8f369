// The operation interface that the forward pass and the analyses are written against.
// Two implementations: the CPU reference backend (src/gpu/cpu) and the WebGPU backend
// (src/kernels/webgpu-backend). Both must compute the same values; tests compare them.
//
// Conventions:
// - Tensors are dense, row-major. Most ops work on the last dimension ("rows" of length n);
//   leading dimensions are flattened.
// - Ops return new tensors and never modify their inputs. Callers dispose what they no longer need;
//   `dispose` on an already disposed tensor is a no-op.
// - Ops are issued synchronously (the WebGPU backend records dispatches); only reading a tensor
//   back to the host is asynchronous.
// - Sequence tensors are [B, T, D] with D = heads × headDim for attention inputs.

export type DType = 'f32' | 'f16' | 'bf16' | 'i32';
/** How a weight matrix may be held: float32, or float16 / bfloat16 bits (2 bytes a value). */
export type StorageType = 'f32' | 'f16' | 'bf16';

export interface Tensor {
  readonly shape: readonly number[];
  readonly dtype: DType;
  /** Name of the backend that owns the tensor's storage. */
  readonly backend: BackendName;
}

export type BackendName = 'cpu' | 'webgpu';

export type Activation = 'gelu' | 'gelu_tanh' | 'silu' | 'relu';

export interface RopeParams {
  /** Base frequency θ. */
  theta: number;
  /** Number of leading dimensions of each head that rotate (headDim for full rotary). */
  rotaryDim: number;
  /** Llama-3 style frequency scaling (rope_scaling.rope_type = "llama3"), or linear scaling. */
  scaling?: RopeScaling;
}

export type RopeScaling =
  | { type: 'llama3'; factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositions: number }
  | { type: 'linear'; factor: number };

export interface AttentionParams {
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  /** Multiplies q·k before softmax (usually 1/sqrt(headDim)). */
  scale: number;
  /**
   * Absolute position of the first query. Keys cover positions 0..S-1, queries
   * positions offset..offset+T-1; query t sees keys s <= offset + t (causal).
   */
  queryOffset: number;
  /** Sliding window: query at position p sees keys with p - s < window. 0 or undefined: no window. */
  window?: number;
  /** Gemma 2 attention logit soft-capping: cap · tanh(score / cap) before masking. */
  softcap?: number;
}

export interface Backend {
  readonly name: BackendName;
  /** createEmpty takes 'bf16' (weights kept as their stored bfloat16 bits); without it they load as f16. */
  readonly bf16: boolean;
  /** A GPU backend's buffer limits (a longer tensor is kept as row blocks); absent on the CPU. */
  readonly limits?: { readonly maxBufferSize: number; readonly maxStorageBufferBindingSize: number };

  /** Copies host data into a new tensor. f16 tensors are created from f32 data (rounded). */
  fromArray(data: Float32Array | Int32Array, shape: readonly number[], dtype?: DType): Tensor;
  /** Reads a tensor back to the host; f16/f32 tensors read as Float32Array, i32 as Int32Array. */
  read(t: Tensor): Promise<Float32Array | Int32Array>;
  /**
   * A float tensor's storage as the backend holds it on the host, without a copy: float16 bits (a
   * Uint16Array), bfloat16 bits (a Bf16Bits) or float32 values. Read-only for the caller. Absent where
   * tensors live on a device (read copies them back).
   */
  readStored?(t: Tensor): Float32Array | Uint16Array;
  dispose(t: Tensor): void;

  /**
   * a [..., M, K] · b. b is [K, N], or [N, K] with transposeB (weights are stored [out, in]).
   * Leading dimensions of a are flattened into M.
   */
  matmul(a: Tensor, b: Tensor, opts?: { transposeB?: boolean }): Tensor;
  /** x · wᵀ + bias, with w [out, in] and bias [out]. */
  linear(x: Tensor, w: Tensor, bias?: Tensor): Tensor;

  /** Elementwise a + b; b may also be a vector of the size of a's last dimension (broadcast). */
  add(a: Tensor, b: Tensor): Tensor;
  sub(a: Tensor, b: Tensor): Tensor;
  /** Elementwise a · b, with the same broadcast rule as add. */
  mul(a: Tensor, b: Tensor): Tensor;
  scale(a: Tensor, s: number): Tensor;
  activation(x: Tensor, act: Activation): Tensor;
  /** act(gate) · up, elementwise. */
  gated(gate: Tensor, up: Tensor, act: Activation): Tensor;
  /** cap · tanh(x / cap). */
  softcap(x: Tensor, cap: number): Tensor;

  /** x / rms(x) · (w, or 1 + w when addOne) over the last dimension. */
  rmsNorm(x: Tensor, w: Tensor, eps: number, addOne?: boolean): Tensor;
  /** (x − mean) / sqrt(var + eps) · w + b over the last dimension. */
  layerNorm(x: Tensor, w: Tensor, b: Tensor, eps: number): Tensor;
  softmax(x: Tensor): Tensor;
  logSoftmax(x: Tensor): Tensor;

  /** Rows of table [V, D] picked by ids: result [...ids.shape, D]. */
  embedding(table: Tensor, ids: Int32Array, idsShape: readonly number[]): Tensor;
  /**
   * Rotary embedding, rotate-half layout (as Hugging Face), on x [B, T, nHeads·headDim] at
   * positions startPos..startPos+T-1.
   */
  rope(x: Tensor, nHeads: number, headDim: number, startPos: number, params: RopeParams): Tensor;
  /** Per-head RMS norm over headDim (Qwen3/Gemma3 qk-norm): x [.., nHeads·headDim], w [headDim]. */
  headRmsNorm(x: Tensor, w: Tensor, headDim: number, eps: number, addOne?: boolean): Tensor;
  /** Causal grouped-query attention: q [B, T, Hq·hd], k and v [B, S, Hkv·hd] → [B, T, Hq·hd]. */
  attention(q: Tensor, k: Tensor, v: Tensor, p: AttentionParams): Tensor;

  /** Rows [start, end) along axis 1 of a [B, T, D] tensor. */
  sliceSeq(x: Tensor, start: number, end: number): Tensor;
  /** Concatenates [B, S1, D] and [B, S2, D] along axis 1. */
  concatSeq(a: Tensor, b: Tensor): Tensor;
  /** Same data, new shape with the same element count. */
  reshape(x: Tensor, shape: readonly number[]): Tensor;

  /** Transpose of a 2-D tensor: [m, n] → [n, m]. */
  transpose(x: Tensor): Tensor;
  /** Sum over the last dimension: [..., n] → [...]. */
  sum(x: Tensor): Tensor;
  /** Sum of squares over the last dimension: [..., n] → [...]. */
  sumSquares(x: Tensor): Tensor;
  /** Top-k values and indices over the last dimension, descending (ties: lower index first). */
  topk(x: Tensor, k: number): { values: Tensor; indices: Tensor };

  /** Resolves when all issued work has finished. */
  sync(): Promise<void>;

  /**
   * An uninitialised f32 or f16 tensor, to be filled with writeRows: weights are streamed from the file
   * in chunks instead of passing through one host array. On WebGPU, a tensor larger than one storage
   * binding is kept as row blocks, which embedding (as the table), matmul/linear (as b, transposed),
   * logitLens (as an unembedding), read and dispose accept; other ops refuse it.
   */
  createEmpty(shape: readonly number[], dtype: StorageType): Tensor;
  /**
   * Writes whole rows (first dimension) from `rowStart` into a tensor from createEmpty that no op has
   * used yet. f16 tensors take float16 bit patterns (Uint16Array) as well as float32 values, bf16
   * tensors bfloat16 bits (Bf16Bits) or float32 values (rounded); on WebGPU an f16 write must start
   * at an even element.
   */
  writeRows(t: Tensor, rowStart: number, data: Float32Array | Uint16Array): void;

  /**
   * Logit-lens readout without materialising [rows, V] logits: each head's logits z = normed · unembedᵀ
   * (then cap · tanh(z / cap) with a softcap) are streamed over the vocabulary with an online
   * log-sum-exp and top-k. normed is [..., d] (every head the same rows), unembed [V, d] in f32 or f16,
   * row blocks accepted; 1 ≤ k ≤ min(LENS_MAX_K, V). With two heads, also KL(P_0 ‖ P_1) per row, P_h
   * the softmax of head h's logits (WebGPU: from a second pass that recomputes both heads' logits once
   * their LSEs are known).
   */
  logitLens(heads: readonly LensHead[], k: number): { heads: LensReadout[]; kl?: Tensor };
}

export const LENS_MAX_K = 32;

export interface LensHead {
  /** Rows already through the final norm, [..., d]. */
  normed: Tensor;
  /** Unembedding [V, d]. */
  unembed: Tensor;
  /** Final logit soft-cap; 0 or absent: none. */
  softcap?: number;
}

export interface LensReadout {
  /** log Σ_v exp(z_v) per row: [...]. */
  lse: Tensor;
  /** The k largest log-probabilities z_v − lse per row, descending (ties: lower id first): [..., k]. */
  logProbs: Tensor;
  /** Their token ids, i32 [..., k]. */
  ids: Tensor;
}

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Checks the heads of a logitLens call; returns the rows, width and vocabulary they share. */
export function lensShape(heads: readonly LensHead[], k: number): { rows: number; d: number; vocab: number; lead: number[] } {
  if (heads.length !== 1 && heads.length !== 2) throw new ShapeError('logitLens', `one or two heads expected, got ${heads.length}`);
  const [first] = heads as [LensHead];
  if (first.unembed.shape.length !== 2) throw new ShapeError('logitLens', `unembedding must be [V, d], got [${first.unembed.shape.join(', ')}]`);
  const [vocab, d] = first.unembed.shape as [number, number];
  const lead = first.normed.shape.slice(0, -1);
  const rows = numel(lead);
  for (const h of heads) {
    if (h.unembed.shape.length !== 2 || h.unembed.shape[0] !== vocab || h.unembed.shape[1] !== d) {
      throw new ShapeError('logitLens', `unembeddings [${first.unembed.shape.join(', ')}] and [${h.unembed.shape.join(', ')}] differ`);
    }
    if (h.unembed.dtype === 'i32' || h.normed.dtype === 'i32') throw new ShapeError('logitLens', 'expects float tensors, got i32');
    if (h.normed.shape.length === 0 || h.normed.shape[h.normed.shape.length - 1] !== d || numel(h.normed.shape) !== rows * d) {
      throw new ShapeError('logitLens', `rows [${h.normed.shape.join(', ')}] do not fit ${rows} rows of the unembedding's width ${d}`);
    }
    const cap = h.softcap ?? 0;
    if (!(cap >= 0 && Number.isFinite(cap))) throw new ShapeError('logitLens', `softcap must be a non-negative number, got ${cap}`);
  }
  if (!(Number.isInteger(k) && k >= 1 && k <= Math.min(LENS_MAX_K, vocab))) throw new ShapeError('logitLens', `k = ${k} must be an integer in 1..${Math.min(LENS_MAX_K, vocab)}`);
  return { rows, d, vocab, lead };
}

export class ShapeError extends Error {
  constructor(op: string, detail: string) {
    super(`${op}: ${detail}`);
    this.name = 'ShapeError';
  }
}
