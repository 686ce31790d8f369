// `neurodiff adl <base> <ft> --corpus f`: the Activation Difference Lens — mean activation differences at
// the first positions of generic text, read through the fine-tuned model's logit lens and a Patchscope.
import { activationDifferenceLens, DEFAULT_ADL_POSITIONS, DEFAULT_ADL_SAMPLES, DEFAULT_TOKENS_PER_SAMPLE, defaultAdlLayer, IDENTITY_PROMPTS, type TokenProb } from '../analysis/activations/adl.ts';
import { tokenizeCorpus } from '../analysis/activations/corpus.ts';
import type { Tokenizer } from '../io/tokenizer.ts';
import type { Command } from './commands.ts';
import { UsageError } from './errors.ts';
import { jsonHint, num, outputWidth, pct, shownToken, table } from './format.ts';
import { intOption, pairRunnerArgs, needTokenizer, numberList, optionalInt, pickBackend, rangeList, readCorpus, stderrProgress, str, tokenText, type Values } from './models.ts';

type Token = { id: number; token: string | null; prob: number };

export interface AdlJson {
  layer: number;
  hook: string;
  samples: number;
  tokens_per_sample: number;
  skipped_short: number;
  ft_norm: number | null;
  positions: { position: number; consistency: number; norm: number; top: Token[]; top_negative: Token[] }[];
  patchscope: { position: number; latent_norm: number | null; scales: { scale: number; top: Token[] }[]; stable: { id: number; token: string | null; scales: number; prob: number }[] }[];
  seconds: number;
}

export const CORPUS_OPTIONS = {
  corpus: { type: 'string' },
  layer: { type: 'string' },
  'max-samples': { type: 'string' },
  'tokens-per-sample': { type: 'string' },
  batch: { type: 'string' },
  'no-bos': { type: 'boolean' },
  backend: { type: 'string' },
  tokenizer: { type: 'string' },
} as const;

/** The corpus options shared by adl and steer, checked and tokenized. */
export async function corpusSamples(values: Values, tokenizer: Tokenizer, nLayers: number) {
  const layer = optionalInt(values, 'layer') ?? defaultAdlLayer(nLayers);
  if (layer >= nLayers) throw new UsageError(`--layer ${layer} is outside 0..${nLayers - 1}`);
  const lines = await readCorpus(str(values, 'corpus'));
  const tokensPerSample = intOption(values, 'tokens-per-sample', DEFAULT_TOKENS_PER_SAMPLE, 1);
  // The app's defaults: the same corpus settings give the same result in both.
  const maxSamples = intOption(values, 'max-samples', DEFAULT_ADL_SAMPLES, 1);
  const corpus = tokenizeCorpus(tokenizer, lines, { tokensPerSample, maxSamples, ...(values['no-bos'] ? { addBos: false } : {}) });
  if (corpus.samples.length === 0) throw new UsageError(`${str(values, 'corpus')}: no line has ${tokensPerSample} tokens; lower --tokens-per-sample`);
  return { layer, corpus, batchSize: intOption(values, 'batch', 16, 1) };
}

