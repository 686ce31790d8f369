// What each scale run feeds both front ends: the generated pair with a tokenizer beside each model
// (hard links to the generated files, so nothing is copied or regenerated), a prompt of 16 tokens,
// and the demo's corpora.
import { copyFileSync, existsSync, linkSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { PRESETS, type RandomModelSpec } from '../../scripts/make-random-model.ts';
import { pathFileSet } from '../../src/io/node-source.ts';
import { readHfTokenizer } from '../../src/io/tokenizer.ts';
import { FIXTURES_DIR, MODELS_DIR, randomModel } from '../lib/models.ts';

export const PROMPT_TOKENS = 16;
const PROMPT_WORDS = 'Once upon a time, a little girl named Lily went to the park with her mother, and she saw a big red ball under the old tree near the pond.'.split(' ');
export const ADL_CORPUS = join(FIXTURES_DIR, '..', '..', 'public', 'models', 'demo', 'generic_stories.txt');
export const CROSSCODER_CORPUS = join(FIXTURES_DIR, '..', '..', 'public', 'models', 'demo', 'mixed_stories.txt');

export interface ScaleModel {
  preset: string;
  spec: RandomModelSpec;
  base: string;
  ft: string;
  /** Bytes of both models' files as stored. */
  pairBytes: number;
  tokenizer: string;
  prompt: string;
  promptTokens: number;
}

/** A tokenizer whose ids all lie inside the model's vocabulary: the preset's own, GPT-2's (50,257), or the demo's (4,096). */
function tokenizerFor(spec: RandomModelSpec): { dir: string; name: string } | null {
  if (spec.tokenizer) return null;
  if (spec.vocab >= 50257) return { dir: join(FIXTURES_DIR, 'tokenizers', 'gpt2'), name: 'GPT-2 (50,257 tokens)' };
  return { dir: join(FIXTURES_DIR, 'demo', 'base'), name: 'the demo BPE (4,096 tokens)' };
}

function folderBytes(dir: string): number {
  return readdirSync(dir).reduce((n, f) => n + statSync(join(dir, f)).size, 0);
}

/** The generated pair (made first when missing) as two folders with a tokenizer. */
export async function scaleModel(preset: string, log: (line: string) => void): Promise<ScaleModel> {
  const spec = PRESETS[preset];
  if (!spec?.fineTune) throw new Error(`"${preset}" is not a generated pair (have: ${Object.entries(PRESETS).filter(([, s]) => s.fineTune).map(([n]) => n).join(', ')})`);
  const generated = randomModel(preset, log);
  const tok = tokenizerFor(spec);
  const dir = join(MODELS_DIR, 'scale-inputs', preset);
  // Made in place (another run may be reading these folders): a link is replaced only when it no longer is the generated file.
  for (const role of ['base', 'ft']) {
    const out = join(dir, role);
    mkdirSync(out, { recursive: true });
    for (const f of readdirSync(join(generated, role))) {
      const from = join(generated, role, f);
      const to = join(out, f);
      if (statSync(to, { throwIfNoEntry: false })?.ino === statSync(from).ino) continue;
      rmSync(to, { force: true });
      linkSync(from, to);
    }
    if (tok) for (const f of ['tokenizer.json', 'tokenizer_config.json']) if (!existsSync(join(out, f))) copyFileSync(join(tok.dir, f), join(out, f));
  }
  const base = join(dir, 'base');
  const ft = join(dir, 'ft');
  const tokenizer = await readHfTokenizer(await pathFileSet(base));
  if (!tokenizer) throw new Error(`${base}: no tokenizer.json`);
  // The shortest prefix of the sentence that makes PROMPT_TOKENS tokens (or the whole sentence).
  let prompt = PROMPT_WORDS.join(' ');
  for (let n = 1; n <= PROMPT_WORDS.length; n++) {
    const text = PROMPT_WORDS.slice(0, n).join(' ');
    if (tokenizer.encode(text).length >= PROMPT_TOKENS) {
      prompt = text;
      break;
    }
  }
  return {
    preset,
    spec,
    base,
    ft,
    pairBytes: folderBytes(join(generated, 'base')) + folderBytes(join(generated, 'ft')),
    tokenizer: tok?.name ?? 'its own (Gemma 3, 262,144 tokens)',
    prompt,
    promptTokens: tokenizer.encode(prompt).length,
  };
}
