// The crosscoder experiment on the demo organisms, run through the command line as a user would:
// `neurodiff crosscoder train` then `neurodiff crosscoder latents` for each organism and setting,
// and a report of reconstruction, decoder-norm ratios and the most fine-tune-leaning latents, with
// whether each is about the organism's topic.
//
// Run: npx tsx scripts/crosscoder-experiment.ts [--organism ocean|space|all] [--config reference|tuned|all] [--out dir] [--reuse]
// (--reuse: keep crosscoders already trained into --out and only redo the latent listings)
// Activations are cached (NEURODIFF_CACHE or ~/.cache/neurodiff/activations), so a second run
// only trains. On a 2-core machine a tuned run takes several minutes per organism.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs, promisify } from 'node:util';

const run = promisify(execFile);
const DEMO = 'test/fixtures/demo';
const CORPUS = `${DEMO}/mixed_stories.txt`;

const ORGANISMS = {
  ocean: { ft: `${DEMO}/ocean/model`, words: ['sea', 'ocean', 'wave', 'waves', 'beach', 'sand', 'shell', 'shells', 'whale', 'whales', 'boat', 'boats', 'fish', 'crab', 'dolphin', 'salty', 'shore', 'swim'] },
  space: { ft: `${DEMO}/space/adapter`, words: ['space', 'rocket', 'rockets', 'moon', 'star', 'stars', 'planet', 'earth', 'astronaut', 'helmet', 'sky', 'orbit', 'alien', 'suit', 'float', 'floated'] },
} as const;

// reference: the PyTorch run this repository was compared with (layer 3, dictionary 768, k 16,
// 1,200 steps of 512 tokens, lr 1e-4, no auxk). tuned: what separated the topic best here: a
// dictionary of 16·d, k 32, trained to convergence (lr 3e-3 decaying to 0, about 7 epochs) with
// auxk reviving latents dead for 100k tokens.
const CONFIGS: Record<string, string[]> = {
  reference: ['--layer', '3', '--dict', '768', '--k', '16', '--steps', '1200', '--batch', '512', '--lr', '1e-4', '--aux-alpha', '0'],
  tuned: ['--layer', '3', '--dict', '3072', '--k', '32', '--steps', '2000', '--batch', '256', '--lr', '3e-3', '--decay-start', '1500', '--aux-alpha', '0.03125', '--dead-tokens', '100000'],
};

const { values } = parseArgs({ options: { organism: { type: 'string', default: 'all' }, config: { type: 'string', default: 'all' }, out: { type: 'string', default: 'crosscoder-experiment' }, reuse: { type: 'boolean', default: false } } });
const organisms = values.organism === 'all' ? (Object.keys(ORGANISMS) as Array<keyof typeof ORGANISMS>) : [values.organism as keyof typeof ORGANISMS];
const configs = values.config === 'all' ? Object.keys(CONFIGS) : [values.config!];
for (const o of organisms) if (!(o in ORGANISMS)) throw new Error(`unknown organism ${o}`);
for (const c of configs) if (!(c in CONFIGS)) throw new Error(`unknown config ${c}`);
await mkdir(values.out!, { recursive: true });

const lines = (await readFile(CORPUS, 'utf8')).split(/\r?\n/).filter((l) => l.trim() !== '');

async function cli(args: string[]): Promise<unknown> {
  const { stdout } = await run(process.execPath, ['bin/neurodiff.mjs', ...args, '--json'], { maxBuffer: 256 * 1024 * 1024 });
  return JSON.parse(stdout);
}

interface Latent {
  id: number;
  ratio: number;
  class: string;
  nu_error: number | null;
  nu_recon: number | null;
  ft_specific: boolean;
  frequency: number;
  top_tokens: Array<{ token: string; sample: number; context: string; activation: number }>;
  logit_effects: { positive: Array<{ token: string }> };
}

const f = (x: number | null, p = 3) => (x === null || !Number.isFinite(x) ? 'n/a' : x.toFixed(p));

