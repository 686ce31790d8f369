import { describe, expect, it } from 'vitest';
import { csvField, toCsv } from './csv.ts';

/** An RFC 4180 reader, written independently of the writer: quoted fields, doubled quotes, CRLF. */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') {
      row.push(field);
      field = '';
    } else if (c === '\r' && text[i + 1] === '\n') {
      row.push(field);
      rows.push(row);
      row = [];
      field = '';
      i++;
    } else field += c;
  }
  expect(field).toBe('');
  expect(row).toEqual([]);
  return rows;
}

describe('CSV', () => {
  it('quotes only what needs it', () => {
    expect(csvField('model.layers.0.mlp.up_proj.weight')).toBe('model.layers.0.mlp.up_proj.weight');
    expect(csvField('a,b')).toBe('"a,b"');
    expect(csvField('say "hi"')).toBe('"say ""hi"""');
    expect(csvField('line\nbreak')).toBe('"line\nbreak"');
    expect(csvField(' the')).toBe('" the"');
    expect(csvField(null)).toBe('');
    expect(csvField(undefined)).toBe('');
    expect(csvField(Number.NaN)).toBe('NaN');
    expect(csvField(-Infinity)).toBe('-Infinity');
  });

  it('round-trips awkward text and keeps numbers at full precision', () => {
    const rows = [
      ['tensor, with comma', 0.1 + 0.2, 'quote " inside', null],
      [' leading space', 1e-300, 'two\r\nlines', true],
      ['=SUM(A1)', -0, '', 2 ** 60 + 2 ** 20],
    ] as const;
    const text = toCsv(['name', 'value', 'note', 'extra'], rows.map((r) => [...r]));
    expect(text.endsWith('\r\n')).toBe(true);
    const parsed = parseCsv(text);
    expect(parsed[0]).toEqual(['name', 'value', 'note', 'extra']);
    expect(parsed.slice(1).map((r) => r[0])).toEqual(['tensor, with comma', ' leading space', "'=SUM(A1)"]);
    expect(parsed.slice(1).map((r) => r[2])).toEqual(['quote " inside', 'two\r\nlines', '']);
    const values = parsed.slice(1).map((r) => Number(r[1]));
    expect(values[0]).toBe(0.1 + 0.2);
    expect(values[1]).toBe(1e-300);
    expect(Number(parsed[3]![3])).toBe(2 ** 60 + 2 ** 20);
  });

  it('keeps spreadsheets from evaluating text as a formula, and numbers numeric', () => {
    const formulas = ['=1+2', '+cmd|/C calc!A0', '-2+3', '@SUM(A1)', '\tlead', '\rlead', '-', '+', '=', '-delta', '+delta', '-Infinity'];
    const text = toCsv(['cell'], formulas.map((f) => [f]));
    const parsed = parseCsv(text).slice(1).map((r) => r[0]!);
    expect(parsed).toEqual(formulas.map((f) => `'${f}`));
    for (const cell of parsed) expect(cell.startsWith("'")).toBe(true);

    // Numbers, and text that is only a number, stay numbers; the characters are harmless inside text.
    const kept = [-3, -0.5, -1e-300, -Infinity, '-0.5', '+2', '-1e-5', '.5', 'a=b', 'x+y', ' =1'];
    const row = parseCsv(toCsv(['a'], kept.map((k) => [k]))).slice(1).map((r) => r[0]);
    expect(row).toEqual(['-3', '-0.5', '-1e-300', '-Infinity', '-0.5', '+2', '-1e-5', '.5', 'a=b', 'x+y', ' =1']);
    for (const [i, v] of [-3, -0.5, -1e-300].entries()) expect(Math.abs(Number(row[i]) - v)).toBeLessThanOrEqual(Math.abs(v) * 1e-15);
  });
});
