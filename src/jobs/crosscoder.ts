// The crosscoder jobs, as the analysis worker runs them: the pair is opened
// once and kept; paired activations are collected over a corpus; a BatchTopK crosscoder is trained on
// them (or read from a file); its latents are analysed; latent pages and steering are answered from
// what the analysis kept. Everything sent to the page carries token text, never token ids alone.
import { collectPairedActivations, shuffledBatches, tokenizeCorpus, type PairedActivations } from '../analysis/crosscoder/collect.ts';
import type { CrosscoderEngine } from '../analysis/crosscoder/engine.ts';
import { createInference } from '../analysis/crosscoder/inference.ts';
import { createLatentStats, decoderVector, logitEffects, type DensityHistogram, type LatentClass, type LatentReport } from '../analysis/crosscoder/latents.ts';
import type { CrosscoderModel } from '../analysis/crosscoder/model.ts';
import type { SparseCode } from '../analysis/crosscoder/select.ts';
import { createTrainer, train, type BatchSource, type TrainRunResult, type Trainer } from '../analysis/crosscoder/trainer.ts';
import { steer } from '../analysis/activations/adl.ts';
import { FormatError } from '../io/source.ts';
import type { Tokenizer } from '../io/tokenizer.ts';
import type { Backend } from '../model/backend.ts';
import { PairedRunner } from '../model/paired.ts';
import type { JobContext } from './context.ts';
import { needTokenizer, openPair, type OpenedPair, type PairFiles } from './pair.ts';

export interface CorpusText {
  /** Names the corpus in caches: its name, length and a hash of the text. */
  key: string;
  name: string;
  text: string;
}

export interface CollectRequest {
  corpus: CorpusText;
  /** The first n non-empty lines. */
  samples: number;
  tokensPerSample: number;
  layer: number;
}

export interface TrainSettings {
  /** Dictionary size D. */
  dict: number;
  k: number;
  steps: number;
  lr: number;
  /** Tokens per training batch. */
  batch: number;
  auxAlpha: number;
  seed: number;
}

export interface StepPoint {
  step: number;
  loss: number;
  fvu: number;
  dead: number;
}

export const LATENT_CLASSES = ['ft-only', 'base-only', 'shared', 'other'] as const satisfies readonly LatentClass[];

/** One row per latent, as parallel arrays (a dictionary can have tens of thousands of latents). */
export interface LatentTable {
  ratio: Float32Array;
  frequency: Float32Array;
  maxActivation: Float32Array;
  /** Latent Scaling with the fine-tune's decoder direction (ν = β_base / β_ft) and with the base's (ν = β_ft / β_base). */
  nuErrorFt: Float32Array;
  nuReconFt: Float32Array;
  nuErrorBase: Float32Array;
  nuReconBase: Float32Array;
  /** 1: ft-specific (r < 0.1, both ν < 0.3 with the ft direction); 2: base-specific; 0: neither. */
  specific: Uint8Array;
  /** Text of the token at the peak of each top context, most active first, without repeats. */
  topTokens: string[][];
}

export interface CrosscoderSummary {
  source: { kind: 'trained' | 'file'; name: string };
  d: number;
  D: number;
  k: number;
  activation: CrosscoderModel['activation'];
  /** Inference threshold θ, or −1 when the crosscoder has none (BatchTopK over each chunk is used instead). */
  threshold: number;
  layer: number;
  hook: string;
  /** Steps the crosscoder was trained for (as its file says, for a loaded one), or null when unknown. */
  steps: number | null;
  tokens: number;
  samples: number;
  /** Fraction of variance unexplained over the analysed tokens, both models. */
  fvu: number;
  /** Mean latents active per token. */
  l0: number;
  latents: LatentTable;
  density: DensityHistogram;
  classes: Record<LatentClass, number>;
  /** Latents that never fired on the analysed tokens. */
  dead: number;
  ms: number;
}

