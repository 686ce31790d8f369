// Tables as CSV (RFC 4180): fields holding a comma, quote, line break or edge spaces are quoted,
// quotes doubled; lines end in CRLF. Numbers are written in full precision.
//
// Spreadsheets evaluate a cell that starts with = + - @ (or a tab or carriage return) as a formula,
// and token texts and tensor names are data from the models: such text gets a leading apostrophe
// (OWASP "CSV injection"). Numbers, and text that is a plain number ("-0.5"), are left as they are.

export type Cell = string | number | boolean | null | undefined;

const FORMULA_START = /^[=+\-@\t\r]/;
const PLAIN_NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;

export function csvField(value: Cell): string {
  if (value === null || value === undefined) return '';
  let text = typeof value === 'number' ? (Number.isFinite(value) ? String(value) : Number.isNaN(value) ? 'NaN' : value > 0 ? 'Infinity' : '-Infinity') : String(value);
  if (typeof value === 'string' && FORMULA_START.test(text) && !PLAIN_NUMBER.test(text)) text = `'${text}`;
  return /[",\r\n]|^\s|\s$/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

export function toCsv(header: readonly string[], rows: readonly (readonly Cell[])[]): string {
  return [header, ...rows].map((row) => row.map(csvField).join(',')).join('\r\n') + '\r\n';
}
