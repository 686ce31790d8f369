// Programs of the training kernels (training.wgsl.ts) and the recording of one dispatch of each:
// the WebGPU training engine (src/analysis/training/webgpu-engine.ts) calls these with its buffers.
import type { GpuProgram } from '../../gpu/pipelines.ts';
import type { CommandRecorder } from '../../gpu/recorder.ts';
import type { Activation } from '../../model/backend.ts';
import { ACTIVATION_CODES, grid, packUniforms } from '../common.ts';
import { flags } from '../flags.ts';
import { sumSquaresProgram } from '../crosscoder/crosscoder.ts';
import * as w from './training.wgsl.ts';

function program(name: string, wgsl: string, bindings: GpuProgram['bindings'], workgroup: readonly [number, number, number], constants?: Record<string, number>): GpuProgram {
  return { name, key: '', workgroupSize: workgroup, bindings, ...(constants ? { constants } : {}), wgsl: () => wgsl };
}

const R = 'read' as const;
const W = 'write' as const;
const U = 'uniform' as const;
const FLAT: readonly [number, number, number] = [256, 1, 1];

function flatGroups(rec: CommandRecorder, threads: number): [number, number, number] {
  return grid(Math.max(1, Math.ceil(threads / 256)), rec.ctx.device.limits.maxComputeWorkgroupsPerDimension);
}

function rowGroups(rec: CommandRecorder, rows: number): [number, number, number] {
  return grid(Math.max(1, rows), rec.ctx.device.limits.maxComputeWorkgroupsPerDimension);
}

export interface GemmShape {
  m: number;
  n: number;
  k: number;
  /** A stored [k, m]. */
  transA?: boolean;
  /** B stored [n, k]. */
  transB?: boolean;
  /** Add into C instead of overwriting it. */
  acc?: boolean;
  alpha?: number;
  offA?: number;
  offB?: number;
  offC?: number;
}

const gemmPrograms = new Map<string, GpuProgram>();

/** C (+)= alpha · op(A) op(B), C [m, n]. */
export function recordGemm(rec: CommandRecorder, a: GPUBuffer, b: GPUBuffer, c: GPUBuffer, s: GemmShape): void {
  if (s.m === 0 || s.n === 0) return;
  const tA = s.transA ?? false;
  const tB = s.transB ?? false;
  const acc = s.acc ?? false;
  const tiled = flags.trainGemm === 'auto' ? !rec.ctx.info.isFallbackAdapter : flags.trainGemm === 'tiled';
  const key = `${tA}${tB}${acc}${tiled}`;
  let prog = gemmPrograms.get(key);
  if (!prog) {
    const source = w.gemmWgsl(tiled);
    prog = { ...program(`train_gemm_${tA ? 'T' : 'N'}${tB ? 'T' : 'N'}${acc ? '_acc' : ''}`, source, [R, R, W, U], [w.GEMM_TILE, w.GEMM_TILE, 1], { TRANS_A: +tA, TRANS_B: +tB, ACC: +acc }), key: tiled ? 'tiled' : 'untiled' };
    gemmPrograms.set(key, prog);
  }
  const max = rec.ctx.device.limits.maxComputeWorkgroupsPerDimension;
  const groups: [number, number, number] = [Math.ceil(s.n / w.GEMM_TILE), Math.ceil(s.m / w.GEMM_TILE), 1];
  if (groups[0] > max || groups[1] > max) throw new RangeError(`training GEMM [${s.m}, ${s.n}] needs ${groups[0]}×${groups[1]} workgroups, past this device's ${max} per dimension`);
  rec.dispatch(prog, [a, b, c], groups, packUniforms([s.m, s.n, s.k, s.offA ?? 0, s.offB ?? 0, s.offC ?? 0], [s.alpha ?? 1]));
}

const axpyPrograms = [false, true].map((acc) => program(`train_axpy${acc ? '_acc' : ''}`, w.axpyWgsl, [R, W, U], FLAT, { ACC: +acc }));

/** y = alpha · x, or y += alpha · x with acc. */
export function recordAxpy(rec: CommandRecorder, x: GPUBuffer, y: GPUBuffer, n: number, alpha: number, acc: boolean): void {
  rec.dispatch(axpyPrograms[+acc]!, [x, y], flatGroups(rec, n), packUniforms([n], [alpha]));
}

const fillProgram = program('train_fill', w.fillWgsl, [W, U], FLAT);

export function recordFill(rec: CommandRecorder, y: GPUBuffer, n: number, value = 0): void {
  rec.dispatch(fillProgram, [y], flatGroups(rec, n), packUniforms([n], [value]));
}