export interface ContextOut {
  sample: number;
  maxActivation: number;
  /** Every token of the sample, as text. */
  tokens: string[];
  /** The latent's activation at each position (0 where it is not active). */
  acts: number[];
}

export interface TokenEffect {
  token: string;
  value: number;
}

export interface LatentDetail {
  id: number;
  contexts: ContextOut[];
  /** Histogram of the latent's non-zero activations. */
  histogram: { edges: number[]; counts: number[] };
  /** W_U · d_j through the fine-tuned model's final-norm gain and unembedding, for each model's decoder vector. */
  logits: Record<'ft' | 'base', { positive: TokenEffect[]; negative: TokenEffect[] }>;
}

export interface SteerRequest {
  latent: number;
  prompt: string;
  /** Multiples of the mean ‖h_ft‖ at the layer: strength s adds s · mean‖h_ft‖ · d̂_j^ft. */
  strengths: number[];
  maxNew: number;
}

export interface SteerOut {
  latent: number;
  layer: number;
  prompt: string;
  /** mean ‖h_ft‖ over the analysed tokens: the length of the vector at strength 1. */
  norm: number;
  generations: { strength: number; base: string; ft: string }[];
}

export interface PairInfo {
  layers: number;
  dModel: number;
  vocab: number;
  backend: string;
}

export interface CrosscoderPair {
  runner: PairedRunner;
  tokenizer: Tokenizer;
  info: PairInfo;
}

export interface Progress {
  stage: 'loading' | 'activations' | 'training' | 'analysing' | 'steering';
  done: number;
  total: number;
  /** What is loading ("base", "ft"). */
  label?: string;
}

export interface RunOptions {
  signal?: AbortSignal;
  onProgress?: (p: Progress) => void;
}

/** Sources of both models of an opened pair (they load on first use and stay), paired for activation collection. */
export function crosscoderPair(opened: OpenedPair, ctx: JobContext<Progress> & { memoryBudgetBytes?: number }): CrosscoderPair {
  const tokenizer = needTokenizer(opened, 'crosscoders are trained on a tokenized corpus');
  const { base, ft } = opened.sources(ctx.backend, { onProgress: (label, done, total) => ctx.onProgress?.({ stage: 'loading', done, total: total || 1, label }) });
  const c = base.config;
  const f = ft.config;
  if (c.dModel !== f.dModel || c.nLayers !== f.nLayers || c.vocab !== f.vocab) {
    throw new FormatError(opened.labels.ft, `differs from the base in width, depth or vocabulary (${f.dModel}×${f.nLayers}, ${f.vocab} tokens vs ${c.dModel}×${c.nLayers}, ${c.vocab}): their activations cannot be paired`);
  }
  const runner = new PairedRunner(base, ft, ctx.backend, { ...(ctx.signal ? { signal: ctx.signal } : {}), ...(ctx.memoryBudgetBytes !== undefined ? { memoryBudgetBytes: ctx.memoryBudgetBytes } : {}) });
  return { runner, tokenizer, info: { layers: c.nLayers, dModel: c.dModel, vocab: c.vocab, backend: ctx.backendName ?? 'unnamed backend' } };
}

/** Opens both models (a fine-tuned PEFT adapter is applied to the base); they load on first use and stay. */
export async function openCrosscoderPair(files: PairFiles, backend: Backend, backendName: string, opts: RunOptions = {}): Promise<CrosscoderPair> {
  return crosscoderPair(await openPair(files), { backend, backendName, ...opts });
}

export interface Collected {
  key: string;
  acts: PairedActivations;
  /** The token ids of every sample used (rows name samples by index into this). */
  samples: number[][];
}

export function collectKey(req: CollectRequest): string {
  return JSON.stringify([req.corpus.key, req.samples, req.tokensPerSample, req.layer]);
}

