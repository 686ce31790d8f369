// The activation jobs, as the analysis worker runs them: the pair is loaded once (an adapter
// is merged into the base), then each request (lens, δ per token, ADL, steering, patching) runs on it.
// When the memory plan holds one model at a time, nothing stays loaded: the lens, δ per token, ADL,
// steering and patching load each model in turn (the same numbers); the other views need both at once
// and say so.
// Results carry the text of every token id they name, so the page never needs the tokenizer.
import { activationDifferenceLens, adlDifferences, DEFAULT_ADL_POSITIONS, IDENTITY_PROMPTS, steer, steeringVector, type AdlDifference, type TokenProb } from '../analysis/activations/adl.ts';
import { corpusLines, tokenizeCorpus, type TokenizedCorpus } from '../analysis/activations/corpus.ts';
import { promptDifferences, type HookKind } from '../analysis/activations/differences.ts';
import { differentialLogitLens, type LensTop } from '../analysis/activations/lens.ts';
import { patchAndStitch, type PatchingResult, type PositionsCompared, type StitchingResult } from '../analysis/activations/patching.ts';
import { bothModels } from '../analysis/activations/passes.ts';
import { checkPairConfigs, type Progress } from '../analysis/activations/run.ts';
import { amplify, type AmplifiedSample, type AmplifyMode } from '../analysis/amplify/amplify.ts';
import type { CrosscoderEngine } from '../analysis/crosscoder/engine.ts';
import { attentionDiff, corpusAttentionDiff, headPatching, type HeadDiff, type HeadPatching, type LayerPatterns } from '../analysis/attention/attention.ts';
import { corpusKl, type CorpusKlResult } from '../analysis/logit-diff/kl.ts';
import { diffMining, type MiningResult } from '../analysis/logit-diff/mine.ts';
import { activationDiffPca, type PcaHookKind, type PcaResult } from '../analysis/pca/pca.ts';
import { FormatError } from '../io/source.ts';
import type { Tokenizer } from '../io/tokenizer.ts';
import type { Backend } from '../model/backend.ts';
import { PairedRunner } from '../model/paired.ts';
import type { JobContext } from './context.ts';
import { diffSaeJob, type DiffSaeOutcome, type DiffSaeSettings } from './diff-sae.ts';
import { needTokenizer, openPair, type OpenedPair, type PairFiles } from './pair.ts';

export type { PairFiles } from './pair.ts';

/** Longer prompts make the lens grid unreadable and patching slow; the views say so instead. */
export const MAX_PROMPT_TOKENS = 128;
/** The ADL needs positions 0–4, and the steering norm positions ≥ 5. */
export const MIN_TOKENS_PER_SAMPLE = 8;


/** A corpus by its text; `key` names it in caches (name, length and a hash of the text). */
export interface CorpusRef {
  key: string;
  name: string;
  text: string;
}

export interface CorpusSettings {
  corpus: CorpusRef;
  /** At most this many samples (lines long enough), from the top of the file. */
  samples: number;
  tokensPerSample: number;
}

export type ActivationRequest =
  | { task: 'lens'; prompt: string; top: number }
  | { task: 'deltas'; prompt: string; kind: HookKind }
  | ({ task: 'adl'; layer: number; top: number } & CorpusSettings)
  | ({ task: 'steer'; layer: number; position: number; prompt: string; strengths: number[]; maxNew: number } & CorpusSettings)
  | { task: 'patching'; prompt: string; positions: PositionsCompared }
  | ({ task: 'mine'; k: number; top: number; topics: number } & CorpusSettings)
  | ({ task: 'kl'; top: number } & CorpusSettings)
  | ({ task: 'pca'; layer: number; hook: PcaHookKind; components: number } & CorpusSettings)
  | ({ task: 'diff-sae' } & DiffSaeSettings & CorpusSettings)
  | { task: 'amplify'; prompt: string; alphas: number[]; mode: AmplifyMode; maxNew: number; samples: number; seed: number; temperature: number }
  | ({ task: 'attention'; prompt: string; overCorpus: boolean } & CorpusSettings);

export type ActivationTask = ActivationRequest['task'];

/** Token id → its text, for every id a result names. */
export type TokenTexts = Record<number, string>;

