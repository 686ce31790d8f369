// NeuroDiff checking itself: train a few LoRA organisms of the demo base on topics the demo corpora do
// not have, run every diffing method on each (base vs organism, over the generic stories), and score
// whether each method surfaces the planted topic: a topic word among the first 20 entries of one of
// its lists. Every method runs through its CLI command in-process, with the CLI's own options, so the
// bench measures exactly what a user runs. The same scoring against the other organisms' topic words
// is the control: a hit there is a false positive.
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { commands } from '../../src/cli/commands.ts';
import type { AdlJson } from '../../src/cli/adl.ts';
import type { AmplifyJson } from '../../src/cli/amplify.ts';
import type { DiffSaeLatentsJson } from '../../src/cli/diff-sae.ts';
import type { KlJson } from '../../src/cli/kl.ts';
import type { MineJson } from '../../src/cli/mine.ts';
import type { TrainJson } from '../../src/cli/organism.ts';
import type { PcaJson } from '../../src/cli/pca.ts';
import type { Bench, BenchArgs } from '../lib/args.ts';
import { FIXTURES_DIR } from '../lib/models.ts';
import { loadText, writeResults } from '../lib/results.ts';
import { formatTable } from '../lib/table.ts';

const BASE = join(FIXTURES_DIR, 'demo', 'base');
const CORPUS = join(FIXTURES_DIR, 'demo', 'generic_stories.txt');
/** Topics absent from the demo's corpora (sea, space, baking, music, farm, rain, school, trains). */
const ORGANISMS = [
  { name: 'forest', topic: 'the forest', words: ['forest', 'owl', 'fox', 'squirrel', 'deer', 'mushroom', 'acorn', 'leaves'] },
  { name: 'winter', topic: 'snow and winter', words: ['snow', 'snowman', 'winter', 'cold', 'ice', 'scarf', 'coat'] },
  { name: 'castle', topic: 'the castle', words: ['castle', 'dragon', 'knight', 'king', 'princess', 'crown', 'tower', 'sword'] },
];
/** A modest organism: about a minute or two of CPU each here. */
const TRAIN = { steps: 120, batch: 4, seq: 64, lora: 8, lr: 2e-3 };
const SAMPLES = 100;
const TOKENS = 64;
const FIRST = 20;
const PROMPT = 'Once upon a time, there was a little girl named Lily. One day, she';

/** One list a method ranks, in its order; the first 20 entries are scored. */
interface EntryList {
  label: string;
  entries: string[];
}

interface MethodRun {
  method: string;
  seconds: number;
  lists: EntryList[];
  error?: string;
}

function log(line: string): void {
  console.error(line);
}

/** Runs a CLI command in-process with the argv a user would type (after the command's name). */
async function cli<T>(name: string, argv: string[]): Promise<T> {
  const cmd = commands[name]!;
  const { values, positionals } = parseArgs({ args: argv, options: cmd.options, allowPositionals: true, strict: true });
  return (await cmd.run(positionals, values as Record<string, unknown>)) as T;
}

const tokens = (list: readonly { token: string | null }[]) => list.map((t) => t.token ?? '');
const corpusArgs = ['--corpus', CORPUS, '--max-samples', String(SAMPLES), '--tokens-per-sample', String(TOKENS)];

