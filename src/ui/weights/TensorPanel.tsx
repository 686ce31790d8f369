import * as d3 from 'd3';
import { useEffect, useRef } from 'react';
import { ExportMenu } from '../export/ExportMenu.tsx';
import type { TensorDiff } from '../../analysis/weights/types.ts';
import { formatValue } from '../format.ts';
import { KIND_LABELS, placeTensors } from './tensor-kinds.ts';

const W = 340;
const H = 210;
const M = { top: 14, right: 36, bottom: 38, left: 56 };

interface PlotSpec {
  values: number[];
  /** y range and scale. */
  y: d3.ScaleContinuousNumeric<number, number>;
  yLabel: string;
  /** Horizontal guide lines (energy thresholds). */
  guides?: { y: number; label: string }[];
  testId: string;
}

/** Points joined by a line over x = 1..n, with axes: the shared shape of both spectrum plots. */
function IndexPlot({ values, y, yLabel, guides = [], testId }: PlotSpec) {
  const ref = useRef<SVGSVGElement>(null);
  useEffect(() => {
    const svg = d3.select(ref.current!);
    svg.selectAll('*').remove();
    const x = d3
      .scaleLinear()
      .domain([1, Math.max(values.length, 2)])
      .range([M.left, W - M.right]);
    y.range([H - M.bottom, M.top]);
    svg
      .append('g')
      .attr('class', 'axis')
      .attr('transform', `translate(0,${H - M.bottom})`)
      .call(d3.axisBottom(x).ticks(Math.min(values.length, 8), 'd'));
    svg.append('g').attr('class', 'axis').attr('transform', `translate(${M.left},0)`).call(d3.axisLeft(y).ticks(5, '~g'));
    svg.append('text').attr('class', 'axis-label').attr('x', (M.left + W - M.right) / 2).attr('y', H - 6).attr('text-anchor', 'middle').text('index i');
    svg.append('text').attr('class', 'axis-label').attr('transform', `translate(14,${(H - M.bottom + M.top) / 2}) rotate(-90)`).attr('text-anchor', 'middle').text(yLabel);
    for (const g of guides) {
      svg.append('line').attr('class', 'guide').attr('x1', M.left).attr('x2', W - M.right).attr('y1', y(g.y)).attr('y2', y(g.y));
      svg.append('text').attr('class', 'guide-label').attr('x', W - M.right + 3).attr('y', y(g.y) + 4).text(g.label);
    }
    const points = values.map((v, i) => [x(i + 1), y(v)] as [number, number]);
    svg.append('path').attr('class', 'series').attr('data-testid', `${testId}-line`).attr('d', d3.line()(points));
    svg
      .append('g')
      .attr('data-testid', `${testId}-points`)
      .selectAll('circle')
      .data(values)
      .join('circle')
      .attr('class', 'point')
      .attr('cx', (_, i) => points[i]![0])
      .attr('cy', (_, i) => points[i]![1])
      .attr('r', values.length > 40 ? 2 : 3)
      .append('title')
      .text((v, i) => `${i + 1}: ${formatValue(v)}`);
  }, [values, y, yLabel, guides, testId]);
  return <svg ref={ref} width={W} height={H} data-testid={testId} role="img" aria-label={yLabel} />;
}

function Stat({ label, value, id }: { label: string; value: string; id: string }) {
  return (
    <tr>
      <th scope="row">{label}</th>
      <td className="num" data-testid={`stat-${id}`}>
        {value}
      </td>
    </tr>
  );
}