export interface LensResult {
  task: 'lens';
  ids: number[];
  layers: number;
  positions: number;
  /** Rows are layer-major (row = layer · positions + position), k tokens each; layer ℓ reads blocks.ℓ.hook_resid_post. */
  base: LensTop;
  ft: LensTop;
  kl: Float64Array;
  direction: 'KL(P_ft || P_base)';
  tokens: TokenTexts;
}

export interface DeltasResult {
  task: 'deltas';
  ids: number[];
  kind: HookKind;
  layers: number;
  positions: number;
  /** Layer-major [layers · positions]. */
  norm: Float32Array;
  relative: Float32Array;
  cosine: Float32Array;
  tokens: TokenTexts;
}

export interface AdlPositionResult {
  position: number;
  /** ‖δ_p‖ and the mean cosine of each sample's δ with δ_p. */
  norm: number;
  consistency: number;
  consistencyPerSample: Float32Array;
  top: TokenProb[];
  topNegative: TokenProb[];
  patchscope: { scales: { scale: number; top: TokenProb[] }[]; stable: { id: number; scales: number; prob: number }[] } | null;
}

export interface AdlResult {
  task: 'adl';
  layer: number;
  samples: number;
  tooShort: number;
  tokensPerSample: number;
  /** Mean ‖h_ft‖ at positions ≥ 5, the Patchscope's latent norm; null when samples are shorter. */
  ftNorm: number | null;
  positions: AdlPositionResult[];
  tokens: TokenTexts;
}

export interface SteerResult {
  task: 'steer';
  layer: number;
  position: number;
  /** ‖v‖ = mean ‖h_ft‖: strength s adds s·v. */
  vectorNorm: number;
  prompt: string;
  generations: { strength: number; base: string; ft: string }[];
}

export interface PatchResult {
  task: 'patching';
  ids: number[];
  patching: PatchingResult;
  /** Base blocks below ℓ, fine-tuned above; and the reverse. */
  baseBelow: StitchingResult;
  ftBelow: StitchingResult;
  tokens: TokenTexts;
}

/** The corpus methods' results name places (sample, position): the samples' token ids come along to show them. */
interface CorpusPlaces {
  corpusSamples: number[][];
  tokens: TokenTexts;
}

export type MineTaskResult = { task: 'mine'; result: MiningResult } & CorpusPlaces;
export type KlTaskResult = { task: 'kl'; result: CorpusKlResult } & CorpusPlaces;
/** The components without their d-dimensional directions (not shown; a worker need not send them). */
export type PcaTaskResult = { task: 'pca'; result: Omit<PcaResult, 'components'> & { components: Omit<PcaResult['components'][number], 'direction'>[] } } & CorpusPlaces;

export type DiffSaeTaskResult = { task: 'diff-sae'; result: DiffSaeOutcome } & CorpusPlaces;

export interface AmplifyResult {
  task: 'amplify';
  prompt: string;
  samples: (AmplifiedSample & { text: string })[];
}

export interface AttentionResult {
  task: 'attention';
  ids: number[];
  /** JS per head, on the prompt or (overCorpus) averaged over the corpus samples. */
  heads: HeadDiff[];
  corpusSamples: number | null;
  /** Both models' patterns on the prompt, and head patching on it. */
  base: LayerPatterns[];
  ft: LayerPatterns[];
  patching: HeadPatching;
  tokens: TokenTexts;
}

export type ActivationResult = LensResult | DeltasResult | AdlResult | SteerResult | PatchResult | MineTaskResult | KlTaskResult | PcaTaskResult | DiffSaeTaskResult | AmplifyResult | AttentionResult;
export type ResultFor<T extends ActivationTask> = Extract<ActivationResult, { task: T }>;

export interface PairInfo {
  layers: number;
  dModel: number;
  vocab: number;
  /** The fine-tune is a LoRA adapter merged into the base. */
  adapter: boolean;
  /** The backend the pair lives on, in words. */
  backend: string;
  /** How long loading both models took; absent when they load one at a time, for each job. */
  loadMs?: number;
}

export interface LoadedPair {
  /** Both models loaded, or one at a time, as the memory plan decided. */
  runner: PairedRunner;
  tokenizer: Tokenizer;
  info: PairInfo;
  /** Tokenized corpora and ADL differences, kept for the steering of an ADL already run. */
  corpora: Map<string, TokenizedCorpus>;
  differences: Map<string, AdlDifference>;
}

