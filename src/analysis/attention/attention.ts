// Attention-pattern diffing: per layer and head, the Jensen–Shannon divergence between the base and
// fine-tuned models' attention distributions (each query position's distribution over keys, averaged
// over positions, and over a corpus), where they part most, and head-level patching: the recovery of
// the fine-tune's output when one head's output z_h · W_O[:, h]ᵀ is patched from the fine-tune into
// the base at blocks.ℓ.hook_attn_out.
// Queries and keys come from the backend (the models' own q/k norms and rotary embedding); the
// softmax over keys of each row is taken on the host in float64, as the patterns are small (T × T per head).
import type { AttentionParams, Tensor } from '../../model/backend.ts';
import { hookName, type Transformer } from '../../model/transformer.ts';
import { captureActivations, checkIds, checkPair, disposeAll, klRows, readF32, type ModelPair, type RunOptions } from '../activations/run.ts';

/** Attention probabilities of one layer: [heads, T, T], row t over keys 0..T−1 (zero where masked). */
export interface LayerPatterns {
  heads: number;
  positions: number;
  probs: Float64Array;
}

/** softmax(scale · q·k) per head and query over the keys it may see (causal, window, soft-cap). */
export function patternsFromQk(q: Float32Array, k: Float32Array, T: number, p: AttentionParams): LayerPatterns {
  const { nHeads: H, nKvHeads: Hkv, headDim: hd } = p;
  const group = H / Hkv;
  const probs = new Float64Array(H * T * T);
  const row = new Float64Array(T);
  for (let h = 0; h < H; h++) {
    const kh = Math.floor(h / group);
    for (let t = 0; t < T; t++) {
      const pos = p.queryOffset + t;
      let max = -Infinity;
      let lo = 0;
      if (p.window && p.window > 0) lo = Math.max(0, pos - p.window + 1);
      for (let s = lo; s <= pos && s < T; s++) {
        let dot = 0;
        for (let i = 0; i < hd; i++) dot += q[(t * H + h) * hd + i]! * k[(s * Hkv + kh) * hd + i]!;
        let z = dot * p.scale;
        if (p.softcap && p.softcap > 0) z = p.softcap * Math.tanh(z / p.softcap);
        row[s] = z;
        if (z > max) max = z;
      }
      let sum = 0;
      for (let s = lo; s <= pos && s < T; s++) sum += row[s] = Math.exp(row[s]! - max);
      const o = (h * T + t) * T;
      for (let s = lo; s <= pos && s < T; s++) probs[o + s] = row[s]! / sum;
    }
  }
  return { heads: H, positions: T, probs };
}

/** Every layer's attention probabilities of one model on one sequence. */
export async function attentionPatterns(model: Transformer, ids: readonly number[], signal?: AbortSignal): Promise<LayerPatterns[]> {
  checkIds(model, ids);
  const be = model.backend;
  const L = model.config.nLayers;
  const names = Array.from({ length: L }, (_, l) => hookName('resid_pre', l));
  const cache = captureActivations(model, [ids], names);
  try {
    const out: LayerPatterns[] = [];
    for (let l = 0; l < L; l++) {
      signal?.throwIfAborted();
      const { q, k, v, params } = model.attentionInputs(cache.get(names[l]!)!, l, 0);
      be.dispose(v);
      const qh = await readF32(be, q);
      const kh = await readF32(be, k);
      out.push(patternsFromQk(qh, kh, ids.length, params));
    }
    return out;
  } finally {
    disposeAll(be, cache.values());
  }
}

/** Jensen–Shannon divergence (nats) of two distributions stored at p[po..po+n), q[qo..qo+n). */
export function jensenShannon(p: Float64Array, q: Float64Array, o: number, n: number): number {
  let js = 0;
  for (let i = o; i < o + n; i++) {
    const a = p[i]!;
    const b = q[i]!;
    const m = (a + b) / 2;
    if (a > 0) js += a * Math.log(a / m);
    if (b > 0) js += b * Math.log(b / m);
  }
  return js / 2;
}

export interface HeadDiff {
  layer: number;
  head: number;
  /** Mean over query positions (and samples) of JS(P_base ‖ P_ft) of the row. */
  js: number;
  /** Largest |P_base − P_ft| over every row and key. */
  maxAbs: number;
  /** Query position with the largest JS (on the prompt, or the sample where it was largest) and that JS. */
  worstPosition: number;
  worstJs: number;
}

/** Per layer and head: JS between the two models' patterns on one sequence. */
export function diffPatterns(base: readonly LayerPatterns[], ft: readonly LayerPatterns[]): HeadDiff[] {
  const out: HeadDiff[] = [];
  base.forEach((pb, layer) => {
    const pf = ft[layer]!;
    const T = pb.positions;
    for (let h = 0; h < pb.heads; h++) {
      let sum = 0;
      let maxAbs = 0;
      let worstJs = -1;
      let worstPosition = 0;
      for (let t = 0; t < T; t++) {
        const o = (h * T + t) * T;
        const js = jensenShannon(pb.probs, pf.probs, o, T);
        sum += js;
        if (js > worstJs) {
          worstJs = js;
          worstPosition = t;
        }
        for (let s = 0; s < T; s++) maxAbs = Math.max(maxAbs, Math.abs(pb.probs[o + s]! - pf.probs[o + s]!));
      }
      out.push({ layer, head: h, js: sum / T, maxAbs, worstPosition, worstJs });
    }
  });
  return out;
}

