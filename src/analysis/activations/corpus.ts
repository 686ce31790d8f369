// A corpus is text with one sample per line, tokenized once and cut to a fixed number of tokens, as the
// ADL reference does (diffing-toolkit: first n tokens of each sample, samples shorter than n dropped).
import type { Tokenizer } from '../../io/tokenizer.ts';

export interface CorpusOptions {
  /** Keep the first n samples that are long enough. Default: all. */
  maxSamples?: number;
  /** Tokens per sample; shorter samples are skipped. Default 64. */
  tokensPerSample?: number;
  /** Start each sample with BOS. Default: the tokenizer's own default (as the reference's add_special_tokens). */
  addBos?: boolean;
}

export interface TokenizedCorpus {
  samples: number[][];
  /** Non-empty lines dropped for having fewer than tokensPerSample tokens. */
  tooShort: number;
  tokensPerSample: number;
}

export function corpusLines(text: string): string[] {
  return text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l.length > 0);
}

export function tokenizeCorpus(tokenizer: Tokenizer, lines: readonly string[], opts: CorpusOptions = {}): TokenizedCorpus {
  const n = opts.tokensPerSample ?? 64;
  const max = opts.maxSamples ?? Infinity;
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`tokens per sample must be a positive integer, got ${n}`);
  if (!(max >= 1)) throw new RangeError(`max samples must be at least 1, got ${max}`);
  const samples: number[][] = [];
  let tooShort = 0;
  for (const line of lines) {
    if (samples.length >= max) break;
    // Tokens average a few characters; cutting the text first keeps long lines cheap to encode.
    const ids = tokenizer.encode(line.slice(0, 20 * n), opts.addBos === undefined ? {} : { addBos: opts.addBos });
    if (ids.length < n) {
      tooShort++;
      continue;
    }
    samples.push(ids.slice(0, n));
  }
  return { samples, tooShort, tokensPerSample: n };
}