/** Tokenizes the corpus and collects resid_post at the layer for both models. */
export async function collectForCrosscoder(pair: CrosscoderPair, req: CollectRequest, opts: RunOptions = {}): Promise<Collected> {
  const { layers } = pair.info;
  if (!Number.isInteger(req.layer) || req.layer < 0 || req.layer >= layers) throw new RangeError(`layer ${req.layer} is outside 0..${layers - 1}`);
  const samples = tokenizeCorpus(req.corpus.text, pair.tokenizer, { tokensPerSample: req.tokensPerSample, maxSamples: req.samples });
  if (samples.length === 0) throw new FormatError(req.corpus.name, 'has no non-empty lines: a corpus is a text file with one sample per line');
  const acts = await collectPairedActivations(pair.runner, samples, {
    layer: req.layer,
    hook: 'resid_post',
    ...(opts.signal ? { signal: opts.signal } : {}),
    onProgress: (p) => opts.onProgress?.({ stage: 'activations', done: p.done, total: p.total }),
  });
  return { key: collectKey(req), acts, samples };
}

/** Trainer settings the view uses beyond the form: the CLI's schedule, and dead latents judged over a fifth of the run. */
export function trainerSchedule(s: TrainSettings): { warmupSteps: number; thresholdStartStep: number; deadTokens: number } {
  return {
    warmupSteps: Math.min(1000, Math.floor(s.steps / 10)),
    thresholdStartStep: Math.min(1000, Math.floor(s.steps / 2)),
    deadTokens: Math.min(10_000_000, Math.max(s.batch, Math.round((s.steps * s.batch) / 5))),
  };
}

export function checkTrainSettings(s: TrainSettings, d: number, rows: number): void {
  if (s.k > s.dict) throw new RangeError(`k (${s.k}) is larger than the dictionary (${s.dict} latents)`);
  if (s.batch > rows) throw new RangeError(`a batch of ${s.batch} tokens needs that many activation rows; the corpus gives ${rows} (use more samples or tokens per sample, or a smaller batch)`);
  if (d < 1) throw new RangeError('the models have no width');
}

export interface Training {
  trainer: Trainer;
  source: BatchSource;
  settings: TrainSettings;
  collected: Collected;
  corpusName: string;
}

export function startTraining(collected: Collected, settings: TrainSettings, corpusName: string, engine?: CrosscoderEngine): Training {
  const { acts } = collected;
  checkTrainSettings(settings, acts.d, acts.rows);
  const trainer = createTrainer({
    d: acts.d,
    D: settings.dict,
    k: settings.k,
    lr: settings.lr,
    auxAlpha: settings.auxAlpha,
    seed: settings.seed,
    normalization: acts.normalization,
    ...trainerSchedule(settings),
    ...(engine ? { engine } : {}),
  });
  return { trainer, source: shuffledBatches(acts, settings.batch, settings.seed), settings, collected, corpusName };
}

/** Trains until the settings' step count, an abort (pause) or the end of the data. */
export function continueTraining(t: Training, opts: { signal?: AbortSignal; onStep?: (p: StepPoint) => void }): Promise<TrainRunResult> {
  return train(t.trainer, t.source, {
    steps: t.settings.steps,
    ...(opts.signal ? { signal: opts.signal } : {}),
    onStep: (s) => opts.onStep?.({ step: s.step, loss: s.loss, fvu: s.fvu, dead: s.dead }),
  });
}

/** The crosscoder as trained so far, with what it was trained on in its file's metadata. */
export async function trainedModel(t: Training): Promise<CrosscoderModel> {
  const m = await t.trainer.model();
  const { acts } = t.collected;
  return {
    ...m,
    info: {
      ...m.info,
      layer: String(acts.layer),
      hook: acts.hook,
      hook_kind: 'resid_post',
      base_model: acts.info.base_model ?? '',
      ft_model: acts.info.ft_model ?? '',
      corpus: t.corpusName,
      samples: String(acts.samples),
      skip_positions: acts.info.skip_positions ?? '1',
      batch: String(t.settings.batch),
      seed: String(t.settings.seed),
    },
  };
}

