// The Methods view's figures, drawn with d3 into SVG: a histogram over log-spaced bins, a line per
// position, variance bars, the layer × head heatmap and an attention pattern.
import * as d3 from 'd3';
import { useEffect, useRef } from 'react';
import { formatValue } from '../format.ts';
import type { HeadGrid } from './method-tables.ts';

const M = { top: 10, right: 16, bottom: 34, left: 52 };

function axisLabels(svg: d3.Selection<SVGSVGElement, unknown, null, undefined>, width: number, height: number, xLabel: string, yLabel: string) {
  svg.append('text').attr('class', 'axis-label').attr('x', (M.left + width - M.right) / 2).attr('y', height - 4).attr('text-anchor', 'middle').text(xLabel);
  svg.append('text').attr('class', 'axis-label').attr('transform', `translate(12,${(height - M.bottom + M.top) / 2}) rotate(-90)`).attr('text-anchor', 'middle').text(yLabel);
}

/** Counts over bins whose edges are log-spaced (corpus KL), on a log x axis. */
export function LogHistogram({ edges, counts, xLabel, yLabel, testId, width = 460, height = 200 }: { edges: readonly number[]; counts: readonly number[]; xLabel: string; yLabel: string; testId: string; width?: number; height?: number }) {
  const ref = useRef<SVGSVGElement>(null);
  useEffect(() => {
    const svg = d3.select(ref.current!);
    svg.selectAll('*').remove();
    const lo = edges[0]!;
    const hi = edges[edges.length - 1]!;
    if (!(lo > 0 && hi > lo)) return;
    const x = d3.scaleLog().domain([lo, hi]).range([M.left, width - M.right]);
    const y = d3
      .scaleLinear()
      .domain([0, Math.max(1, d3.max(counts) ?? 1)])
      .nice()
      .range([height - M.bottom, M.top]);
    svg
      .append('g')
      .selectAll('rect')
      .data(counts.map((c, i) => ({ c, lo: edges[i]!, hi: edges[i + 1]! })))
      .join('rect')
      .attr('class', 'm-bar')
      .attr('data-count', (b) => b.c)
      .attr('x', (b) => x(b.lo) + 0.5)
      .attr('width', (b) => Math.max(0.5, x(b.hi) - x(b.lo) - 1))
      .attr('y', (b) => y(b.c))
      .attr('height', (b) => y(0) - y(b.c))
      .append('title')
      .text((b) => `${formatValue(b.lo)} – ${formatValue(b.hi)}: ${b.c}`);
    svg.append('g').attr('class', 'axis').attr('transform', `translate(0,${height - M.bottom})`).call(d3.axisBottom(x).ticks(5, '~g').tickSizeOuter(0));
    svg.append('g').attr('class', 'axis').attr('transform', `translate(${M.left},0)`).call(d3.axisLeft(y).ticks(4, '~s').tickSizeOuter(0));
    axisLabels(svg, width, height, xLabel, yLabel);
  }, [edges, counts, xLabel, yLabel, width, height]);
  return <svg ref={ref} width={width} height={height} className="m-chart" data-testid={testId} role="img" aria-label={`${yLabel} by ${xLabel}`} />;
}