export interface AttentionDiff {
  ids: readonly number[];
  heads: HeadDiff[];
  /** Both models' patterns per layer, for showing a head side by side. */
  base: LayerPatterns[];
  ft: LayerPatterns[];
}

export async function attentionDiff(pair: ModelPair, ids: readonly number[], opts: Pick<RunOptions, 'signal'> = {}): Promise<AttentionDiff> {
  checkPair(pair);
  const base = await attentionPatterns(pair.base, ids, opts.signal);
  const ft = await attentionPatterns(pair.ft, ids, opts.signal);
  return { ids, heads: diffPatterns(base, ft), base, ft };
}

/** JS per layer and head averaged over a corpus (each sample weighted by its positions). */
export async function corpusAttentionDiff(pair: ModelPair, samples: readonly (readonly number[])[], opts: Pick<RunOptions, 'signal' | 'onProgress'> = {}): Promise<HeadDiff[]> {
  checkPair(pair);
  if (samples.length === 0) throw new RangeError('the corpus holds no samples');
  let acc: HeadDiff[] | undefined;
  let positions = 0;
  for (const [i, ids] of samples.entries()) {
    opts.signal?.throwIfAborted();
    const d = (await attentionDiff(pair, ids)).heads;
    const T = ids.length;
    if (!acc) acc = d.map((h) => ({ ...h, js: h.js * T, worstPosition: h.worstPosition }));
    else {
      d.forEach((h, j) => {
        const a = acc![j]!;
        a.js += h.js * T;
        a.maxAbs = Math.max(a.maxAbs, h.maxAbs);
        if (h.worstJs > a.worstJs) {
          a.worstJs = h.worstJs;
          a.worstPosition = h.worstPosition;
        }
      });
    }
    positions += T;
    opts.onProgress?.({ stage: 'attention', done: i + 1, total: samples.length });
  }
  return acc!.map((h) => ({ ...h, js: h.js / positions }));
}

export interface HeadRecovery {
  layer: number;
  head: number;
  /** Mean over positions of KL(P_ft ‖ P_patched), and 1 − that / KL(P_ft ‖ P_base). */
  kl: number;
  recovery: number;
}

export interface HeadPatching {
  /** Mean over positions of KL(P_ft ‖ P_base): the gap a patch closes. */
  klFtBase: number;
  heads: HeadRecovery[];
}

async function meanKl(pair: ModelPair, p: Tensor, q: Tensor): Promise<number> {
  const kl = await readF32(pair.base.backend, klRows(pair.base.backend, p, q));
  let s = 0;
  for (const x of kl) s += x;
  return s / kl.length;
}

/** Head outputs z_h · W_O[:, h]ᵀ (no bias) of one layer for every head: [heads] of [1, T, d]. */
export function headOutputs(model: Transformer, resid: Tensor, layer: number): Tensor[] {
  const be = model.backend;
  const { q, k, v, params } = model.attentionInputs(resid, layer, 0);
  const z = be.attention(q, k, v, params);
  disposeAll(be, [q, k, v]);
  const { nHeads: H, headDim: hd } = params;
  const wo = model.weight(`blocks.${layer}.attn.W_O`);
  const out: Tensor[] = [];
  try {
    for (let h = 0; h < H; h++) {
      const mask = new Float32Array(H * hd);
      mask.fill(1, h * hd, (h + 1) * hd);
      const m = be.fromArray(mask, [H * hd]);
      const zh = be.mul(z, m);
      out.push(be.linear(zh, wo));
      disposeAll(be, [m, zh]);
    }
  } finally {
    be.dispose(z);
  }
  return out;
}

/** Patches each head of each layer from the fine-tune into the base and measures the recovery. */
export async function headPatching(pair: ModelPair, ids: readonly number[], opts: Pick<RunOptions, 'signal' | 'onProgress'> & { layers?: readonly number[] } = {}): Promise<HeadPatching> {
  const be = checkPair(pair);
  checkIds(pair.base, ids);
  const L = pair.base.config.nLayers;
  const layers = opts.layers ?? Array.from({ length: L }, (_, l) => l);
  const names = Array.from({ length: L }, (_, l) => hookName('resid_pre', l));
  const rb = pair.base.runWithCache([ids], names);
  const rf = pair.ft.runWithCache([ids], names);
  const held: Tensor[] = [rb.logits!, rf.logits!, ...rb.cache.values(), ...rf.cache.values()];
  try {
    const klFtBase = await meanKl(pair, rf.logits!, rb.logits!);
    const heads: HeadRecovery[] = [];
    let done = 0;
    const H = pair.base.config.nHeads;
    for (const layer of layers) {
      const cb = headOutputs(pair.base, rb.cache.get(names[layer]!)!, layer);
      const cf = headOutputs(pair.ft, rf.cache.get(names[layer]!)!, layer);
      try {
        for (let h = 0; h < H; h++) {
          opts.signal?.throwIfAborted();
          const patched = pair.base.runWithHooks([ids], {
            [hookName('attn_out', layer)]: (x) => {
              const without = be.sub(x, cb[h]!);
              const out = be.add(without, cf[h]!);
              be.dispose(without);
              return out;
            },
          })!;
          const kl = await meanKl(pair, rf.logits!, patched).finally(() => be.dispose(patched));
          heads.push({ layer, head: h, kl, recovery: klFtBase > 0 ? 1 - kl / klFtBase : NaN });
          opts.onProgress?.({ stage: 'head patching', done: ++done, total: layers.length * H });
        }
      } finally {
        disposeAll(be, [...cb, ...cf]);
      }
    }
    return { klFtBase, heads };
  } finally {
    disposeAll(be, held);
  }
}
