// Text output of the commands (without --json): compact tables aligned to the terminal's width,
// tokens shown as the app shows them (token-text.ts), and a pointer to --json for every value.
import { tokenDisplay } from '../io/token-text.ts';

/** Columns to fit: the terminal's, or 120 when stdout is not a terminal. */
export function outputWidth(): number {
  return process.stdout.isTTY && process.stdout.columns ? process.stdout.columns : 120;
}

/** The result as JSON: indented on a terminal, one line on a pipe (for jq and files). */
export function jsonText(result: unknown): string {
  return (process.stdout.isTTY ? JSON.stringify(result, null, 2) : JSON.stringify(result)) + '\n';
}

export interface Column {
  header: string;
  /** Numbers go right; text goes left (the default). */
  right?: boolean;
}

const clip = (s: string, w: number) => (s.length <= w ? s : w <= 1 ? '…' : s.slice(0, w - 1) + '…');

/**
 * Rows under a header, each column as wide as its widest cell; when the table is wider than
 * `width`, the widest text columns are cut (with …) until it fits.
 */
export function table(columns: readonly Column[], rows: readonly (readonly string[])[], width = outputWidth()): string {
  const gap = 2;
  const widths = columns.map((c, i) => Math.max(c.header.length, ...rows.map((r) => (r[i] ?? '').length)));
  const total = () => widths.reduce((a, b) => a + b, 0) + gap * (columns.length - 1);
  const MIN = 6;
  while (total() > width) {
    let widest = -1;
    columns.forEach((c, i) => {
      if (!c.right && widths[i]! > MIN && (widest < 0 || widths[i]! > widths[widest]!)) widest = i;
    });
    if (widest < 0) break;
    widths[widest] = Math.max(MIN, widths[widest]! - (total() - width));
  }
  const line = (cells: readonly string[]) =>
    columns
      .map((c, i) => {
        const text = clip(cells[i] ?? '', widths[i]!);
        return c.right ? text.padStart(widths[i]!) : text.padEnd(widths[i]!);
      })
      .join(' '.repeat(gap))
      .trimEnd();
  return [line(columns.map((c) => c.header)), ...rows.map(line)].join('\n') + '\n';
}

/** Items joined by ", " over as many lines as the width needs. */
export function wrapList(items: readonly string[], width = outputWidth()): string {
  const lines: string[] = [];
  let line = '';
  for (const item of items) {
    const next = line === '' ? item : `${line}, ${item}`;
    if (next.length > width && line !== '') {
      lines.push(line + ',');
      line = item;
    } else line = next;
  }
  return [...lines, line].join('\n');
}

/** A token as the app shows it (leading space dropped, bytes as <0xE2>, control characters visible), or #id without a tokenizer. */
export function shownToken(token: string | null, id: number): string {
  return token === null ? `#${id}` : tokenDisplay(token);
}

/** Four significant digits; exponent form outside [1e-3, 1e4). */
export function num(x: number | null | undefined): string {
  if (x === null || x === undefined || Number.isNaN(x)) return 'n/a';
  if (x === 0 || (Number.isInteger(x) && Math.abs(x) < 1e6)) return String(x);
  const a = Math.abs(x);
  return a >= 1e4 || a < 1e-3 ? x.toExponential(2) : x.toPrecision(4);
}

/** A probability as a percentage that never reads "5e-2%". */
export function pct(p: number): string {
  if (p >= 0.1) return `${(p * 100).toFixed(0)}%`;
  if (p >= 0.001) return `${(p * 100).toFixed(1)}%`;
  return p > 0 ? '<0.1%' : '0%';
}

/** "1 argument", "2 arguments". */
export function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/** The closing line of a text summary. */
export function jsonHint(what = 'every value'): string {
  return `(--json for ${what})\n`;
}
