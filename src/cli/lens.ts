// `neurodiff lens <base> <ft>`: the differential logit lens of one prompt, with the activation
// differences (‖δ‖, relative, cosine) at every layer and position.
import { promptDifferences } from '../analysis/activations/differences.ts';
import { differentialLogitLens } from '../analysis/activations/lens.ts';
import type { Command } from './commands.ts';
import { intOption, loadPairArgs, pickBackend, promptIds, stderrProgress, tokenProbs, tokenText } from './models.ts';

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
    const { pair, tokenizer } = await loadPairArgs(positionals, backend, values, 'lens');
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
    const r = result as LensJson;
    const lines = [`${r.direction} per layer (rows) and token (columns); top-1 tokens base → ft`];
    const show = (t: string | null, id: number) => JSON.stringify(t ?? `#${id}`);
    lines.push('layer  ' + r.tokens.map((t) => show(t.token, t.id)).join('  '));
    for (const l of r.layers) {
      lines.push(`${String(l.layer).padStart(5)}  ` + l.positions.map((p) => `${p.kl.toFixed(3)} ${show(p.base[0]!.token, p.base[0]!.id)}→${show(p.ft[0]!.token, p.ft[0]!.id)}`).join('  '));
    }
    return lines.join('\n') + '\n';
  },
};
