import * as d3 from 'd3';
import { useEffect, useMemo, useRef } from 'react';
import type { PatchedLayers, PositionsCompared, StitchingResult } from '../../analysis/activations/patching.ts';
import type { PatchResult } from '../../jobs/activations.ts';
import { PATCH_POSITIONS } from '../../state/activations.ts';
import { useApp } from '../../state/store.ts';
import { CopyLinkButton } from '../export/CopyLink.tsx';
import { ExportMenu } from '../export/ExportMenu.tsx';
import { formatValue } from '../format.ts';
import { Legend, PromptBox, TaskStatus, tokenLabel, tokenTitle, usePrompt, useTask } from './common.tsx';
import './activations.css';

const KIND_W = 76;
const CELL_H = 24;
const LEFT = 40;
const TOP = 22;

/** The layer of largest recovery for each hook kind: where patching that kind moves the output most. */
export function criticalLayers(list: readonly PatchedLayers[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const p of list) {
    let best = -1;
    for (let l = 0; l < p.recovery.length; l++) if (best < 0 || p.recovery[l]! > p.recovery[best]!) best = l;
    if (best >= 0) out.set(p.kind, best);
  }
  return out;
}

const recoveryColor = (() => {
  const s = d3.scaleDiverging(d3.interpolateRdBu).domain([-1, 0, 1]).clamp(true);
  return (v: number) => (Number.isFinite(v) ? s(v) : '#ccc');
})();

/** The heatmap's SVG with the section's colour legend under it. */
const heatmapSvgs = (menu: HTMLElement) =>
  [menu.closest('figure')?.querySelector<SVGSVGElement>('svg'), menu.closest('section')?.querySelector<SVGSVGElement>('svg.legend')].filter((e): e is SVGSVGElement => e != null);

function RecoveryHeatmap({ list, title, testId }: { list: readonly PatchedLayers[]; title: string; testId: string }) {
  const ref = useRef<SVGSVGElement>(null);
  const L = list[0]?.recovery.length ?? 0;
  const critical = useMemo(() => criticalLayers(list), [list]);
  useEffect(() => {
    const svg = d3.select(ref.current!);
    svg.selectAll('*').remove();
    const cells = list.flatMap((p, k) => Array.from(p.recovery, (r, layer) => ({ kind: p.kind, k, layer, recovery: r, kl: p.kl[layer]! })));
    const g = svg
      .append('g')
      .selectAll('g')
      .data(cells)
      .join('g')
      .attr('transform', (c) => `translate(${LEFT + c.k * KIND_W},${TOP + c.layer * CELL_H})`);
    g.append('rect')
      .attr('class', (c) => `cell${critical.get(c.kind) === c.layer ? ' critical' : ''}`)
      .attr('data-kind', (c) => c.kind)
      .attr('data-layer', (c) => c.layer)
      .attr('data-recovery', (c) => c.recovery)
      .attr('x', 1)
      .attr('y', 1)
      .attr('width', KIND_W - 2)
      .attr('height', CELL_H - 2)
      .attr('rx', 2)
      .attr('fill', (c) => recoveryColor(c.recovery))
      .append('title')
      .text((c) => `blocks.${c.layer}.hook_${c.kind}: recovery ${formatValue(c.recovery)}, KL to the target ${formatValue(c.kl)} nats`);
    g.append('text')
      .attr('class', (c) => `cell-value${Math.abs(c.recovery) > 0.6 ? ' on-dark' : ''}`)
      .attr('x', KIND_W / 2)
      .attr('y', CELL_H / 2 + 4)
      .attr('text-anchor', 'middle')
      .text((c) => (Number.isFinite(c.recovery) ? c.recovery.toFixed(2) : 'n/a'));
    svg
      .append('g')
      .attr('class', 'col-labels')
      .selectAll('text')
      .data(list)
      .join('text')
      .attr('x', (_, k) => LEFT + k * KIND_W + KIND_W / 2)
      .attr('y', TOP - 7)
      .attr('text-anchor', 'middle')
      .text((p) => p.kind);
    const criticalSet = new Set(critical.values());
    svg
      .append('g')
      .attr('class', 'row-labels')
      .selectAll('text')
      .data(d3.range(L))
      .join('text')
      .attr('x', LEFT - 6)
      .attr('y', (l) => TOP + l * CELL_H + CELL_H / 2 + 4)
      .attr('text-anchor', 'end')
      .attr('class', (l) => (criticalSet.has(l) ? 'row-critical' : ''))
      .text((l) => `L${l}`);
  }, [list, L, critical]);
  return (
    <figure className="recovery" data-testid={testId}>
      <figcaption>{title}</figcaption>
      <svg ref={ref} width={LEFT + list.length * KIND_W + 6} height={TOP + L * CELL_H + 4} role="img" aria-label={title} />
      <ExportMenu
        name={testId}
        svg={heatmapSvgs}
        table={() => ({ header: ['hook', 'kind', 'layer', 'recovery', 'kl_to_target'], rows: list.flatMap((p) => Array.from(p.recovery, (r, l) => [`blocks.${l}.hook_${p.kind}`, p.kind, l, r, p.kl[l]!])) })}
      />
      <p className="small" data-testid={`${testId}-critical`}>
        Largest recovery:{' '}
        {list.map((p, i) => (
          <span key={p.kind}>
            {i > 0 && ' · '}
            {p.kind} at <b>L{critical.get(p.kind)}</b> ({formatValue(p.recovery[critical.get(p.kind)!]!)})
          </span>
        ))}
      </p>
    </figure>
  );
}

