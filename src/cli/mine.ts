// `neurodiff mine <base> <ft> --corpus f`: diff mining — the tokens the fine-tune's logits raise most,
// counted over every position of a corpus, and their topics (NMF).
import { diffMining } from '../analysis/logit-diff/mine.ts';
import { CORPUS_OPTIONS, corpusSamples } from './adl.ts';
import type { Command } from './commands.ts';
import { placeText, tokenList } from './contexts.ts';
import { intOption, loadPairArgs, needTokenizer, pickBackend, stderrProgress, tokenText } from './models.ts';

export interface MineJson {
  k: number;
  samples: number;
  positions: number;
  tokens: { token: string | null; id: number; count: number; mean_diff: number; max_diff: number }[];
  topics: { tokens: { token: string | null; id: number; weight: number }[]; contexts: { text: string; sample: number; position: number; weight: number }[] }[];
  topic_error: number | null;
  seconds: number;
}

export const mine: Command = {
  summary: 'diff mining: tokens most often in the top-K of logit_ft − logit_base over a corpus, and their NMF topics',
  usage: '<base> <ft> --corpus <file> [--top 50] [--k 10] [--topics 5] [--topic-tokens 200] [--max-samples n] [--tokens-per-sample 64] [--batch 16] [--no-bos] [--backend cpu|webgpu] [--tokenizer <file>]',
  options: { ...CORPUS_OPTIONS, top: { type: 'string' }, k: { type: 'string' }, topics: { type: 'string' }, 'topic-tokens': { type: 'string' } },
  async run(positionals, values): Promise<MineJson> {
    const t0 = performance.now();
    const backend = await pickBackend(values);
    const { pair, tokenizer: tok } = await loadPairArgs(positionals, backend, values, 'mine');
    const tokenizer = needTokenizer(tok, 'mine');
    const { corpus, batchSize } = await corpusSamples(values, tokenizer, pair.base.config.nLayers);
    const r = await diffMining(pair, corpus.samples, {
      k: intOption(values, 'k', 10, 1),
      top: intOption(values, 'top', 50, 1),
      topics: intOption(values, 'topics', 5, 0),
      topicTokens: intOption(values, 'topic-tokens', 200, 1),
      batchSize,
      onProgress: stderrProgress(),
    });
    return {
      k: r.k,
      samples: r.samples,
      positions: r.positions,
      tokens: r.tokens.map((t) => ({ token: tokenText(tokenizer, t.id), id: t.id, count: t.count, mean_diff: t.meanDiff, max_diff: t.maxDiff })),
      topics: r.topics.map((t) => ({
        tokens: t.tokens.map((x) => ({ token: tokenText(tokenizer, x.id), id: x.id, weight: x.weight })),
        contexts: t.contexts.map((c) => ({ text: placeText(tokenizer, corpus.samples[c.sample]!, c.position), sample: c.sample, position: c.position, weight: c.weight })),
      })),
      topic_error: Number.isFinite(r.topicError) ? r.topicError : null,
      seconds: (performance.now() - t0) / 1000,
    };
  },
  format(result) {
    const r = result as MineJson;
    const lines = [`diff mining: top-${r.k} of logit_ft − logit_base at ${r.positions} positions of ${r.samples} samples`, ''];
    for (const t of r.tokens) lines.push(`${String(t.count).padStart(7)}  ${t.mean_diff.toFixed(3).padStart(8)}  ${JSON.stringify(t.token ?? `#${t.id}`)}`);
    r.topics.forEach((t, i) => {
      lines.push('', `topic ${i}: ${tokenList(t.tokens)}`);
      for (const c of t.contexts.slice(0, 5)) lines.push(`  ${c.text.replace(/\s+/g, ' ')}`);
    });
    return lines.join('\n') + '\n';
  },
};