/** y against x as a line with dots (mean KL per position index). */
export function LineChart({ points, xLabel, yLabel, testId, width = 460, height = 200 }: { points: readonly { x: number; y: number }[]; xLabel: string; yLabel: string; testId: string; width?: number; height?: number }) {
  const ref = useRef<SVGSVGElement>(null);
  useEffect(() => {
    const svg = d3.select(ref.current!);
    svg.selectAll('*').remove();
    if (points.length === 0) return;
    const x = d3
      .scaleLinear()
      .domain(d3.extent(points, (p) => p.x) as [number, number])
      .range([M.left, width - M.right]);
    const y = d3
      .scaleLinear()
      .domain([0, Math.max(1e-12, d3.max(points, (p) => p.y) ?? 0)])
      .nice()
      .range([height - M.bottom, M.top]);
    svg
      .append('path')
      .attr('class', 'm-line')
      .attr('fill', 'none')
      .attr(
        'd',
        d3
          .line<{ x: number; y: number }>()
          .x((p) => x(p.x))
          .y((p) => y(p.y))(points),
      );
    svg
      .append('g')
      .selectAll('circle')
      .data(points)
      .join('circle')
      .attr('class', 'm-dot')
      .attr('cx', (p) => x(p.x))
      .attr('cy', (p) => y(p.y))
      .attr('r', 2.5)
      .append('title')
      .text((p) => `${p.x}: ${formatValue(p.y)}`);
    svg.append('g').attr('class', 'axis').attr('transform', `translate(0,${height - M.bottom})`).call(d3.axisBottom(x).ticks(6, 'd').tickSizeOuter(0));
    svg.append('g').attr('class', 'axis').attr('transform', `translate(${M.left},0)`).call(d3.axisLeft(y).ticks(4, '~g').tickSizeOuter(0));
    axisLabels(svg, width, height, xLabel, yLabel);
  }, [points, xLabel, yLabel, width, height]);
  return <svg ref={ref} width={width} height={height} className="m-chart" data-testid={testId} role="img" aria-label={`${yLabel} by ${xLabel}`} />;
}

/** One bar per component: its share of the variance, with the running total as a line. */
export function VarianceBars({ shares, selected, onSelect, testId, width = 360, height = 190 }: { shares: readonly { component: number; ratio: number; cumulative: number }[]; selected: number; onSelect(component: number): void; testId: string; width?: number; height?: number }) {
  const ref = useRef<SVGSVGElement>(null);
  const select = useRef(onSelect);
  useEffect(() => {
    select.current = onSelect;
  }, [onSelect]);
  useEffect(() => {
    const svg = d3.select(ref.current!);
    svg.selectAll('*').remove();
    const x = d3
      .scaleBand<number>()
      .domain(shares.map((s) => s.component))
      .range([M.left, width - M.right])
      .padding(0.2);
    const y = d3.scaleLinear().domain([0, 1]).range([height - M.bottom, M.top]);
    svg
      .append('g')
      .selectAll('rect')
      .data(shares)
      .join('rect')
      .attr('class', (s) => (s.component === selected ? 'm-bar m-bar-selected' : 'm-bar m-bar-click'))
      .attr('data-ratio', (s) => s.ratio)
      .attr('x', (s) => x(s.component)!)
      .attr('width', x.bandwidth())
      .attr('y', (s) => y(s.ratio))
      .attr('height', (s) => y(0) - y(s.ratio))
      .on('click', (_, s) => select.current(s.component))
      .append('title')
      .text((s) => `component ${s.component}: ${(100 * s.ratio).toFixed(1)}% (total ${(100 * s.cumulative).toFixed(1)}%)`);
    svg
      .append('path')
      .attr('class', 'm-line')
      .attr('fill', 'none')
      .attr(
        'd',
        d3
          .line<{ component: number; cumulative: number }>()
          .x((s) => x(s.component)! + x.bandwidth() / 2)
          .y((s) => y(s.cumulative))(shares),
      );
    svg.append('g').attr('class', 'axis').attr('transform', `translate(0,${height - M.bottom})`).call(d3.axisBottom(x).tickSizeOuter(0));
    svg.append('g').attr('class', 'axis').attr('transform', `translate(${M.left},0)`).call(d3.axisLeft(y).ticks(5, '.0%').tickSizeOuter(0));
    axisLabels(svg, width, height, 'component', 'share of variance');
  }, [shares, selected, width, height]);
  return <svg ref={ref} width={width} height={height} className="m-chart" data-testid={testId} role="img" aria-label="share of the variance by component" />;
}

/** The heatmap's colour for |value| on a grid whose largest magnitude is `max` (also its legend's). */
export const headColor = (max: number) => d3.scaleSequential(d3.interpolateViridis).domain([0, max > 0 ? max : 1]);

