// `neurodiff pca <base> <ft> --corpus f --layer i`: principal components of δ = h_ft − h_base over a corpus.
import { activationDiffPca, type PcaHookKind } from '../analysis/pca/pca.ts';
import { CORPUS_OPTIONS, corpusSamples } from './adl.ts';
import type { Command } from './commands.ts';
import { placeText, tokenList } from './contexts.ts';
import { UsageError } from './errors.ts';
import { intOption, loadPairArgs, needTokenizer, pickBackend, stderrProgress, str, tokenText } from './models.ts';

type Token = { id: number; token: string | null; prob: number };
type Context = { text: string; sample: number; position: number; projection: number };

export interface PcaJson {
  layer: number;
  hook: string;
  tokens: number;
  total_variance: number;
  mean_norm: number;
  components: { variance: number; variance_ratio: number; positive_tokens: Token[]; negative_tokens: Token[]; top_contexts: Context[]; bottom_contexts: Context[] }[];
  seconds: number;
}

const KINDS = ['resid_post', 'resid_pre', 'attn_out', 'mlp_out'] as const;

export const pca: Command = {
  summary: 'PCA of activation differences: components of δ at a layer, their variance, lens tokens and top contexts',
  usage: '<base> <ft> --corpus <file> [--layer i] [--hook resid_post|resid_pre|attn_out|mlp_out] [--components 5] [--top 20] [--contexts 10] [--max-samples n] [--tokens-per-sample 64] [--batch 16] [--no-bos] [--backend cpu|webgpu] [--tokenizer <file>]',
  options: { ...CORPUS_OPTIONS, components: { type: 'string' }, top: { type: 'string' }, contexts: { type: 'string' }, hook: { type: 'string' } },
  async run(positionals, values): Promise<PcaJson> {
    const t0 = performance.now();
    const kind = str(values, 'hook') ?? 'resid_post';
    if (!(KINDS as readonly string[]).includes(kind)) throw new UsageError(`--hook must be one of ${KINDS.join(', ')}, got "${kind}"`);
    const backend = await pickBackend(values);
    const { pair, tokenizer: tok } = await loadPairArgs(positionals, backend, values, 'pca');
    const tokenizer = needTokenizer(tok, 'pca');
    const { layer, corpus, batchSize } = await corpusSamples(values, tokenizer, pair.base.config.nLayers);
    const r = await activationDiffPca(pair, corpus.samples, {
      layer,
      kind: kind as PcaHookKind,
      components: intOption(values, 'components', 5, 1),
      k: Math.min(32, intOption(values, 'top', 20, 1)),
      contexts: intOption(values, 'contexts', 10, 0),
      batchSize,
      onProgress: stderrProgress(),
    });
    const named = (list: readonly { id: number; prob: number }[]): Token[] => list.map((t) => ({ id: t.id, token: tokenText(tokenizer, t.id), prob: t.prob }));
    const places = (list: readonly { sample: number; position: number; projection: number }[]): Context[] =>
      list.map((c) => ({ text: placeText(tokenizer, corpus.samples[c.sample]!, c.position), sample: c.sample, position: c.position, projection: c.projection }));
    return {
      layer: r.layer,
      hook: r.hook,
      tokens: r.tokens,
      total_variance: r.totalVariance,
      mean_norm: r.meanNorm,
      components: r.components.map((c) => ({
        variance: c.variance,
        variance_ratio: c.varianceRatio,
        positive_tokens: named(c.positiveTokens),
        negative_tokens: named(c.negativeTokens),
        top_contexts: places(c.topContexts),
        bottom_contexts: places(c.bottomContexts),
      })),
      seconds: (performance.now() - t0) / 1000,
    };
  },
  format(result) {
    const r = result as PcaJson;
    const lines = [`PCA of δ at ${r.hook} over ${r.tokens} tokens: total variance ${r.total_variance.toFixed(4)}, ‖mean δ‖ ${r.mean_norm.toFixed(3)}`];
    r.components.forEach((c, i) => {
      lines.push('', `component ${i}: ${(100 * c.variance_ratio).toFixed(1)}% of the variance`, `  +: ${tokenList(c.positive_tokens)}`, `  −: ${tokenList(c.negative_tokens)}`);
      for (const x of c.top_contexts.slice(0, 5)) lines.push(`  ${x.projection.toFixed(2).padStart(7)}  ${x.text.replace(/\s+/g, ' ')}`);
    });
    return lines.join('\n') + '\n';
  },
};
