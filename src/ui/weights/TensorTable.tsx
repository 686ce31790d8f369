import { useMemo, useState } from 'react';
import type { TensorDiff, WeightsDiff } from '../../analysis/weights/types.ts';
import type { Cell } from '../../analysis/report/csv.ts';
import { ExportMenu } from '../export/ExportMenu.tsx';
import { formatValue } from '../format.ts';
import { KIND_LABELS, placeTensors, type Placement } from './tensor-kinds.ts';

type Row = TensorDiff & { place: Placement; module: string };

interface Column {
  key: string;
  label: string;
  num: boolean;
  sort(r: Row): number | string | null;
  show(r: Row): string;
}

const COLUMNS: Column[] = [
  { key: 'name', label: 'tensor', num: false, sort: (r) => r.name, show: (r) => r.name },
  { key: 'layer', label: 'layer', num: true, sort: (r) => r.place.layer, show: (r) => (r.place.layer === null ? '' : String(r.place.layer)) },
  { key: 'module', label: 'module', num: false, sort: (r) => r.module, show: (r) => r.module },
  { key: 'shape', label: 'shape', num: false, sort: (r) => r.shape.reduce((a, b) => a * b, 1), show: (r) => r.shape.join('×') },
  { key: 'frobenius', label: '‖ΔW‖_F', num: true, sort: (r) => r.frobenius, show: (r) => formatValue(r.frobenius) },
  { key: 'relative', label: 'relative', num: true, sort: (r) => r.relative, show: (r) => formatValue(r.relative) },
  { key: 'spectral', label: 'σ₁', num: true, sort: (r) => r.spectral, show: (r) => formatValue(r.spectral) },
  { key: 'effective_rank', label: 'eff. rank', num: true, sort: (r) => r.effective_rank, show: (r) => formatValue(r.effective_rank) },
  { key: 'energy_90', label: 'energy 90%', num: true, sort: (r) => r.energy_90, show: (r) => formatValue(r.energy_90) },
  { key: 'cosine', label: 'cosine', num: true, sort: (r) => r.cosine, show: (r) => (r.cosine === null ? '—' : r.cosine.toFixed(6)) },
];