export function TensorPanel({ tensor, onClose }: { tensor: TensorDiff; onClose(): void }) {
  const t = tensor;
  const place = placeTensors([t.name]).get(t.name)!;
  const sigma = t.top_singular_values.filter((s) => s > 0);
  const omitted = t.top_singular_values.length - sigma.length;
  const energy = t.frobenius > 0 ? Array.from(d3.cumsum(sigma, (s) => s * s), (e) => e / (t.frobenius * t.frobenius)) : [];
  const ranks: [string, number | null][] = [
    ['50%', t.energy_50],
    ['90%', t.energy_90],
    ['99%', t.energy_99],
  ];
  const beyond = ranks.filter(([, r]) => r !== null && r > sigma.length);
  const figureSvg = (menu: HTMLElement) => menu.closest('figure')?.querySelector('svg');

  return (
    <section className="panel tensor-panel" data-testid="tensor-panel" aria-label={`Tensor ${t.name}`}>
      <div className="panel-head">
        <h2 className="mono" data-testid="tensor-name">
          {t.name}
        </h2>
        <button type="button" className="link-button" onClick={onClose}>
          close
        </button>
      </div>
      <p className="muted">
        [{t.shape.join(' × ')}]{place.kind !== 'other' && <> · {place.layer !== null ? `layer ${place.layer}, ` : ''}{KIND_LABELS[place.kind]}{place.part === 'bias' ? ' bias' : ''}</>} ·{' '}
        <span title={`How the spectrum was computed: ${t.method}`} className="method" data-testid="spectrum-method">
          {methodInWords(t.method)}
        </span>
      </p>
      {sigma.length === 0 ? (
        <p className="muted" data-testid="no-spectrum">
          {t.shape.length < 2 ? 'A vector has no spectrum: the statistics below are elementwise.' : t.frobenius === 0 ? 'ΔW is zero: nothing changed in this tensor.' : 'No spectrum was computed for this tensor.'}
        </p>
      ) : (
        <div className="plots">
          <figure>
            <figcaption>
              Top {sigma.length} singular values of ΔW (log scale){omitted > 0 && `; ${omitted} zero values not drawn`}
            </figcaption>
            <IndexPlot values={sigma} y={d3.scaleLog().domain([d3.min(sigma)!, d3.max(sigma)!]).nice()} yLabel="σ_i" testId="spectrum" />
            <ExportMenu name="spectrum" svg={figureSvg} table={() => ({ header: ['tensor', 'i', 'sigma'], rows: sigma.map((s, i) => [t.name, i + 1, s]) })} />
          </figure>
          <figure>
            <figcaption>Cumulative energy: share of ‖ΔW‖_F² in σ_1 … σ_i</figcaption>
            <IndexPlot
              values={energy}
              y={d3.scaleLinear().domain([0, 1])}
              yLabel="energy share"
              guides={[
                { y: 0.5, label: '50%' },
                { y: 0.9, label: '90%' },
                { y: 0.99, label: '99%' },
              ]}
              testId="energy"
            />
            <ExportMenu name="energy" svg={figureSvg} table={() => ({ header: ['tensor', 'i', 'energy_share'], rows: energy.map((e, i) => [t.name, i + 1, e]) })} />
            {beyond.length > 0 && (
              <p className="muted small">
                {beyond.map(([q, r]) => `${q} needs ${r} values`).join(', ')}: beyond the {sigma.length} drawn.
              </p>
            )}
          </figure>
        </div>
      )}
      <table className="stats" data-testid="tensor-stats">
        <tbody>
          <Stat label="‖ΔW‖_F" value={formatValue(t.frobenius)} id="frobenius" />
          <Stat label="relative ‖ΔW‖_F / ‖W_base‖_F" value={formatValue(t.relative)} id="relative" />
          <Stat label="cosine(W_base, W_ft)" value={t.cosine === null ? '—' : t.cosine.toFixed(6)} id="cosine" />
          <Stat label="‖W_base‖_F / ‖W_ft‖_F" value={`${formatValue(t.base_frobenius)} / ${formatValue(t.ft_frobenius)}`} id="norms" />
          <Stat label="max |ΔW_ij|" value={formatValue(t.max_abs_delta)} id="max-abs" />
          <Stat label="spectral σ₁" value={formatValue(t.spectral)} id="spectral" />
          <Stat label="nuclear Σσ_i" value={formatValue(t.nuclear)} id="nuclear" />
          <Stat label="effective rank" value={formatValue(t.effective_rank)} id="effective-rank" />
          <Stat label="energy ranks 50 / 90 / 99%" value={ranks.map(([, r]) => formatValue(r)).join(' / ')} id="energy-ranks" />
          <Stat label="σ₁² / Σσ_i²" value={formatValue(t.top_energy_fraction)} id="top-energy" />
          <Stat label="numerical rank (σ > tolerance)" value={t.numerical_rank === null ? '—' : `${t.numerical_rank} (tol ${formatValue(t.rank_tolerance)})`} id="numerical-rank" />
          {(t.sparsity ?? []).map((s, i) => (
            <Stat key={i} label={`share of |ΔW_ij| ≤ ${formatValue(s.epsilon)}`} value={formatValue(s.fraction)} id={`sparsity-${i}`} />
          ))}
        </tbody>
      </table>
    </section>
  );
}

/** The spectrum's method in words; the exact recipe (sketch size, Gram path, floor) stays in the tooltip. */
export function methodInWords(method: string): string {
  if (method === 'zero') return 'ΔW is zero';
  const floor = /floor ([\d.e+-]+)·σ1/.exec(method)?.[1];
  if (method.includes('no full spectrum')) return 'top singular values from a randomized SVD (the matrix is too large for its full spectrum)';
  if (method.includes('spectrum gram')) return `full spectrum from ΔWᵀΔW in double precision; values under ${floor ? `${Number(floor).toPrecision(2)} × σ₁` : 'its floor'} read as 0`;
  if (method.includes('in sketch')) return 'full spectrum from a randomized SVD that holds every singular value';
  return method;
}
