// Logit lens (nostalgebraist 2020): softmax(W_U · norm_final(h)) for a residual h at any layer, and the
// differential lens of a model pair (each model's lens on its own residual, KL(P_ft ‖ P_base)).
//
// The backend's logitLens streams the vocabulary with a fused log-sum-exp and top-k, so [rows, vocab]
// logits never exist; only the top-k and per-row scalars come back to the host. The differential lens
// passes blocks of layers, at most `maxRows` rows per call. With one model at a time (a PairedRunner in
// sequential mode), the base pass hands its final-normed rows and its unembedding to the fine-tuned
// pass: the same operations on the same values as with both models loaded.
import { numel, type Backend, type LensHead, type LensReadout, type Tensor } from '../../model/backend.ts';
import { hookName, type Transformer } from '../../model/transformer.ts';
import { checkPairInput, runPairedPasses, type Carried, type PairInput } from './passes.ts';
import { captureActivations, checkIds, checkPair, disposeAll, finalNorm, readF32, readI32, type ModelPair, type RunOptions } from './run.ts';

export interface LensOptions {
  /** Tokens kept per row, 1..32. Default 10. */
  k?: number;
  /** Rows (layers × positions) per backend call in differentialLogitLens. Default 4096. */
  maxRows?: number;
}

/** The top tokens of each row's lens distribution, rows × k, most probable first. */
export interface LensTop {
  rows: number;
  k: number;
  ids: Int32Array;
  probs: Float32Array;
}

export const DEFAULT_LENS_MAX_ROWS = 4096;

function lensHead(model: Transformer, normed: Tensor): LensHead {
  return { normed, unembed: model.unembed, softcap: Math.max(0, model.config.finalSoftcap) };
}

async function readTop(be: Backend, rows: number, k: number, out: LensReadout): Promise<LensTop> {
  be.dispose(out.lse);
  const logProbs = await readF32(be, out.logProbs);
  return { rows, k, ids: await readI32(be, out.ids), probs: logProbs.map(Math.exp) };
}

/** The lens of every row of h ([..., d]) through the model's own final norm and unembedding. */
export async function lensTop(model: Transformer, h: Tensor, opts: LensOptions = {}): Promise<LensTop> {
  const k = Math.min(opts.k ?? 10, model.config.vocab);
  const normed = finalNorm(model, h);
  try {
    const { heads } = model.backend.logitLens([lensHead(model, normed)], k);
    return await readTop(model.backend, numel(h.shape) / model.config.dModel, k, heads[0]!);
  } finally {
    model.backend.dispose(normed);
  }
}

export interface DifferentialRows {
  base: LensTop;
  ft: LensTop;
  /** KL(P_ft ‖ P_base) per row, in nats. */
  kl: Float64Array;
}

/** Each model's lens on its own rows (hBase, hFt: [..., d] with the same row count) and KL(P_ft ‖ P_base). */
export async function differentialLensRows(pair: ModelPair, hBase: Tensor, hFt: Tensor, opts: LensOptions = {}): Promise<DifferentialRows> {
  const be = checkPair(pair);
  if (numel(hBase.shape) !== numel(hFt.shape)) throw new RangeError(`differential lens: ${numel(hBase.shape)} base values and ${numel(hFt.shape)} fine-tuned values`);
  const k = Math.min(opts.k ?? 10, pair.base.config.vocab);
  const nb = finalNorm(pair.base, hBase);
  const nf = finalNorm(pair.ft, hFt);
  try {
    return await lensRows(be, lensHead(pair.ft, nf), lensHead(pair.base, nb), pair.base.config.dModel, k);
  } finally {
    disposeAll(be, [nb, nf]);
  }
}

/** Both heads' top-k and KL(P_ft ‖ P_base) of rows already through each model's final norm. */
async function lensRows(be: Backend, ft: LensHead, base: LensHead, d: number, k: number): Promise<DifferentialRows> {
  const rows = numel(ft.normed.shape) / d;
  // The op gives KL(P_0 ‖ P_1): the fine-tuned head goes first.
  const { heads, kl } = be.logitLens([ft, base], k);
  const ftTop = await readTop(be, rows, k, heads[0]!);
  const baseTop = await readTop(be, rows, k, heads[1]!);
  return { base: baseTop, ft: ftTop, kl: Float64Array.from(await readF32(be, kl!)) };
}

export interface DifferentialLens extends DifferentialRows {
  ids: readonly number[];
  layers: number;
  positions: number;
  /** Rows are layer-major: row = layer · positions + position; layer ℓ reads blocks.ℓ.hook_resid_post. */
  direction: 'KL(P_ft || P_base)';
}