function compare(a: number | string | null, b: number | string | null): number {
  // Missing values sort last in both directions.
  if (a === null || b === null) return a === b ? 0 : a === null ? 1 : -1;
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The CSV columns: every statistic unrounded, in the table's order first. */
const CSV_HEADER = ['name', 'layer', 'module', 'shape', 'frobenius', 'relative', 'spectral', 'effective_rank', 'energy_90', 'cosine', 'nuclear', 'energy_50', 'energy_99', 'top_energy_fraction', 'numerical_rank', 'max_abs_delta', 'base_frobenius', 'ft_frobenius', 'method'];
const csvRow = (r: Row): Cell[] => [
  r.name,
  r.place.layer,
  r.module,
  r.shape.join('x'),
  r.frobenius,
  r.relative,
  r.spectral,
  r.effective_rank,
  r.energy_90,
  r.cosine,
  r.nuclear,
  r.energy_50,
  r.energy_99,
  r.top_energy_fraction,
  r.numerical_rank,
  r.max_abs_delta,
  r.base_frobenius,
  r.ft_frobenius,
  r.method,
];

interface Props {
  result: WeightsDiff;
  selected: string | null;
  onSelect(name: string): void;
}

/** Every compared tensor, sortable by any column and filtered by name or module. */
export function TensorTable({ result, selected, onSelect }: Props) {
  const [filter, setFilter] = useState('');
  const [sort, setSort] = useState<{ key: string; desc: boolean }>({ key: 'name', desc: false });
  const rows = useMemo<Row[]>(() => {
    const placed = placeTensors(result.tensors.map((t) => t.name));
    return result.tensors.map((t) => {
      const place = placed.get(t.name)!;
      const module = place.kind === 'other' ? 'other' : `${KIND_LABELS[place.kind]}${place.part === 'bias' ? ' bias' : ''}`;
      return { ...t, place, module };
    });
  }, [result]);
  const shown = useMemo(() => {
    const needle = filter.trim().toLowerCase();
    const col = COLUMNS.find((c) => c.key === sort.key) ?? COLUMNS[0]!;
    const kept = needle ? rows.filter((r) => r.name.toLowerCase().includes(needle) || r.module.toLowerCase().includes(needle)) : rows;
    const order = kept.map((r, i) => ({ r, i }));
    order.sort((a, b) => {
      const va = col.sort(a.r);
      const vb = col.sort(b.r);
      if (va === null || vb === null) return compare(va, vb) || a.i - b.i;
      return (sort.desc ? -compare(va, vb) : compare(va, vb)) || a.i - b.i;
    });
    return order.map((o) => o.r);
  }, [rows, filter, sort]);

  const toggle = (key: string) => setSort((s) => (s.key === key ? { key, desc: !s.desc } : { key, desc: COLUMNS.find((c) => c.key === key)!.num }));

  return (
    <section className="panel" data-testid="tensor-table">
      <div className="panel-head">
        <h2>
          All tensors <span className="muted">({shown.length === rows.length ? rows.length : `${shown.length} of ${rows.length}`})</span>
        </h2>
        <input type="search" placeholder="filter, e.g. layers.3 or down" value={filter} onChange={(e) => setFilter(e.currentTarget.value)} aria-label="Filter tensors" data-testid="tensor-filter" />
        <ExportMenu name="weights-tensors" table={() => ({ header: CSV_HEADER, rows: shown.map(csvRow) })} />
      </div>
      <div className="table-scroll">
        <table className="data">
          <thead>
            <tr>
              {COLUMNS.map((c) => (
                <th key={c.key} className={c.num ? 'num' : ''} aria-sort={sort.key === c.key ? (sort.desc ? 'descending' : 'ascending') : 'none'}>
                  <button type="button" className="sort" onClick={() => toggle(c.key)}>
                    {c.label}
                    {sort.key === c.key ? (sort.desc ? ' ▼' : ' ▲') : ''}
                  </button>
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {shown.map((r) => (
              <tr key={r.name} className={r.name === selected ? 'row-selected' : ''} data-tensor={r.name} onClick={() => onSelect(r.name)}>
                {COLUMNS.map((c) => (
                  <td key={c.key} className={c.num ? 'num' : c.key === 'name' ? 'mono' : ''}>
                    {c.show(r)}
                  </td>
                ))}
              </tr>
            ))}
          </tbody>
        </table>
        {shown.length === 0 && <p className="muted">No tensor matches “{filter}”.</p>}
      </div>
    </section>
  );
}

/** Tensors that could not be compared, always listed (an empty list says "none"). */
export function NotCompared({ result }: { result: WeightsDiff }) {
  const onlyBase = result.missing.filter((m) => m.only_in === 'base');
  const onlyFt = result.missing.filter((m) => m.only_in === 'ft');
  const groups: { title: string; id: string; items: string[] }[] = [
    { title: 'Only in the base model', id: 'only-base', items: onlyBase.map((m) => `${m.name} [${m.shape.join('×')}]`) },
    { title: 'Only in the fine-tuned model', id: 'only-ft', items: onlyFt.map((m) => `${m.name} [${m.shape.join('×')}]`) },
    { title: 'Shapes differ', id: 'mismatched', items: result.mismatched.map((m) => `${m.name}: base [${m.base_shape.join('×')}], fine-tuned [${m.ft_shape.join('×')}]`) },
    { title: 'Not floating point', id: 'unsupported', items: result.unsupported.map((u) => `${u.name}: ${u.reason}`) },
  ];
  return (
    <section className="panel" data-testid="not-compared">
      <h2>Not compared</h2>
      <div className="not-compared">
        {groups.map((g) => (
          <div key={g.id} data-testid={`list-${g.id}`}>
            <h3>
              {g.title} ({g.items.length})
            </h3>
            {g.items.length === 0 ? (
              <p className="muted">none</p>
            ) : (
              <ul className="mono">
                {g.items.map((item) => (
                  <li key={item}>{item}</li>
                ))}
              </ul>
            )}
          </div>
        ))}
      </div>
    </section>
  );
}
