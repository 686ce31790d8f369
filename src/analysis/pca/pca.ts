// PCA of activation differences: the principal components of δ = h_ft − h_base at one hook point over
// every token of a corpus (centred), each with its explained variance, its tokens read through the
// fine-tune's logit lens in both directions, and the places whose δ projects most on it.
// The covariance is summed in float64 from per-batch Gram matrices the backend computes; δ of every
// token waits on the host for the projections (tokens × d floats).
import { hookName } from '../../model/transformer.ts';
import { checkLayer, checkPair, disposeAll, readF32, type ModelPair, type RunOptions } from '../activations/run.ts';
import { lensTop } from '../activations/lens.ts';
import { leadingEigen } from '../linalg/eigen.ts';
import { forEachPairedBatch, TopList, type CorpusPlace } from '../logit-diff/stream.ts';

export type PcaHookKind = 'resid_post' | 'resid_pre' | 'attn_out' | 'mlp_out';

export interface PcaOptions extends RunOptions {
  layer: number;
  kind?: PcaHookKind;
  /** Components reported. Default 5. */
  components?: number;
  /** Lens tokens per direction. Default 20. */
  k?: number;
  /** Places kept per component and sign. Default 10. */
  contexts?: number;
  /** Positions before this are left out. Default 0. */
  fromPosition?: number;
  /** δ kept on the host, at most (tokens × d floats). Default 2^27 (512 MB). */
  maxValues?: number;
}

export interface PcaComponent {
  /** Unit vector [d], oriented so that the mean δ projects on it with a non-negative sign. */
  direction: Float32Array;
  variance: number;
  varianceRatio: number;
  /** Lens of +direction and −direction through the fine-tune's final norm and unembedding. */
  positiveTokens: { id: number; prob: number }[];
  negativeTokens: { id: number; prob: number }[];
  /** Places with the largest (δ − mean δ) · direction, and the most negative. */
  topContexts: (CorpusPlace & { projection: number })[];
  bottomContexts: (CorpusPlace & { projection: number })[];
}

export interface PcaResult {
  layer: number;
  hook: string;
  tokens: number;
  d: number;
  /** Trace of the covariance of δ: the sum of every component's variance. */
  totalVariance: number;
  /** ‖mean δ‖. */
  meanNorm: number;
  components: PcaComponent[];
}

