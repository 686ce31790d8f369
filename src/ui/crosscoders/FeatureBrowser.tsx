// The feature browser: the crosscoder's summary, the histogram of decoder norm ratios, the activation
// density, the Latent Scaling scatter, and the latent table with its filters (all in the permalink).
import { useMemo, useState } from 'react';
import type { CrosscoderSummary, PairInfo } from '../../jobs/crosscoder.ts';
import { DEFAULT_LATENT_FILTER, LATENT_FILTER_CLASSES, LATENT_SORTS, MIN_LOG_FREQUENCY, type LatentFilter } from '../../state/crosscoder.ts';
import { useApp } from '../../state/store.ts';
import { ExportMenu } from '../export/ExportMenu.tsx';
import { formatCount, formatValue } from '../format.ts';
import { BarChart, NuScatter, type Band, type ScatterPoint } from './charts.tsx';
import { CLASS_EDGES, filterLatents, latentClass, leaningNu, ratioHistogram } from './latent-table.ts';

const PAGE = 50;
const MAX_SCATTER = 4000;

const CLASS_LABELS: Record<LatentFilter['cls'], string> = {
  all: 'all classes',
  'ft-only': 'fine-tune only (r < 0.1)',
  'base-only': 'base only (r > 0.9)',
  shared: 'shared (|r − 0.5| < 0.1)',
  other: 'other',
  'ft-specific': 'ft-specific (r < 0.1, ν < 0.3)',
  'base-specific': 'base-specific (r > 0.9, ν < 0.3)',
};
const SORT_LABELS: Record<LatentFilter['sort'], string> = {
  ratio: 'r, fine-tune only first',
  'ratio-desc': 'r, base only first',
  frequency: 'frequency, most active first',
  'nu-error': 'ν^ε, smallest first',
};

export const RATIO_BANDS: Band[] = [
  { from: 0, to: CLASS_EDGES.ftOnly, className: 'band-ft' },
  { from: CLASS_EDGES.sharedLow, to: CLASS_EDGES.sharedHigh, className: 'band-shared' },
  { from: CLASS_EDGES.baseOnly, to: 1, className: 'band-base' },
];

const decade = (x: number) => `1e${x}`;
const formatLog = (x: number) => `10^${x.toFixed(1)}`;
const formatRatio = (x: number) => x.toFixed(2);

export function SummaryLine({ summary, pair }: { summary: CrosscoderSummary; pair: PairInfo }) {
  const c = summary.classes;
  const live = summary.D - summary.dead;
  let ftSpecific = 0;
  let baseSpecific = 0;
  for (const s of summary.latents.specific) {
    if (s === 1) ftSpecific++;
    else if (s === 2) baseSpecific++;
  }
  return (
    <div className="cc-summary" data-testid="cc-summary">
      <p>
        <strong>{summary.source.name}</strong> · {summary.hook} · D = {formatCount(summary.D)}, {summary.activation === 'batchtopk' ? `BatchTopK k = ${summary.k}` : 'ReLU (L1)'}
        {summary.threshold >= 0 ? `, θ = ${formatValue(summary.threshold)}` : ', no θ yet (BatchTopK per chunk)'} · analysed on {summary.tokens.toLocaleString('en-US')} tokens of {summary.samples} samples on the {pair.backend}
      </p>
      <p>
        FVU <span data-testid="cc-fvu">{formatValue(summary.fvu)}</span> · L0 {formatValue(summary.l0)} · live latents <span data-testid="cc-live">{live}</span> ({c['ft-only']} fine-tune only, {c['base-only']} base only, {c.shared} shared, {c.other} other) · dead {summary.dead} · by Latent Scaling {ftSpecific} ft-specific, {baseSpecific} base-specific
      </p>
    </div>
  );
}

