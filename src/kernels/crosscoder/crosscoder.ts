// Programs of the crosscoder kernels, and the recording of the BatchTopK selection (a sequence of
// dispatches whose decisions stay on the GPU: nothing is read back until the kept entries exist).

import type { GpuProgram } from '../../gpu/pipelines.ts';
import type { CommandRecorder } from '../../gpu/recorder.ts';
import { grid, packUniforms } from '../common.ts';
import {
  adamWgsl,
  AUX_WG,
  auxWgsl,
  blockCountWgsl,
  blockScanWgsl,
  clipScaleWgsl,
  columnsWgsl,
  COMPACT_PER_THREAD,
  decodeWgsl,
  emitWgsl,
  entryGradWgsl,
  fillWgsl,
  finalizeWgsl,
  LATENT_GRAD_COLS,
  latentGradWgsl,
  normsWgsl,
  residualWgsl,
  SCAN_WG,
  selectBeginWgsl,
  selectCountWgsl,
  selectDecideWgsl,
  selectHistWgsl,
  selectPickWgsl,
  STATE,
  sumSquaresWgsl,
} from './crosscoder.wgsl.ts';

export { STATE, STATS } from './crosscoder.wgsl.ts';

/** Threads per workgroup of the per-row kernels (norms, decode, residual, latent gradients). */
export const ROW_WG = 64;
/** Flat entries per compaction block. */
export const COMPACT_BLOCK = SCAN_WG * COMPACT_PER_THREAD;
/** Columns of a gradient row per workgroup of the latent-gradient kernel. */
export const LATENT_GRAD_CHUNK = ROW_WG * LATENT_GRAD_COLS;
/** Most workgroups of the grid-stride passes over all scores (count, histograms, sums of squares). */
export const STRIDE_GROUPS = 512;

export type ScoreWeighting = 'crosscoder' | 'sae' | 'none';
const WEIGHTING: Record<ScoreWeighting, number> = { crosscoder: 0, sae: 1, none: 2 };

function program(name: string, wgsl: string, bindings: GpuProgram['bindings'], workgroup: number, constants?: Record<string, number>): GpuProgram {
  return { name, key: '', workgroupSize: [workgroup, 1, 1], bindings, ...(constants ? { constants } : {}), wgsl: () => wgsl };
}

export const normsProgram = (w: ScoreWeighting): GpuProgram =>
  program(`cc_norms_${w}`, normsWgsl, ['read', 'write', 'uniform'], ROW_WG, { WG: ROW_WG, MODE: WEIGHTING[w] });
export const fillProgram = program('cc_fill', fillWgsl, ['write', 'uniform'], 256);
export const selectBeginProgram = program('cc_select_begin', selectBeginWgsl, ['write', 'uniform'], 256);
export const selectCountProgram = program('cc_select_count', selectCountWgsl, ['read', 'read', 'write', 'uniform'], 256);
export const selectDecideProgram = program('cc_select_decide', selectDecideWgsl, ['write', 'uniform'], 1);
export const selectHistProgram = program('cc_select_hist', selectHistWgsl, ['read', 'read', 'write', 'uniform'], 256);
export const selectPickProgram = program('cc_select_pick', selectPickWgsl, ['write', 'uniform'], SCAN_WG);
export const blockCountProgram = program('cc_block_count', blockCountWgsl, ['read', 'read', 'read', 'write', 'uniform'], 256);
export const blockScanProgram = program('cc_block_scan', blockScanWgsl, ['write', 'write', 'write', 'uniform'], SCAN_WG);
export const emitProgram = program('cc_emit', emitWgsl, ['read', 'read', 'write', 'read', 'write', 'write', 'uniform'], SCAN_WG);
export const decodeProgram = program('cc_decode', decodeWgsl, ['read', 'read', 'read', 'read', 'write', 'uniform'], ROW_WG, { WG: ROW_WG });
export const residualProgram = program('cc_residual', residualWgsl, ['write', 'read', 'read', 'read', 'write', 'uniform'], ROW_WG, { WG: ROW_WG });
export const columnsProgram = program('cc_columns', columnsWgsl, ['read', 'write', 'write', 'uniform'], 64);
export const finalizeProgram = (part: 'columns' | 'tokens'): GpuProgram =>
  program(`cc_finalize_${part}`, finalizeWgsl, ['write', 'uniform'], 256, { PART: part === 'columns' ? 0 : 1 });
export const auxProgram = program('cc_aux', auxWgsl, ['read', 'read', 'read', 'write', 'read', 'write', 'write', 'write', 'uniform'], AUX_WG);
export const entryGradProgram = (aux: boolean): GpuProgram =>
  program(`cc_entry_grad${aux ? '_aux' : ''}`, entryGradWgsl, ['read', 'read', 'read', 'read', 'write', 'uniform'], 256, { AUX: aux ? 1 : 0 });
export const latentGradProgram = (l1: ScoreWeighting | 'off'): GpuProgram =>
  program(`cc_latent_grad_l1_${l1}`, latentGradWgsl, ['read', 'read', 'read', 'read', 'read', 'write', 'write', 'write', 'uniform'], ROW_WG, {
    WG: ROW_WG,
    L1: l1 === 'crosscoder' ? 1 : l1 === 'sae' ? 2 : 0,
  });
export const sumSquaresProgram = program('cc_sum_squares', sumSquaresWgsl, ['read', 'write', 'uniform'], 256);
export const clipScaleProgram = program('cc_clip_scale', clipScaleWgsl, ['read', 'write', 'uniform'], 256);
export const adamProgram = (clip: boolean): GpuProgram =>
  program(`cc_adam${clip ? '_clip' : ''}`, adamWgsl, ['write', 'read', 'write', 'write', 'read', 'uniform'], 256, { CLIP: clip ? 1 : 0 });

