// Logit lens (nostalgebraist 2020): softmax(W_U · norm_final(h)) for a residual h at any layer, and the
// differential lens of a model pair (each model's lens on its own residual, KL(P_ft ‖ P_base)).
//
// Never materialises [rows, vocab] for a large vocabulary: the vocabulary is streamed in chunks of rows
// of W_U sized so one [rows, chunk] logits tensor stays under `maxLogits` values. Per chunk only per-row
// scalars and a top-k come back to the host, where they are combined exactly:
//   LSE = logsumexp_c lse_c,   log p_v = L_v + lse_c − LSE   (L = log-softmax within the chunk)
//   KL(P_f ‖ P_b) = Σ_c e^{lse_f,c − LSE_f} a_c − LSE_f + LSE_b,   a_c = Σ_{v∈c} softmax_c(z_f)_v (z_f,v − z_b,v)
import { numel, type Backend, type Tensor } from '../../model/backend.ts';
import { hookName, type Transformer } from '../../model/transformer.ts';
import { checkIds, checkPair, disposeAll, finalNorm, readF32, readI32, unembedRows, type ModelPair, type RunOptions } from './run.ts';

export interface LensOptions {
  /** Tokens kept per row. Default 10. */
  k?: number;
  /** Largest logits tensor ([rows, vocab chunk]) computed at once. Default 4M values (16 MB in float32). */
  maxLogits?: number;
  /** Vocabulary rows per chunk, overriding the size derived from maxLogits. */
  chunk?: number;
}

/** The top tokens of each row's lens distribution, rows × k, most probable first. */
export interface LensTop {
  rows: number;
  k: number;
  ids: Int32Array;
  probs: Float32Array;
}

export const DEFAULT_MAX_LOGITS = 1 << 22;
const MIN_CHUNK = 1024;

interface Head {
  model: Transformer;
  /** Rows already through the final norm: [..., d]. */
  normed: Tensor;
}

/** Top-k per row from chunk-local candidates, ranked by log-probability up to a per-row constant. */
class TopKMerger {
  readonly scores: Float64Array;
  readonly ids: Int32Array;
  private readonly mergedScores: Float64Array;
  private readonly mergedIds: Int32Array;

  constructor(
    readonly rows: number,
    readonly k: number,
  ) {
    this.scores = new Float64Array(rows * k).fill(-Infinity);
    this.ids = new Int32Array(rows * k).fill(-1);
    this.mergedScores = new Float64Array(k);
    this.mergedIds = new Int32Array(k);
  }

  /** Chunk candidates sorted descending (as topk gives them); earlier chunks win ties (lower ids). */
  add(row: number, values: Float32Array, ids: Int32Array, offset: number, count: number, shift: number, idBase: number): void {
    const k = this.k;
    const base = row * k;
    let i = 0;
    let j = 0;
    for (let m = 0; m < k; m++) {
      const old = i < k && this.ids[base + i]! >= 0 ? this.scores[base + i]! : -Infinity;
      const fresh = j < count ? values[offset + j]! + shift : -Infinity;
      if (old > -Infinity && old >= fresh) {
        this.mergedScores[m] = old;
        this.mergedIds[m] = this.ids[base + i]!;
        i++;
      } else if (j < count) {
        this.mergedScores[m] = fresh;
        this.mergedIds[m] = ids[offset + j]! + idBase;
        j++;
      } else {
        this.mergedScores[m] = -Infinity;
        this.mergedIds[m] = -1;
      }
    }
    this.scores.set(this.mergedScores, base);
    this.ids.set(this.mergedIds, base);
  }
}

function logAddExp(a: number, b: number): number {
  if (a === -Infinity) return b;
  if (b === -Infinity) return a;
  const m = Math.max(a, b);
  return m + Math.log(Math.exp(a - m) + Math.exp(b - m));
}

/**
 * Rows [v0, v1) of an unembedding [V, d] as a new [v1 − v0, d] tensor (a gather, which also serves
 * unembeddings stored as row blocks); the matrix itself when it is one chunk.
 */
function unembedChunk(be: Backend, w: Tensor, v0: number, v1: number): { t: Tensor; owned: boolean } {
  if (v0 === 0 && v1 === w.shape[0]) return { t: w, owned: false };
  const rows = Int32Array.from({ length: v1 - v0 }, (_, i) => v0 + i);
  return { t: be.embedding(w, rows, [v1 - v0]), owned: true };
}

/**
 * Streams the vocabulary for one or two heads over the same number of rows. With two heads, also the
 * per-row KL(P_1 ‖ P_0) (second head's distribution first).
 */
