// What the Methods view's results show and export, as pure functions over the analyses' results:
// readable tokens and contexts, the rows of each CSV, the attention heatmap's grid.
import type { Cell } from '../../analysis/report/csv.ts';
import type { AmplifiedSample } from '../../analysis/amplify/amplify.ts';
import type { HeadDiff, HeadRecovery } from '../../analysis/attention/attention.ts';
import type { CorpusKlResult } from '../../analysis/logit-diff/kl.ts';
import type { MiningResult } from '../../analysis/logit-diff/mine.ts';
import type { PcaComponent, PcaResult } from '../../analysis/pca/pca.ts';
import type { DiffSaeLatent, DiffSaeOutcome } from '../../jobs/diff-sae.ts';
import { mergeByteRuns, tokenDisplay } from '../../io/token-text.ts';

/** Token texts by id, as the tokenizer decodes them (a subset: the ids a result names). */
export type TokenTexts = Readonly<Record<number, string>>;
/** The corpus a result's places (sample, position) point into: token ids per sample. */
export type Samples = readonly (readonly number[])[];

/** A PCA result as the view gets it: the components without their d-dimensional directions. */
export type PcaView = Omit<PcaResult, 'components'> & { components: Omit<PcaComponent, 'direction'>[] };

export interface Table {
  header: string[];
  rows: Cell[][];
}

/** A token as shown in cells: readable (token-text.ts), or #id when its text is unknown. */
export function tokenLabel(texts: TokenTexts, id: number): string {
  const t = texts[id];
  return t === undefined ? `#${id}` : tokenDisplay(t);
}

/** A token exactly as decoded, for exported tables (#id when unknown). */
export function tokenRaw(texts: TokenTexts, id: number): string {
  return texts[id] ?? `#${id}`;
}

/** Tokens joined for a cell: "sea, wave, fish". */
export function tokenJoin(texts: TokenTexts, list: readonly { id: number }[], n = list.length): string {
  return list
    .slice(0, n)
    .map((t) => tokenLabel(texts, t.id))
    .join(', ');
}

export interface ContextParts {
  /** Text before the place (with "…" when cut), the token at the place, and a little after it. */
  before: string;
  at: string;
  after: string;
}

/**
 * The text around `position` of `sample`: `before` tokens up to it, the token there, `after` tokens
 * following. Byte tokens that make whole characters are merged; a place outside the corpus names itself.
 */
export function contextParts(samples: Samples, texts: TokenTexts, sample: number, position: number, before = 12, after = 4): ContextParts {
  const ids = samples[sample];
  if (!ids || position < 0 || position >= ids.length) return { before: '', at: `sample ${sample}, position ${position}`, after: '' };
  const lo = Math.max(0, position - before);
  const hi = Math.min(ids.length, position + after + 1);
  const shown = mergeByteRuns(ids.slice(lo, hi).map((id) => texts[id] ?? `#${id}`));
  const at = position - lo;
  const flat = (xs: string[]) => xs.join('').replace(/\s+/g, ' ');
  return { before: (lo > 0 ? '…' : '') + flat(shown.slice(0, at)), at: flat([shown[at]!]), after: flat(shown.slice(at + 1)) + (hi < ids.length ? '…' : '') };
}

/** A context as one line for a CSV: the place's token in [brackets]. */
export function contextLine(samples: Samples, texts: TokenTexts, sample: number, position: number): string {
  const c = contextParts(samples, texts, sample, position);
  return `${c.before}[${c.at}]${c.after}`;
}

export function miningTable(r: MiningResult, texts: TokenTexts): Table {
  return {
    header: ['rank', 'token', 'id', 'count', 'share_of_positions', 'mean_diff', 'max_diff'],
    rows: r.tokens.map((t, i) => [i + 1, tokenRaw(texts, t.id), t.id, t.count, r.positions > 0 ? t.count / r.positions : null, t.meanDiff, t.maxDiff]),
  };
}

export function miningTopicsTable(r: MiningResult, texts: TokenTexts, samples: Samples): Table {
  const rows: Cell[][] = [];
  r.topics.forEach((topic, i) => {
    topic.tokens.forEach((t, rank) => rows.push([i, 'token', rank + 1, tokenRaw(texts, t.id), t.id, t.weight]));
    topic.contexts.forEach((c, rank) => rows.push([i, 'context', rank + 1, contextLine(samples, texts, c.sample, c.position), null, c.weight]));
  });
  return { header: ['topic', 'kind', 'rank', 'text', 'id', 'weight'], rows };
}

export function klContextsTable(r: CorpusKlResult, texts: TokenTexts, samples: Samples): Table {
  return {
    header: ['rank', 'kl', 'sample', 'position', 'context', 'base_top', 'ft_top'],
    rows: r.topContexts.map((c, i) => [i + 1, c.kl, c.sample, c.position, contextLine(samples, texts, c.sample, c.position), tokenJoin(texts, c.baseTop), tokenJoin(texts, c.ftTop)]),
  };
}

/** Mean KL per position index; positions no sample reaches are left out. */
export function klPerPosition(r: CorpusKlResult): { position: number; kl: number; count: number }[] {
  const out: { position: number; kl: number; count: number }[] = [];
  r.perPosition.forEach((kl, position) => {
    if (!Number.isNaN(kl)) out.push({ position, kl, count: r.perPositionCount[position] ?? 0 });
  });
  return out;
}

export function klPositionTable(r: CorpusKlResult): Table {
  return { header: ['position', 'mean_kl', 'tokens'], rows: klPerPosition(r).map((p) => [p.position, p.kl, p.count]) };
}

