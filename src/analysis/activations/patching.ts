// Cross-model activation patching (CMAP) and model stitching on one prompt.
// CMAP: run one model with one hook point's activation (all positions) replaced by the other model's on
// the same tokens; recovery = 1 − KL(P_target ‖ P_patched) / KL(P_target ‖ P_source), so 1 means the
// patched run reproduces the model the activation came from.
// Stitching S_ℓ: the lower model's embedding and blocks 0..ℓ−1, then the upper model's blocks ℓ..L−1,
// final norm and unembedding (S_0 is the upper model; S_L the lower model's blocks under the upper head).
// Both run in three passes, each on one model: the fine-tune captures its activations and logits, the
// base captures its own and runs with the fine-tune's patched in, then the fine-tune runs with the
// base's. Captures wait on the host between passes, so with one model at a time (a PairedRunner in
// sequential mode) only one model is loaded, and the results are those of both models resident.
import type { Backend, Tensor } from '../../model/backend.ts';
import { hookName, type Transformer } from '../../model/transformer.ts';
import { HOOK_KINDS, type HookKind } from './differences.ts';
import { checkPairInput, withModel, type PairInput } from './passes.ts';
import { checkIds, disposeAll, klRows, readF32, type RunOptions } from './run.ts';

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

export async function activationPatching(input: PairInput, ids: readonly number[], opts: PatchingOptions = {}): Promise<PatchingResult> {
  return (await patchAndStitch(input, ids, { ...opts, stitch: [] })).patching;
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

export async function modelStitching(input: PairInput, ids: readonly number[], opts: StitchingOptions = {}): Promise<StitchingResult> {
  const lower = opts.lower ?? 'base';
  return (await patchAndStitch(input, ids, { ...opts, kinds: [], stitch: [lower] })).stitched[lower]!;
}

export interface PatchAndStitchOptions extends PatchingOptions {
  /** Stitchings to run, by their lower model. Default both. */
  stitch?: readonly ('base' | 'ft')[];
}

export interface PatchAndStitch {
  patching: PatchingResult;
  stitched: Partial<Record<'base' | 'ft', StitchingResult>>;
}

interface HostRun {
  logits: { data: Float32Array; shape: readonly number[] };
  cache: Map<string, { data: Float32Array; shape: readonly number[] }>;
}

/** Activation patching in both directions and model stitching, in three passes of one model each (see the top of the file). */
export async function patchAndStitch(input: PairInput, ids: readonly number[], opts: PatchAndStitchOptions = {}): Promise<PatchAndStitch> {
  const { backend: be, config } = checkPairInput(input);
  checkIds({ config }, ids);
  const kinds = opts.kinds ?? HOOK_KINDS;
  const stitch = opts.stitch ?? ['base', 'ft'];
  const positions = opts.positions ?? 'all';
  const lastPositionOnly = positions === 'last';
  const L = config.nLayers;
  const patchNames = kinds.flatMap((k) => Array.from({ length: L }, (_, l) => hookName(k, l)));
  const residNames = Array.from({ length: L }, (_, l) => hookName('resid_post', l));
  const namesFor = (lower: 'base' | 'ft') => [...new Set([...patchNames, ...(stitch.includes(lower) ? residNames : [])])];
  const total = 2 * kinds.length * L + stitch.length * (L + 1);
  let done = 0;
  const step = (stage: string) => opts.onProgress?.({ stage, done: ++done, total });
  const signal = opts.signal;

  /** A run with `names` captured, read back to the host. */
  const capture = async (model: Transformer, names: readonly string[]): Promise<HostRun> => {
    const r = model.runWithCache([ids], names, { lastPositionOnly });
    try {
      const cache = new Map<string, { data: Float32Array; shape: readonly number[] }>();
      for (const [name, t] of r.cache) cache.set(name, { data: await readF32(be, t, false), shape: t.shape });
      return { logits: { data: await readF32(be, r.logits!, false), shape: r.logits!.shape }, cache };
    } finally {
      disposeAll(be, [r.logits, ...r.cache.values()]);
    }
  };
  const upload = (h: { data: Float32Array; shape: readonly number[] }) => be.fromArray(h.data, h.shape);
  /** Logits of `model` with hook `name`'s activation replaced by `source`'s. */
  const patched = (model: Transformer, source: HostRun, name: string) => model.runWithHooks([ids], { [name]: () => upload(source.cache.get(name)!) }, { lastPositionOnly })!;
  const loss = (logits: Tensor) => (lastPositionOnly ? Promise.resolve(NaN) : nextTokenLoss(be, logits, ids));

  const patchedLayers = () => kinds.map((kind) => ({ kind, kl: new Float64Array(L), recovery: new Float64Array(L) }));
  const ftIntoBase: PatchedLayers[] = patchedLayers();
  const baseIntoFt: PatchedLayers[] = patchedLayers();
  let klFtBase = NaN;
  let klBaseFt = NaN;
  const stitched: PatchAndStitch['stitched'] = {};

  /** `target` run with each patch from `source`; `reference` the logits of the model the patches came from. */
  const patchAll = async (target: Transformer, source: HostRun, reference: Tensor, gap: number, out: PatchedLayers[]) => {
    for (const [ki, kind] of kinds.entries()) {
      for (let l = 0; l < L; l++) {
        signal?.throwIfAborted();
        const logits = patched(target, source, hookName(kind, l));
        try {
          const kl = await meanKl(be, reference, logits);
          out[ki]!.kl[l] = kl;
          out[ki]!.recovery[l] = 1 - kl / gap;
        } finally {
          be.dispose(logits);
        }
        step('patch');
      }
    }
  };
  /** S_ℓ for ℓ = 0..L with `upper` loaded and the lower model's run on the host. */
  const stitchAll = async (lowerName: 'base' | 'ft', upper: Transformer, lowerRun: HostRun, lb: Tensor, lf: Tensor) => {
    const upperLogits = lowerName === 'base' ? lf : lb;
    const out = { klFromFt: new Float64Array(L + 1), klFromBase: new Float64Array(L + 1), loss: new Float64Array(L + 1) };
    for (let l = 0; l <= L; l++) {
      signal?.throwIfAborted();
      const name = residNames[l - 1];
      const logits = name === undefined ? upperLogits : patched(upper, lowerRun, name);
      try {
        out.klFromFt[l] = await meanKl(be, lf, logits);
        out.klFromBase[l] = await meanKl(be, lb, logits);
        out.loss[l] = await loss(logits);
      } finally {
        if (logits !== upperLogits) be.dispose(logits);
      }
      step('stitch');
    }
    stitched[lowerName] = { ids, lower: lowerName, positions, ...out, lossBase: await loss(lb), lossFt: await loss(lf) };
  };

  signal?.throwIfAborted();
  // 1. The fine-tune's activations and logits.
  const ftRun = await withModel(input, 'ft', (ft) => capture(ft, namesFor('ft')), signal);
  // 2. The base: its own run, then the fine-tune's activations patched in, and stitched under the fine-tune's lower blocks.
  const baseRun = await withModel(
    input,
    'base',
    async (base) => {
      const run = await capture(base, namesFor('base'));
      const lb = upload(run.logits);
      const lf = upload(ftRun.logits);
      try {
        klFtBase = await meanKl(be, lf, lb);
        klBaseFt = await meanKl(be, lb, lf);
        await patchAll(base, ftRun, lf, klFtBase, ftIntoBase);
        if (stitch.includes('ft')) await stitchAll('ft', base, ftRun, lb, lf);
      } finally {
        disposeAll(be, [lb, lf]);
      }
      return run;
    },
    signal,
  );
  // 3. The fine-tune with the base's activations patched in, and stitched over the base's lower blocks.
  if (kinds.length > 0 || stitch.includes('base')) {
    await withModel(
      input,
      'ft',
      async (ft) => {
        const lb = upload(baseRun.logits);
        const lf = upload(ftRun.logits);
        try {
          await patchAll(ft, baseRun, lb, klBaseFt, baseIntoFt);
          if (stitch.includes('base')) await stitchAll('base', ft, baseRun, lb, lf);
        } finally {
          disposeAll(be, [lb, lf]);
        }
      },
      signal,
    );
  }
  return { patching: { ids, layers: L, positions, klFtBase, klBaseFt, ftIntoBase, baseIntoFt }, stitched };
}