async function streamLens(heads: readonly Head[], k: number, opts: LensOptions, withKl: boolean): Promise<{ tops: LensTop[]; kl?: Float64Array }> {
  const be = heads[0]!.model.backend;
  const d = heads[0]!.model.config.dModel;
  const V = heads[0]!.model.config.vocab;
  const rows = numel(heads[0]!.normed.shape) / d;
  const kk = Math.min(k, V);
  const chunk = opts.chunk ?? Math.min(V, Math.max(Math.min(V, MIN_CHUNK), Math.floor((opts.maxLogits ?? DEFAULT_MAX_LOGITS) / Math.max(rows, 1))));
  if (!Number.isInteger(chunk) || chunk < 1) throw new RangeError(`vocabulary chunk must be a positive integer, got ${chunk}`);
  const mergers = heads.map(() => new TopKMerger(rows, kk));
  const lse = heads.map(() => new Float64Array(rows).fill(-Infinity));
  // Per chunk: lse of the first head (the KL's P) and a_c, combined once the totals are known.
  const chunkLse: Float64Array[] = [];
  const chunkA: Float32Array[] = [];
  const rows2d = heads.map((h) => be.reshape(h.normed, [rows, d]));
  try {
    for (let v0 = 0; v0 < V; v0 += chunk) {
      const v1 = Math.min(V, v0 + chunk);
      const c = v1 - v0;
      const logits: Tensor[] = [];
      try {
        for (let h = 0; h < heads.length; h++) {
          const w = unembedChunk(be, heads[h]!.model.unembed, v0, v1);
          logits.push(unembedRows(heads[h]!.model, rows2d[h]!, w.t));
          if (w.owned) be.dispose(w.t);
        }
        const localLse: Float64Array[] = [];
        for (let h = 0; h < heads.length; h++) {
          const z = logits[h]!;
          const ls = be.logSoftmax(z);
          const shifted = be.sub(z, ls);
          const sums = await readF32(be, be.sum(shifted));
          be.dispose(shifted);
          const top = be.topk(ls, Math.min(kk, c));
          be.dispose(ls);
          const values = await readF32(be, top.values);
          const ids = await readI32(be, top.indices);
          const kc = Math.min(kk, c);
          const l = new Float64Array(rows);
          for (let r = 0; r < rows; r++) {
            l[r] = sums[r]! / c;
            lse[h]![r] = logAddExp(lse[h]![r]!, l[r]!);
            mergers[h]!.add(r, values, ids, r * kc, kc, l[r]!, v0);
          }
          localLse.push(l);
        }
        if (withKl) {
          const [zb, zf] = logits as [Tensor, Tensor];
          const p = be.softmax(zf);
          const diff = be.sub(zf, zb);
          const w = be.mul(p, diff);
          disposeAll(be, [p, diff]);
          chunkA.push(await readF32(be, be.sum(w)));
          be.dispose(w);
          chunkLse.push(localLse[1]!);
        }
      } finally {
        disposeAll(be, logits);
      }
    }
  } finally {
    disposeAll(be, rows2d);
  }
  const tops = mergers.map((m, h): LensTop => {
    const probs = new Float32Array(rows * kk);
    for (let r = 0; r < rows; r++) for (let j = 0; j < kk; j++) probs[r * kk + j] = Math.exp(m.scores[r * kk + j]! - lse[h]![r]!);
    return { rows, k: kk, ids: m.ids, probs };
  });
  if (!withKl) return { tops };
  const kl = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    const lseF = lse[1]![r]!;
    let s = 0;
    for (let c = 0; c < chunkA.length; c++) s += Math.exp(chunkLse[c]![r]! - lseF) * chunkA[c]![r]!;
    kl[r] = s - lseF + lse[0]![r]!;
  }
  return { tops, kl };
}

/** The lens of every row of h ([..., d]) through the model's own final norm and unembedding. */
export async function lensTop(model: Transformer, h: Tensor, opts: LensOptions = {}): Promise<LensTop> {
  const normed = finalNorm(model, h);
  try {
    const { tops } = await streamLens([{ model, normed }], opts.k ?? 10, opts, false);
    return tops[0]!;
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
  const nb = finalNorm(pair.base, hBase);
  const nf = finalNorm(pair.ft, hFt);
  try {
    const heads = [
      { model: pair.base, normed: nb },
      { model: pair.ft, normed: nf },
    ];
    const { tops, kl } = await streamLens(heads, opts.k ?? 10, opts, true);
    return { base: tops[0]!, ft: tops[1]!, kl: kl! };
  } finally {
    disposeAll(be, [nb, nf]);
  }
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
 * top tokens and KL(P_ft ‖ P_base). Streams over blocks of layers and over vocabulary chunks.
 */
export async function differentialLogitLens(pair: ModelPair, ids: readonly number[], opts: LensOptions & Pick<RunOptions, 'signal' | 'onProgress'> = {}): Promise<DifferentialLens> {
  const be = checkPair(pair);
  checkIds(pair.base, ids);
  const L = pair.base.config.nLayers;
  const T = ids.length;
  const k = Math.min(opts.k ?? 10, pair.base.config.vocab);
  const maxLogits = opts.maxLogits ?? DEFAULT_MAX_LOGITS;
  const names = Array.from({ length: L }, (_, i) => hookName('resid_post', i));
  const run = (m: Transformer) => {
    const { logits, cache } = m.runWithCache([ids], names, { stopAfterLayer: L - 1 });
    if (logits) be.dispose(logits);
    return cache;
  };
  opts.signal?.throwIfAborted();
  const cb = run(pair.base);
  const cf = run(pair.ft);
  const out: DifferentialRows = {
    base: { rows: L * T, k, ids: new Int32Array(L * T * k), probs: new Float32Array(L * T * k) },
    ft: { rows: L * T, k, ids: new Int32Array(L * T * k), probs: new Float32Array(L * T * k) },
    kl: new Float64Array(L * T),
  };
  try {
    const layersPerBlock = Math.max(1, Math.floor(maxLogits / Math.min(pair.base.config.vocab, MIN_CHUNK) / T));
    for (let l0 = 0; l0 < L; l0 += layersPerBlock) {
      opts.signal?.throwIfAborted();
      const l1 = Math.min(L, l0 + layersPerBlock);
      const block = (cache: Map<string, Tensor>) => concatAll(be, names.slice(l0, l1).map((n) => be.reshape(cache.get(n)!, [1, T, cache.get(n)!.shape[2]!])));
      const hb = block(cb);
      const hf = block(cf);
      let rows: DifferentialRows;
      try {
        rows = await differentialLensRows(pair, hb, hf, { ...opts, k });
      } finally {
        disposeAll(be, [hb, hf]);
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
    disposeAll(be, [...cb.values(), ...cf.values()]);
  }
  return { ...out, ids, layers: L, positions: T, direction: 'KL(P_ft || P_base)' };
}