/** What the latent pages and steering need after the analysis. */
export interface Analysis {
  model: CrosscoderModel;
  collected: Collected;
  report: LatentReport;
  /** Every analysed token's code, concatenated in row order. */
  codes: { rowPtr: Int32Array; index: Int32Array; value: Float32Array };
  unembed: { W: Float32Array; V: number; gain: readonly [Float32Array, Float32Array] };
  /** mean ‖h_ft‖ (raw) over the analysed tokens. */
  meanFtNorm: number;
  summary: CrosscoderSummary;
}

const CHUNK_ROWS = 1024;
const TOP_CONTEXTS = 10;

function concatCodes(parts: SparseCode[]): Analysis['codes'] {
  let rows = 0;
  let nnz = 0;
  for (const c of parts) {
    rows += c.rows;
    nnz += c.rowPtr[c.rows]!;
  }
  const rowPtr = new Int32Array(rows + 1);
  const index = new Int32Array(nnz);
  const value = new Float32Array(nnz);
  let r = 0;
  let q = 0;
  for (const c of parts) {
    const n = c.rowPtr[c.rows]!;
    index.set(c.index.subarray(0, n), q);
    value.set(c.value.subarray(0, n), q);
    for (let t = 1; t <= c.rows; t++) rowPtr[r + t] = q + c.rowPtr[t]!;
    r += c.rows;
    q += n;
  }
  return { rowPtr, index, value };
}

function tokenText(tokenizer: Tokenizer, id: number): string {
  try {
    return tokenizer.decodeToken(id);
  } catch {
    // Models may pad their vocabulary past the tokenizer's: such ids have no text.
    return `⟨${id}⟩`;
  }
}

/**
 * Runs the crosscoder over every collected token (its inference threshold, or BatchTopK per chunk
 * when it has none) and computes the latent statistics of ALGORITHMS.md.
 */
