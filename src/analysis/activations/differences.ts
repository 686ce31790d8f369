// Activation differences δ = x^f − x^b at one hook kind, on the same token ids: per layer and token for a
// prompt, and per layer over a corpus, with readable-trace consistency (cosine of each sample's δ with
// the mean δ). Reductions run on the backend; only per-token scalars and per-sample means come back.
import type { Backend, Tensor } from '../../model/backend.ts';
import { hookName, type Transformer } from '../../model/transformer.ts';
import { checkPairInput, runPairedPasses, type Carried, type PairInput } from './passes.ts';
import { captureActivations, checkIds, checkLayer, cosine, DEFAULT_BATCH_SIZE, disposeAll, equalLengthBatches, readF32, type RunOptions } from './run.ts';

export const HOOK_KINDS = ['resid_pre', 'attn_out', 'mlp_out', 'resid_post'] as const;
export type HookKind = (typeof HOOK_KINDS)[number];

/** Per-token ‖δ‖², ‖x^b‖², ‖x^f‖², x^b·x^f of two [B, T, d] activations, as [B·T] arrays. */
async function tokenStats(be: Backend, xb: Tensor, xf: Tensor): Promise<{ dd: Float32Array; bb: Float32Array; ff: Float32Array; bf: Float32Array }> {
  const delta = be.sub(xf, xb);
  const prod = be.mul(xb, xf);
  const dd = be.sumSquares(delta);
  const bb = be.sumSquares(xb);
  const ff = be.sumSquares(xf);
  const bf = be.sum(prod);
  disposeAll(be, [delta, prod]);
  return { dd: await readF32(be, dd), bb: await readF32(be, bb), ff: await readF32(be, ff), bf: await readF32(be, bf) };
}

export interface PromptDifferences {
  ids: readonly number[];
  kind: HookKind;
  layers: number;
  positions: number;
  /** Layer-major [layers · positions]: ‖δ‖, ‖δ‖ / ‖x^b‖, cosine(x^b, x^f). */
  norm: Float32Array;
  relative: Float32Array;
  cosine: Float32Array;
}

function fillStats(out: { norm: Float32Array; relative: Float32Array; cosine: Float32Array }, at: number, s: { dd: Float32Array; bb: Float32Array; ff: Float32Array; bf: Float32Array }): void {
  for (let i = 0; i < s.dd.length; i++) {
    const n = Math.sqrt(s.dd[i]!);
    const nb = Math.sqrt(s.bb[i]!);
    const nf = Math.sqrt(s.ff[i]!);
    out.norm[at + i] = n;
    out.relative[at + i] = nb > 0 ? n / nb : n > 0 ? Infinity : 0;
    out.cosine[at + i] = nb > 0 && nf > 0 ? s.bf[i]! / (nb * nf) : 0;
  }
}

/** ‖δ‖, relative ‖δ‖ and cosine(x^b, x^f) for every layer and token of one prompt (one model at a time where the input says so). */
export async function promptDifferences(input: PairInput, ids: readonly number[], opts: { kind?: HookKind; signal?: AbortSignal } = {}): Promise<PromptDifferences> {
  const { backend: be, config } = checkPairInput(input);
  checkIds({ config }, ids);
  const kind = opts.kind ?? 'resid_post';
  const L = config.nLayers;
  const T = ids.length;
  const names = Array.from({ length: L }, (_, i) => hookName(kind, i));
  opts.signal?.throwIfAborted();
  const capture = (m: Transformer) => captureActivations(m, [ids], names);
  const out = { norm: new Float32Array(L * T), relative: new Float32Array(L * T), cosine: new Float32Array(L * T) };
  await runPairedPasses<Carried[]>(
    input,
    {
      base: async (_, model, carry) => {
        const cb = capture(model);
        const carried: Carried[] = [];
        // Each capture is carried (the carry owns it) as it is reached; what is left is disposed.
        try {
          for (const name of names) {
            const t = cb.get(name)!;
            cb.delete(name);
            carried.push(await carry(t));
          }
        } finally {
          disposeAll(be, cb.values());
        }
        return carried;
      },
      ft: async (_, model, carried) => {
        const cf = capture(model);
        try {
          for (let l = 0; l < L; l++) {
            const xb = carried[l]!.take();
            try {
              fillStats(out, l * T, await tokenStats(be, xb, cf.get(names[l]!)!));
            } finally {
              be.dispose(xb);
            }
          }
        } finally {
          disposeAll(be, cf.values());
        }
      },
    },
    { signal: opts.signal, stage: 'differences', sizes: [1] },
  );
  return { ids, kind, layers: L, positions: T, ...out };
}

export interface CorpusDifferencesOptions extends RunOptions {
  kind?: HookKind;
  /** Layers to measure (default all). Per-sample means are kept for these: samples · layers · d floats. */
  layers?: readonly number[];
  /** Positions before this are left out of every statistic (e.g. 1 to skip a BOS token). Default 0. */
  fromPosition?: number;
}

export interface LayerCorpusDifferences {
  layer: number;
  /** Means over all tokens (from fromPosition on). */
  meanNorm: number;
  meanRelative: number;
  meanCosine: number;
  /** Mean ‖δ‖ at each position (NaN where no sample reaches it). */
  normByPosition: Float64Array;
  /** δ̄: the mean over samples of each sample's mean δ. */
  meanDelta: Float32Array;
  /** cosine(δ_s, δ̄) per sample, δ_s the sample's mean δ over its tokens. */
  consistency: Float32Array;
  meanConsistency: number;
}

