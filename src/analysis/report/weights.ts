// The weight diff as report figures: a layers × modules heatmap of one statistic, the spectrum of
// the most-changed matrix, and a short summary. Names are placed by their layer index, so any
// architecture's checkpoint names work ("model.layers.3.self_attn.q_proj.weight", "h.3.attn.c_attn.weight").
import type { TensorDiff, WeightsDiff } from '../weights/types.ts';
import type { HeatmapSpec, LineChartSpec } from './svg.ts';

const LAYER_NAME = /^(?:.*\.)?(?:layers|layer|h|blocks|block)\.(\d+)\.(.+)\.weight$/;

/** Layer index and module path of a per-layer weight ("self_attn.q_proj"); null for biases and model-wide tensors. */
export function layerPlacement(name: string): { layer: number; module: string } | null {
  const m = LAYER_NAME.exec(name);
  return m ? { layer: Number(m[1]), module: m[2]! } : null;
}

// Columns in the order of the computation: attention projections, then the MLP, then norms and the rest.
const MODULE_ORDER = [/(^|[._])q(_proj)?$/, /(^|[._])k(_proj)?$/, /(^|[._])v(_proj)?$/, /qkv|c_attn|query_key_value/, /(^|[._])(o|out|dense|c_proj)(_proj)?$/, /gate/, /(^|[._])(up|fc1|c_fc|w1)(_proj)?$/, /(^|[._])(down|fc2|w2)(_proj)?$/, /norm|ln/];
function moduleRank(module: string): number {
  const i = MODULE_ORDER.findIndex((re) => re.test(module));
  return i === -1 ? MODULE_ORDER.length : i;
}

export type HeatmapMetric = 'relative' | 'frobenius' | 'spectral' | 'effective_rank';

const METRIC_LABELS: Record<HeatmapMetric, string> = {
  relative: '‖ΔW‖_F / ‖W_base‖_F',
  frobenius: '‖ΔW‖_F',
  spectral: 'σ₁ of ΔW',
  effective_rank: 'effective rank of ΔW',
};

export function weightsHeatmap(diff: WeightsDiff, metric: HeatmapMetric = 'relative'): HeatmapSpec {
  const placed = diff.tensors.flatMap((t) => {
    const p = layerPlacement(t.name);
    return p ? [{ t, ...p }] : [];
  });
  const modules = [...new Set(placed.map((p) => p.module))].sort((a, b) => moduleRank(a) - moduleRank(b) || (a < b ? -1 : a > b ? 1 : 0));
  const layers = placed.length ? Math.max(...placed.map((p) => p.layer)) + 1 : 0;
  const values = Array.from({ length: layers }, () => modules.map((): number | null => null));
  const titles = Array.from({ length: layers }, () => modules.map((): string | null => null));
  for (const p of placed) {
    const v = p.t[metric];
    const j = modules.indexOf(p.module);
    values[p.layer]![j] = v;
    titles[p.layer]![j] = `${p.t.name} [${p.t.shape.join('×')}]: ${METRIC_LABELS[metric]} = ${v === null ? 'n/a' : v}`;
  }
  const others = diff.tensors.length - placed.length;
  return {
    title: `${METRIC_LABELS[metric]} per layer and module${others ? ` (${others} model-wide tensors and biases in report.json)` : ''}`,
    rowLabels: Array.from({ length: layers }, (_, i) => `L${i}`),
    colLabels: modules.map((m) => m.split('.').pop()!),
    values,
    cellTitles: titles,
    legend: METRIC_LABELS[metric],
    log: metric === 'relative' || metric === 'frobenius' || metric === 'spectral',
  };
}

/** The matrix with the largest relative change that has a spectrum; null when none changed. */
export function mostChangedMatrix(diff: WeightsDiff): TensorDiff | null {
  let best: TensorDiff | null = null;
  for (const t of diff.tensors) {
    if (t.top_singular_values.length === 0 || t.frobenius === 0) continue;
    if (!best || (t.relative ?? 0) > (best.relative ?? 0)) best = t;
  }
  return best;
}

export function spectrumChart(t: TensorDiff): LineChartSpec {
  return {
    title: `Top ${t.top_singular_values.length} singular values of ΔW, ${t.name} [${t.shape.join('×')}]`,
    xLabel: 'index i',
    yLabel: 'σ_i (log scale)',
    series: [{ label: 'σ_i', values: t.top_singular_values }],
    log: true,
  };
}

export interface WeightsSummary {
  tensors: number;
  changed: number;
  missing: number;
  mismatched: number;
  unsupported: number;
  /** ‖θ_ft − θ_base‖ over all compared tensors. */
  total_frobenius: number;
  /** The largest relative changes, largest first. */
  most_changed: { name: string; shape: number[]; relative: number | null; frobenius: number; spectral: number | null; effective_rank: number | null }[];
}

export function weightsSummary(diff: WeightsDiff, top = 10): WeightsSummary {
  const changed = diff.tensors.filter((t) => t.frobenius > 0);
  const ranked = [...changed].sort((a, b) => (b.relative ?? 0) - (a.relative ?? 0)).slice(0, top);
  return {
    tensors: diff.tensors.length,
    changed: changed.length,
    missing: diff.missing.length,
    mismatched: diff.mismatched.length,
    unsupported: diff.unsupported.length,
    total_frobenius: Math.sqrt(diff.tensors.reduce((s, t) => s + t.frobenius * t.frobenius, 0)),
    most_changed: ranked.map((t) => ({ name: t.name, shape: t.shape, relative: t.relative, frobenius: t.frobenius, spectral: t.spectral, effective_rank: t.effective_rank })),
  };
}