export async function analyseCrosscoder(
  pair: CrosscoderPair,
  model: CrosscoderModel,
  collected: Collected,
  source: CrosscoderSummary['source'],
  opts: RunOptions & { engine?: CrosscoderEngine } = {},
): Promise<Analysis> {
  const t0 = performance.now();
  const { acts, samples } = collected;
  const { d, D } = model.params;
  if (acts.d !== d) throw new FormatError(source.name, `the crosscoder is for width ${d}, the models' residual stream has width ${acts.d}`);
  const inference = createInference(model, opts.engine);
  const mode = model.activation === 'batchtopk' && model.threshold < 0 ? 'topk' : 'threshold';
  const stats = createLatentStats(model.params, { topExamples: TOP_CONTEXTS });
  const codes: SparseCode[] = [];
  let err = 0;
  let sumX2 = 0;
  const sumX = [new Float64Array(d), new Float64Array(d)];
  let ftNorm = 0;
  for (let start = 0; start < acts.rows; start += CHUNK_ROWS) {
    opts.signal?.throwIfAborted();
    const n = Math.min(CHUNK_ROWS, acts.rows - start);
    const base = acts.base.subarray(start * d, (start + n) * d);
    const ft = acts.ft.subarray(start * d, (start + n) * d);
    const out = await inference.run(base, ft, n, mode);
    stats.add(out, { sample: acts.sample.subarray(start, start + n), position: acts.position.subarray(start, start + n) });
    codes.push(out.code);
    for (const m of [0, 1] as const) {
      const x = out.x[m];
      const xh = out.recon[m];
      for (let i = 0; i < n * d; i++) {
        const e = x[i]! - xh[i]!;
        err += e * e;
        sumX2 += x[i]! * x[i]!;
        sumX[m]![i % d]! += x[i]!;
      }
    }
    for (let t = 0; t < n; t++) {
      let ss = 0;
      for (let i = 0; i < d; i++) ss += ft[t * d + i]! ** 2;
      ftNorm += Math.sqrt(ss);
    }
    opts.onProgress?.({ stage: 'analysing', done: start + n, total: acts.rows });
  }
  const report = stats.result();
  const rows = acts.rows;
  let meanSq = 0;
  for (const s of sumX) for (let i = 0; i < d; i++) meanSq += (s[i]! / rows) ** 2;
  const variance = sumX2 - rows * meanSq;
  const allCodes = concatCodes(codes);

  const { ft } = await pair.runner.models();
  const be = ft.backend;
  const W = (await be.read(ft.unembed)) as Float32Array;
  const lnw = (await be.read(ft.weight('ln_final.w'))) as Float32Array;
  const addOne = ft.config.norm.kind === 'rms' && ft.config.norm.addOne;
  // A normalised-space direction u is u / scale^m in the raw residual; the final norm's gain scales it before W_U.
  const gain = (m: 0 | 1) => Float32Array.from(lnw, (w) => (addOne ? 1 + w : w) / model.normalization.scale[m]);

  const classes: Record<LatentClass, number> = { 'ft-only': 0, 'base-only': 0, shared: 0, other: 0 };
  const f32 = () => new Float32Array(D);
  const latents: LatentTable = {
    ratio: f32(),
    frequency: f32(),
    maxActivation: f32(),
    nuErrorFt: f32(),
    nuReconFt: f32(),
    nuErrorBase: f32(),
    nuReconBase: f32(),
    specific: new Uint8Array(D),
    topTokens: [],
  };
  let dead = 0;
  for (const l of report.latents) {
    const j = l.id;
    latents.ratio[j] = l.ratio;
    latents.frequency[j] = l.frequency;
    latents.maxActivation[j] = l.maxActivation;
    latents.nuErrorFt[j] = l.ft.nuError;
    latents.nuReconFt[j] = l.ft.nuRecon;
    latents.nuErrorBase[j] = l.base.nuError;
    latents.nuReconBase[j] = l.base.nuRecon;
    latents.specific[j] = l.ftSpecific ? 1 : l.baseSpecific ? 2 : 0;
    if (l.frequency > 0) classes[l.class]++;
    else dead++;
    const texts: string[] = [];
    for (const ex of l.top) {
      let best = ex.tokens[0];
      for (const t of ex.tokens) if (best && t.activation > best.activation) best = t;
      const id = best ? samples[ex.sample]?.[best.position] : undefined;
      if (id === undefined) continue;
      const text = tokenText(pair.tokenizer, id);
      if (!texts.includes(text)) texts.push(text);
      if (texts.length === 3) break;
    }
    latents.topTokens.push(texts);
  }
  const summary: CrosscoderSummary = {
    source,
    d,
    D,
    k: model.k,
    activation: model.activation,
    threshold: model.threshold,
    layer: acts.layer,
    hook: acts.hook,
    steps: model.info.steps !== undefined && Number.isFinite(Number(model.info.steps)) ? Number(model.info.steps) : null,
    tokens: report.tokens,
    samples: acts.samples,
    fvu: variance > 0 ? err / variance : NaN,
    l0: rows > 0 ? allCodes.rowPtr[rows]! / rows : 0,
    latents,
    density: report.density,
    classes,
    dead,
    ms: performance.now() - t0,
  };
  return { model, collected, report, codes: allCodes, unembed: { W, V: W.length / lnw.length, gain: [gain(0), gain(1)] }, meanFtNorm: ftNorm / Math.max(1, rows), summary };
}

const HISTOGRAM_BINS = 24;
const LOGIT_TOP = 10;

