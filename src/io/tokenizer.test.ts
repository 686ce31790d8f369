import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { pathFileSet } from './node-source.ts';
import { goldenInputIds } from './test-helpers.ts';
import { hfTokenizer, readHfTokenizer, type Tokenizer } from './tokenizer.ts';

const json = (path: string) => JSON.parse(readFileSync(path, 'utf8')) as unknown;

async function load(dir: string): Promise<Tokenizer> {
  const tok = await readHfTokenizer(await pathFileSet(dir));
  if (!tok) throw new Error(`no tokenizer in ${dir}`);
  return tok;
}

describe('Hugging Face tokenizer.json', () => {
  it('encodes GPT-2 byte-level BPE as the tokenizers library does', async () => {
    const tok = await load('test/fixtures/tokenizers/gpt2');
    expect(tok.vocabSize).toBe(50257);
    expect(tok.bosId).toBe(50256);
    const cases = json('test/fixtures/tokenizers/gpt2/encodings.json') as Record<string, number[]>;
    for (const [text, ids] of Object.entries(cases)) {
      expect(tok.encode(text), text).toEqual(ids);
      expect(tok.decode(ids), text).toBe(text);
    }
    expect(tok.encode('Hello world', { addBos: true })).toEqual([50256, 15496, 995]);
    expect(tok.decodeToken(995)).toBe(' world');
    expect(tok.decodeToken(13)).toBe('.');
    expect(tok.decodeToken(50256)).toBe('<|endoftext|>');
  });

  it('encodes the stories260K sentencepiece tokenizer with BOS, and keeps leading spaces per token', async () => {
    const tok = await load('test/fixtures/tokenizers/stories260K');
    expect([tok.vocabSize, tok.bosId, tok.eosId]).toEqual([512, 1, 2]);
    const cases = json('test/fixtures/tokenizers/stories260K/encodings_tokenizers.json') as Record<string, number[]>;
    for (const [text, ids] of Object.entries(cases)) {
      expect(tok.encode(text), text).toEqual(ids);
      expect(tok.decode(ids), text).toBe(text);
    }
    expect(tok.encode('Once upon a time', { addBos: false })).toEqual([403, 407, 261, 378]);
    expect(tok.decodeToken(403)).toBe(' Once');
    expect(tok.decodeToken(1)).toBe('<s>');
    expect(tok.decodeToken(13)).toBe('\n');
  });

  it('encodes the demo model corpus as the golden captures were made', async () => {
    const tok = await load('test/fixtures/demo/base');
    expect(tok.vocabSize).toBe(4096);
    const stories = readFileSync('test/fixtures/demo/generic_stories.txt', 'utf8').split('\n');
    const golden = await goldenInputIds('test/fixtures/demo/base_golden.safetensors');
    golden.forEach((ids, i) => expect(tok.encode(stories[i]!).slice(0, ids.length)).toEqual(ids));
    const ids = tok.encode(stories[0]!);
    expect(ids.map((id) => tok.decodeToken(id)).join('')).toBe(stories[0]);
    expect(tok.decode(ids)).toBe(stories[0]);
  });

  it('writes bytes that are not a whole character as <0xXX>, and keeps control characters as they are', async () => {
    const demo = await load('test/fixtures/demo/base');
    // ByteLevel pieces: "â" is the byte 0xE2, "âĢ" the bytes E2 80 (the start of a dash or quote), "ć" the byte 0x07.
    expect([demo.decodeToken(159), demo.decodeToken(2562), demo.decodeToken(196), demo.decodeToken(199)]).toEqual(['<0xE2>', '<0xE2><0x80>', '\u0007', '\n']);
    const sp = await load('test/fixtures/tokenizers/stories260K');
    expect([sp.decodeToken(229), sp.decodeToken(10)]).toEqual(['<0xE2>', '\u0007']);
  });

  it('rejects a file that is not a tokenizer.json', () => {
    expect(() => hfTokenizer({ vocab: [] }, {}, 'weird/tokenizer.json')).toThrow(/weird\/tokenizer\.json: is not a tokenizer\.json/);
  });
});