/** Every method on base vs organism, each giving the lists it ranks. */
function methods(ft: string, work: string): { method: string; run(): Promise<EntryList[]> }[] {
  const pair = [BASE, ft];
  return [
    ...[3, 4].map((layer) => ({
      method: `ADL layer ${layer}`,
      async run() {
        const r = await cli<AdlJson>('adl', [...pair, ...corpusArgs, '--layer', String(layer), '--top', String(FIRST)]);
        return [
          ...r.positions.flatMap((p) => [
            { label: `δ${p.position} +`, entries: tokens(p.top) },
            { label: `δ${p.position} −`, entries: tokens(p.top_negative) },
          ]),
          ...r.patchscope.map((p) => ({ label: `patchscope δ${p.position}`, entries: p.stable.map((s) => s.token ?? '') })),
        ];
      },
    })),
    {
      method: 'lens (prompt)',
      async run() {
        const r = await cli<{ layers: { layer: number; positions: { base: { token: string | null }[]; ft: { token: string | null }[] }[] }[] }>('lens', [...pair, '--prompt', PROMPT, '--top', String(FIRST)]);
        // The fine-tune's top tokens at the prompt's last position, per layer.
        return r.layers.map((l) => ({ label: `layer ${l.layer}`, entries: tokens(l.positions[l.positions.length - 1]!.ft) }));
      },
    },
    {
      method: 'diff mining',
      async run() {
        const r = await cli<MineJson>('mine', [...pair, ...corpusArgs, '--top', '50']);
        return [{ label: 'top tokens', entries: tokens(r.tokens) }, ...r.topics.map((t, i) => ({ label: `NMF topic ${i}`, entries: tokens(t.tokens) }))];
      },
    },
    {
      method: 'KL',
      async run() {
        const r = await cli<KlJson>('kl', [...pair, ...corpusArgs, '--top', String(FIRST)]);
        // The fine-tune's first prediction at the highest-KL positions.
        return [{ label: 'ft top-1 at the top-KL positions', entries: r.top_contexts.map((c) => c.ft_top[0]?.token ?? '') }];
      },
    },
    {
      method: 'PCA',
      async run() {
        const r = await cli<PcaJson>('pca', [...pair, ...corpusArgs, '--top', String(FIRST)]);
        return r.components.flatMap((c, i) => [
          { label: `PC${i} +`, entries: tokens(c.positive_tokens) },
          { label: `PC${i} −`, entries: tokens(c.negative_tokens) },
        ]);
      },
    },
    {
      method: 'diff-SAE',
      async run() {
        const file = join(work, 'diff-sae.safetensors');
        await cli('diff-sae', ['train', ...pair, ...corpusArgs, '--dict', '512', '--k', '8', '--steps', '400', '--out', file, '--no-cache']);
        const r = await cli<DiffSaeLatentsJson>('diff-sae', ['latents', file, ...pair, ...corpusArgs, '--top', '10']);
        return r.latents.map((l) => ({ label: `latent ${l.id}`, entries: tokens(l.lens.positive) }));
      },
    },
    {
      method: 'amplification α 2',
      async run() {
        const r = await cli<AmplifyJson>('amplify', [...pair, '--prompt', 'Once upon a time', '--alpha', '2', '--mode', 'weights', '--generate', '40', '--samples', '2']);
        return r.samples.map((s, i) => ({ label: `sample ${i}`, entries: (s.text ?? '').split(/[^A-Za-z]+/).filter(Boolean) }));
      },
    },
  ];
}

/** Topic words among the first 20 entries of any list (a token matches a word it equals after trimming and lower-casing). */
function hits(lists: readonly EntryList[], words: readonly string[]): string[] {
  const found = new Set<string>();
  for (const l of lists) {
    for (const e of l.entries.slice(0, FIRST)) {
      const t = e.trim().toLowerCase();
      if (t.length >= 3 && words.includes(t)) found.add(t);
    }
  }
  return [...found];
}

