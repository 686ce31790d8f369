// Token text in the CLI's JSON for a model whose vocabulary is larger than its tokenizer's (a padded
// vocabulary, or a tokenizer given with --tokenizer): the ids past it have no text instead of failing.
import { describe, expect, it } from 'vitest';
import { pathFileSet } from '../io/node-source.ts';
import { readHfTokenizer } from '../io/tokenizer.ts';
import { decodeText, tokenText } from './models.ts';

describe('token text past the tokenizer', () => {
  it('names ids inside the vocabulary, null past it; text marks those ids ⟨id⟩', async () => {
    const tok = (await readHfTokenizer(await pathFileSet('test/fixtures/demo/base')))!;
    expect(tok.vocabSize).toBe(4096);
    const ids = tok.encode('Once upon a time').slice(1);
    expect(tokenText(tok, ids[0]!)).toBe(tok.decodeToken(ids[0]!));
    expect(tokenText(tok, 4096)).toBeNull();
    expect(tokenText(undefined, 1)).toBeNull();
    expect(decodeText(tok, ids)).toBe(tok.decode(ids));
    expect(decodeText(tok, [...ids, 31999])).toBe(`${tok.decode(ids)}⟨31999⟩`);
    expect(decodeText(undefined, ids)).toBeNull();
  });
});