export interface TaskOptions {
  signal?: AbortSignal;
  onProgress?: (p: Progress) => void;
  /** The diff-SAE's training engine for a width and dictionary size (the CPU engine when absent or undefined). */
  makeEngine?: (d: number, D: number) => Promise<(CrosscoderEngine & { dispose?(): void }) | undefined>;
}

const now = () => performance.now();

const LOADING = { base: 'loading the base model', ft: 'loading the fine-tuned model' } as const;

/**
 * The pair on the context's backend: both models loaded now (an adapter is merged into a second copy of
 * the base), or, one model at a time, each loaded when a job needs it. Progress goes to `ctx.onProgress`
 * as it is when a model loads (the worker points it at the request running).
 */
export async function loadActivationPair(opened: OpenedPair, ctx: JobContext, mode: 'resident' | 'sequential' = 'resident'): Promise<LoadedPair> {
  const t0 = now();
  const tokenizer = needTokenizer(opened, 'the activation views tokenize text');
  const sources = opened.sources(ctx.backend, { onProgress: (side, done, total) => ctx.onProgress?.({ stage: side === 'ft' && opened.adapter ? 'merging the adapter into the base' : LOADING[side], done, total, label: side }) });
  checkPairConfigs(sources.base.config, sources.ft.config);
  const runner = new PairedRunner(sources.base, sources.ft, ctx.backend, { mode, ...(ctx.signal ? { signal: ctx.signal } : {}) });
  if (mode === 'resident') await runner.models();
  const c = sources.base.config;
  return {
    runner,
    tokenizer,
    info: { layers: c.nLayers, dModel: c.dModel, vocab: c.vocab, adapter: opened.adapter !== undefined, backend: ctx.backendName ?? 'unnamed backend', ...(mode === 'resident' ? { loadMs: now() - t0 } : {}) },
    corpora: new Map(),
    differences: new Map(),
  };
}

/** Opens the pair and loads both models onto `backend`, or none yet with mode 'sequential' (openPair, then loadActivationPair). */
export async function openActivationPair(files: PairFiles, backend: Backend, backendName: string, opts: TaskOptions & { mode?: 'resident' | 'sequential' } = {}): Promise<LoadedPair> {
  const { mode, ...ctx } = opts;
  return loadActivationPair(await openPair(files), { backend, backendName, ...ctx }, mode);
}

function tokenTexts(tokenizer: Tokenizer, ids: Iterable<number>): TokenTexts {
  const out: TokenTexts = {};
  for (const id of ids) {
    if (id in out || id < 0) continue;
    try {
      out[id] = tokenizer.decodeToken(id);
    } catch {
      // Models may pad their vocabulary past the tokenizer's: such ids have no text.
      out[id] = `⟨${id}⟩`;
    }
  }
  return out;
}

export function promptTokens(tokenizer: Tokenizer, prompt: string): number[] {
  const ids = tokenizer.encode(prompt);
  if (ids.length === 0) throw new RangeError('the prompt gives no tokens');
  if (ids.length > MAX_PROMPT_TOKENS) throw new RangeError(`the prompt has ${ids.length} tokens; these views take at most ${MAX_PROMPT_TOKENS}`);
  return ids;
}

function corpusSamples(loaded: LoadedPair, s: CorpusSettings): TokenizedCorpus {
  if (!Number.isInteger(s.tokensPerSample) || s.tokensPerSample < MIN_TOKENS_PER_SAMPLE) throw new RangeError(`tokens per sample must be an integer ≥ ${MIN_TOKENS_PER_SAMPLE}, got ${s.tokensPerSample}`);
  if (!Number.isInteger(s.samples) || s.samples < 1) throw new RangeError(`samples must be a positive integer, got ${s.samples}`);
  const key = JSON.stringify([s.corpus.key, s.samples, s.tokensPerSample]);
  let corpus = loaded.corpora.get(key);
  if (!corpus) {
    const lines = corpusLines(s.corpus.text);
    if (lines.length === 0) throw new FormatError(s.corpus.name, 'has no non-empty lines: a corpus is a text file with one sample per line');
    corpus = tokenizeCorpus(loaded.tokenizer, lines, { maxSamples: s.samples, tokensPerSample: s.tokensPerSample });
    if (corpus.samples.length === 0) throw new FormatError(s.corpus.name, `no line has ${s.tokensPerSample} tokens: lower the tokens per sample`);
    loaded.corpora.set(key, corpus);
  }
  return corpus;
}

