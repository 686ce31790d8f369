// The next-token logits of both models for rows of final-normed residuals, a block of rows at a time,
// so at most [rows of one block × vocabulary] logits exist at once; with their difference's top-k.
import { numel, type Backend, type Tensor } from '../../model/backend.ts';
import type { Transformer } from '../../model/transformer.ts';
import { disposeAll, readF32, readI32, type ModelPair } from '../activations/run.ts';

/** Logit values one block may hold per model (rows × vocabulary). */
export const LOGIT_BLOCK_VALUES = 1 << 20;

export function rowsPerBlock(vocab: number, blockValues = LOGIT_BLOCK_VALUES): number {
  return Math.max(1, Math.floor(blockValues / vocab));
}

/** Logits of normed rows [R, d]: W_U · h, soft-capped as the model's own output. */
export function logitsOf(model: Transformer, normed: Tensor): Tensor {
  const be = model.backend;
  const z = be.linear(normed, model.unembed);
  if (model.config.finalSoftcap <= 0) return z;
  const capped = be.softcap(z, model.config.finalSoftcap);
  be.dispose(z);
  return capped;
}

/** Rows [r0, r1) of a [..., d] tensor as [r1 − r0, d] (a copy). */
export function sliceRows(be: Backend, x: Tensor, r0: number, r1: number): Tensor {
  const d = x.shape[x.shape.length - 1]!;
  const rows = numel(x.shape) / d;
  const flat = be.reshape(x, [1, rows, d]);
  const part = be.sliceSeq(flat, r0, r1);
  const out = be.reshape(part, [r1 - r0, d]);
  be.dispose(part);
  be.dispose(flat);
  return out;
}

export interface LogitDiffTop {
  rows: number;
  k: number;
  /** Per row, the k tokens with the largest logit_ft − logit_base, descending, and those differences. */
  ids: Int32Array;
  diffs: Float32Array;
}

/**
 * Top-k of logit_ft − logit_base for every row of the final-normed residuals nb, nf ([..., d], the same
 * rows), block by block.
 */
export async function logitDiffTopK(pair: ModelPair, nb: Tensor, nf: Tensor, k: number, blockValues = LOGIT_BLOCK_VALUES): Promise<LogitDiffTop> {
  const be = pair.base.backend;
  const d = pair.base.config.dModel;
  const vocab = pair.base.config.vocab;
  const rows = numel(nb.shape) / d;
  const kk = Math.min(k, vocab);
  const out: LogitDiffTop = { rows, k: kk, ids: new Int32Array(rows * kk), diffs: new Float32Array(rows * kk) };
  const step = rowsPerBlock(vocab, blockValues);
  for (let r0 = 0; r0 < rows; r0 += step) {
    const r1 = Math.min(rows, r0 + step);
    const hb = sliceRows(be, nb, r0, r1);
    const hf = sliceRows(be, nf, r0, r1);
    const zb = logitsOf(pair.base, hb);
    const zf = logitsOf(pair.ft, hf);
    const diff = be.sub(zf, zb);
    disposeAll(be, [hb, hf, zb, zf]);
    const top = be.topk(diff, kk);
    be.dispose(diff);
    out.diffs.set(await readF32(be, top.values), r0 * kk);
    out.ids.set(await readI32(be, top.indices), r0 * kk);
  }
  return out;
}
