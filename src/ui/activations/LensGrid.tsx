import * as d3 from 'd3';
import { useEffect, useMemo, useRef } from 'react';
import type { LensResult } from '../../jobs/activations.ts';
import { formatValue } from '../format.ts';
import { Legend, percent, tokenLabel, tokenTitle } from './common.tsx';

/** Column geometry shared by the lens grid and the δ strip, so their positions line up. */
export const LEFT = 44;
export const COL_W = 88;
export const HEAD = 34;
const CELL_H = 36;
const MAX_CHARS = 11;

export interface Cell {
  layer: number;
  position: number;
}

const clip = (s: string) => (s.length > MAX_CHARS ? s.slice(0, MAX_CHARS - 1) + '…' : s);

/** Rows of a lens top list: [token, probability] for row `row`. */
function topOf(top: LensResult['base'], row: number): { id: number; prob: number }[] {
  return Array.from({ length: top.k }, (_, j) => ({ id: top.ids[row * top.k + j]!, prob: top.probs[row * top.k + j]! }));
}

/** Input tokens over the columns, as a header both grids draw. */
export function drawTokenHeader(svg: d3.Selection<SVGSVGElement, unknown, null, undefined>, ids: readonly number[], texts: LensResult['tokens'], selected: number | null) {
  const head = svg.append('g').attr('class', 'token-head');
  ids.forEach((id, t) => {
    const g = head.append('g').attr('transform', `translate(${LEFT + t * COL_W + COL_W / 2},0)`);
    g.append('title').text(tokenTitle(texts, id));
    g.append('text').attr('class', 'pos-index').attr('y', 11).attr('text-anchor', 'middle').text(t);
    g.append('text')
      .attr('class', `input-token${t === selected ? ' input-selected' : ''}`)
      .attr('data-testid', 'input-token')
      .attr('y', 27)
      .attr('text-anchor', 'middle')
      .text(clip(tokenLabel(texts, id)));
  });
}

