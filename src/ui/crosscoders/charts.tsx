// The Crosscoders view's figures, drawn with d3 into SVG: histograms, the live loss curve and the
// Latent Scaling scatter.
import * as d3 from 'd3';
import { useEffect, useRef } from 'react';
import type { StepPoint } from '../../jobs/crosscoder.ts';
import { formatValue } from '../format.ts';

const M = { top: 10, right: 16, bottom: 34, left: 48 };

export interface Band {
  from: number;
  to: number;
  className: string;
}

interface BarProps {
  edges: readonly number[];
  counts: readonly number[];
  xLabel: string;
  yLabel: string;
  testId: string;
  width?: number;
  height?: number;
  /** Shaded ranges of x behind the bars (the ratio classes). */
  bands?: readonly Band[];
  /** Formats the tooltip's bin bounds. */
  format?: (x: number) => string;
  onBarClick?: (from: number, to: number) => void;
}

/** Bars over bins given by their edges; the y axis is linear from 0. */
export function BarChart({ edges, counts, xLabel, yLabel, testId, width = 460, height = 190, bands = [], format = formatValue, onBarClick }: BarProps) {
  const ref = useRef<SVGSVGElement>(null);
  const click = useRef(onBarClick);
  useEffect(() => {
    click.current = onBarClick;
  }, [onBarClick]);
  useEffect(() => {
    const svg = d3.select(ref.current!);
    svg.selectAll('*').remove();
    const x = d3
      .scaleLinear()
      .domain([edges[0]!, edges[edges.length - 1]!])
      .range([M.left, width - M.right]);
    const y = d3
      .scaleLinear()
      .domain([0, Math.max(1, d3.max(counts) ?? 1)])
      .nice()
      .range([height - M.bottom, M.top]);
    svg
      .append('g')
      .attr('class', 'bands')
      .selectAll('rect')
      .data(bands)
      .join('rect')
      .attr('class', (b) => b.className)
      .attr('x', (b) => x(b.from))
      .attr('width', (b) => Math.max(0, x(b.to) - x(b.from)))
      .attr('y', M.top)
      .attr('height', height - M.bottom - M.top);
    svg
      .append('g')
      .attr('class', 'bars')
      .selectAll('rect')
      .data(counts.map((c, i) => ({ c, lo: edges[i]!, hi: edges[i + 1]! })))
      .join('rect')
      .attr('class', onBarClick ? 'cc-bar cc-bar-click' : 'cc-bar')
      .attr('data-count', (b) => b.c)
      .attr('x', (b) => x(b.lo) + 0.5)
      .attr('width', (b) => Math.max(0.5, x(b.hi) - x(b.lo) - 1))
      .attr('y', (b) => y(b.c))
      .attr('height', (b) => y(0) - y(b.c))
      .on('click', (_, b) => click.current?.(b.lo, b.hi))
      .append('title')
      .text((b) => `${format(b.lo)} – ${format(b.hi)}: ${b.c}`);
    svg.append('g').attr('class', 'axis').attr('transform', `translate(0,${height - M.bottom})`).call(d3.axisBottom(x).ticks(6, '~g').tickSizeOuter(0));
    svg.append('g').attr('class', 'axis').attr('transform', `translate(${M.left},0)`).call(d3.axisLeft(y).ticks(4, '~s').tickSizeOuter(0));
    svg.append('text').attr('class', 'axis-label').attr('x', (M.left + width - M.right) / 2).attr('y', height - 4).attr('text-anchor', 'middle').text(xLabel);
    svg.append('text').attr('class', 'axis-label').attr('transform', `translate(12,${(height - M.bottom + M.top) / 2}) rotate(-90)`).attr('text-anchor', 'middle').text(yLabel);
  }, [edges, counts, xLabel, yLabel, width, height, bands, format, onBarClick]);
  return <svg ref={ref} width={width} height={height} className="cc-chart" data-testid={testId} role="img" aria-label={`${yLabel} by ${xLabel}`} />;
}