interface Series {
  name: string;
  values: Float64Array;
  className: string;
}

const CW = 380;
const CH = 220;
const M = { top: 12, right: 12, bottom: 40, left: 52 };
const KEY_H = 15;

/** Lines over ℓ = 0..n−1, with their keys under the axes; `fromZero` starts the y axis at 0 (KL), else it spans the values (loss). Guides are labelled alternately at the right and left ends. */
function LineChart({ series, yLabel, guides = [], fromZero = true, testId }: { series: Series[]; yLabel: string; guides?: { y: number; label: string }[]; fromZero?: boolean; testId: string }) {
  const ref = useRef<SVGSVGElement>(null);
  const height = CH + series.length * KEY_H + 4;
  useEffect(() => {
    const svg = d3.select(ref.current!);
    svg.selectAll('*').remove();
    const n = series[0]?.values.length ?? 0;
    const x = d3
      .scaleLinear()
      .domain([0, Math.max(n - 1, 1)])
      .range([M.left, CW - M.right]);
    const all = [...series.flatMap((s) => Array.from(s.values)), ...guides.map((g) => g.y)].filter(Number.isFinite);
    const [lo = 0, hi = 1] = d3.extent(all);
    const pad = Math.max((hi - lo) * 0.1, 1e-3);
    const y = d3
      .scaleLinear()
      .domain(fromZero ? [Math.min(0, lo), Math.max(hi, 1e-9)] : [lo - pad, hi + pad])
      .nice()
      .range([CH - M.bottom, M.top]);
    svg
      .append('g')
      .attr('class', 'axis')
      .attr('transform', `translate(0,${CH - M.bottom})`)
      .call(d3.axisBottom(x).ticks(Math.min(n, 12), 'd'));
    svg.append('g').attr('class', 'axis').attr('transform', `translate(${M.left},0)`).call(d3.axisLeft(y).ticks(5, '~g'));
    svg.append('text').attr('class', 'axis-label').attr('x', (M.left + CW - M.right) / 2).attr('y', CH - 6).attr('text-anchor', 'middle').text('stitch layer ℓ (blocks below ℓ from the lower model)');
    svg.append('text').attr('class', 'axis-label').attr('transform', `translate(13,${(CH - M.bottom + M.top) / 2}) rotate(-90)`).attr('text-anchor', 'middle').text(yLabel);
    for (const g of guides) svg.append('line').attr('class', 'guide').attr('x1', M.left).attr('x2', CW - M.right).attr('y1', y(g.y)).attr('y2', y(g.y));
    for (const s of series) {
      const points = Array.from(s.values, (v, i) => [x(i), y(v)] as [number, number]);
      svg.append('path').attr('class', `series ${s.className}`).attr('d', d3.line()(points));
      svg
        .append('g')
        .attr('class', `points ${s.className}`)
        .selectAll('circle')
        .data(Array.from(s.values))
        .join('circle')
        .attr('cx', (_, i) => points[i]![0])
        .attr('cy', (_, i) => points[i]![1])
        .attr('r', 3)
        .append('title')
        .text((v, i) => `${s.name} at ℓ = ${i}: ${formatValue(v)}`);
    }
    // Guide labels over the curves, on a white halo, so a curve through one never hides it.
    guides.forEach((g, i) => {
      const right = i % 2 === 0;
      svg
        .append('text')
        .attr('class', 'guide-label')
        .attr('x', right ? CW - M.right - 2 : M.left + 4)
        .attr('y', y(g.y) - 3)
        .attr('text-anchor', right ? 'end' : 'start')
        .text(g.label);
    });
    const keys = svg
      .append('g')
      .attr('class', 'chart-keys')
      .selectAll('g')
      .data(series)
      .join('g')
      .attr('transform', (_, i) => `translate(${M.left},${CH + i * KEY_H + 8})`);
    keys.append('line').attr('class', (s) => `key-line ${s.className}`).attr('x1', 0).attr('x2', 18).attr('y1', 0).attr('y2', 0);
    keys.append('text').attr('class', 'key-label').attr('x', 24).attr('y', 4).text((s) => s.name);
  }, [series, yLabel, guides, fromZero]);
  const table = () => ({
    header: ['stitch_layer', ...series.map((s) => s.name)],
    rows: Array.from({ length: series[0]?.values.length ?? 0 }, (_, l) => [l, ...series.map((s) => s.values[l]!)]),
  });
  return (
    <figure className="line-chart">
      <svg ref={ref} width={CW} height={height} data-testid={testId} role="img" aria-label={yLabel} />
      <ExportMenu name={testId} svg={(menu) => menu.closest('figure')?.querySelector('svg')} table={table} />
    </figure>
  );
}