export const adl: Command = {
  summary: 'Activation Difference Lens: lens and Patchscope of the mean activation difference at early positions',
  usage: '<base> <ft> --corpus <file> [--layer i] [--positions 0-4] [--top 20] [--max-samples n] [--tokens-per-sample 64] [--batch 16] [--no-bos] [--scales 0.5,1,2,…] [--no-patchscope] [--backend cpu|webgpu] [--tokenizer <file>]',
  options: { ...CORPUS_OPTIONS, positions: { type: 'string' }, top: { type: 'string' }, scales: { type: 'string' }, 'no-patchscope': { type: 'boolean' } },
  async run(positionals, values): Promise<AdlJson> {
    const t0 = performance.now();
    const top = intOption(values, 'top', 20, 1);
    const positions = str(values, 'positions') === undefined ? [...DEFAULT_ADL_POSITIONS] : rangeList(str(values, 'positions')!, '--positions');
    const scalesText = str(values, 'scales');
    const scales = scalesText === undefined ? undefined : numberList(scalesText, '--scales');
    const backend = await pickBackend(values);
    const { runner: pair, tokenizer: tok } = await pairRunnerArgs(positionals, backend, values, 'adl');
    const tokenizer = needTokenizer(tok, 'adl');
    const { layer, corpus, batchSize } = await corpusSamples(values, tokenizer, pair.base.config.nLayers);
    process.stderr.write(`adl: ${corpus.samples.length} samples of ${corpus.tokensPerSample} tokens (${corpus.tooShort} shorter lines skipped), layer ${layer}\n`);
    const r = await activationDifferenceLens(pair, corpus.samples, {
      layer,
      positions,
      top,
      batchSize,
      onProgress: stderrProgress(),
      ...(values['no-patchscope'] ? {} : { patchscope: { prompts: IDENTITY_PROMPTS.map((p) => tokenizer.encode(p)), ...(scales ? { scales } : {}) } }),
    });
    const tokens = (list: readonly TokenProb[]): Token[] => list.map((t) => ({ id: t.id, token: tokenText(tokenizer, t.id), prob: t.prob }));
    return {
      layer: r.layer,
      hook: `blocks.${r.layer}.hook_resid_post`,
      samples: r.samples,
      tokens_per_sample: corpus.tokensPerSample,
      skipped_short: corpus.tooShort,
      ft_norm: r.ftNorm ?? null,
      positions: r.positions.map((p) => ({ position: p.position, consistency: p.consistency, norm: p.norm, top: tokens(p.top), top_negative: tokens(p.topNegative) })),
      patchscope: r.positions
        .filter((p) => p.patchscope)
        .map((p) => ({
          position: p.position,
          latent_norm: r.ftNorm ?? p.norm,
          scales: p.patchscope!.scales.map((s) => ({ scale: s.scale, top: tokens(s.top) })),
          stable: p.patchscope!.stable.map((s) => ({ id: s.id, token: tokenText(tokenizer, s.id), scales: s.scales, prob: s.prob })),
        })),
      seconds: (performance.now() - t0) / 1000,
    };
  },
  format(result) {
    return formatAdl(result as AdlJson);
  },
};

/** Per position ‖δ‖, consistency and the Patchscope's stable tokens; then ±δ's top tokens, ranks by positions. */
export function formatAdl(r: AdlJson): string {
  const width = outputWidth();
  const token = (t: { token: string | null; id: number }) => shownToken(t.token, t.id);
  const out = [`ADL at ${r.hook}: δ_p = mean of h_ft − h_base over ${r.samples} samples × ${r.tokens_per_sample} tokens${r.skipped_short ? ` (${r.skipped_short} shorter lines skipped)` : ''}; mean ‖h_ft‖ ${num(r.ft_norm)}`];
  const stable = (position: number) => r.patchscope.find((x) => x.position === position)?.stable.map((t) => `${token(t)} ×${t.scales}`).join(', ') ?? '';
  out.push(table([{ header: 'position', right: true }, { header: '‖δ_p‖', right: true }, { header: 'consistency', right: true }, { header: r.patchscope.length ? 'Patchscope: stable across scales' : '' }], r.positions.map((p) => [String(p.position), num(p.norm), num(p.consistency), stable(p.position)]), width).trimEnd());
  for (const [sign, title] of [['top', '+δ_p: tokens the fine-tune pushes towards'], ['top_negative', '−δ_p: tokens it pushes away from']] as const) {
    const k = Math.max(...r.positions.map((p) => p[sign].length));
    out.push('', `${title} (fine-tuned model's logit lens):`);
    const rows = Array.from({ length: k }, (_, j) => [String(j + 1), ...r.positions.map((p) => (p[sign][j] ? `${token(p[sign][j])} ${pct(p[sign][j].prob)}` : ''))]);
    out.push(table([{ header: '#', right: true }, ...r.positions.map((p) => ({ header: `position ${p.position}` }))], rows, width).trimEnd());
  }
  return out.join('\n') + '\n' + jsonHint('ids, probabilities and the Patchscope per scale');
}