const F32 = new Float32Array(1);
const U32 = new Uint32Array(F32.buffer);
/** The bit pattern of x rounded to float32. */
export function floatBits(x: number): number {
  F32[0] = x;
  return U32[0]!;
}
export function bitsFloat(k: number): number {
  U32[0] = k;
  return F32[0]!;
}

/** Words of the selection state buffer for D latents. */
export function stateWords(D: number): number {
  return STATE.fired + Math.ceil(D / 32);
}

/** Buffers the selection reads and writes; `lists` holds rowPtr at 0 and the main kept bitmap at `bitsOffset`. */
export interface SelectBuffers {
  readonly pre: GPUBuffer;
  readonly wn: GPUBuffer;
  readonly state: GPUBuffer;
  readonly counts: GPUBuffer;
  readonly lists: GPUBuffer;
  readonly entries: GPUBuffer;
}

export interface SelectShape {
  /** Tokens (rows of pre). */
  readonly n: number;
  readonly D: number;
  /** Words per latent of the kept bitmaps: ⌈n/32⌉. */
  readonly W: number;
  readonly bitsOffset: number;
}

export function compactBlocks(n: number, D: number): number {
  return Math.ceil((n * D) / COMPACT_BLOCK);
}

/** Workgroups of a grid-stride pass over `count` values: at least 32 per thread (each workgroup has a fixed cost), at most STRIDE_GROUPS. */
export function strideGroups(count: number): number {
  return Math.max(1, Math.min(STRIDE_GROUPS, Math.ceil(count / (256 * 32))));
}

/**
 * Records the search for the BatchTopK cut over f·w (f = ReLU(pre)) as findTopKCut does it: the
 * hint's window count, the candidate range, then three radix rounds. The cut lands in `state`.
 */
export function recordTopKCut(rec: CommandRecorder, b: SelectBuffers, s: SelectShape, kTotal: number, hint: number): void {
  const N = s.n * s.D;
  rec.dispatch(selectBeginProgram, [b.state], [1, 1, 1], packUniforms([0, 0, Math.ceil(s.D / 32)]));
  const hasHint = hint > 0 && Number.isFinite(hint);
  const hiKey = hasHint ? floatBits(hint * 2) : 0xffffffff;
  const loKey = hasHint ? Math.max(1, floatBits(hint / 2)) : 1;
  const groups = strideGroups(N);
  rec.dispatch(selectCountProgram, [b.pre, b.wn, b.state], [groups, 1, 1], packUniforms([N, s.D, loKey, hiKey]));
  rec.dispatch(selectDecideProgram, [b.state], [1, 1, 1], packUniforms([Math.max(0, Math.floor(kTotal)), hasHint ? 1 : 0, loKey, hiKey]));
  for (let round = 0; round < 3; round++) {
    rec.dispatch(selectHistProgram, [b.pre, b.wn, b.state], [groups, 1, 1], packUniforms([N, s.D, round]));
    rec.dispatch(selectPickProgram, [b.state], [1, 1, 1], packUniforms([round]));
  }
}

/** Records a fixed cut: keep entries whose score is above `theta` as float32 (every positive one when theta ≤ 0). */
export function recordCutAbove(rec: CommandRecorder, b: SelectBuffers, s: SelectShape, theta: number): void {
  const key = theta > 0 ? floatBits(theta) : 0;
  rec.dispatch(selectBeginProgram, [b.state], [1, 1, 1], packUniforms([1, key, Math.ceil(s.D / 32)]));
}

/** Records the block counts and their scan: afterwards state holds the number of entries the cut keeps. */
export function recordCount(rec: CommandRecorder, b: SelectBuffers, s: SelectShape): void {
  const N = s.n * s.D;
  const blocks = compactBlocks(s.n, s.D);
  const maxDim = rec.ctx.device.limits.maxComputeWorkgroupsPerDimension;
  rec.dispatch(fillProgram, [b.lists], grid(Math.ceil((s.D * s.W) / 256), maxDim), packUniforms([s.D * s.W, 0, s.bitsOffset]));
  rec.dispatch(blockCountProgram, [b.pre, b.wn, b.state, b.counts], grid(blocks, maxDim), packUniforms([N, s.D, blocks]));
  rec.dispatch(blockScanProgram, [b.state, b.counts, b.lists], [1, 1, 1], packUniforms([blocks, s.n]));
}

/** Records the compaction of the kept entries (entries must hold state's kept count). */
export function recordEmit(rec: CommandRecorder, b: SelectBuffers, s: SelectShape): void {
  const blocks = compactBlocks(s.n, s.D);
  const maxDim = rec.ctx.device.limits.maxComputeWorkgroupsPerDimension;
  rec.dispatch(emitProgram, [b.pre, b.wn, b.state, b.counts, b.lists, b.entries], grid(blocks, maxDim), packUniforms([s.n * s.D, s.D, blocks, s.W, s.bitsOffset]));
}

export interface SelectResult {
  readonly kept: number;
  /** The smallest kept score (−1 when nothing is kept). */
  readonly minScore: number;
  /** Per latent, 1 when kept for some token. */
  readonly fired: Uint8Array;
}

/** Reads the selection's outcome from the state buffer. */
export async function readSelectResult(rec: CommandRecorder, state: GPUBuffer, D: number): Promise<SelectResult> {
  const words = new Uint32Array(await rec.read(state, stateWords(D) * 4));
  const kept = words[STATE.kept]!;
  const fired = new Uint8Array(D);
  for (let j = 0; j < D; j++) fired[j] = (words[STATE.fired + (j >>> 5)]! >>> (j & 31)) & 1;
  return { kept, minScore: kept > 0 ? bitsFloat(words[STATE.minKey]!) : -1, fired };
}