/** Each component's share of the variance and the running total. */
export function varianceShares(r: Pick<PcaView, 'components'>): { component: number; ratio: number; cumulative: number }[] {
  let cumulative = 0;
  return r.components.map((c, component) => {
    cumulative += c.varianceRatio;
    return { component, ratio: c.varianceRatio, cumulative };
  });
}

export function pcaTable(r: PcaView, texts: TokenTexts, samples: Samples, tokens = 10): Table {
  return {
    header: ['component', 'variance', 'variance_ratio', 'positive_tokens', 'negative_tokens', 'top_context', 'bottom_context'],
    rows: r.components.map((c, i) => {
      const top = c.topContexts[0];
      const bottom = c.bottomContexts[0];
      return [
        i,
        c.variance,
        c.varianceRatio,
        tokenJoin(texts, c.positiveTokens, tokens),
        tokenJoin(texts, c.negativeTokens, tokens),
        top ? contextLine(samples, texts, top.sample, top.position) : null,
        bottom ? contextLine(samples, texts, bottom.sample, bottom.position) : null,
      ];
    }),
  };
}

export function diffSaeTable(r: DiffSaeOutcome, texts: TokenTexts, samples: Samples, tokens = 10): Table {
  return {
    header: ['latent', 'frequency', 'max_activation', 'positive_tokens', 'negative_tokens', 'top_context', 'top_activation'],
    rows: r.latents.map((l) => {
      const top = l.top[0];
      return [l.id, l.frequency, l.maxActivation, tokenJoin(texts, l.positive, tokens), tokenJoin(texts, l.negative, tokens), top ? contextLine(samples, texts, top.sample, top.position) : null, top ? top.activation : null];
    }),
  };
}

/**
 * The latents the table shows: those whose lens tokens (either sign) or top-context tokens contain
 * `query` (case-insensitive; all when empty), by frequency or by largest activation, largest first.
 */
export function filterLatents(latents: readonly DiffSaeLatent[], texts: TokenTexts, samples: Samples, query: string, sort: 'frequency' | 'activation'): DiffSaeLatent[] {
  const q = query.trim().toLowerCase();
  const matches = (l: DiffSaeLatent) =>
    q === '' ||
    [...l.positive, ...l.negative].some((t) => tokenLabel(texts, t.id).toLowerCase().includes(q)) ||
    l.top.some((x) => {
      const id = samples[x.sample]?.[x.position];
      return id !== undefined && tokenLabel(texts, id).toLowerCase().includes(q);
    });
  const key = sort === 'frequency' ? (l: DiffSaeLatent) => l.frequency : (l: DiffSaeLatent) => l.maxActivation;
  return latents.filter(matches).sort((a, b) => key(b) - key(a) || a.id - b.id);
}

/** α as written in the settings and headings: "0", "2", "−1", "0.5". */
export function formatAlpha(alpha: number): string {
  return alpha < 0 ? `−${-alpha}` : String(alpha);
}

/** Samples grouped by α, in the order the α values came. */
export function samplesByAlpha<S extends AmplifiedSample>(samples: readonly S[]): { alpha: number; samples: S[] }[] {
  const groups: { alpha: number; samples: S[] }[] = [];
  for (const s of samples) {
    const g = groups.find((x) => Object.is(x.alpha, s.alpha));
    if (g) g.samples.push(s);
    else groups.push({ alpha: s.alpha, samples: [s] });
  }
  return groups;
}

export function amplifyTable(samples: readonly (AmplifiedSample & { text: string })[]): Table {
  return { header: ['alpha', 'mode', 'seed', 'text', 'ids'], rows: samples.map((s) => [s.alpha, s.mode, s.seed, s.text, s.ids.join(' ')]) };
}

export interface HeadGrid {
  layers: number;
  heads: number;
  /** value[layer][head]; NaN where the result has no entry. */
  value: number[][];
  max: number;
}

/** The layer × head grid of one measure (JS, or patching recovery). */
export function headGrid<T extends { layer: number; head: number }>(list: readonly T[], measure: (x: T) => number): HeadGrid {
  const layers = list.reduce((m, x) => Math.max(m, x.layer + 1), 0);
  const heads = list.reduce((m, x) => Math.max(m, x.head + 1), 0);
  const value = Array.from({ length: layers }, () => new Array<number>(heads).fill(NaN));
  let max = 0;
  for (const x of list) {
    const v = measure(x);
    value[x.layer]![x.head] = v;
    if (Math.abs(v) > max) max = Math.abs(v);
  }
  return { layers, heads, value, max };
}

export function attentionTable(heads: readonly HeadDiff[], patching: readonly HeadRecovery[]): Table {
  const rec = new Map(patching.map((p) => [`${p.layer}:${p.head}`, p]));
  return {
    header: ['layer', 'head', 'js', 'max_abs', 'worst_position', 'worst_js', 'recovery', 'kl_patched'],
    rows: heads.map((h) => {
      const p = rec.get(`${h.layer}:${h.head}`);
      return [h.layer, h.head, h.js, h.maxAbs, h.worstPosition, h.worstJs, p ? p.recovery : null, p ? p.kl : null];
    }),
  };
}

/** The heads by JS, largest first. */
export function rankHeads(heads: readonly HeadDiff[], n: number): HeadDiff[] {
  return [...heads].sort((a, b) => b.js - a.js || a.layer - b.layer || a.head - b.head).slice(0, n);
}