/** The layer × head grid of a measure, coloured by magnitude; a click selects a head (shown framed). */
export function HeadHeatmap({ grid, label, selected, onSelect, testId, cell = 22 }: { grid: HeadGrid; label: string; selected: { layer: number; head: number } | null; onSelect(layer: number, head: number): void; testId: string; cell?: number }) {
  const ref = useRef<SVGSVGElement>(null);
  const select = useRef(onSelect);
  useEffect(() => {
    select.current = onSelect;
  }, [onSelect]);
  const left = 56;
  const top = 24;
  const width = left + grid.heads * cell + 8;
  const height = top + grid.layers * cell + 8;
  useEffect(() => {
    const svg = d3.select(ref.current!);
    svg.selectAll('*').remove();
    const color = headColor(grid.max);
    const cells = grid.value.flatMap((row, layer) => row.map((v, head) => ({ layer, head, v })));
    svg
      .append('g')
      .selectAll('rect')
      .data(cells)
      .join('rect')
      .attr('class', 'm-cell')
      .attr('data-layer', (c) => c.layer)
      .attr('data-head', (c) => c.head)
      .attr('data-value', (c) => c.v)
      .attr('x', (c) => left + c.head * cell)
      .attr('y', (c) => top + c.layer * cell)
      .attr('width', cell - 1)
      .attr('height', cell - 1)
      .attr('fill', (c) => (Number.isNaN(c.v) ? '#ddd' : color(Math.abs(c.v))))
      .attr('stroke', (c) => (selected && c.layer === selected.layer && c.head === selected.head ? '#d62728' : 'none'))
      .attr('stroke-width', 2)
      .on('click', (_, c) => select.current(c.layer, c.head))
      .append('title')
      .text((c) => `layer ${c.layer}, head ${c.head}: ${label} ${formatValue(c.v)}`);
    const g = svg.append('g').attr('class', 'axis');
    for (let h = 0; h < grid.heads; h++) g.append('text').attr('x', left + h * cell + cell / 2).attr('y', top - 6).attr('text-anchor', 'middle').text(h);
    for (let l = 0; l < grid.layers; l++) g.append('text').attr('x', left - 6).attr('y', top + l * cell + cell / 2 + 4).attr('text-anchor', 'end').text(l);
    g.append('text').attr('x', 4).attr('y', 12).text('layer \\ head');
  }, [grid, label, selected, cell]);
  return <svg ref={ref} width={width} height={height} className="m-chart" data-testid={testId} role="img" aria-label={`${label} per layer and head`} />;
}

/** One head's attention probabilities [queries × keys] (row t over keys 0..t), darker for more. */
export function PatternMatrix({ probs, positions, offset, title, labels, testId, size = 260 }: { probs: Float64Array; positions: number; offset: number; title: string; labels: readonly string[]; testId: string; size?: number }) {
  const ref = useRef<SVGSVGElement>(null);
  const left = 70;
  const top = 18;
  const cell = Math.max(2, Math.floor(size / Math.max(1, positions)));
  const width = left + positions * cell + 4;
  const height = top + positions * cell + 4;
  useEffect(() => {
    const svg = d3.select(ref.current!);
    svg.selectAll('*').remove();
    const color = d3.scaleSequential(d3.interpolateBlues).domain([0, 1]);
    svg.append('text').attr('class', 'legend-title').attr('x', left).attr('y', 12).text(title);
    const g = svg.append('g');
    for (let t = 0; t < positions; t++) {
      for (let s = 0; s <= t; s++) {
        const p = probs[offset + t * positions + s]!;
        g.append('rect')
          .attr('x', left + s * cell)
          .attr('y', top + t * cell)
          .attr('width', cell)
          .attr('height', cell)
          .attr('fill', color(p))
          .append('title')
          .text(`${labels[t] ?? t} → ${labels[s] ?? s}: ${(100 * p).toFixed(1)}%`);
      }
      if (cell >= 9) svg.append('text').attr('class', 'axis').attr('x', left - 4).attr('y', top + t * cell + cell - 2).attr('text-anchor', 'end').attr('font-size', Math.min(11, cell)).text((labels[t] ?? String(t)).slice(0, 10));
    }
  }, [probs, positions, offset, title, labels, cell]);
  return <svg ref={ref} width={width} height={height} className="m-chart" data-testid={testId} role="img" aria-label={title} />;
}