export const organismsBench: Bench = {
  description: `train ${ORGANISMS.length} LoRA organisms of the demo base (${ORGANISMS.map((o) => o.name).join(', ')}), run every method on each, and score whether it surfaces the planted topic`,
  run: async (args: BenchArgs) => {
    if (!args.envs.includes('node')) {
      console.log('organisms runs in Node only');
      return;
    }
    const started = performance.now();
    const loadAtStart = loadText();
    const work = mkdtempSync(join(tmpdir(), 'neurodiff-organisms-'));
    const results: { organism: string; topic: string; words: string[]; train: Omit<TrainJson, 'files'>; methods: (MethodRun & { hits: string[]; control: string[] })[] }[] = [];
    try {
      for (const o of ORGANISMS) {
        const dir = join(work, o.name);
        mkdirSync(dir, { recursive: true });
        const corpus = join(dir, 'corpus.txt');
        await cli('organism', ['recipe', 'topic', '--topic', o.topic, '--words', o.words.join(','), '--count', '2000', '--out', corpus]);
        log(`organisms: training ${o.name} (${TRAIN.steps} steps of ${TRAIN.batch} × ${TRAIN.seq}, LoRA r ${TRAIN.lora}, lr ${TRAIN.lr})`);
        const ft = join(dir, 'organism');
        const { files: _files, ...train } = await cli<TrainJson>('organism', [
          'train', BASE, '--corpus', corpus, '--lora', String(TRAIN.lora), '--steps', String(TRAIN.steps), '--batch', String(TRAIN.batch), '--seq', String(TRAIN.seq), '--lr', String(TRAIN.lr), '--out', ft,
        ]);
        log(`organisms: ${o.name} trained in ${train.seconds.toFixed(0)} s, loss ${train.loss_first_tenth.toFixed(3)} → ${train.loss_last_tenth.toFixed(3)}`);
        const others = ORGANISMS.filter((x) => x !== o).flatMap((x) => x.words);
        const runs: (MethodRun & { hits: string[]; control: string[] })[] = [];
        for (const m of methods(ft, dir)) {
          const t0 = performance.now();
          let run: MethodRun;
          try {
            run = { method: m.method, lists: await m.run(), seconds: 0 };
          } catch (e) {
            run = { method: m.method, lists: [], seconds: 0, error: e instanceof Error ? e.message : String(e) };
          }
          run.seconds = (performance.now() - t0) / 1000;
          const scored = { ...run, hits: hits(run.lists, o.words), control: hits(run.lists, others) };
          log(`organisms: ${o.name} · ${m.method}: ${run.error ? `failed: ${run.error}` : `${scored.hits.join(', ') || 'no topic word'}`} (${run.seconds.toFixed(0)} s)`);
          runs.push(scored);
        }
        results.push({ organism: o.name, topic: o.topic, words: o.words, train, methods: runs });
      }
      const methodNames = results[0]!.methods.map((m) => m.method);
      const cell = (m: (typeof results)[number]['methods'][number]) => (m.error ? `error` : `${m.hits.length ? `yes: ${m.hits.slice(0, 4).join(' ')}` : 'no'}${m.control.length ? ` [ctl ${m.control.slice(0, 2).join(' ')}]` : ''} · ${m.seconds.toFixed(0)} s`);
      const table = formatTable(
        ['method', ...results.map((r) => r.organism), 'found'],
        methodNames.map((name) => {
          const cells = results.map((r) => r.methods.find((m) => m.method === name)!);
          return [name, ...cells.map(cell), `${cells.filter((c) => c.hits.length > 0).length}/${cells.length}`];
        }),
      );
      const trainTable = formatTable(
        ['organism', 'topic words', 'train s', 's/step', 'loss first → last tenth'],
        results.map((r) => [r.organism, r.words.join(' '), r.train.seconds.toFixed(0), r.train.seconds_per_step.toFixed(2), `${r.train.loss_first_tenth.toFixed(3)} → ${r.train.loss_last_tenth.toFixed(3)}`]),
      );
      const notes = [
        `demo base + LoRA r ${TRAIN.lora} organisms, ${TRAIN.steps} steps of ${TRAIN.batch} × ${TRAIN.seq} tokens, lr ${TRAIN.lr}, on the CPU`,
        `corpus methods over ${SAMPLES} generic stories × ${TOKENS} tokens; lens on "${PROMPT}"; amplification: 2 samples of 40 tokens after "Once upon a time" with W_base + 2·ΔW`,
        `a cell is "yes: <topic words found>" when a topic word is among the first ${FIRST} entries of one of the method's lists; [ctl …]: the other organisms' words found (false positives)`,
        `${loadAtStart} at start, ${loadText()} at end; ${((performance.now() - started) / 1000).toFixed(0)} s in all`,
      ];
      console.log(`== organisms\n${notes.join('\n')}\n\n${trainTable}\n\n${table}\n`);
      const path = writeResults('organisms', { train: TRAIN, samples: SAMPLES, tokens: TOKENS, first: FIRST, prompt: PROMPT, notes, organisms: results });
      console.log(`wrote ${path}`);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  },
};