/** Concatenates [1, T_i, d] tensors along the sequence, pairwise so each value is copied O(log n) times. */
function concatAll(be: Backend, ts: Tensor[]): Tensor {
  let level = ts;
  while (level.length > 1) {
    const next: Tensor[] = [];
    for (let i = 0; i < level.length; i += 2) {
      if (i + 1 === level.length) {
        next.push(level[i]!);
        continue;
      }
      next.push(be.concatSeq(level[i]!, level[i + 1]!));
      be.dispose(level[i]!);
      be.dispose(level[i + 1]!);
    }
    level = next;
  }
  return level[0]!;
}

/**
 * The differential logit lens of a prompt: for every layer's resid_post and position, both models'
 * top tokens and KL(P_ft ‖ P_base), over blocks of layers.
 */
export async function differentialLogitLens(input: PairInput, ids: readonly number[], opts: LensOptions & Pick<RunOptions, 'signal' | 'onProgress'> = {}): Promise<DifferentialLens> {
  const { backend: be, config } = checkPairInput(input);
  checkIds({ config }, ids);
  const L = config.nLayers;
  const T = ids.length;
  const d = config.dModel;
  const k = Math.min(opts.k ?? 10, config.vocab);
  const names = Array.from({ length: L }, (_, i) => hookName('resid_post', i));
  const layersPerBlock = Math.max(1, Math.floor((opts.maxRows ?? DEFAULT_LENS_MAX_ROWS) / T));
  const blocks = Array.from({ length: Math.ceil(L / layersPerBlock) }, (_, b) => [b * layersPerBlock, Math.min(L, (b + 1) * layersPerBlock)] as const);
  /** Layers [l0, l1) of a run's residuals as one [1, (l1 − l0)·T, d] tensor. */
  const block = (cache: Map<string, Tensor>, l0: number, l1: number) => concatAll(be, names.slice(l0, l1).map((n) => be.reshape(cache.get(n)!, [1, T, d])));
  const out: DifferentialRows = {
    base: { rows: L * T, k, ids: new Int32Array(L * T * k), probs: new Float32Array(L * T * k) },
    ft: { rows: L * T, k, ids: new Int32Array(L * T * k), probs: new Float32Array(L * T * k) },
    kl: new Float64Array(L * T),
  };
  interface BaseHead {
    normed: Carried[];
    unembed: Tensor;
    softcap: number;
  }
  opts.signal?.throwIfAborted();
  await runPairedPasses<BaseHead>(
    input,
    {
      // The base's rows through its final norm, a block of layers at a time; its unembedding stays.
      base: async (_, base, carry) => {
        const cache = captureActivations(base, [ids], names);
        try {
          const normed: Carried[] = [];
          for (const [l0, l1] of blocks) {
            const h = block(cache, l0, l1);
            try {
              normed.push(await carry(finalNorm(base, h)));
            } finally {
              be.dispose(h);
            }
          }
          return { normed, unembed: base.unembed, softcap: Math.max(0, base.config.finalSoftcap) };
        } finally {
          disposeAll(be, cache.values());
        }
      },
      ft: async (_, ft, head) => {
        const cache = captureActivations(ft, [ids], names);
        try {
          for (const [b, [l0, l1]] of blocks.entries()) {
            opts.signal?.throwIfAborted();
            const h = block(cache, l0, l1);
            const nb = head.normed[b]!.take();
            let nf: Tensor | undefined;
            let rows: DifferentialRows;
            try {
              nf = finalNorm(ft, h);
              rows = await lensRows(be, lensHead(ft, nf), { normed: nb, unembed: head.unembed, softcap: head.softcap }, d, k);
            } finally {
              disposeAll(be, [h, nb, nf]);
            }
            const at = l0 * T;
            out.base.ids.set(rows.base.ids, at * k);
            out.base.probs.set(rows.base.probs, at * k);
            out.ft.ids.set(rows.ft.ids, at * k);
            out.ft.probs.set(rows.ft.probs, at * k);
            out.kl.set(rows.kl, at);
            opts.onProgress?.({ stage: 'lens', done: l1, total: L });
          }
        } finally {
          disposeAll(be, cache.values());
        }
      },
      keep: (base) => [base.unembed],
    },
    { signal: opts.signal, stage: 'lens passes', sizes: [1] },
  );
  return { ...out, ids, layers: L, positions: T, direction: 'KL(P_ft || P_base)' };
}