export interface CorpusDifferences {
  kind: HookKind;
  samples: number;
  tokens: number;
  layers: LayerCorpusDifferences[];
}

/**
 * Per-layer activation differences over a corpus of token rows (any lengths; batched by equal length).
 * With a PairedRunner that holds one model at a time, the base activations of the measured layers
 * (samples × tokens × layers × d floats) wait on the host for the fine-tuned pass: choose `layers`.
 */
export async function corpusDifferences(input: PairInput, samples: readonly (readonly number[])[], opts: CorpusDifferencesOptions = {}): Promise<CorpusDifferences> {
  const { backend: be, config } = checkPairInput(input);
  const kind = opts.kind ?? 'resid_post';
  const from = opts.fromPosition ?? 0;
  const layers = opts.layers ?? Array.from({ length: config.nLayers }, (_, i) => i);
  for (const l of layers) checkLayer({ config }, l);
  if (layers.length === 0) throw new RangeError('no layers to measure');
  const d = config.dModel;
  const S = samples.length;
  if (S === 0) throw new RangeError('the corpus holds no samples');
  samples.forEach((s) => checkIds({ config }, s));
  for (const [i, s] of samples.entries()) if (s.length <= from) throw new RangeError(`sample ${i} has ${s.length} tokens, none at or after position ${from}`);
  const Tmax = Math.max(...samples.map((s) => s.length));
  const names = layers.map((l) => hookName(kind, l));
  const lastLayer = Math.max(...layers);

  const acc = layers.map(() => ({ norm: 0, relative: 0, cosine: 0, byPos: new Float64Array(Tmax), perSample: new Float32Array(S * d) }));
  const countByPos = new Float64Array(Tmax);
  let tokens = 0;
  const batches = equalLengthBatches(samples, opts.batchSize ?? DEFAULT_BATCH_SIZE);
  const capture = (m: Transformer, rows: readonly (readonly number[])[]) => {
    const cache = captureActivations(m, rows, names, lastLayer);
    return names.map((n) => cache.get(n)!);
  };
  await runPairedPasses(
    input,
    {
      base: async (i, model, carry) => {
        const xs = capture(model, batches[i]!.rows);
        const kept: Carried[] = [];
        try {
          for (let li = 0; li < xs.length; li++) kept.push(await carry(xs[li]!));
        } catch (e) {
          disposeAll(be, xs.slice(kept.length));
          throw e;
        }
        return kept;
      },
      ft: async (i, model, kept) => {
        const batch = batches[i]!;
        const B = batch.rows.length;
        const T = batch.rows[0]!.length;
        const xbs = kept.map((c) => c.take());
        let xfs: Tensor[] = [];
        // Averages each sample's tokens from `from` on: selector [B, B·T] times δ [B·T, d].
        const sel = new Float32Array(B * B * T);
        for (let b = 0; b < B; b++) for (let t = from; t < T; t++) sel[b * B * T + b * T + t] = 1 / (T - from);
        const selector = be.fromArray(sel, [B, B * T]);
        try {
          xfs = capture(model, batch.rows);
          for (let li = 0; li < layers.length; li++) {
            const xb = xbs[li]!;
            const xf = xfs[li]!;
            const s = await tokenStats(be, xb, xf);
            const a = acc[li]!;
            for (let b = 0; b < B; b++) {
              for (let t = from; t < T; t++) {
                const i = b * T + t;
                const n = Math.sqrt(s.dd[i]!);
                const nb = Math.sqrt(s.bb[i]!);
                const nf = Math.sqrt(s.ff[i]!);
                a.norm += n;
                a.relative += nb > 0 ? n / nb : 0;
                a.cosine += nb > 0 && nf > 0 ? s.bf[i]! / (nb * nf) : 0;
                a.byPos[t]! += n;
              }
            }
            const delta = be.sub(xf, xb);
            const flat = be.reshape(delta, [B * T, d]);
            const means = await readF32(be, be.matmul(selector, flat));
            disposeAll(be, [delta, flat]);
            batch.indices.forEach((sampleIndex, b) => a.perSample.set(means.subarray(b * d, (b + 1) * d), sampleIndex * d));
          }
        } finally {
          disposeAll(be, [selector, ...xbs, ...xfs]);
        }
        for (let t = from; t < T; t++) countByPos[t]! += B;
        tokens += B * (T - from);
      },
    },
    { signal: opts.signal, onProgress: opts.onProgress, stage: 'differences', sizes: batches.map((b) => b.rows.length) },
  );

  return {
    kind,
    samples: S,
    tokens,
    layers: layers.map((layer, li) => {
      const a = acc[li]!;
      const meanDelta = new Float32Array(d);
      const sum = new Float64Array(d);
      for (let s = 0; s < S; s++) for (let j = 0; j < d; j++) sum[j]! += a.perSample[s * d + j]!;
      for (let j = 0; j < d; j++) meanDelta[j] = sum[j]! / S;
      const consistency = new Float32Array(S);
      let meanConsistency = 0;
      for (let s = 0; s < S; s++) {
        consistency[s] = cosine(a.perSample, meanDelta, s * d, 0, d);
        meanConsistency += consistency[s]! / S;
      }
      const normByPosition = a.byPos.map((v, t) => (countByPos[t]! > 0 ? v / countByPos[t]! : NaN));
      return { layer, meanNorm: a.norm / tokens, meanRelative: a.relative / tokens, meanCosine: a.cosine / tokens, normByPosition, meanDelta, consistency, meanConsistency };
    }),
  };
}
