// Token text that can always be read: bytes that are not whole UTF-8 characters are written as
// <0xE2> (SentencePiece's own spelling of byte pieces), control characters as visible symbols.
// One set of functions for every place that lists tokens: the app's views and the command line.

const BYTE_RUN = /^(?:<0x[0-9A-F]{2}>)+$/;
const BYTE = /<0x([0-9A-F]{2})>/g;

/** Expected length of the UTF-8 sequence a lead byte starts (0: not a lead byte). */
function sequenceLength(b: number): number {
  if (b < 0x80) return 1;
  if (b >= 0xc2 && b <= 0xdf) return 2;
  if (b >= 0xe0 && b <= 0xef) return 3;
  if (b >= 0xf0 && b <= 0xf4) return 4;
  return 0;
}

const strict = new TextDecoder('utf-8', { fatal: true });

/** The text of some bytes, with every byte that is not part of a whole UTF-8 character written as <0xXX>. */
export function bytesToText(bytes: Uint8Array): string {
  let out = '';
  let i = 0;
  while (i < bytes.length) {
    const n = sequenceLength(bytes[i]!);
    if (n > 0 && i + n <= bytes.length) {
      try {
        out += strict.decode(bytes.subarray(i, i + n));
        i += n;
        continue;
      } catch {
        // not a whole character: falls through to the byte spelling
      }
    }
    out += `<0x${bytes[i]!.toString(16).toUpperCase().padStart(2, '0')}>`;
    i++;
  }
  return out;
}

/** A token that is only bytes (<0xE2><0x80>…), as its byte values; null for any other token. */
export function byteRun(text: string): number[] | null {
  return BYTE_RUN.test(text) ? Array.from(text.matchAll(BYTE), (m) => parseInt(m[1]!, 16)) : null;
}

/**
 * The texts of consecutive tokens (a prompt), where a run of byte tokens that together make whole
 * characters shows those characters on the run's first token and "" on the others; the rest as given.
 */
export function mergeByteRuns(texts: readonly string[]): string[] {
  const out = [...texts];
  let i = 0;
  while (i < texts.length) {
    if (byteRun(texts[i]!) === null) {
      i++;
      continue;
    }
    let j = i;
    const bytes: number[] = [];
    while (j < texts.length && byteRun(texts[j]!) !== null) bytes.push(...byteRun(texts[j++]!)!);
    const merged = bytesToText(Uint8Array.from(bytes));
    if (!merged.includes('<0x')) {
      out[i] = merged;
      for (let k = i + 1; k < j; k++) out[k] = '';
    }
    i = j;
  }
  return out;
}

/** A control or invisible character as something visible: ⏎ ⇥ for newline and tab, the Unicode control pictures (␇) for C0 controls, \u escapes for the rest. */
function visibleChar(c: string): string {
  const code = c.codePointAt(0)!;
  if (c === '\n') return '⏎';
  if (c === '\t') return '⇥';
  if (code < 0x20) return String.fromCodePoint(0x2400 + code);
  if (code === 0x7f) return '␡';
  return `\\u${code.toString(16).padStart(4, '0')}`;
}

// C0 and C1 controls, DEL, and format characters that draw nothing (zero-width space, joiners, BOM, bidi marks).
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const INVISIBLE = /[\u0000-\u001f\u007f-\u009f\u00ad\u200b-\u200f\u2028-\u202e\u2060-\u2064\ufeff]/g;

/** Text with its control and invisible characters made visible, spaces kept (a token inside running text). */
export function visibleText(text: string): string {
  return text.replace(INVISIBLE, visibleChar);
}

/**
 * A token as shown in lists and cells: control characters made visible, the leading space
 * dropped, and a token of spaces only shown as ␣.
 */
export function tokenDisplay(text: string): string {
  const shown = visibleText(text);
  return shown.trim() === '' ? shown.replace(/ /g, '␣') : shown.trim();
}

/** A token exactly, with escapes for what would not show (a tooltip, a quoted token). */
export function tokenQuoted(text: string): string {
  return JSON.stringify(text).replace(INVISIBLE, (c) => `\\u${c.codePointAt(0)!.toString(16).padStart(4, '0')}`);
}

/** A token that holds a letter or a digit; punctuation, spaces, bytes and control characters are not words. */
export function isWordToken(text: string): boolean {
  return /[\p{L}\p{N}]/u.test(text.replace(BYTE, ''));
}
