// `neurodiff kl <base> <ft> --corpus f`: KL(P_ft ‖ P_base) of the next-token distributions at every token.
import { corpusKl } from '../analysis/logit-diff/kl.ts';
import { CORPUS_OPTIONS, corpusSamples } from './adl.ts';
import type { Command } from './commands.ts';
import { placeText, tokenList } from './contexts.ts';
import { intOption, loadPairArgs, needTokenizer, pickBackend, stderrProgress, tokenText } from './models.ts';

type Token = { id: number; token: string | null; prob: number };

export interface KlJson {
  direction: string;
  tokens: number;
  mean_kl: number;
  max_kl: number;
  per_position: (number | null)[];
  histogram: { edges: number[]; counts: number[] };
  top_contexts: { text: string; sample: number; position: number; kl: number; base_top: Token[]; ft_top: Token[] }[];
  seconds: number;
}

export const kl: Command = {
  summary: 'corpus KL: KL(P_ft ‖ P_base) at every token of a corpus — mean, per position, histogram, top contexts',
  usage: '<base> <ft> --corpus <file> [--top 50] [--k 5] [--max-samples n] [--tokens-per-sample 64] [--batch 16] [--no-bos] [--backend cpu|webgpu] [--tokenizer <file>]',
  options: { ...CORPUS_OPTIONS, top: { type: 'string' }, k: { type: 'string' } },
  async run(positionals, values): Promise<KlJson> {
    const t0 = performance.now();
    const backend = await pickBackend(values);
    const { pair, tokenizer: tok } = await loadPairArgs(positionals, backend, values, 'kl');
    const tokenizer = needTokenizer(tok, 'kl');
    const { corpus, batchSize } = await corpusSamples(values, tokenizer, pair.base.config.nLayers);
    const r = await corpusKl(pair, corpus.samples, { top: intOption(values, 'top', 50, 1), k: intOption(values, 'k', 5, 1), batchSize, onProgress: stderrProgress() });
    const named = (list: readonly { id: number; prob: number }[]): Token[] => list.map((t) => ({ id: t.id, token: tokenText(tokenizer, t.id), prob: t.prob }));
    return {
      direction: r.direction,
      tokens: r.tokens,
      mean_kl: r.meanKl,
      max_kl: r.maxKl,
      per_position: Array.from(r.perPosition, (x) => (Number.isNaN(x) ? null : x)),
      histogram: r.histogram,
      top_contexts: r.topContexts.map((c) => ({ text: placeText(tokenizer, corpus.samples[c.sample]!, c.position), sample: c.sample, position: c.position, kl: c.kl, base_top: named(c.baseTop), ft_top: named(c.ftTop) })),
      seconds: (performance.now() - t0) / 1000,
    };
  },
  format(result) {
    const r = result as KlJson;
    const lines = [`${r.direction} over ${r.tokens} tokens: mean ${r.mean_kl.toFixed(4)} nats, max ${r.max_kl.toFixed(4)}`, `per position: ${r.per_position.map((x) => (x === null ? '-' : x.toFixed(3))).join(' ')}`, ''];
    for (const c of r.top_contexts) lines.push(`${c.kl.toFixed(3).padStart(8)}  ${c.text.replace(/\s+/g, ' ')}`, `          base: ${tokenList(c.base_top)}`, `          ft:   ${tokenList(c.ft_top)}`);
    return lines.join('\n') + '\n';
  },
};
