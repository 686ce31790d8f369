// `neurodiff steer <base> <ft> --corpus f --prompt t`: steer both models with the ADL difference δ_p,
// v = δ_p / ‖δ_p‖ · mean ‖h^ft_ℓ‖, added at layer ℓ at every position; greedy generations side by side.
import { adlDifferences, steer as steerModels, steeringVector } from '../analysis/activations/adl.ts';
import type { Command } from './commands.ts';
import { CORPUS_OPTIONS, corpusSamples } from './adl.ts';
import { UsageError } from './errors.ts';
import { intOption, pairRunnerArgs, needTokenizer, numberList, pickBackend, stderrProgress, str } from './models.ts';

interface SteerJson {
  layer: number;
  position: number;
  samples: number;
  ft_norm: number;
  prompt: string;
  generations: { strength: number; base: { ids: number[]; text: string }; ft: { ids: number[]; text: string } }[];
}

export const steer: Command = {
  summary: 'steer both models with the ADL difference vector at several strengths and generate greedily',
  usage: '<base> <ft> --corpus <file> --prompt <text> [--layer i] [--position 0] [--strengths 0,0.25,0.5,1] [--max-new 40] [--max-samples 200] [--tokens-per-sample 64] [--batch 16] [--no-bos] [--backend cpu|webgpu] [--tokenizer <file>]',
  options: { ...CORPUS_OPTIONS, prompt: { type: 'string' }, position: { type: 'string' }, strengths: { type: 'string' }, 'max-new': { type: 'string' } },
  async run(positionals, values): Promise<SteerJson> {
    const prompt = str(values, 'prompt');
    if (prompt === undefined) throw new UsageError('--prompt <text> is required: the text both models continue');
    const position = intOption(values, 'position', 0);
    const strengths = numberList(str(values, 'strengths') ?? '0,0.25,0.5,1', '--strengths');
    const maxNew = intOption(values, 'max-new', 40, 1);
    const backend = await pickBackend(values);
    const { runner: pair, tokenizer: tok } = await pairRunnerArgs(positionals, backend, values, 'steer');
    const tokenizer = needTokenizer(tok, 'steer');
    const { layer, corpus, batchSize } = await corpusSamples(values, tokenizer, pair.base.config.nLayers);
    const diff = await adlDifferences(pair, corpus.samples, { layer, positions: [position], batchSize, onProgress: stderrProgress() });
    if (diff.ftNorm === undefined) throw new UsageError(`the mean activation norm uses positions ≥ 5: --tokens-per-sample must be above 5 (it is ${corpus.tokensPerSample})`);
    const v = steeringVector(diff.delta[0]!, diff.ftNorm);
    const ids = tokenizer.encode(prompt);
    const stop = tokenizer.eosId === undefined ? [] : [tokenizer.eosId];
    const gens = await steerModels(pair, v, { layer, strengths, prompt: ids, maxNewTokens: maxNew, stop, onProgress: stderrProgress() });
    const text = (out: number[]) => ({ ids: out, text: tokenizer.decode([...ids, ...out]) });
    return {
      layer,
      position,
      samples: diff.samples,
      ft_norm: diff.ftNorm,
      prompt,
      generations: gens.map((g) => ({ strength: g.strength, base: text(g.base), ft: text(g.ft) })),
    };
  },
  format(result) {
    const r = result as SteerJson;
    const lines = [`steering at blocks.${r.layer}.hook_resid_post with δ at position ${r.position} (‖v‖ = ${r.ft_norm.toFixed(2)} × strength)`];
    for (const g of r.generations) lines.push(`strength ${g.strength}`, `  base: ${JSON.stringify(g.base.text)}`, `  ft:   ${JSON.stringify(g.ft.text)}`);
    return lines.join('\n') + '\n';
  },
};
