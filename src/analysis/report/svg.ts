// Figures as SVG text, built from strings with no DOM, for the command line's reports: a heatmap
// with a colour legend, and a line chart with axes. Every label is escaped.
import { interpolateYlOrRd, scaleLinear, scaleLog, type ScaleContinuousNumeric } from 'd3';

const FONT = 'font-family="system-ui, -apple-system, Segoe UI, Roboto, Helvetica, Arial, sans-serif" font-size="11"';

export function escapeXml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

/** A number for a label: four significant digits, exponent form outside [1e-3, 1e4). */
export function formatNumber(x: number): string {
  if (x === 0) return '0';
  if (Number.isInteger(x) && Math.abs(x) < 1e6) return String(x);
  const a = Math.abs(x);
  return a >= 1e4 || a < 1e-3 ? x.toExponential(2) : String(Number(x.toPrecision(4)));
}

const num = (x: number) => String(Math.round(x * 100) / 100);

function document(width: number, height: number, title: string, body: string[]): string {
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<svg xmlns="http://www.w3.org/2000/svg" width="${num(width)}" height="${num(height)}" viewBox="0 0 ${num(width)} ${num(height)}" ${FONT}>`,
    `<title>${escapeXml(title)}</title>`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    `<text x="12" y="18" font-size="13" font-weight="600" fill="#1d2127">${escapeXml(title)}</text>`,
    ...body,
    '</svg>',
    '',
  ].join('\n');
}

/** A label, muted grey unless `attrs` sets its own fill. */
function text(x: number, y: number, label: string, attrs = ''): string {
  const fill = /\bfill=/.test(attrs) ? '' : ' fill="#5d6673"';
  return `<text x="${num(x)}" y="${num(y)}"${fill}${attrs ? ' ' + attrs : ''}>${escapeXml(label)}</text>`;
}

/** Width a title needs at 13px (an estimate: no font metrics without a browser). */
const titleWidth = (title: string) => 24 + 7.4 * title.length;

/** Values to colours: a log scale over the positive values when `log`, else linear; null and non-positive (log) values are grey. */
export function heatColor(values: readonly (number | null)[], log: boolean): { color(v: number | null): string; scale: ScaleContinuousNumeric<number, number>; domain: [number, number] } {
  const usable = values.filter((v): v is number => v !== null && Number.isFinite(v) && (!log || v > 0));
  let lo = usable.length ? Math.min(...usable) : log ? 1e-6 : 0;
  let hi = usable.length ? Math.max(...usable) : 1;
  if (lo === hi) {
    lo = log ? lo / 2 : lo - 0.5;
    hi = log ? hi * 2 : hi + 0.5;
  }
  const scale = (log ? scaleLog() : scaleLinear()).domain([lo, hi]).range([0, 1]).clamp(true);
  return {
    color: (v) => (v === null || !Number.isFinite(v) || (log && v <= 0) ? '#e4e7eb' : interpolateYlOrRd(0.08 + 0.92 * scale(v))),
    scale,
    domain: [lo, hi],
  };
}

export interface HeatmapSpec {
  title: string;
  rowLabels: string[];
  colLabels: string[];
  /** rows × cols; null: no value (drawn grey). */
  values: (number | null)[][];
  /** A tooltip per cell (the SVG <title>), e.g. the tensor name and value. */
  cellTitles?: (string | null)[][];
  legend: string;
  log: boolean;
}

export function heatmapSvg(spec: HeatmapSpec): string {
  const cellW = 48;
  const cellH = 22;
  const left = 56;
  // Column labels are slanted, so long module names fit over narrow cells.
  const longest = Math.max(0, ...spec.colLabels.map((c) => c.length));
  const top = 40 + Math.min(140, 5 * longest);
  const legendW = 260;
  const { color, scale, domain } = heatColor(spec.values.flat(), spec.log);
  const gridW = spec.colLabels.length * cellW;
  const gridH = spec.rowLabels.length * cellH;
  const width = Math.max(left + gridW + 5 * longest, left + legendW + 120, titleWidth(spec.title)) + 16;
  const legendY = top + gridH + 26;
  const height = legendY + 56;
  const body: string[] = [];
  spec.colLabels.forEach((c, j) => {
    const x = left + j * cellW + cellW / 2;
    body.push(text(x, top - 8, c, `transform="rotate(-40 ${num(x)} ${top - 8})"`));
  });
  spec.rowLabels.forEach((r, i) => {
    body.push(text(left - 6, top + i * cellH + cellH / 2 + 4, r, 'text-anchor="end"'));
    spec.colLabels.forEach((_, j) => {
      const v = spec.values[i]?.[j] ?? null;
      const title = spec.cellTitles?.[i]?.[j];
      const x = left + j * cellW + 1;
      const y = top + i * cellH + 1;
      const rect = `<rect class="cell" x="${num(x)}" y="${num(y)}" width="${cellW - 2}" height="${cellH - 2}" rx="2" fill="${color(v)}" stroke="#000000" stroke-opacity="0.08"${v === null ? '' : ` data-value="${v}"`}`;
      body.push(title ? `${rect}><title>${escapeXml(title)}</title></rect>` : `${rect}/>`);
    });
  });
  body.push(text(left, legendY, spec.legend + (spec.log ? ' (log scale)' : ''), 'font-weight="600" fill="#1d2127"'));
  const stops = Array.from({ length: 11 }, (_, k) => k / 10);
  const axis = scale.copy().range([0, legendW]);
  body.push(
    `<defs><linearGradient id="ramp">${stops.map((t) => `<stop offset="${t * 100}%" stop-color="${color(axis.invert(t * legendW))}"/>`).join('')}</linearGradient></defs>`,
    `<rect x="${left}" y="${legendY + 8}" width="${legendW}" height="10" fill="url(#ramp)"/>`,
  );
  const tickLabel = axis.tickFormat(spec.log ? 4 : 5, '~g');
  for (const t of axis.ticks(spec.log ? 4 : 5)) {
    const x = left + axis(t);
    const label = tickLabel(t);
    body.push(`<line x1="${num(x)}" x2="${num(x)}" y1="${legendY + 18}" y2="${legendY + (label ? 22 : 20)}" stroke="#5d6673"/>`);
    if (label) body.push(text(x, legendY + 34, label, 'text-anchor="middle"'));
  }
  body.push(text(left + legendW + 8, legendY + 17, `${formatNumber(domain[0])} … ${formatNumber(domain[1])}`));
  return document(width, height, spec.title, body);
}

export interface LineSeries {
  label: string;
  /** y at x = x0, x0 + 1, …; null leaves a gap. */
  values: (number | null)[];
}

export interface LineChartSpec {
  title: string;
  xLabel: string;
  yLabel: string;
  series: LineSeries[];
  /** The x of the first value. Default 1. */
  x0?: number;
  log?: boolean;
}

const SERIES_COLORS = ['#2f5d8a', '#c0392b', '#2c6e3f', '#8a5a00', '#7a3f9a', '#1c7c8c'];

export function lineChartSvg(spec: LineChartSpec): string {
  const width = Math.max(520, titleWidth(spec.title));
  const height = 300;
  const m = { top: 36, right: 140, bottom: 44, left: 64 };
  const x0 = spec.x0 ?? 1;
  const n = Math.max(1, ...spec.series.map((s) => s.values.length));
  const ys = spec.series.flatMap((s) => s.values).filter((v): v is number => v !== null && Number.isFinite(v) && (!spec.log || v > 0));
  let lo = ys.length ? Math.min(...ys) : 0;
  let hi = ys.length ? Math.max(...ys) : 1;
  if (lo === hi) {
    lo = spec.log ? lo / 2 : lo - 0.5;
    hi = spec.log ? hi * 2 : hi + 0.5;
  }
  const x = scaleLinear()
    .domain([x0, x0 + Math.max(n - 1, 1)])
    .range([m.left, width - m.right]);
  const y = (spec.log ? scaleLog() : scaleLinear()).domain([lo, hi]).nice().range([height - m.bottom, m.top]);
  const body: string[] = [
    `<line x1="${m.left}" x2="${width - m.right}" y1="${height - m.bottom}" y2="${height - m.bottom}" stroke="#5d6673"/>`,
    `<line x1="${m.left}" x2="${m.left}" y1="${m.top}" y2="${height - m.bottom}" stroke="#5d6673"/>`,
  ];
  for (const t of x.ticks(Math.min(n, 10)).filter(Number.isInteger)) {
    body.push(`<line x1="${num(x(t))}" x2="${num(x(t))}" y1="${height - m.bottom}" y2="${height - m.bottom + 4}" stroke="#5d6673"/>`, text(x(t), height - m.bottom + 16, String(t), 'text-anchor="middle"'));
  }
  // A log axis ticks every 1…9 multiple; only the ones its tick format keeps are labelled.
  const tickLabel = y.tickFormat(5, '~g');
  for (const t of y.ticks(5)) {
    const label = tickLabel(t);
    body.push(`<line x1="${m.left - (label ? 4 : 2)}" x2="${m.left}" y1="${num(y(t))}" y2="${num(y(t))}" stroke="#5d6673"/>`);
    if (label) body.push(text(m.left - 6, y(t) + 4, label, 'text-anchor="end"'));
  }
  body.push(text((m.left + width - m.right) / 2, height - 8, spec.xLabel, 'text-anchor="middle"'));
  body.push(text(14, (m.top + height - m.bottom) / 2, spec.yLabel, `text-anchor="middle" transform="rotate(-90 14 ${num((m.top + height - m.bottom) / 2)})"`));
  spec.series.forEach((s, k) => {
    const stroke = SERIES_COLORS[k % SERIES_COLORS.length]!;
    const points = s.values.map((v, i) => (v === null || !Number.isFinite(v) || (spec.log && v <= 0) ? null : ([x(x0 + i), y(v)] as const)));
    let d = '';
    let pen = false;
    for (const p of points) {
      if (!p) {
        pen = false;
        continue;
      }
      d += `${pen ? 'L' : 'M'}${num(p[0])},${num(p[1])}`;
      pen = true;
    }
    body.push(`<g class="series" data-label="${escapeXml(s.label)}">`);
    if (d) body.push(`<path d="${d}" fill="none" stroke="${stroke}" stroke-width="1.5"/>`);
    points.forEach((p, i) => {
      if (p) body.push(`<circle cx="${num(p[0])}" cy="${num(p[1])}" r="2.5" fill="${stroke}"><title>${escapeXml(`${s.label} ${x0 + i}: ${formatNumber(s.values[i]!)}`)}</title></circle>`);
    });
    body.push('</g>');
    const ly = m.top + 8 + k * 18;
    body.push(`<rect x="${width - m.right + 12}" y="${ly - 8}" width="12" height="3" fill="${stroke}"/>`, text(width - m.right + 30, ly - 3, s.label));
  });
  return document(width, height, spec.title, body);
}