const addProgram = program('train_add', w.addWgsl, [R, R, W, U], FLAT);

export function recordAdd(rec: CommandRecorder, a: GPUBuffer, b: GPUBuffer, out: GPUBuffer, n: number): void {
  rec.dispatch(addProgram, [a, b, out], flatGroups(rec, n), packUniforms([n]));
}

const softcapProgram = program('train_softcap', w.softcapWgsl, [R, W, U], FLAT);
const softcapBackProgram = program('train_softcap_back', w.softcapBackWgsl, [R, R, W, U], FLAT);

export function recordSoftcap(rec: CommandRecorder, x: GPUBuffer, out: GPUBuffer, n: number, cap: number): void {
  rec.dispatch(softcapProgram, [x, out], flatGroups(rec, n), packUniforms([n], [cap]));
}

export function recordSoftcapBack(rec: CommandRecorder, g: GPUBuffer, out: GPUBuffer, gx: GPUBuffer, n: number, cap: number): void {
  rec.dispatch(softcapBackProgram, [g, out, gx], flatGroups(rec, n), packUniforms([n], [cap]));
}

const activationPrograms = new Map<string, GpuProgram>();

function activationProgram(kind: 'act' | 'gated', act: Activation): GpuProgram {
  const key = `${kind}_${act}`;
  let p = activationPrograms.get(key);
  if (!p) {
    p = kind === 'act' ? program(`train_act_${act}`, w.activationWgsl, [R, W, W, U], FLAT, { ACT: ACTIVATION_CODES[act] }) : program(`train_gated_${act}`, w.gatedWgsl, [R, R, W, W, W, U], FLAT, { ACT: ACTIVATION_CODES[act] });
    activationPrograms.set(key, p);
  }
  return p;
}

/** out = act(x), slope = act′(x). */
export function recordActivation(rec: CommandRecorder, x: GPUBuffer, out: GPUBuffer, slope: GPUBuffer, n: number, act: Activation): void {
  rec.dispatch(activationProgram('act', act), [x, out, slope], flatGroups(rec, n), packUniforms([n]));
}

/** out = act(gate) · up, keeping act(gate) and act′(gate). */
export function recordGated(rec: CommandRecorder, gate: GPUBuffer, up: GPUBuffer, out: GPUBuffer, a: GPUBuffer, slope: GPUBuffer, n: number, act: Activation): void {
  rec.dispatch(activationProgram('gated', act), [gate, up, out, a, slope], flatGroups(rec, n), packUniforms([n]));
}

const activationBackProgram = program('train_act_back', w.activationBackWgsl, [R, R, W, U], FLAT);
const gatedBackProgram = program('train_gated_back', w.gatedBackWgsl, [R, R, R, R, W, W, U], FLAT);

export function recordActivationBack(rec: CommandRecorder, g: GPUBuffer, slope: GPUBuffer, gx: GPUBuffer, n: number): void {
  rec.dispatch(activationBackProgram, [g, slope, gx], flatGroups(rec, n), packUniforms([n]));
}

export function recordGatedBack(rec: CommandRecorder, g: GPUBuffer, up: GPUBuffer, a: GPUBuffer, slope: GPUBuffer, gGate: GPUBuffer, gUp: GPUBuffer, n: number): void {
  rec.dispatch(gatedBackProgram, [g, up, a, slope, gGate, gUp], flatGroups(rec, n), packUniforms([n]));
}

const normPrograms = [false, true].map((layer) => program(`train_norm_${layer ? 'layer' : 'rms'}`, w.normWgsl, [R, R, R, W, W, U], [w.ROW_WG, 1, 1], { LAYER: +layer }));
const normBackPrograms = [false, true].map((layer) => program(`train_norm_back_${layer ? 'layer' : 'rms'}`, w.normBackWgsl, [R, R, R, R, W, U], [w.ROW_WG, 1, 1], { LAYER: +layer }));
const normWeightGradProgram = program('train_norm_weight_grad', w.normWeightGradWgsl, [R, R, R, W, U], FLAT);
const columnSumProgram = program('train_column_sum', w.columnSumWgsl, [R, W, U], FLAT);

export interface NormShape {
  rows: number;
  n: number;
  eps: number;
  /** Layer norm (with bias) instead of RMS norm. */
  layer: boolean;
  /** RMS norm's (1 + w) (Gemma). */
  addOne: boolean;
}