function Stitching({ result }: { result: PatchResult }) {
  const b: StitchingResult = result.baseBelow;
  const f: StitchingResult = result.ftBelow;
  const hasLoss = Array.from(b.loss).every(Number.isFinite);
  const kl = useMemo(
    () => [
      { name: 'base below, ft above: KL(P_ft ‖ P_S)', values: b.klFromFt, className: 's1' },
      { name: 'base below, ft above: KL(P_base ‖ P_S)', values: b.klFromBase, className: 's2' },
      { name: 'ft below, base above: KL(P_ft ‖ P_S)', values: f.klFromFt, className: 's3' },
      { name: 'ft below, base above: KL(P_base ‖ P_S)', values: f.klFromBase, className: 's4' },
    ],
    [b, f],
  );
  const loss = useMemo(
    () => [
      { name: 'base below, ft above', values: b.loss, className: 's1' },
      { name: 'ft below, base above', values: f.loss, className: 's3' },
    ],
    [b, f],
  );
  const guides = useMemo(
    () => [
      { y: b.lossBase, label: `base alone ${formatValue(b.lossBase)}` },
      { y: b.lossFt, label: `ft alone ${formatValue(b.lossFt)}` },
    ],
    [b],
  );
  return (
    <section className="panel" data-testid="stitching">
      <h2>Model stitching: blocks 0..ℓ−1 from one model, ℓ..L−1 (with final norm and unembedding) from the other</h2>
      <div className="charts">
        <LineChart series={kl} yLabel="KL (nats)" testId="stitch-kl" />
        {hasLoss && <LineChart series={loss} yLabel="next-token loss (nats)" guides={guides} fromZero={false} testId="stitch-loss" />}
      </div>
      <p className="muted small">
        ℓ = 0 is the upper model alone; ℓ = L keeps only the upper model’s final norm and unembedding. Where a curve drops is where the behaviour that tells the models apart lives.
      </p>
    </section>
  );
}

export function PatchingView() {
  const prompt = usePrompt();
  const positions = useApp((s) => s.patchPositions);
  const setPositions = useApp((s) => s.setPatchPositions);
  const request = useMemo(() => ({ task: 'patching' as const, prompt, positions }), [prompt, positions]);
  const patching = useTask('patching', request);
  const result = patching.result;
  const domain = useMemo((): [number, number] => [-1, 1], []);
  return (
    <>
      <section className="panel">
        <div className="panel-head">
          <h2>Patching: which layers carry the difference between the models on this prompt</h2>
          <CopyLinkButton />
          <span className="segmented" role="radiogroup" aria-label="Positions compared">
            {PATCH_POSITIONS.map((p) => (
              <label key={p}>
                <input type="radio" name="patch-positions" value={p} checked={positions === p} onChange={() => setPositions(p as PositionsCompared)} data-testid={`patch-positions-${p}`} />
                {p === 'all' ? 'mean over all positions' : 'last position only'}
              </label>
            ))}
          </span>
        </div>
        <PromptBox />
        {result && (
          <p className="token-row" data-testid="prompt-tokens">
            {result.ids.map((id, t) => (
              <span key={t} className="token-chip" title={tokenTitle(result.tokens, id)}>
                {tokenLabel(result.tokens, id)}
              </span>
            ))}
          </p>
        )}
        <TaskStatus task="patching" run={patching.run} what="Patching and stitching" onRetry={patching.start} />
      </section>
      {result && (
        <>
          <section className="panel">
            <h2>Cross-model activation patching: recovery = 1 − KL(P_target ‖ P_patched) / KL(P_target ‖ P_source)</h2>
            <p className="muted small">
              One hook point’s activation (all positions) is replaced by the other model’s on the same tokens. 1: the patched run reproduces the model the activation came from; 0: no
              effect. The gap closed: KL(P_ft ‖ P_base) = <span data-testid="kl-ft-base">{formatValue(result.patching.klFtBase)}</span>, KL(P_base ‖ P_ft) ={' '}
              {formatValue(result.patching.klBaseFt)} nats. The largest recovery per hook kind is outlined.
            </p>
            <div className="recoveries">
              <RecoveryHeatmap list={result.patching.ftIntoBase} title="ft → base: the base model run with the fine-tune’s activation (target: P_ft)" testId="recovery-ft-into-base" />
              <RecoveryHeatmap list={result.patching.baseIntoFt} title="base → ft: the fine-tune run with the base model’s activation (target: P_base)" testId="recovery-base-into-ft" />
            </div>
            <Legend color={recoveryColor} domain={domain} title="recovery (clamped to [−1, 1])" testId="recovery-legend" />
          </section>
          <Stitching result={result} />
        </>
      )}
    </>
  );
}
