// The per-tensor numbers the weights view can colour by. Ids travel in permalinks.
import type { TensorDiff } from '../analysis/weights/types.ts';

export const METRICS = ['frobenius', 'relative', 'spectral', 'nuclear', 'effective_rank', 'energy_90', 'top_energy', 'cosine', 'max_abs_delta'] as const;
export type Metric = (typeof METRICS)[number];

export interface MetricInfo {
  label: string;
  /** What the colour encodes (legend title). */
  legend: string;
  /** The value coloured; null where it does not apply (vectors have no spectrum). */
  value(t: TensorDiff): number | null;
  /** Log scale for norms that span decades. */
  log: boolean;
}

export const METRIC_INFO: Record<Metric, MetricInfo> = {
  frobenius: { label: 'Frobenius ‖ΔW‖', legend: '‖ΔW‖_F', value: (t) => t.frobenius, log: true },
  relative: { label: 'relative ‖ΔW‖/‖W‖', legend: '‖ΔW‖_F / ‖W_base‖_F', value: (t) => t.relative, log: true },
  spectral: { label: 'spectral σ₁', legend: 'σ₁(ΔW)', value: (t) => t.spectral, log: true },
  nuclear: { label: 'nuclear Σσ', legend: 'Σσ_i(ΔW)', value: (t) => t.nuclear, log: true },
  effective_rank: { label: 'effective rank', legend: 'effective rank of ΔW (Roy & Vetterli)', value: (t) => t.effective_rank, log: false },
  energy_90: { label: 'energy rank 90%', legend: 'smallest r holding 90% of ‖ΔW‖²', value: (t) => t.energy_90, log: false },
  top_energy: { label: 'σ₁² share', legend: 'σ₁² / Σσ_i²', value: (t) => t.top_energy_fraction, log: false },
  // Cosines of a fine-tune sit a hair below 1; their distance from 1 is what differs.
  cosine: { label: 'cosine (as 1 − cos)', legend: '1 − cos(W_base, W_ft)', value: (t) => (t.cosine === null ? null : Math.max(1 - t.cosine, 0)), log: true },
  max_abs_delta: { label: 'max |ΔW_ij|', legend: 'max |ΔW_ij|', value: (t) => t.max_abs_delta, log: true },
};