function FilterBar({ filter, count }: { filter: LatentFilter; count: number }) {
  const set = useApp((s) => s.setLatentFilter);
  const decades = Array.from({ length: -MIN_LOG_FREQUENCY + 1 }, (_, i) => MIN_LOG_FREQUENCY + i);
  const [q, setQ] = useState(filter.q);
  return (
    <div className="cc-filters" data-testid="cc-filters">
      <select value={filter.cls} onChange={(e) => set({ cls: e.currentTarget.value as LatentFilter['cls'] })} data-testid="cc-filter-class" aria-label="Class">
        {LATENT_FILTER_CLASSES.map((c) => (
          <option key={c} value={c}>
            {CLASS_LABELS[c]}
          </option>
        ))}
      </select>
      <label>
        frequency{' '}
        <select value={filter.fmin} onChange={(e) => set({ fmin: Number(e.currentTarget.value) })} aria-label="Lowest frequency" data-testid="cc-filter-fmin">
          {decades.map((x) => (
            <option key={x} value={x}>
              ≥ {decade(x)}
            </option>
          ))}
        </select>{' '}
        <select value={filter.fmax} onChange={(e) => set({ fmax: Number(e.currentTarget.value) })} aria-label="Highest frequency" data-testid="cc-filter-fmax">
          {decades.map((x) => (
            <option key={x} value={x}>
              ≤ {x === 0 ? '1' : decade(x)}
            </option>
          ))}
        </select>
      </label>
      <label>
        r from{' '}
        <input type="number" min={0} max={1} step={0.05} value={filter.rmin} onChange={(e) => e.currentTarget.validity.valid && e.currentTarget.value !== '' && set({ rmin: Number(e.currentTarget.value) })} data-testid="cc-filter-rmin" />{' '}
        to <input type="number" min={0} max={1} step={0.05} value={filter.rmax} onChange={(e) => e.currentTarget.validity.valid && e.currentTarget.value !== '' && set({ rmax: Number(e.currentTarget.value) })} data-testid="cc-filter-rmax" />
      </label>
      <input
        type="search"
        placeholder="top token contains…"
        value={q}
        maxLength={100}
        onChange={(e) => {
          setQ(e.currentTarget.value);
          set({ q: e.currentTarget.value });
        }}
        data-testid="cc-filter-search"
        aria-label="Search the top tokens"
      />
      <label>
        sort{' '}
        <select value={filter.sort} onChange={(e) => set({ sort: e.currentTarget.value as LatentFilter['sort'] })} data-testid="cc-filter-sort">
          {LATENT_SORTS.map((s) => (
            <option key={s} value={s}>
              {SORT_LABELS[s]}
            </option>
          ))}
        </select>
      </label>
      <button
        type="button"
        onClick={() => {
          setQ('');
          set(DEFAULT_LATENT_FILTER);
        }}
      >
        Clear
      </button>
      <span className="muted" data-testid="cc-filter-count">
        {count.toLocaleString('en-US')} latents
      </span>
    </div>
  );
}

const CSV_HEADER = ['latent', 'class', 'ratio', 'nu_error_ft', 'nu_recon_ft', 'nu_error_base', 'nu_recon_base', 'frequency', 'max_activation', 'specific', 'top_tokens'];