/** Layers × positions: each model's top next-token prediction through its own logit lens, shaded by KL(P_ft ‖ P_base). */
export function LensGrid({ lens, selected, onSelect }: { lens: LensResult; selected: Cell | null; onSelect(cell: Cell): void }) {
  const svgRef = useRef<SVGSVGElement>(null);
  const tipRef = useRef<HTMLDivElement>(null);
  const onSelectRef = useRef(onSelect);
  useEffect(() => {
    onSelectRef.current = onSelect;
  }, [onSelect]);
  const { layers: L, positions: T } = lens;
  const maxKl = useMemo(() => Math.max(d3.max(lens.kl) ?? 0, 1e-6), [lens]);
  const color = useMemo(() => {
    const s = d3.scaleSequentialSqrt(d3.interpolateOrRd).domain([0, maxKl]);
    return (v: number) => s(v);
  }, [maxKl]);
  const domain = useMemo((): [number, number] => [0, maxKl], [maxKl]);

  useEffect(() => {
    const svg = d3.select(svgRef.current!);
    svg.selectAll('*').remove();
    const tip = d3.select(tipRef.current!);
    drawTokenHeader(svg, lens.ids, lens.tokens, selected?.position ?? null);
    const cells = d3.cross(d3.range(L), d3.range(T)).map(([layer, position]) => ({ layer, position, row: layer * T + position }));
    const showTip = (event: MouseEvent, c: (typeof cells)[number]) => {
      tip.style('display', 'block').style('left', `${event.offsetX + 14}px`).style('top', `${event.offsetY + 14}px`);
      tip.selectAll('*').remove();
      tip.append('div').attr('class', 'tip-name').text(`layer ${c.layer} · position ${c.position} (after ${tokenTitle(lens.tokens, lens.ids[c.position]!)})`);
      tip.append('div').text(`KL(P_ft ‖ P_base) = ${formatValue(lens.kl[c.row]!)} nats`);
      const table = tip.append('table').attr('class', 'tip-table');
      const head = table.append('tr');
      head.append('th').text('base');
      head.append('th').text('');
      head.append('th').text('fine-tuned');
      head.append('th').text('');
      const b = topOf(lens.base, c.row);
      const f = topOf(lens.ft, c.row);
      for (let j = 0; j < lens.base.k; j++) {
        const tr = table.append('tr');
        tr.append('td').text(tokenTitle(lens.tokens, b[j]!.id).replace(/ \(#\d+\)$/, ''));
        tr.append('td').attr('class', 'num').text(percent(b[j]!.prob));
        tr.append('td').text(tokenTitle(lens.tokens, f[j]!.id).replace(/ \(#\d+\)$/, ''));
        tr.append('td').attr('class', 'num').text(percent(f[j]!.prob));
      }
    };
    const g = svg
      .append('g')
      .attr('class', 'lens-cells')
      .selectAll('g')
      .data(cells)
      .join('g')
      .attr('class', 'lens-cell')
      .attr('data-layer', (c) => c.layer)
      .attr('data-position', (c) => c.position)
      .attr('data-kl', (c) => lens.kl[c.row]!)
      .attr('transform', (c) => `translate(${LEFT + c.position * COL_W},${HEAD + c.layer * CELL_H})`)
      .on('mouseenter mousemove', (event: MouseEvent, c) => showTip(event, c))
      .on('mouseleave', () => tip.style('display', 'none'))
      .on('click', (_, c) => onSelectRef.current({ layer: c.layer, position: c.position }));
    g.append('rect')
      .attr('class', (c) => `cell${selected && c.layer === selected.layer && c.position === selected.position ? ' cell-selected' : ''}`)
      .attr('x', 1)
      .attr('y', 1)
      .attr('width', COL_W - 2)
      .attr('height', CELL_H - 2)
      .attr('rx', 2)
      .attr('fill', (c) => color(lens.kl[c.row]!));
    // White text where the fill is dark, judged by the fill's lightness (a lone "." must stay visible).
    const dark = (c: (typeof cells)[number]) => d3.lab(color(lens.kl[c.row]!)).l < 62;
    g.append('text')
      .attr('class', (c) => `lens-base${dark(c) ? ' on-dark' : ''}`)
      .attr('data-testid', 'lens-base')
      .attr('x', COL_W / 2)
      .attr('y', 14)
      .attr('text-anchor', 'middle')
      .text((c) => clip(tokenLabel(lens.tokens, lens.base.ids[c.row * lens.base.k]!)));
    g.append('text')
      .attr('class', (c) => {
        const same = lens.base.ids[c.row * lens.base.k] === lens.ft.ids[c.row * lens.ft.k];
        return `lens-ft${same ? ' lens-same' : ''}${dark(c) ? ' on-dark' : ''}`;
      })
      .attr('data-testid', 'lens-ft')
      .attr('x', COL_W / 2)
      .attr('y', 29)
      .attr('text-anchor', 'middle')
      .text((c) => clip(tokenLabel(lens.tokens, lens.ft.ids[c.row * lens.ft.k]!)));
    svg
      .append('g')
      .attr('class', 'row-labels')
      .selectAll('text')
      .data(d3.range(L))
      .join('text')
      .attr('x', LEFT - 6)
      .attr('y', (l) => HEAD + l * CELL_H + CELL_H / 2 + 4)
      .attr('text-anchor', 'end')
      .attr('class', (l) => (l === selected?.layer ? 'row-selected' : ''))
      .text((l) => `L${l}`);
  }, [lens, L, T, color, maxKl, selected]);

  return (
    <div className="lens-grid" data-testid="lens-grid">
      <svg ref={svgRef} width={LEFT + T * COL_W + 8} height={HEAD + L * CELL_H + 4} role="img" aria-label="Logit lens of both models per layer and position" />
      <div ref={tipRef} className="tooltip" role="tooltip" style={{ display: 'none' }} />
      <div className="legend-row">
        <Legend color={color} domain={domain} title="KL(P_ft ‖ P_base), nats (square-root scale)" testId="kl-legend" />
        <span className="muted small">
          Each cell: the base model’s top token (above) and the fine-tuned model’s (below, <b>bold</b> where it differs), each read through its own final norm and unembedding from
          blocks.ℓ.hook_resid_post. Hover for the top {lens.base.k}; click to select.
        </span>
      </div>
    </div>
  );
}