/** out = norm(x) · w (+ b); stats [rows, 2] keeps (mean, inv) for the backward. For RMS norm pass w as b. */
export function recordNorm(rec: CommandRecorder, x: GPUBuffer, wt: GPUBuffer, b: GPUBuffer, out: GPUBuffer, stats: GPUBuffer, s: NormShape): void {
  rec.dispatch(normPrograms[+s.layer]!, [x, wt, b, out, stats], rowGroups(rec, s.rows), normUniforms(s));
}

/** gx += the input gradient of the norm. */
export function recordNormBack(rec: CommandRecorder, g: GPUBuffer, x: GPUBuffer, wt: GPUBuffer, stats: GPUBuffer, gx: GPUBuffer, s: NormShape): void {
  rec.dispatch(normBackPrograms[+s.layer]!, [g, x, wt, stats, gx], rowGroups(rec, s.rows), normUniforms(s));
}

/** gw += Σ_rows g · x̂. */
export function recordNormWeightGrad(rec: CommandRecorder, g: GPUBuffer, x: GPUBuffer, stats: GPUBuffer, gw: GPUBuffer, rows: number, n: number): void {
  rec.dispatch(normWeightGradProgram, [g, x, stats, gw], flatGroups(rec, n), packUniforms([rows, n]));
}

/** out[offset + j] += Σ_rows g[r, j]. */
export function recordColumnSum(rec: CommandRecorder, g: GPUBuffer, out: GPUBuffer, rows: number, n: number, offset = 0): void {
  rec.dispatch(columnSumProgram, [g, out], flatGroups(rec, n), packUniforms([rows, n, offset]));
}

function normUniforms(s: NormShape): ArrayBuffer {
  const b = packUniforms([s.rows, s.n, 0, s.addOne ? 1 : 0]);
  new Float32Array(b)[2] = s.eps;
  return b;
}

const embeddingProgram = program('train_embedding', w.embeddingWgsl, [R, R, W, U], FLAT);
const embeddingBackProgram = program('train_embedding_back', w.embeddingBackWgsl, [R, R, W, U], FLAT);

/** out [n, d] = rows ids of wt. */
export function recordEmbedding(rec: CommandRecorder, wt: GPUBuffer, ids: GPUBuffer, out: GPUBuffer, n: number, d: number): void {
  rec.dispatch(embeddingProgram, [wt, ids, out], flatGroups(rec, n * d), packUniforms([n, d]));
}

export function recordEmbeddingBack(rec: CommandRecorder, g: GPUBuffer, ids: GPUBuffer, gw: GPUBuffer, n: number, d: number): void {
  rec.dispatch(embeddingBackProgram, [g, ids, gw], flatGroups(rec, d), packUniforms([n, d]));
}

const ropePrograms = [false, true].map((acc) => program(`train_rope${acc ? '_acc' : ''}`, w.ropeWgsl, [R, R, R, W, U], FLAT, { ACC: +acc }));

export interface RopeShape {
  /** Elements of x. */
  n: number;
  seq: number;
  headDim: number;
  half: number;
  /** heads · headDim. */
  width: number;
}

/** dst = R(angle) src (forward, sign 1) or dst += R(−angle) src (backward, sign −1). */
export function recordRope(rec: CommandRecorder, src: GPUBuffer, cos: GPUBuffer, sin: GPUBuffer, dst: GPUBuffer, s: RopeShape, backward: boolean): void {
  rec.dispatch(ropePrograms[+backward]!, [src, cos, sin, dst], flatGroups(rec, s.n), packUniforms([s.n, s.seq, s.headDim, s.half, s.width], [backward ? -1 : 1]));
}

export interface AttentionDims {
  batch: number;
  seq: number;
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  scale: number;
  window: number;
  softcap: number;
}

function attentionUniforms(a: AttentionDims): ArrayBuffer {
  return packUniforms([a.batch, a.seq, a.nHeads, a.nKvHeads, a.headDim, a.window], [a.scale, a.softcap]);
}

const attentionProgram = program('train_attention', w.attentionWgsl, [R, R, R, W, W, U], FLAT);
const attentionScoresBackProgram = program('train_attention_scores_back', w.attentionScoresBackWgsl, [R, R, R, R, R, W, U], FLAT);
const attentionQueryBackProgram = program('train_attention_query_back', w.attentionQueryBackWgsl, [R, R, W, U], FLAT);
const attentionKeyValueBackProgram = program('train_attention_kv_back', w.attentionKeyValueBackWgsl, [R, R, R, R, W, W, U], FLAT);