export function FeatureBrowser({ summary, pair }: { summary: CrosscoderSummary; pair: PairInfo }) {
  const filter = useApp((s) => s.latentFilter);
  const setFilter = useApp((s) => s.setLatentFilter);
  const setLatent = useApp((s) => s.setLatent);
  const t = summary.latents;
  const ids = useMemo(() => filterLatents(t, filter), [t, filter]);
  const ratios = useMemo(() => ratioHistogram(t), [t]);
  // Another filter starts again at the first page.
  const filterKey = JSON.stringify(filter);
  const [paging, setPaging] = useState({ key: filterKey, page: 0 });
  const page = paging.key === filterKey ? paging.page : 0;
  const setPage = (n: number) => setPaging({ key: filterKey, page: n });
  const pages = Math.max(1, Math.ceil(ids.length / PAGE));
  const shownPage = Math.min(page, pages - 1);
  const rows = ids.slice(shownPage * PAGE, (shownPage + 1) * PAGE);
  const scatter = useMemo<ScatterPoint[]>(
    () =>
      ids.slice(0, MAX_SCATTER).map((j) => {
        const nu = leaningNu(t, j);
        return { id: j, x: nu.error, y: nu.recon, className: `cls-${latentClass(t, j)}` };
      }),
    [ids, t],
  );
  const figure = (menu: HTMLElement) => menu.closest('figure')?.querySelector('svg');

  return (
    <>
      <section className="panel" data-testid="cc-browser">
        <SummaryLine summary={summary} pair={pair} />
        <div className="cc-figures">
          <figure>
            <figcaption>Decoder norm ratio r of the live latents (0: fine-tune only, 1: base only; click a bar to filter)</figcaption>
            <BarChart edges={ratios.edges} counts={ratios.counts} xLabel="r = ½[(‖d_base‖ − ‖d_ft‖) / max + 1]" yLabel="latents" testId="ratio-histogram" width={340} bands={RATIO_BANDS} format={formatRatio} onBarClick={(lo, hi) => setFilter({ rmin: Number(lo.toFixed(4)), rmax: Number(hi.toFixed(4)) })} />
            <ExportMenu name="crosscoder-ratio-histogram" svg={figure} table={() => ({ header: ['r_from', 'r_to', 'latents'], rows: ratios.counts.map((c, i) => [ratios.edges[i]!, ratios.edges[i + 1]!, c]) })} />
          </figure>
          <figure>
            <figcaption>Activation density: log10 of each latent's firing frequency ({summary.density.dead} never fired)</figcaption>
            <BarChart edges={summary.density.edges} counts={summary.density.counts} xLabel="log10 frequency" yLabel="latents" testId="density-histogram" width={310} format={formatLog} />
            <ExportMenu name="crosscoder-density" svg={figure} table={() => ({ header: ['log10_from', 'log10_to', 'latents'], rows: summary.density.counts.map((c, i) => [summary.density.edges[i]!, summary.density.edges[i + 1]!, c]) })} />
          </figure>
          <figure>
            <figcaption>
              Latent Scaling of the {scatter.length < ids.length ? `first ${scatter.length} of ` : ''}
              {ids.length} latents in the table, with the decoder of the model each leans to; the shaded corner (ν &lt; 0.3 both) is model-specific
            </figcaption>
            <NuScatter points={scatter} onSelect={setLatent} width={330} height={260} />
            <ExportMenu name="crosscoder-latent-scaling" svg={figure} table={() => ({ header: ['latent', 'nu_error', 'nu_recon'], rows: scatter.map((p) => [p.id, p.x, p.y]) })} />
          </figure>
        </div>
      </section>
      <section className="panel" data-testid="cc-latents">
        <div className="panel-head">
          <h2>Latents</h2>
          <ExportMenu
            name="crosscoder-latents"
            table={() => ({
              header: CSV_HEADER,
              rows: ids.map((j) => [j, latentClass(t, j), t.ratio[j]!, t.nuErrorFt[j]!, t.nuReconFt[j]!, t.nuErrorBase[j]!, t.nuReconBase[j]!, t.frequency[j]!, t.maxActivation[j]!, ['', 'ft', 'base'][t.specific[j]!]!, (t.topTokens[j] ?? []).join(' | ')]),
            })}
          />
        </div>
        <FilterBar filter={filter} count={ids.length} />
        <table className="cc-table" data-testid="cc-latent-table">
          <thead>
            <tr>
              <th className="num">latent</th>
              <th>class</th>
              <th className="num" title="decoder norm ratio">r</th>
              <th className="num" title="Latent Scaling, error target, with the decoder of the model the latent leans to">ν^ε</th>
              <th className="num" title="Latent Scaling, reconstruction target">ν^r</th>
              <th className="num">frequency</th>
              <th className="num">max act.</th>
              <th>top tokens</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((j) => {
              const cls = latentClass(t, j);
              const nu = leaningNu(t, j);
              return (
                <tr key={j} className="cc-row" data-latent={j} onClick={() => setLatent(j)} tabIndex={0} onKeyDown={(e) => e.key === 'Enter' && setLatent(j)}>
                  <td className="num">#{j}</td>
                  <td>
                    <span className={`cls-badge cls-${cls}`}>{cls}</span>
                    {t.specific[j] ? <span className="cls-badge cls-specific">{t.specific[j] === 1 ? 'ft-specific' : 'base-specific'}</span> : null}
                  </td>
                  <td className="num" data-testid="cc-ratio">
                    {t.ratio[j]!.toFixed(3)}
                  </td>
                  <td className="num" title={`with the ${nu.direction} decoder`}>
                    {formatValue(nu.error)}
                  </td>
                  <td className="num">{formatValue(nu.recon)}</td>
                  <td className="num">{formatValue(t.frequency[j]!)}</td>
                  <td className="num">{formatValue(t.maxActivation[j]!)}</td>
                  <td className="cc-tokens">
                    {(t.topTokens[j] ?? []).map((tok, i) => (
                      <span key={i} className="cc-tok">
                        {tok}
                      </span>
                    ))}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
        {ids.length === 0 && <p className="muted">No latent passes these filters.</p>}
        {pages > 1 && (
          <div className="cc-pager">
            <button type="button" disabled={shownPage === 0} onClick={() => setPage(shownPage - 1)}>
              ← previous
            </button>
            <span className="muted">
              page {shownPage + 1} of {pages}
            </span>
            <button type="button" disabled={shownPage >= pages - 1} onClick={() => setPage(shownPage + 1)}>
              next →
            </button>
          </div>
        )}
      </section>
    </>
  );
}