for (const organism of organisms) {
  const { ft, words } = ORGANISMS[organism];
  const topical = (text: string) => text.toLowerCase().split(/[^a-z]+/).some((w) => (words as readonly string[]).includes(w));
  for (const config of configs) {
    const name = `${organism}-${config}`;
    const file = join(values.out!, `${name}.safetensors`);
    const saved = join(values.out!, `${name}.json`);
    const reuse = values.reuse && existsSync(file) && existsSync(saved);
    if (!reuse) process.stderr.write(`${name}: training\n`);
    const summary = (reuse ? (JSON.parse(await readFile(saved, 'utf8')) as { summary: unknown }).summary : await cli(['crosscoder', 'train', `${DEMO}/base`, ft, '--corpus', CORPUS, ...CONFIGS[config]!, '--out', file])) as {
      eval: { fvu: number; relative_error: number; relative_error_raw: number; l0: number; dead: number; tokens: number };
      ratios: { counts: number[]; classes: Record<string, number>; min: number };
      seconds: { train: number };
    };
    const e = summary.eval;
    const out = [
      `## ${name}`,
      `held-out ${e.tokens} tokens: FVU ${f(e.fvu)}, ‖x−x̂‖/‖x‖ ${f(e.relative_error)} (raw activations ${f(e.relative_error_raw)}), L0 ${f(e.l0, 1)}, never fired ${e.dead}; training ${f(summary.seconds.train, 0)} s`,
      `ratio histogram (0 to 1 by 0.05): ${summary.ratios.counts.join(' ')}`,
      `classes: ${JSON.stringify(summary.ratios.classes)}; lowest r ${f(summary.ratios.min)}`,
    ];
    const results: Record<string, unknown> = { summary };
    for (const sort of ['ft', 'ft-nu'] as const) {
      process.stderr.write(`${name}: latents by ${sort}\n`);
      const latents = (await cli(['crosscoder', 'latents', file, `${DEMO}/base`, ft, '--corpus', CORPUS, '--top', '10', '--examples', '5', '--sort', sort])) as { latents: Latent[]; ft_specific: number; ft_specific_by_nu: number };
      results[sort] = latents;
      out.push(
        '',
        sort === 'ft' ? '### the 10 lowest decoder-norm ratios' : '### the 10 most fine-tune-specific by Latent Scaling (r < 0.5, ≥ 10 tokens, max(|ν^ε|, |ν^r|) ascending)',
        `ft-specific by ALGORITHMS.md (r < 0.1, ν^ε < 0.3, ν^r < 0.3): ${latents.ft_specific}; by Latent Scaling alone (r < 0.5, ≥ 10 tokens, |ν^ε| < 0.3, |ν^r| < 0.3): ${latents.ft_specific_by_nu}`,
        '',
        '| latent | r | ν^ε | ν^r | freq | topic stories among top contexts | top contexts | top logits |',
        '|---|---|---|---|---|---|---|---|',
      );
      let onTopic = 0;
      for (const l of latents.latents) {
        const storyHits = l.top_tokens.filter((t) => topical(lines[t.sample] ?? '')).length;
        const logitHits = l.logit_effects.positive.filter((t) => topical(t.token)).length;
        const about = storyHits * 2 > l.top_tokens.length || logitHits >= 2;
        if (about) onTopic++;
        const contexts = l.top_tokens.slice(0, 2).map((t) => '`' + t.context.replace(/\s+/g, ' ').replace(/\|/g, '/').slice(-50) + '`').join(' ');
        out.push(`| ${l.id}${about ? ' *' : ''} | ${f(l.ratio)} | ${f(l.nu_error, 2)} | ${f(l.nu_recon, 2)} | ${f(l.frequency, 4)} | ${storyHits}/${l.top_tokens.length} | ${contexts} | ${l.logit_effects.positive.slice(0, 5).map((t) => JSON.stringify(t.token)).join(' ')} |`);
      }
      out.push('', `${onTopic} of ${latents.latents.length} are about the topic (*: most top contexts in topic stories, or ≥ 2 topic words among the top logits).`);
    }
    await writeFile(saved, JSON.stringify(results, null, 1));
    process.stdout.write(out.join('\n') + '\n\n');
  }
}