/** out = softmax(causal(q kᵀ · scale)) v, probs [B, H, T, T] kept. */
export function recordAttention(rec: CommandRecorder, q: GPUBuffer, k: GPUBuffer, v: GPUBuffer, probs: GPUBuffer, out: GPUBuffer, a: AttentionDims): void {
  rec.dispatch(attentionProgram, [q, k, v, probs, out], flatGroups(rec, a.batch * a.nHeads * a.seq), attentionUniforms(a));
}

/** gq, gk, gv += the gradients of attention given dO; dS [B, H, T, T] is scratch. */
export function recordAttentionBack(rec: CommandRecorder, q: GPUBuffer, k: GPUBuffer, v: GPUBuffer, probs: GPUBuffer, dO: GPUBuffer, dS: GPUBuffer, gq: GPUBuffer, gk: GPUBuffer, gv: GPUBuffer, a: AttentionDims): void {
  const u = attentionUniforms(a);
  const rows = a.batch * a.seq;
  rec.dispatch(attentionScoresBackProgram, [q, k, v, probs, dO, dS], flatGroups(rec, a.batch * a.nHeads * a.seq), u);
  rec.dispatch(attentionQueryBackProgram, [k, dS, gq], flatGroups(rec, rows * a.nHeads * a.headDim), u);
  rec.dispatch(attentionKeyValueBackProgram, [q, probs, dS, dO, gk, gv], flatGroups(rec, rows * a.nKvHeads * a.headDim), u);
}

const crossEntropyProgram = program('train_cross_entropy', w.crossEntropyWgsl, [R, R, W, W, U], [w.CE_WG, 1, 1]);
const sumIntoProgram = program('train_sum_into', w.sumIntoWgsl, [R, W, U], FLAT);

/** Per-row losses of the rows with a target into rowLoss, weight · (softmax − one-hot) into grad. */
export function recordCrossEntropy(rec: CommandRecorder, logits: GPUBuffer, targets: GPUBuffer, grad: GPUBuffer, rowLoss: GPUBuffer, rows: number, vocab: number, weight: number): void {
  rec.dispatch(crossEntropyProgram, [logits, targets, grad, rowLoss], rowGroups(rec, rows), packUniforms([rows, vocab], [weight]));
}

/** stats[index] += Σ values[0..n). */
export function recordSumInto(rec: CommandRecorder, values: GPUBuffer, stats: GPUBuffer, n: number, index: number): void {
  rec.dispatch(sumIntoProgram, [values, stats], [1, 1, 1], packUniforms([n, index]));
}

/** Workgroups of the sum of squares of one gradient buffer (grid-stride); its partial sums take this many slots. */
export const NORM_GROUPS = 64;
const gradNormProgram = program('train_grad_norm', w.gradNormWgsl, [R, W, U], FLAT);
const adamwProgram = program('train_adamw', w.adamwWgsl, [W, R, W, W, R, U], FLAT);

/** Σ g² of one buffer into partials[slot · NORM_GROUPS ..] (the crosscoder's kernel). */
export function recordSumSquares(rec: CommandRecorder, g: GPUBuffer, partials: GPUBuffer, n: number, slot: number): void {
  rec.dispatch(sumSquaresProgram, [g, partials], [NORM_GROUPS, 1, 1], packUniforms([n, slot * NORM_GROUPS]));
}

/** stats[1] = √Σ partials (the gradient norm), stats[2] = the clip factor (1 when maxNorm is 0). */
export function recordGradNorm(rec: CommandRecorder, partials: GPUBuffer, stats: GPUBuffer, slots: number, maxNorm: number): void {
  rec.dispatch(gradNormProgram, [partials, stats], [1, 1, 1], packUniforms([slots * NORM_GROUPS], [maxNorm]));
}

export interface AdamwStep {
  beta1: number;
  beta2: number;
  eps: number;
  /** lr / (1 − β1^t). */
  stepSize: number;
  /** √(1 − β2^t). */
  bc2: number;
  /** 1 − lr · weightDecay. */
  decay: number;
}

export function recordAdamw(rec: CommandRecorder, param: GPUBuffer, grad: GPUBuffer, m: GPUBuffer, v: GPUBuffer, stats: GPUBuffer, n: number, s: AdamwStep): void {
  rec.dispatch(adamwProgram, [param, grad, m, v, stats], flatGroups(rec, n), packUniforms([n], [s.beta1, s.beta2, 1 - s.beta1, 1 - s.beta2, s.eps, s.stepSize, s.bc2, s.decay]));
}
