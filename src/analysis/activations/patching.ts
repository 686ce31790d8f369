// Cross-model activation patching (CMAP) and model stitching on one prompt.
// CMAP: run one model with one hook point's activation (all positions) replaced by the other model's on
// the same tokens; recovery = 1 − KL(P_target ‖ P_patched) / KL(P_target ‖ P_source), so 1 means the
// patched run reproduces the model the activation came from.
// Stitching S_ℓ: the lower model's embedding and blocks 0..ℓ−1, then the upper model's blocks ℓ..L−1,
// final norm and unembedding (S_0 is the upper model; S_L the lower model's blocks under the upper head).
import type { Backend, Tensor } from '../../model/backend.ts';
import { hookName, type Transformer } from '../../model/transformer.ts';
import { HOOK_KINDS, type HookKind } from './differences.ts';
import { checkIds, checkPair, disposeAll, klRows, readF32, type ModelPair, type RunOptions } from './run.ts';

export type PositionsCompared = 'all' | 'last';

async function meanKl(be: Backend, p: Tensor, q: Tensor): Promise<number> {
  const kl = await readF32(be, klRows(be, p, q));
  let s = 0;
  for (const x of kl) s += x;
  return s / kl.length;
}

/** Mean next-token cross-entropy of logits [1, T, V] on ids (positions 0..T−2 predict 1..T−1). */
async function nextTokenLoss(be: Backend, logits: Tensor, ids: readonly number[]): Promise<number> {
  const T = ids.length;
  const V = logits.shape[logits.shape.length - 1]!;
  if (T < 2 || logits.shape[1] !== T) return NaN;
  const ls = be.logSoftmax(logits);
  const flat = be.reshape(ls, [T * V, 1]);
  const at = Int32Array.from({ length: T - 1 }, (_, t) => t * V + ids[t + 1]!);
  const picked = await readF32(be, be.embedding(flat, at, [T - 1]));
  disposeAll(be, [ls, flat]);
  let s = 0;
  for (const x of picked) s -= x;
  return s / (T - 1);
}

export interface PatchingOptions extends Pick<RunOptions, 'signal' | 'onProgress'> {
  kinds?: readonly HookKind[];
  /** Compare the distributions at every position (mean KL) or at the last one. Default 'all'. */
  positions?: PositionsCompared;
}

export interface PatchedLayers {
  kind: HookKind;
  /** Per layer: KL(P_target ‖ P_patched) and the recovery. */
  kl: Float64Array;
  recovery: Float64Array;
}

export interface PatchingResult {
  ids: readonly number[];
  layers: number;
  positions: PositionsCompared;
  /** KL(P_ft ‖ P_base) and KL(P_base ‖ P_ft): the gaps the two directions close. */
  klFtBase: number;
  klBaseFt: number;
  /** The base model run with the fine-tuned activation (target ft). */
  ftIntoBase: PatchedLayers[];
  /** The fine-tuned model run with the base activation (target base). */
  baseIntoFt: PatchedLayers[];
}

