import * as d3 from 'd3';
import { useEffect, useMemo, useRef } from 'react';
import type { WeightsDiff } from '../../analysis/weights/types.ts';
import { METRIC_INFO, type Metric } from '../../state/metrics.ts';
import { formatValue } from '../format.ts';
import { colorScale, formatTick, heatmapModel, legendTicks, NA_FILL, ZERO_COLOR, type HeatCell } from './heatmap-model.ts';
import { KIND_LABELS, type LayerKind } from './tensor-kinds.ts';

const CELL_W = 58;
const CELL_H = 22;
const LEFT = 44;
const TOP = 30;
const STRIP_GAP = 34;
const LEGEND_W = 260;

interface Props {
  result: WeightsDiff;
  metric: Metric;
  selected: string | null;
  onSelect(name: string): void;
}

/** Layers × module kinds, coloured by the metric, with the model-wide tensors in a strip below. Drawn with d3. */
export function Heatmap({ result, metric, selected, onSelect }: Props) {
  const model = useMemo(() => heatmapModel(result, metric), [result, metric]);
  const info = METRIC_INFO[metric];
  const colors = useMemo(() => colorScale([...model.cells, ...model.strip].map((c) => c.value), info.log), [model, info.log]);
  const svgRef = useRef<SVGSVGElement>(null);
  const tipRef = useRef<HTMLDivElement>(null);
  const onSelectRef = useRef(onSelect);
  useEffect(() => {
    onSelectRef.current = onSelect;
  }, [onSelect]);

  const gridW = model.columns.length * CELL_W;
  const gridH = model.layers * CELL_H;
  const stripY = TOP + gridH + STRIP_GAP;
  const stripW = model.strip.length * CELL_W * 1.5;
  const legendY = stripY + (model.strip.length ? CELL_H + 30 : 0);
  const width = Math.max(LEFT + gridW, LEFT + stripW, LEFT + LEGEND_W + 200) + 12;
  const height = legendY + 58;

  useEffect(() => {
    const svg = d3.select(svgRef.current!);
    svg.selectAll('*').remove();
    const tip = d3.select(tipRef.current!);
    const x = (i: number) => LEFT + i * CELL_W;
    const column = new Map(model.columns.map((k, i) => [k, i]));

    const showTip = (event: MouseEvent, c: HeatCell) => {
      const t = c.tensor;
      tip
        .style('display', 'block')
        .style('left', `${event.offsetX + 14}px`)
        .style('top', `${event.offsetY + 14}px`)
        .selectAll('div')
        .data([
          t.name,
          `[${t.shape.join(' × ')}]`,
          `${info.legend}: ${c.value === null ? 'n/a' : formatValue(metric === 'cosine' ? t.cosine : c.value)}${metric === 'cosine' ? ' (cosine)' : ''}`,
          // The norms not already on the line above.
          [metric !== 'frobenius' && `‖ΔW‖_F ${formatValue(t.frobenius)}`, metric !== 'relative' && `relative ${formatValue(t.relative)}`].filter(Boolean).join(' · '),
        ])
        .join('div')
        .attr('class', (_, i) => (i === 0 ? 'tip-name' : ''))
        .text((d) => d);
    };
    const hideTip = () => tip.style('display', 'none');

    const drawCells = (sel: d3.Selection<SVGGElement, unknown, null, undefined>, data: HeatCell[], pos: (c: HeatCell, i: number) => [number, number], w: number) => {
      sel
        .selectAll<SVGRectElement, HeatCell>('rect.cell')
        .data(data, (c) => c.tensor.name)
        .join('rect')
        .attr('class', (c) => `cell${c.tensor.name === selected ? ' cell-selected' : ''}`)
        .attr('data-tensor', (c) => c.tensor.name)
        .attr('data-value', (c) => (c.value === null ? 'n/a' : String(c.value)))
        .attr('x', (c, i) => pos(c, i)[0] + 1)
        .attr('y', (c, i) => pos(c, i)[1] + 1)
        .attr('width', w - 2)
        .attr('height', CELL_H - 2)
        .attr('rx', 2)
        .attr('fill', (c) => colors.color(c.value))
        .on('mouseenter mousemove', (event: MouseEvent, c) => showTip(event, c))
        .on('mouseleave', hideTip)
        .on('click', (_, c) => onSelectRef.current(c.tensor.name));
    };

    const hatch = svg.append('defs').append('pattern').attr('id', 'na-hatch').attr('width', 6).attr('height', 6).attr('patternUnits', 'userSpaceOnUse').attr('patternTransform', 'rotate(45)');
    hatch.append('rect').attr('width', 6).attr('height', 6).attr('fill', '#fafbfc');
    hatch.append('line').attr('x1', 0).attr('y1', 0).attr('x2', 0).attr('y2', 6).attr('stroke', '#c9ced6').attr('stroke-width', 2);

    const grid = svg.append('g').attr('class', 'grid');
    // Cells a module kind has in no tensor of this layer (an adapter leaves norms alone) are outlined only.
    grid
      .selectAll('rect.empty')
      .data(d3.cross(d3.range(model.layers), d3.range(model.columns.length)))
      .join('rect')
      .attr('class', 'empty')
      .attr('x', ([, c]) => x(c) + 1)
      .attr('y', ([l]) => TOP + l * CELL_H + 1)
      .attr('width', CELL_W - 2)
      .attr('height', CELL_H - 2);
    drawCells(grid, model.cells, (c) => [x(column.get(c.kind as LayerKind)!), TOP + c.layer! * CELL_H], CELL_W);

    svg
      .append('g')
      .attr('class', 'col-labels')
      .selectAll('text')
      .data(model.columns)
      .join('text')
      .attr('x', (_, i) => x(i) + CELL_W / 2)
      .attr('y', TOP - 8)
      .attr('text-anchor', 'middle')
      .text((k) => KIND_LABELS[k]);
    svg
      .append('g')
      .attr('class', 'row-labels')
      .selectAll('text')
      .data(d3.range(model.layers))
      .join('text')
      .attr('x', LEFT - 6)
      .attr('y', (l) => TOP + l * CELL_H + CELL_H / 2 + 4)
      .attr('text-anchor', 'end')
      .text((l) => `L${l}`);

    if (model.strip.length) {
      const sw = CELL_W * 1.5;
      const strip = svg.append('g').attr('class', 'strip');
      drawCells(strip, model.strip, (_, i) => [LEFT + i * sw, stripY], sw);
      strip
        .selectAll('text')
        .data(model.strip)
        .join('text')
        .attr('x', (_, i) => LEFT + i * sw + sw / 2)
        .attr('y', stripY - 6)
        .attr('text-anchor', 'middle')
        .text((c) => KIND_LABELS[c.kind]);
      svg.append('text').attr('class', 'row-labels').attr('x', LEFT - 6).attr('y', stripY + CELL_H / 2 + 4).attr('text-anchor', 'end').text('model');
    }

    // Legend: the colour ramp over the metric's axis, then the two special colours.
    const legend = svg.append('g').attr('class', 'legend').attr('transform', `translate(${LEFT},${legendY})`);
    legend.append('text').attr('class', 'legend-title').attr('y', 0).text(info.legend + (info.log ? ' (log scale)' : ''));
    const axisScale = colors.scale.copy().range([0, LEGEND_W]);
    const gradientId = `ramp-${metric}`;
    const gradient = legend.append('defs').append('linearGradient').attr('id', gradientId);
    gradient
      .selectAll('stop')
      .data(d3.range(0, 1.0001, 0.1))
      .join('stop')
      .attr('offset', (t) => `${t * 100}%`)
      .attr('stop-color', (t) => colors.color(axisScale.invert(t * LEGEND_W)));
    legend.append('rect').attr('y', 8).attr('width', LEGEND_W).attr('height', 10).attr('fill', `url(#${gradientId})`);
    const axis = d3.axisBottom(axisScale).tickValues(legendTicks(colors)).tickFormat((v) => formatTick(Number(v))).tickSizeOuter(0);
    legend.append('g').attr('class', 'legend-axis').attr('transform', 'translate(0,18)').call(axis);
    const swatches = legend.append('g').attr('transform', `translate(${LEGEND_W + 24},8)`);
    const values = [...model.cells, ...model.strip].map((c) => c.value);
    const specials = [
      ...(info.log && values.some((v) => v === 0) ? [{ fill: ZERO_COLOR, label: 'zero (unchanged)' }] : []),
      ...(values.some((v) => v === null) ? [{ fill: NA_FILL, label: 'n/a (vectors have no spectrum)' }] : []),
    ];
    specials.forEach((s, i) => {
      swatches.append('rect').attr('class', 'swatch').attr('y', i * 16).attr('width', 12).attr('height', 10).attr('fill', s.fill);
      swatches.append('text').attr('x', 18).attr('y', i * 16 + 9).text(s.label);
    });
  }, [model, colors, selected, info, metric, stripY, legendY]);

  return (
    <div className="heatmap" data-testid="heatmap">
      <svg ref={svgRef} width={width} height={height} role="img" aria-label={`Heatmap of ${info.label} per layer and module`} />
      <div ref={tipRef} className="tooltip" role="tooltip" style={{ display: 'none' }} />
      {model.unplaced.length > 0 && (
        <p className="muted small">
          {model.unplaced.length} tensors (biases, or names not mapped to a module) are not in the heatmap; the table lists them.
        </p>
      )}
    </div>
  );
}