export function latentDetail(a: Analysis, tokenizer: Tokenizer, id: number): LatentDetail {
  const D = a.model.params.D;
  if (!Number.isInteger(id) || id < 0 || id >= D) throw new RangeError(`latent ${id} is outside 0..${D - 1}`);
  const info = a.report.latents[id]!;
  const contexts: ContextOut[] = info.top.map((ex) => {
    const ids = a.collected.samples[ex.sample] ?? [];
    const acts = new Array<number>(ids.length).fill(0);
    for (const t of ex.tokens) if (t.position < acts.length) acts[t.position] = t.activation;
    return { sample: ex.sample, maxActivation: ex.maxActivation, tokens: ids.map((t) => tokenText(tokenizer, t)), acts };
  });
  const values: number[] = [];
  const { index, value } = a.codes;
  for (let q = 0; q < index.length; q++) if (index[q] === id && value[q]! > 0) values.push(value[q]!);
  const max = values.reduce((m, v) => Math.max(m, v), 0);
  const edges = Array.from({ length: HISTOGRAM_BINS + 1 }, (_, i) => (max * i) / HISTOGRAM_BINS);
  const counts = new Array<number>(HISTOGRAM_BINS).fill(0);
  if (max > 0) for (const v of values) counts[Math.min(HISTOGRAM_BINS - 1, Math.floor((v / max) * HISTOGRAM_BINS))]!++;
  const effects = (m: 0 | 1) => {
    const e = logitEffects(a.unembed.W, a.unembed.V, decoderVector(a.model.params, m, id), LOGIT_TOP, a.unembed.gain[m]);
    const named = (list: { id: number; value: number }[]) => list.map((x) => ({ token: tokenText(tokenizer, x.id), value: x.value }));
    return { positive: named(e.positive), negative: named(e.negative) };
  };
  return { id, contexts, histogram: { edges, counts }, logits: { ft: effects(1), base: effects(0) } };
}

export const MAX_PROMPT_TOKENS = 128;

/** Greedy generations of both models with s · mean‖h_ft‖ · d̂_j^ft added to resid_post at the crosscoder's layer. */
export async function steerLatent(pair: CrosscoderPair, a: Analysis, req: SteerRequest, opts: RunOptions = {}): Promise<SteerOut> {
  const { d, D } = a.model.params;
  if (!Number.isInteger(req.latent) || req.latent < 0 || req.latent >= D) throw new RangeError(`latent ${req.latent} is outside 0..${D - 1}`);
  const prompt = pair.tokenizer.encode(req.prompt);
  if (prompt.length === 0) throw new RangeError('the prompt gives no tokens');
  if (prompt.length > MAX_PROMPT_TOKENS) throw new RangeError(`the prompt has ${prompt.length} tokens; steering takes at most ${MAX_PROMPT_TOKENS}`);
  const dir = decoderVector(a.model.params, 1, req.latent);
  let ss = 0;
  for (let i = 0; i < d; i++) ss += dir[i]! ** 2;
  if (!(ss > 0)) throw new RangeError(`latent ${req.latent} has no fine-tuned decoder direction (its norm is 0)`);
  // Raw and normalised space differ by one global factor per model, so the unit direction is the same.
  const v = Float32Array.from(dir, (x) => (x / Math.sqrt(ss)) * a.meanFtNorm);
  const stop = pair.tokenizer.eosId === undefined ? [] : [pair.tokenizer.eosId];
  const models = await pair.runner.models();
  const gens = await steer(models, v, {
    layer: a.collected.acts.layer,
    strengths: req.strengths,
    prompt,
    maxNewTokens: req.maxNew,
    stop,
    ...(opts.signal ? { signal: opts.signal } : {}),
    onProgress: (p) => opts.onProgress?.({ stage: 'steering', done: p.done, total: p.total }),
  });
  const text = (ids: number[]) => pair.tokenizer.decode(ids.filter((id) => !stop.includes(id)));
  return {
    latent: req.latent,
    layer: a.collected.acts.layer,
    prompt: req.prompt,
    norm: a.meanFtNorm,
    generations: gens.map((g) => ({ strength: g.strength, base: text(g.base), ft: text(g.ft) })),
  };
}
