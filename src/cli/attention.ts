// `neurodiff attention <base> <ft> --prompt t`: Jensen–Shannon divergence of the two models' attention
// patterns per layer and head (on the prompt, or averaged over --corpus), and head-level patching.
import { attentionDiff, corpusAttentionDiff, headPatching, type HeadDiff } from '../analysis/attention/attention.ts';
import { tokenizeCorpus } from '../analysis/activations/corpus.ts';
import type { Command } from './commands.ts';
import { UsageError } from './errors.ts';
import { intOption, loadPairArgs, needTokenizer, optionalInt, pickBackend, promptIds, readCorpus, stderrProgress, str, tokenText } from './models.ts';

export interface AttentionJson {
  tokens: (string | null)[];
  ids: number[];
  /** Per layer and head, on the prompt (or over the corpus with --corpus). */
  heads: { layer: number; head: number; js: number; max_abs: number; worst_position: number; worst_js: number }[];
  corpus: { samples: number; tokens_per_sample: number } | null;
  kl_ft_base: number | null;
  patching: { layer: number; head: number; recovery: number; kl: number }[];
  seconds: number;
}

export const attention: Command = {
  summary: 'attention-pattern diffing: JS per layer and head between both models\' attention, and head patching',
  usage: '<base> <ft> (--prompt t | --ids 1,2,3) [--corpus <file> [--max-samples 64] [--tokens-per-sample 32]] [--no-patching] [--backend cpu|webgpu] [--tokenizer <file>]',
  options: {
    prompt: { type: 'string' },
    ids: { type: 'string' },
    corpus: { type: 'string' },
    'max-samples': { type: 'string' },
    'tokens-per-sample': { type: 'string' },
    'no-patching': { type: 'boolean' },
    backend: { type: 'string' },
    tokenizer: { type: 'string' },
  },
  async run(positionals, values): Promise<AttentionJson> {
    const t0 = performance.now();
    const backend = await pickBackend(values);
    const { pair, tokenizer } = await loadPairArgs(positionals, backend, values, 'attention');
    const ids = promptIds(values, tokenizer);
    let heads: HeadDiff[];
    let corpus: AttentionJson['corpus'] = null;
    if (str(values, 'corpus') !== undefined) {
      const tok = needTokenizer(tokenizer, '--corpus');
      const tokensPerSample = intOption(values, 'tokens-per-sample', 32, 1);
      const lines = await readCorpus(str(values, 'corpus'));
      const c = tokenizeCorpus(tok, lines, { tokensPerSample, maxSamples: optionalInt(values, 'max-samples', 1) ?? 64 });
      if (c.samples.length === 0) throw new UsageError(`${str(values, 'corpus')}: no line has ${tokensPerSample} tokens; lower --tokens-per-sample`);
      heads = await corpusAttentionDiff(pair, c.samples, { onProgress: stderrProgress() });
      corpus = { samples: c.samples.length, tokens_per_sample: tokensPerSample };
    } else heads = (await attentionDiff(pair, ids)).heads;
    const patched = values['no-patching'] ? null : await headPatching(pair, ids, { onProgress: stderrProgress() });
    return {
      tokens: ids.map((id) => tokenText(tokenizer, id)),
      ids,
      heads: heads.map((h) => ({ layer: h.layer, head: h.head, js: h.js, max_abs: h.maxAbs, worst_position: h.worstPosition, worst_js: h.worstJs })),
      corpus,
      kl_ft_base: patched ? patched.klFtBase : null,
      patching: patched ? patched.heads.map((h) => ({ layer: h.layer, head: h.head, recovery: h.recovery, kl: h.kl })) : [],
      seconds: (performance.now() - t0) / 1000,
    };
  },
  format(result) {
    const r = result as AttentionJson;
    const layers = Math.max(...r.heads.map((h) => h.layer)) + 1;
    const lines = [`attention JS (nats) per layer × head${r.corpus ? `, over ${r.corpus.samples} corpus samples` : ''}:`];
    for (let l = 0; l < layers; l++) lines.push(`  layer ${String(l).padStart(2)}: ${r.heads.filter((h) => h.layer === l).map((h) => h.js.toFixed(4)).join(' ')}`);
    if (r.patching.length > 0) {
      lines.push(`head patching (ft → base), recovery of KL(P_ft ‖ P_base) = ${r.kl_ft_base?.toFixed(4)}:`);
      for (let l = 0; l < layers; l++) lines.push(`  layer ${String(l).padStart(2)}: ${r.patching.filter((h) => h.layer === l).map((h) => h.recovery.toFixed(3)).join(' ')}`);
    }
    return lines.join('\n') + '\n';
  },
};