export async function activationDiffPca(pair: ModelPair, samples: readonly (readonly number[])[], opts: PcaOptions): Promise<PcaResult> {
  const be = checkPair(pair);
  checkLayer(pair.base, opts.layer);
  const d = pair.base.config.dModel;
  const from = opts.fromPosition ?? 0;
  const name = hookName(opts.kind ?? 'resid_post', opts.layer);
  const totalTokens = samples.reduce((n, s) => n + Math.max(0, s.length - from), 0);
  const maxValues = opts.maxValues ?? 2 ** 27;
  if (totalTokens * d > maxValues) throw new RangeError(`PCA keeps δ of every token on the host: ${totalTokens} tokens × ${d} exceed ${maxValues} values; use fewer samples`);
  const deltas = new Float32Array(totalTokens * d);
  const places: CorpusPlace[] = [];
  const sum = new Float64Array(d);
  const gram = new Float64Array(d * d);
  await forEachPairedBatch(pair, samples, [name], { ...opts, stage: 'pca', lastLayer: opts.layer }, async (b) => {
    const xb = b.base.get(name)!;
    const xf = b.ft.get(name)!;
    const T = b.seq;
    const rows = xb.shape[0]! * T;
    const delta = be.sub(xf, xb);
    const flat = be.reshape(delta, [rows, d]);
    const host = await readF32(be, flat, false);
    disposeAll(be, [delta, flat]);
    for (let row = 0; row < rows; row++) {
      const position = row % T;
      if (position < from) continue;
      const at = places.length;
      places.push({ sample: b.samples[Math.floor(row / T)]!, position });
      const v = host.subarray(row * d, row * d + d);
      deltas.set(v, at * d);
      for (let i = 0; i < d; i++) sum[i]! += v[i]!;
    }
    // Gram of the kept rows on the backend (float32 within a batch), summed on the host in float64.
    const kept = from === 0 ? host : keptRows(host, rows, T, from, d);
    const n = kept.length / d;
    if (n === 0) return;
    const x = be.fromArray(kept, [n, d]);
    const xt = be.transpose(x);
    const g = be.matmul(xt, x);
    disposeAll(be, [x, xt]);
    const gh = await readF32(be, g);
    for (let i = 0; i < d * d; i++) gram[i]! += gh[i]!;
  });
  const n = places.length;
  if (n === 0) throw new RangeError(`no tokens at or after position ${from}`);
  const mean = Float64Array.from(sum, (s) => s / n);
  const cov = new Float64Array(d * d);
  for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) cov[i * d + j] = gram[i * d + j]! / n - mean[i]! * mean[j]!;
  for (let i = 0; i < d; i++) for (let j = i + 1; j < d; j++) cov[i * d + j] = cov[j * d + i] = (cov[i * d + j]! + cov[j * d + i]!) / 2;
  let total = 0;
  for (let i = 0; i < d; i++) total += Math.max(0, cov[i * d + i]!);
  const c = Math.min(opts.components ?? 5, d);
  opts.signal?.throwIfAborted();
  const eig = leadingEigen(cov, d, c);

  const directions: Float32Array[] = [];
  for (let r = 0; r < c; r++) {
    const v = eig.vectors.subarray(r * d, r * d + d);
    let dot = 0;
    let big = 0;
    for (let i = 0; i < d; i++) {
      dot += v[i]! * mean[i]!;
      if (Math.abs(v[i]!) > Math.abs(big)) big = v[i]!;
    }
    const sign = dot !== 0 ? Math.sign(dot) : big < 0 ? -1 : 1;
    directions.push(Float32Array.from(v, (x) => sign * x));
  }
  const k = Math.min(opts.k ?? 20, pair.base.config.vocab, 32);
  const lensRows = new Float32Array(2 * c * d);
  directions.forEach((v, r) => {
    lensRows.set(v, 2 * r * d);
    lensRows.set(v.map((x) => -x), (2 * r + 1) * d);
  });
  const lensIn = be.fromArray(lensRows, [2 * c, d]);
  const lens = await lensTop(pair.ft, lensIn, { k }).finally(() => be.dispose(lensIn));
  const tokens = (row: number) => Array.from({ length: k }, (_, j) => ({ id: lens.ids[row * k + j]!, prob: lens.probs[row * k + j]! }));

  const nContexts = opts.contexts ?? 10;
  const components = directions.map((v, r): PcaComponent => {
    const topList = new TopList<number>(nContexts);
    const bottomList = new TopList<number>(nContexts);
    let offset = 0;
    for (let i = 0; i < d; i++) offset += mean[i]! * v[i]!;
    for (let t = 0; t < n; t++) {
      let p = -offset;
      for (let i = 0; i < d; i++) p += deltas[t * d + i]! * v[i]!;
      topList.add(p, t);
      bottomList.add(-p, t);
    }
    const variance = Math.max(0, eig.values[r]!);
    return {
      direction: v,
      variance,
      varianceRatio: total > 0 ? variance / total : 0,
      positiveTokens: tokens(2 * r),
      negativeTokens: tokens(2 * r + 1),
      topContexts: topList.items.map((x) => ({ ...places[x.item]!, projection: x.score })),
      bottomContexts: bottomList.items.map((x) => ({ ...places[x.item]!, projection: -x.score })),
    };
  });
  return { layer: opts.layer, hook: name, tokens: n, d, totalVariance: total, meanNorm: Math.sqrt(mean.reduce((s, x) => s + x * x, 0)), components };
}

function keptRows(x: Float32Array, rows: number, T: number, from: number, d: number): Float32Array {
  const out: number[] = [];
  for (let row = 0; row < rows; row++) if (row % T >= from) for (let i = 0; i < d; i++) out.push(x[row * d + i]!);
  return Float32Array.from(out);
}
