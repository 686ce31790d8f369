// `neurodiff patch <base> <ft>`: cross-model activation patching per layer and hook kind (both
// directions), and model stitching at every layer boundary (both orders), on one prompt.
import { HOOK_KINDS, type HookKind } from '../analysis/activations/differences.ts';
import { patchAndStitch, type PatchedLayers, type StitchingResult } from '../analysis/activations/patching.ts';
import type { Command } from './commands.ts';
import { UsageError } from './errors.ts';
import { pairRunnerArgs, pickBackend, promptIds, stderrProgress, str, tokenText } from './models.ts';

type Recovery = { kind: HookKind; layers: { layer: number; kl: number; recovery: number }[] };
type Stitch = { boundary: number; kl_from_ft: number; kl_from_base: number; loss: number }[];

interface PatchJson {
  tokens: { id: number; token: string | null }[];
  positions: 'all' | 'last';
  kl_ft_base: number;
  kl_base_ft: number;
  ft_into_base: Recovery[];
  base_into_ft: Recovery[];
  stitching: { loss_base: number; loss_ft: number; base_below: Stitch; ft_below: Stitch };
}

const recovery = (list: readonly PatchedLayers[]): Recovery[] =>
  list.map((p) => ({ kind: p.kind, layers: Array.from(p.kl, (kl, layer) => ({ layer, kl, recovery: p.recovery[layer]! })) }));
const stitch = (s: StitchingResult): Stitch => Array.from(s.klFromFt, (kl, boundary) => ({ boundary, kl_from_ft: kl, kl_from_base: s.klFromBase[boundary]!, loss: s.loss[boundary]! }));

export const patch: Command = {
  summary: 'cross-model activation patching (recovery per layer and hook kind) and model stitching on a prompt',
  usage: '<base> <ft> (--prompt <text> | --ids 1,2,3) [--kinds resid_pre,attn_out,mlp_out,resid_post] [--positions all|last] [--backend cpu|webgpu] [--tokenizer <file>]',
  options: { prompt: { type: 'string' }, ids: { type: 'string' }, kinds: { type: 'string' }, positions: { type: 'string' }, backend: { type: 'string' }, tokenizer: { type: 'string' } },
  async run(positionals, values): Promise<PatchJson> {
    const kinds = (str(values, 'kinds') ?? HOOK_KINDS.join(',')).split(',').map((k) => k.trim());
    for (const k of kinds) if (!(HOOK_KINDS as readonly string[]).includes(k)) throw new UsageError(`--kinds: "${k}" is not one of ${HOOK_KINDS.join(', ')}`);
    const positions = str(values, 'positions') ?? 'all';
    if (positions !== 'all' && positions !== 'last') throw new UsageError(`--positions must be all or last, got "${positions}"`);
    const backend = await pickBackend(values);
    const { runner: pair, tokenizer } = await pairRunnerArgs(positionals, backend, values, 'patch');
    const ids = promptIds(values, tokenizer);
    const onProgress = stderrProgress();
    const { patching: r, stitched } = await patchAndStitch(pair, ids, { kinds: kinds as HookKind[], positions, onProgress });
    const sb = stitched.base!;
    const sf = stitched.ft!;
    return {
      tokens: ids.map((id) => ({ id, token: tokenText(tokenizer, id) })),
      positions,
      kl_ft_base: r.klFtBase,
      kl_base_ft: r.klBaseFt,
      ft_into_base: recovery(r.ftIntoBase),
      base_into_ft: recovery(r.baseIntoFt),
      stitching: { loss_base: sb.lossBase, loss_ft: sb.lossFt, base_below: stitch(sb), ft_below: stitch(sf) },
    };
  },
  format(result) {
    const r = result as PatchJson;
    const lines = [`KL(P_ft || P_base) = ${r.kl_ft_base.toFixed(4)}; recovery of ft when its activation is patched into base:`];
    for (const k of r.ft_into_base) lines.push(`  ${k.kind.padEnd(10)} ${k.layers.map((l) => l.recovery.toFixed(3)).join(' ')}`);
    lines.push(`KL(P_base || P_ft) = ${r.kl_base_ft.toFixed(4)}; recovery of base when its activation is patched into ft:`);
    for (const k of r.base_into_ft) lines.push(`  ${k.kind.padEnd(10)} ${k.layers.map((l) => l.recovery.toFixed(3)).join(' ')}`);
    lines.push('stitching, base blocks below ℓ: KL from ft per ℓ: ' + r.stitching.base_below.map((s) => s.kl_from_ft.toFixed(3)).join(' '));
    return lines.join('\n') + '\n';
  },
};