const differenceKey = (s: CorpusSettings, layer: number) => JSON.stringify([s.corpus.key, s.samples, s.tokensPerSample, layer]);

export async function runActivationTask(loaded: LoadedPair, req: ActivationRequest, opts: TaskOptions = {}): Promise<ActivationResult> {
  const { runner, tokenizer } = loaded;
  const both = (what: string) => bothModels(runner, what);
  const run = { ...(opts.signal ? { signal: opts.signal } : {}), ...(opts.onProgress ? { onProgress: opts.onProgress } : {}) };
  switch (req.task) {
    case 'lens': {
      const ids = promptTokens(tokenizer, req.prompt);
      const r = await differentialLogitLens(runner, ids, { k: req.top, ...run });
      return { task: 'lens', ids, layers: r.layers, positions: r.positions, base: r.base, ft: r.ft, kl: r.kl, direction: r.direction, tokens: tokenTexts(tokenizer, [...ids, ...r.base.ids, ...r.ft.ids]) };
    }
    case 'deltas': {
      const ids = promptTokens(tokenizer, req.prompt);
      const r = await promptDifferences(runner, ids, { kind: req.kind, ...(opts.signal ? { signal: opts.signal } : {}) });
      return { task: 'deltas', ids, kind: r.kind, layers: r.layers, positions: r.positions, norm: r.norm, relative: r.relative, cosine: r.cosine, tokens: tokenTexts(tokenizer, ids) };
    }
    case 'adl': {
      const corpus = corpusSamples(loaded, req);
      const prompts = IDENTITY_PROMPTS.map((p) => tokenizer.encode(p));
      const r = await activationDifferenceLens(runner, corpus.samples, { layer: req.layer, positions: DEFAULT_ADL_POSITIONS, top: req.top, patchscope: { prompts }, ...run });
      loaded.differences.set(differenceKey(req, r.layer), r.difference);
      const positions = r.positions.map(({ patchscope, ...p }, pi): AdlPositionResult => ({ ...p, consistencyPerSample: r.difference.consistency[pi]!, patchscope: patchscope ?? null }));
      const ids = positions.flatMap((p) => [...p.top, ...p.topNegative, ...(p.patchscope?.stable ?? []), ...(p.patchscope?.scales.flatMap((s) => s.top) ?? [])].map((t) => t.id));
      return { task: 'adl', layer: r.layer, samples: r.samples, tooShort: corpus.tooShort, tokensPerSample: corpus.tokensPerSample, ftNorm: r.ftNorm ?? null, positions, tokens: tokenTexts(tokenizer, ids) };
    }
    case 'steer': {
      const promptIds = promptTokens(tokenizer, req.prompt);
      const key = differenceKey(req, req.layer);
      let diff = loaded.differences.get(key);
      if (!diff) {
        diff = await adlDifferences(runner, corpusSamples(loaded, req).samples, { layer: req.layer, positions: DEFAULT_ADL_POSITIONS, ...run });
        loaded.differences.set(key, diff);
      }
      const pi = diff.positions.indexOf(req.position);
      if (pi < 0) throw new RangeError(`position ${req.position} is not one of the ADL positions ${diff.positions.join(', ')}`);
      if (diff.ftNorm === undefined) throw new RangeError(`the steering norm is the mean ‖h_ft‖ at positions ≥ 5: samples of ${req.tokensPerSample} tokens are too short`);
      const v = steeringVector(diff.delta[pi]!, diff.ftNorm);
      const stop = tokenizer.eosId === undefined ? [] : [tokenizer.eosId];
      const gens = await steer(runner, v, { layer: req.layer, strengths: req.strengths, prompt: promptIds, maxNewTokens: req.maxNew, stop, ...run });
      const text = (out: number[]) => tokenizer.decode(out.filter((id) => !stop.includes(id)));
      return {
        task: 'steer',
        layer: req.layer,
        position: req.position,
        vectorNorm: diff.ftNorm,
        prompt: req.prompt,
        generations: gens.map((g) => ({ strength: g.strength, base: text(g.base), ft: text(g.ft) })),
      };
    }
    case 'patching': {
      const ids = promptTokens(tokenizer, req.prompt);
      const r = await patchAndStitch(runner, ids, { positions: req.positions, ...run });
      return { task: 'patching', ids, patching: r.patching, baseBelow: r.stitched.base!, ftBelow: r.stitched.ft!, tokens: tokenTexts(tokenizer, ids) };
    }
    case 'mine': {
      const corpus = corpusSamples(loaded, req);
      const result = await diffMining(await both('diff mining'), corpus.samples, { k: req.k, top: req.top, topics: req.topics, ...run });
      const ids = [...result.tokens.map((t) => t.id), ...result.topics.flatMap((t) => t.tokens.map((x) => x.id))];
      return { task: 'mine', result, ...places(tokenizer, corpus, ids) };
    }
    case 'kl': {
      const corpus = corpusSamples(loaded, req);
      const result = await corpusKl(await both('the corpus KL'), corpus.samples, { top: req.top, ...run });
      const ids = result.topContexts.flatMap((c) => [...c.baseTop, ...c.ftTop].map((t) => t.id));
      return { task: 'kl', result, ...places(tokenizer, corpus, ids) };
    }
    case 'pca': {
      const corpus = corpusSamples(loaded, req);
      const r = await activationDiffPca(await both('the PCA of activation differences'), corpus.samples, { layer: req.layer, kind: req.hook, components: req.components, ...run });
      const components = r.components.map(({ direction: _, ...c }) => c);
      const ids = components.flatMap((c) => [...c.positiveTokens, ...c.negativeTokens].map((t) => t.id));
      return { task: 'pca', result: { ...r, components }, ...places(tokenizer, corpus, ids) };
    }
    case 'diff-sae': {
      const corpus = corpusSamples(loaded, req);
      const { task: _, corpus: _c, samples: _s, tokensPerSample: _t, ...settings } = req;
      const engine = await opts.makeEngine?.(loaded.info.dModel, req.dict);
      try {
        const result = await diffSaeJob(await both('the diff-SAE'), corpus.samples, settings, { ...run, ...(engine ? { engine } : {}) });
        const ids = result.latents.flatMap((l) => [...l.positive, ...l.negative].map((t) => t.id));
        return { task: 'diff-sae', result, ...places(tokenizer, corpus, ids) };
      } finally {
        engine?.dispose?.();
      }
    }
    case 'amplify': {
      const ids = promptTokens(tokenizer, req.prompt);
      const stop = tokenizer.eosId === undefined ? [] : [tokenizer.eosId];
      const samples = await amplify(await both('amplification'), ids, { alphas: req.alphas, mode: req.mode, maxNew: req.maxNew, samples: req.samples, seed: req.seed, temperature: req.temperature, stop, ...run });
      return { task: 'amplify', prompt: req.prompt, samples: samples.map((x) => ({ ...x, text: tokenizer.decode(x.ids.filter((id) => !stop.includes(id))) })) };
    }
    case 'attention': {
      const ids = promptTokens(tokenizer, req.prompt);
      const pair = await both('the attention view');
      const onPrompt = await attentionDiff(pair, ids, run);
      let heads = onPrompt.heads;
      let corpusCount: number | null = null;
      if (req.overCorpus) {
        const corpus = corpusSamples(loaded, req);
        heads = await corpusAttentionDiff(pair, corpus.samples, run);
        corpusCount = corpus.samples.length;
      }
      const patching = await headPatching(pair, ids, run);
      return { task: 'attention', ids, heads, corpusSamples: corpusCount, base: onPrompt.base, ft: onPrompt.ft, patching, tokens: tokenTexts(tokenizer, ids) };
    }
  }
}

/** The corpus samples a result's places point into, and the text of their tokens and of `ids`. */
function places(tokenizer: Tokenizer, corpus: TokenizedCorpus, ids: readonly number[]): CorpusPlaces {
  const corpusSamples = corpus.samples.map((s) => [...s]);
  return { corpusSamples, tokens: tokenTexts(tokenizer, [...ids, ...corpusSamples.flat()]) };
}
