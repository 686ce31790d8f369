// `neurodiff amplify <base> <ft> --prompt t --alpha 2`: generations that exaggerate the fine-tune, by
// logit-diff amplification (z_ft + α·(z_ft − z_base)) or weight amplification (W_base + α·ΔW).
import { amplify as runAmplify, type AmplifyMode } from '../analysis/amplify/amplify.ts';
import type { Command } from './commands.ts';
import { UsageError } from './errors.ts';
import { decodeText, intOption, loadPairArgs, numberList, pickBackend, promptIds, str } from './models.ts';

export interface AmplifyJson {
  prompt_ids: number[];
  prompt: string | null;
  temperature: number;
  samples: { alpha: number; mode: AmplifyMode; seed: number; ids: number[]; text: string | null }[];
  seconds: number;
}

export const amplify: Command = {
  summary: 'amplification: sample from z_ft + α·(z_ft − z_base) (--mode logits) or from W_base + α·ΔW (--mode weights)',
  usage: '<base> <ft> (--prompt t | --ids 1,2,3) [--alpha 2 | --alpha 0,1,2] [--mode logits|weights] [--generate 32] [--samples 1] [--seed 0] [--temperature 1] [--backend cpu|webgpu] [--tokenizer <file>]',
  options: {
    prompt: { type: 'string' },
    ids: { type: 'string' },
    alpha: { type: 'string' },
    mode: { type: 'string' },
    generate: { type: 'string' },
    samples: { type: 'string' },
    seed: { type: 'string' },
    temperature: { type: 'string' },
    backend: { type: 'string' },
    tokenizer: { type: 'string' },
  },
  async run(positionals, values): Promise<AmplifyJson> {
    const t0 = performance.now();
    const mode = str(values, 'mode') ?? 'logits';
    if (mode !== 'logits' && mode !== 'weights') throw new UsageError(`--mode must be logits or weights, got "${mode}"`);
    const alphas = numberList(str(values, 'alpha') ?? '2', '--alpha');
    const temperatureText = str(values, 'temperature') ?? '1';
    const temperature = Number(temperatureText);
    if (!(temperature >= 0 && Number.isFinite(temperature))) throw new UsageError(`--temperature must be a number ≥ 0, got "${temperatureText}"`);
    const backend = await pickBackend(values);
    const { pair, tokenizer } = await loadPairArgs(positionals, backend, values, 'amplify');
    const ids = promptIds(values, tokenizer);
    const eos = tokenizer?.eosId;
    const samples = await runAmplify(pair, ids, {
      alphas,
      mode,
      maxNew: intOption(values, 'generate', 32, 1),
      samples: intOption(values, 'samples', 1, 1),
      seed: intOption(values, 'seed', 0, 0),
      temperature,
      ...(eos === undefined ? {} : { stop: [eos] }),
    });
    return {
      prompt_ids: ids,
      prompt: decodeText(tokenizer, ids),
      temperature,
      samples: samples.map((s) => ({ alpha: s.alpha, mode: s.mode, seed: s.seed, ids: s.ids, text: decodeText(tokenizer, s.ids) })),
      seconds: (performance.now() - t0) / 1000,
    };
  },
  format(result) {
    const r = result as AmplifyJson;
    const lines = [`prompt: ${JSON.stringify(r.prompt ?? r.prompt_ids.join(','))} (temperature ${r.temperature})`];
    for (const s of r.samples) lines.push(`α=${s.alpha} (${s.mode}, seed ${s.seed}): ${JSON.stringify(s.text ?? s.ids.join(','))}`);
    return lines.join('\n') + '\n';
  },
};