export async function activationPatching(pair: ModelPair, ids: readonly number[], opts: PatchingOptions = {}): Promise<PatchingResult> {
  const be = checkPair(pair);
  checkIds(pair.base, ids);
  const kinds = opts.kinds ?? HOOK_KINDS;
  const positions = opts.positions ?? 'all';
  const lastPositionOnly = positions === 'last';
  const L = pair.base.config.nLayers;
  const names = kinds.flatMap((k) => Array.from({ length: L }, (_, l) => hookName(k, l)));
  opts.signal?.throwIfAborted();
  const rb = pair.base.runWithCache([ids], names, { lastPositionOnly });
  const rf = pair.ft.runWithCache([ids], names, { lastPositionOnly });
  const held = [rb.logits, rf.logits, ...rb.cache.values(), ...rf.cache.values()];
  try {
    const lb = rb.logits!;
    const lf = rf.logits!;
    const klFtBase = await meanKl(be, lf, lb);
    const klBaseFt = await meanKl(be, lb, lf);
    const patchInto = async (target: Transformer, source: Map<string, Tensor>, reference: Tensor, gap: number, kind: HookKind, layer: number) => {
      const name = hookName(kind, layer);
      const logits = target.runWithHooks([ids], { [name]: () => be.scale(source.get(name)!, 1) }, { lastPositionOnly })!;
      try {
        const kl = await meanKl(be, reference, logits);
        return { kl, recovery: 1 - kl / gap };
      } finally {
        be.dispose(logits);
      }
    };
    const ftIntoBase: PatchedLayers[] = [];
    const baseIntoFt: PatchedLayers[] = [];
    let done = 0;
    for (const kind of kinds) {
      const a = { kind, kl: new Float64Array(L), recovery: new Float64Array(L) };
      const b = { kind, kl: new Float64Array(L), recovery: new Float64Array(L) };
      for (let l = 0; l < L; l++) {
        opts.signal?.throwIfAborted();
        const x = await patchInto(pair.base, rf.cache, lf, klFtBase, kind, l);
        a.kl[l] = x.kl;
        a.recovery[l] = x.recovery;
        const y = await patchInto(pair.ft, rb.cache, lb, klBaseFt, kind, l);
        b.kl[l] = y.kl;
        b.recovery[l] = y.recovery;
        opts.onProgress?.({ stage: 'patch', done: ++done, total: kinds.length * L });
      }
      ftIntoBase.push(a);
      baseIntoFt.push(b);
    }
    return { ids, layers: L, positions, klFtBase, klBaseFt, ftIntoBase, baseIntoFt };
  } finally {
    disposeAll(be, held);
  }
}

export interface StitchingOptions extends Pick<RunOptions, 'signal' | 'onProgress'> {
  /** The model that provides the embedding and the first ℓ blocks. Default 'base'. */
  lower?: 'base' | 'ft';
  positions?: PositionsCompared;
}

export interface StitchingResult {
  ids: readonly number[];
  lower: 'base' | 'ft';
  positions: PositionsCompared;
  /** Index ℓ = 0..L: KL(P_ft ‖ P_S_ℓ), KL(P_base ‖ P_S_ℓ), next-token loss of S_ℓ (NaN when positions is 'last' or one token). */
  klFromFt: Float64Array;
  klFromBase: Float64Array;
  loss: Float64Array;
  lossBase: number;
  lossFt: number;
}

export async function modelStitching(pair: ModelPair, ids: readonly number[], opts: StitchingOptions = {}): Promise<StitchingResult> {
  const be = checkPair(pair);
  checkIds(pair.base, ids);
  const lowerName = opts.lower ?? 'base';
  const positions = opts.positions ?? 'all';
  const lastPositionOnly = positions === 'last';
  const [lower, upper] = lowerName === 'base' ? [pair.base, pair.ft] : [pair.ft, pair.base];
  const L = pair.base.config.nLayers;
  const names = Array.from({ length: L }, (_, l) => hookName('resid_post', l));
  opts.signal?.throwIfAborted();
  const rl = lower.runWithCache([ids], names, { lastPositionOnly });
  const upperLogits = upper.runWithHooks([ids], {}, { lastPositionOnly })!;
  const [lb, lf] = lowerName === 'base' ? [rl.logits!, upperLogits] : [upperLogits, rl.logits!];
  const held = [rl.logits, upperLogits, ...rl.cache.values()];
  const loss = (logits: Tensor) => (lastPositionOnly ? Promise.resolve(NaN) : nextTokenLoss(be, logits, ids));
  try {
    const out = { klFromFt: new Float64Array(L + 1), klFromBase: new Float64Array(L + 1), loss: new Float64Array(L + 1) };
    for (let l = 0; l <= L; l++) {
      opts.signal?.throwIfAborted();
      const name = names[l - 1];
      const logits = name === undefined ? upperLogits : upper.runWithHooks([ids], { [name]: () => be.scale(rl.cache.get(name)!, 1) }, { lastPositionOnly })!;
      try {
        out.klFromFt[l] = await meanKl(be, lf, logits);
        out.klFromBase[l] = await meanKl(be, lb, logits);
        out.loss[l] = await loss(logits);
      } finally {
        if (logits !== upperLogits) be.dispose(logits);
      }
      opts.onProgress?.({ stage: 'stitch', done: l + 1, total: L + 1 });
    }
    return { ids, lower: lowerName, positions, ...out, lossBase: await loss(lb), lossFt: await loss(lf) };
  } finally {
    disposeAll(be, held);
  }
}
