import { describe, expect, it } from 'vitest';
import { bytesToText, isWordToken, mergeByteRuns, tokenDisplay, tokenQuoted } from './token-text.ts';

describe('token text', () => {
  it('writes bytes outside whole UTF-8 characters as <0xXX>', () => {
    const utf8 = new TextEncoder();
    expect(bytesToText(utf8.encode(' café — ok'))).toBe(' café — ok');
    expect(bytesToText(Uint8Array.of(0x20, 0xe2))).toBe(' <0xE2>');
    expect(bytesToText(Uint8Array.of(0xe2, 0x80, 0x41))).toBe('<0xE2><0x80>A');
    expect(bytesToText(Uint8Array.of(0xff, 0xc3, 0xa9))).toBe('<0xFF>é');
  });

  it('merges a run of byte tokens that makes whole characters', () => {
    expect(mergeByteRuns([' a', '<0xE2>', '<0x80><0x94>', ' b'])).toEqual([' a', '—', '', ' b']);
    expect(mergeByteRuns(['<0xE2>', ' b'])).toEqual(['<0xE2>', ' b']);
  });

  it('shows control characters and blank tokens visibly', () => {
    expect(tokenDisplay('\u0007')).toBe('␇');
    expect(tokenDisplay('\u001a\u000e')).toBe('␚␎');
    expect(tokenDisplay(' the')).toBe('the');
    expect(tokenDisplay('  ')).toBe('␣␣');
    expect(tokenDisplay('\n\n')).toBe('⏎⏎');
    expect(tokenDisplay('a\u200bb')).toBe('a\\u200bb');
    expect(tokenQuoted(' \u0007\u0085')).toBe('" \\u0007\\u0085"');
  });

  it('tells words from punctuation, bytes and control characters', () => {
    expect([' the', 'Ocean', '42', ' été'].every(isWordToken)).toBe(true);
    expect(['.', ' ,', '<0xE2>', '\u0007', ' ', '<|'].some(isWordToken)).toBe(false);
  });
});
