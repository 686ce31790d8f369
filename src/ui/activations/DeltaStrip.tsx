import * as d3 from 'd3';
import { useEffect, useMemo, useRef } from 'react';
import type { DeltasResult } from '../../jobs/activations.ts';
import type { DeltaScale } from '../../state/activations.ts';
import { formatValue } from '../format.ts';
import { Legend } from './common.tsx';
import { COL_W, drawTokenHeader, HEAD, LEFT, type Cell } from './LensGrid.tsx';

const ROW_H = 18;

export const SCALE_INFO: Record<DeltaScale, { label: string; legend: string }> = {
  norm: { label: '‖δ‖', legend: '‖δ‖ = ‖x_ft − x_base‖' },
  relative: { label: 'relative ‖δ‖/‖x_base‖', legend: '‖δ‖ / ‖x_base‖' },
  cosine: { label: 'cosine(x_base, x_ft)', legend: 'cosine(x_base, x_ft) (darker: less alike)' },
};

export function deltaValues(d: DeltasResult, scale: DeltaScale): Float32Array {
  return scale === 'norm' ? d.norm : scale === 'relative' ? d.relative : d.cosine;
}

/** ‖δ‖ (or relative, or cosine) per layer × token at one hook kind, in the lens grid's columns. */
export function DeltaStrip({ deltas, scale, selected, onSelect }: { deltas: DeltasResult; scale: DeltaScale; selected: Cell | null; onSelect(cell: Cell): void }) {
  const ref = useRef<SVGSVGElement>(null);
  const onSelectRef = useRef(onSelect);
  useEffect(() => {
    onSelectRef.current = onSelect;
  }, [onSelect]);
  const { layers: L, positions: T } = deltas;
  const values = useMemo(() => deltaValues(deltas, scale), [deltas, scale]);
  const domain = useMemo((): [number, number] => {
    const finite = Array.from(values).filter(Number.isFinite);
    if (scale === 'cosine') return [1, Math.min(d3.min(finite) ?? 0, 1 - 1e-6)];
    return [0, Math.max(d3.max(finite) ?? 0, 1e-9)];
  }, [values, scale]);
  const color = useMemo(() => {
    const s = d3.scaleSequential(d3.interpolatePuBu).domain(domain);
    return (v: number) => (Number.isFinite(v) ? s(v) : '#444');
  }, [domain]);

  useEffect(() => {
    const svg = d3.select(ref.current!);
    svg.selectAll('*').remove();
    drawTokenHeader(svg, deltas.ids, deltas.tokens, selected?.position ?? null);
    const cells = d3.cross(d3.range(L), d3.range(T)).map(([layer, position]) => ({ layer, position, value: values[layer * T + position]! }));
    svg
      .append('g')
      .selectAll('rect')
      .data(cells)
      .join('rect')
      .attr('class', (c) => `cell delta-cell${selected && c.layer === selected.layer && c.position === selected.position ? ' cell-selected' : ''}`)
      .attr('data-layer', (c) => c.layer)
      .attr('data-position', (c) => c.position)
      .attr('data-value', (c) => c.value)
      .attr('x', (c) => LEFT + c.position * COL_W + 1)
      .attr('y', (c) => HEAD + c.layer * ROW_H + 1)
      .attr('width', COL_W - 2)
      .attr('height', ROW_H - 2)
      .attr('rx', 2)
      .attr('fill', (c) => color(c.value))
      .on('click', (_, c) => onSelectRef.current({ layer: c.layer, position: c.position }))
      .append('title')
      .text((c) => `layer ${c.layer}, position ${c.position}: ${SCALE_INFO[scale].label} = ${formatValue(c.value)}`);
    svg
      .append('g')
      .attr('class', 'row-labels')
      .selectAll('text')
      .data(d3.range(L))
      .join('text')
      .attr('x', LEFT - 6)
      .attr('y', (l) => HEAD + l * ROW_H + ROW_H / 2 + 4)
      .attr('text-anchor', 'end')
      .text((l) => `L${l}`);
  }, [deltas, values, L, T, color, scale, selected]);

  return (
    <div className="delta-strip" data-testid="delta-strip">
      <svg ref={ref} width={LEFT + T * COL_W + 8} height={HEAD + L * ROW_H + 2} role="img" aria-label={`${SCALE_INFO[scale].legend} per layer and token`} />
      <Legend color={color} domain={domain} title={SCALE_INFO[scale].legend} testId="delta-legend" />
    </div>
  );
}
