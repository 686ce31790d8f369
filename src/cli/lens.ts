// `neurodiff lens <base> <ft>`: the differential logit lens of one prompt, with the activation
// differences (‖δ‖, relative, cosine) at every layer and position.
import { promptDifferences } from '../analysis/activations/differences.ts';
import { differentialLogitLens } from '../analysis/activations/lens.ts';
import type { Command } from './commands.ts';
import { jsonHint, outputWidth, pct, shownToken, table } from './format.ts';
import { intOption, pairRunnerArgs, pickBackend, promptIds, stderrProgress, tokenProbs, tokenText } from './models.ts';

interface LensJson {
  tokens: { id: number; token: string | null }[];
  direction: string;
  layers: {
    layer: number;
    hook: string;
    positions: { position: number; kl: number; delta: { norm: number; relative: number; cosine: number }; base: ReturnType<typeof tokenProbs>; ft: ReturnType<typeof tokenProbs> }[];
  }[];
}

export const lens: Command = {
  summary: 'differential logit lens of a prompt: both models\' top tokens and KL per layer and position',
  usage: '<base> <ft> (--prompt <text> | --ids 1,2,3) [--top 5] [--backend cpu|webgpu] [--tokenizer <file>]',
  options: {
    prompt: { type: 'string' },
    ids: { type: 'string' },
    top: { type: 'string' },
    backend: { type: 'string' },
    tokenizer: { type: 'string' },
  },
  async run(positionals, values): Promise<LensJson> {
    const top = intOption(values, 'top', 5, 1);
    const backend = await pickBackend(values);
    const { runner: pair, tokenizer } = await pairRunnerArgs(positionals, backend, values, 'lens');
    const ids = promptIds(values, tokenizer);
    const r = await differentialLogitLens(pair, ids, { k: top, onProgress: stderrProgress() });
    const diff = await promptDifferences(pair, ids);
    const T = ids.length;
    const k = r.base.k;
    return {
      tokens: ids.map((id) => ({ id, token: tokenText(tokenizer, id) })),
      direction: r.direction,
      layers: Array.from({ length: r.layers }, (_, layer) => ({
        layer,
        hook: `blocks.${layer}.hook_resid_post`,
        positions: Array.from({ length: T }, (_, position) => {
          const row = layer * T + position;
          return {
            position,
            kl: r.kl[row]!,
            delta: { norm: diff.norm[row]!, relative: diff.relative[row]!, cosine: diff.cosine[row]! },
            base: tokenProbs(tokenizer, r.base.ids, r.base.probs, row * k, k),
            ft: tokenProbs(tokenizer, r.ft.ids, r.ft.probs, row * k, k),
          };
        }),
      })),
    };
  },
  format(result) {
    return formatLens(result as LensJson);
  },
};

/**
 * KL(P_ft ‖ P_base) with both models' top token per position (rows) and layer (columns; the last
 * layers that fit the width), then the last layer's top-k of both models per position.
 */
function formatLens(r: LensJson): string {
  const width = outputWidth();
  const L = r.layers.length;
  const token = (t: { token: string | null; id: number }) => shownToken(t.token, t.id);
  const cell = (p: LensJson['layers'][number]['positions'][number]) => `${p.kl.toFixed(3)} ${token(p.base[0]!)}→${token(p.ft[0]!)}`;
  const rows = (layers: LensJson['layers']) => r.tokens.map((t, position) => [String(position), token(t), ...layers.map((l) => cell(l.positions[position]!))]);
  // As many of the last layers as fit without cutting cells; the first ones go.
  let first = 0;
  const fits = (from: number) => table([{ header: 'pos', right: true }, { header: 'token' }, ...r.layers.slice(from).map((l) => ({ header: `layer ${l.layer}` }))], rows(r.layers.slice(from)), Infinity)
      .split('\n')
      .every((line) => line.length <= width);
  while (first < L - 1 && !fits(first)) first++;
  const shown = r.layers.slice(first);
  const out = [`${r.direction} (nats) and top-1 token base→ft, per position and layer${first > 0 ? ` (layers ${first}–${L - 1}; ${first} earlier left out for width)` : ''}:`];
  out.push(table([{ header: 'pos', right: true }, { header: 'token' }, ...shown.map((l) => ({ header: `layer ${l.layer}` }))], rows(shown), width).trimEnd());
  const last = r.layers[L - 1]!;
  const k = last.positions[0]?.base.length ?? 0;
  const topk = (list: { token: string | null; id: number; prob: number }[]) => list.map((t) => `${token(t)} ${pct(t.prob)}`).join(', ');
  out.push('', `layer ${last.layer}, top ${k} of each model:`);
  out.push(table([{ header: 'pos', right: true }, { header: 'token' }, { header: 'base' }, { header: 'fine-tuned' }], r.tokens.map((t, position) => [String(position), token(t), topk(last.positions[position]!.base), topk(last.positions[position]!.ft)]), width).trimEnd());
  return out.join('\n') + '\n' + jsonHint('every layer\'s top-k and the activation differences');
}