/** Loss and FVU per step (left axis) and dead latents (right axis), redrawn as steps arrive. */
export function LossCurve({ points, totalSteps, width = 620, height = 230 }: { points: readonly StepPoint[]; totalSteps: number; width?: number; height?: number }) {
  const ref = useRef<SVGSVGElement>(null);
  const right = 48;
  const top = 26;
  useEffect(() => {
    const svg = d3.select(ref.current!);
    svg.selectAll('*').remove();
    const x = d3
      .scaleLinear()
      .domain([0, Math.max(1, totalSteps - 1, points.length ? points[points.length - 1]!.step : 0)])
      .range([M.left, width - right]);
    const finite = points.flatMap((p) => [p.loss, p.fvu]).filter(Number.isFinite);
    const y = d3
      .scaleLinear()
      .domain([0, Math.max(1e-6, d3.max(finite) ?? 1)])
      .nice()
      .range([height - M.bottom, top]);
    const yDead = d3
      .scaleLinear()
      .domain([0, Math.max(1, d3.max(points, (p) => p.dead) ?? 1)])
      .nice()
      .range([height - M.bottom, top]);
    // A long run draws one point in every few steps: the path stays a few hundred segments.
    const stride = Math.max(1, Math.ceil(points.length / 600));
    const shown = points.filter((_, i) => i % stride === 0 || i === points.length - 1);
    const line = (value: (p: StepPoint) => number, scale: d3.ScaleLinear<number, number>) =>
      d3
        .line<StepPoint>()
        .defined((p) => Number.isFinite(value(p)))
        .x((p) => x(p.step))
        .y((p) => scale(value(p)))(shown) ?? '';
    svg.append('g').attr('class', 'axis').attr('transform', `translate(0,${height - M.bottom})`).call(d3.axisBottom(x).ticks(6).tickSizeOuter(0));
    svg.append('g').attr('class', 'axis').attr('transform', `translate(${M.left},0)`).call(d3.axisLeft(y).ticks(5, '~g').tickSizeOuter(0));
    svg.append('g').attr('class', 'axis axis-dead').attr('transform', `translate(${width - right},0)`).call(d3.axisRight(yDead).ticks(4, '~s').tickSizeOuter(0));
    svg.append('path').attr('class', 'line-dead').attr('data-testid', 'curve-dead').attr('d', line((p) => p.dead, yDead));
    svg.append('path').attr('class', 'line-fvu').attr('data-testid', 'curve-fvu').attr('d', line((p) => p.fvu, y));
    svg.append('path').attr('class', 'line-loss').attr('data-testid', 'curve-loss').attr('d', line((p) => p.loss, y));
    svg.append('text').attr('class', 'axis-label').attr('x', (M.left + width - right) / 2).attr('y', height - 4).attr('text-anchor', 'middle').text('step');
    // The legend sits in its own strip above the plot, so no line runs under it.
    const legend = svg.append('g').attr('transform', `translate(${M.left},8)`);
    let at = 0;
    for (const [cls, label] of [
      ['line-loss', 'loss (mean ‖x − x̂‖)'],
      ['line-fvu', 'FVU'],
      ['line-dead', 'dead latents (right axis)'],
    ] as const) {
      legend.append('line').attr('class', cls).attr('x1', at).attr('x2', at + 16).attr('y1', 0).attr('y2', 0);
      const text = legend.append('text').attr('class', 'legend-text').attr('x', at + 20).attr('y', 4).text(label);
      at += 20 + (text.node()?.getComputedTextLength() ?? label.length * 6) + 18;
    }
  }, [points, totalSteps, width, height]);
  return <svg ref={ref} width={width} height={height} className="cc-chart" data-testid="loss-curve" role="img" aria-label="Training loss, FVU and dead latents per step" />;
}

export interface ScatterPoint {
  id: number;
  x: number;
  y: number;
  className: string;
}

const NU_DOMAIN: [number, number] = [-0.25, 1.5];

/** ν^ε against ν^r, clipped to [−0.25, 1.5] (clipped points drawn as squares), with the 0.3 thresholds. */
export function NuScatter({ points, onSelect, width = 360, height = 300, threshold = 0.3 }: { points: readonly ScatterPoint[]; onSelect(id: number): void; width?: number; height?: number; threshold?: number }) {
  const ref = useRef<SVGSVGElement>(null);
  const select = useRef(onSelect);
  useEffect(() => {
    select.current = onSelect;
  }, [onSelect]);
  useEffect(() => {
    const svg = d3.select(ref.current!);
    svg.selectAll('*').remove();
    const x = d3.scaleLinear().domain(NU_DOMAIN).range([M.left, width - M.right]);
    const y = d3.scaleLinear().domain(NU_DOMAIN).range([height - M.bottom, M.top]);
    const clip = (v: number) => Math.min(NU_DOMAIN[1], Math.max(NU_DOMAIN[0], v));
    const clipped = (p: ScatterPoint) => p.x !== clip(p.x) || p.y !== clip(p.y);
    svg
      .append('rect')
      .attr('class', 'specific-zone')
      .attr('x', x(NU_DOMAIN[0]))
      .attr('y', y(threshold))
      .attr('width', x(threshold) - x(NU_DOMAIN[0]))
      .attr('height', y(NU_DOMAIN[0]) - y(threshold));
    svg.append('g').attr('class', 'axis').attr('transform', `translate(0,${height - M.bottom})`).call(d3.axisBottom(x).ticks(6).tickSizeOuter(0));
    svg.append('g').attr('class', 'axis').attr('transform', `translate(${M.left},0)`).call(d3.axisLeft(y).ticks(6).tickSizeOuter(0));
    for (const [x1, y1, x2, y2] of [
      [threshold, NU_DOMAIN[0], threshold, NU_DOMAIN[1]],
      [NU_DOMAIN[0], threshold, NU_DOMAIN[1], threshold],
    ] as const) {
      svg.append('line').attr('class', 'guide').attr('x1', x(x1)).attr('y1', y(y1)).attr('x2', x(x2)).attr('y2', y(y2));
    }
    const finite = points.filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y));
    svg
      .append('g')
      .attr('class', 'points')
      .selectAll('path')
      .data(finite)
      .join('path')
      .attr('class', (p) => `cc-point ${p.className}`)
      .attr('data-latent', (p) => p.id)
      .attr('d', (p) => d3.symbol(clipped(p) ? d3.symbolSquare : d3.symbolCircle, clipped(p) ? 22 : 26)())
      .attr('transform', (p) => `translate(${x(clip(p.x))},${y(clip(p.y))})`)
      .on('click', (_, p) => select.current(p.id))
      .append('title')
      .text((p) => `latent ${p.id}: ν^ε ${formatValue(p.x)}, ν^r ${formatValue(p.y)}`);
    svg.append('text').attr('class', 'axis-label').attr('x', (M.left + width - M.right) / 2).attr('y', height - 4).attr('text-anchor', 'middle').text('ν^ε (error)');
    svg.append('text').attr('class', 'axis-label').attr('transform', `translate(12,${(height - M.bottom + M.top) / 2}) rotate(-90)`).attr('text-anchor', 'middle').text('ν^r (reconstruction)');
  }, [points, width, height, threshold]);
  return <svg ref={ref} width={width} height={height} className="cc-chart" data-testid="nu-scatter" role="img" aria-label="Latent Scaling: ν^ε against ν^r" />;
}
