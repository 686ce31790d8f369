// Token texts in CLI results: a model's vocabulary can be larger than its tokenizer's (padded rows).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { hfTokenizer } from '../io/tokenizer.ts';
import { tokenText } from './models.ts';

const DIR = new URL('../../test/fixtures/demo/base/', import.meta.url).pathname;
const tokenizer = hfTokenizer(JSON.parse(readFileSync(join(DIR, 'tokenizer.json'), 'utf8')), JSON.parse(readFileSync(join(DIR, 'tokenizer_config.json'), 'utf8')));

describe('tokenText', () => {
  it('gives the token of an id inside the tokenizer, null (#id) past it instead of failing', () => {
    expect(tokenizer.vocabSize).toBe(4096);
    expect(tokenText(tokenizer, 300)).toBe(tokenizer.decodeToken(300));
    expect(tokenText(tokenizer, 300)?.length).toBeGreaterThan(0);
    expect(tokenText(tokenizer, 4095)).toBe(tokenizer.decodeToken(4095));
    expect(tokenText(tokenizer, 4096)).toBeNull();
    expect(tokenText(tokenizer, 22803)).toBeNull();
    expect(tokenText(undefined, 3)).toBeNull();
  });
});
