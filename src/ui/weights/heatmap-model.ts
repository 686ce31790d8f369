// The heatmap's data: layers × module kinds from the tensor names, one weight tensor per cell,
// and the colour scale of the chosen metric.
import * as d3 from 'd3';
import type { TensorDiff, WeightsDiff } from '../../analysis/weights/types.ts';
import { METRIC_INFO, type Metric } from '../../state/metrics.ts';
import { LAYER_KINDS, MODEL_KINDS, placeTensors, type LayerKind, type ModelKind } from './tensor-kinds.ts';

export interface HeatCell {
  tensor: TensorDiff;
  layer: number | null;
  kind: LayerKind | ModelKind;
  /** The metric's value; null where it does not apply (no spectrum for vectors). */
  value: number | null;
}

export interface HeatmapModel {
  layers: number;
  /** Layer module kinds present, in column order. */
  columns: LayerKind[];
  cells: HeatCell[];
  /** Embeddings, final norm, lm_head. */
  strip: HeatCell[];
  /** Tensors the heatmap does not place (biases, unknown names): they are in the table. */
  unplaced: TensorDiff[];
}

export function heatmapModel(result: WeightsDiff, metric: Metric): HeatmapModel {
  const placed = placeTensors(result.tensors.map((t) => t.name));
  const value = METRIC_INFO[metric].value;
  const cells: HeatCell[] = [];
  const strip: HeatCell[] = [];
  const unplaced: TensorDiff[] = [];
  let layers = 0;
  const kinds = new Set<LayerKind>();
  for (const tensor of result.tensors) {
    const p = placed.get(tensor.name)!;
    if (p.kind === 'other' || p.part !== 'weight') {
      unplaced.push(tensor);
    } else if (p.layer === null) {
      strip.push({ tensor, layer: null, kind: p.kind, value: value(tensor) });
    } else {
      cells.push({ tensor, layer: p.layer, kind: p.kind, value: value(tensor) });
      kinds.add(p.kind);
      layers = Math.max(layers, p.layer + 1);
    }
  }
  strip.sort((a, b) => MODEL_KINDS.indexOf(a.kind as ModelKind) - MODEL_KINDS.indexOf(b.kind as ModelKind));
  return { layers, columns: LAYER_KINDS.filter((k) => kinds.has(k)), cells, strip, unplaced };
}

export interface ColorScale {
  color(value: number | null): string;
  /** The numeric scale behind the colours, for the legend axis. */
  scale: d3.ScaleContinuousNumeric<number, number>;
  log: boolean;
  domain: [number, number];
}

export const ZERO_COLOR = '#e4e7eb';
/** A hatch pattern the heatmap defines: values that do not apply (a vector has no spectrum). */
export const NA_FILL = 'url(#na-hatch)';

/** Sequential colours over the values; a log scale spans the positive values, and exact zeros get their own colour. */
export function colorScale(values: readonly (number | null)[], log: boolean): ColorScale {
  const finite = values.filter((v): v is number => v !== null && Number.isFinite(v));
  const usable = log ? finite.filter((v) => v > 0) : finite;
  let lo = d3.min(usable) ?? 0;
  let hi = d3.max(usable) ?? 1;
  if (lo === hi) {
    lo = log ? lo / 2 : lo - 0.5;
    hi = log ? hi * 2 : hi + 0.5;
  }
  if (log && lo <= 0) lo = hi / 1e6;
  const scale = (log ? d3.scaleLog() : d3.scaleLinear()).domain([lo, hi]).range([0, 1]).clamp(true);
  const interpolate = d3.interpolateYlOrRd;
  return {
    color(v) {
      if (v === null || !Number.isFinite(v)) return NA_FILL;
      if (log && v <= 0) return ZERO_COLOR;
      return interpolate(0.08 + 0.92 * scale(v));
    },
    scale,
    log,
    domain: [lo, hi],
  };
}

/**
 * The values the legend labels, every one of them with a number: nice steps inside the domain,
 * and on a log scale that spans decades, the powers of ten (with 2 and 5 when there are few).
 */
export function legendTicks({ domain: [lo, hi], log }: Pick<ColorScale, 'domain' | 'log'>): number[] {
  const inside = (t: number) => t >= lo * (1 - 1e-9) && t <= hi * (1 + 1e-9);
  if (!log || hi / lo < 10) {
    const ticks = d3.ticks(lo, hi, 4).filter(inside);
    return ticks.length >= 2 ? ticks : [lo, hi];
  }
  const all = d3.scaleLog().domain([lo, hi]).ticks();
  const lead = (t: number) => Math.round(t / 10 ** Math.floor(Math.log10(t) + 1e-9));
  const powers = all.filter((t) => lead(t) === 1);
  const ticks = powers.length >= 3 ? powers : all.filter((t) => [1, 2, 5].includes(lead(t)));
  const step = Math.ceil(ticks.length / 6);
  return ticks.filter((_, i) => i % step === 0);
}

/** A tick label: short, in exponent form below 10⁻³ and from 10⁵. */
export function formatTick(v: number): string {
  return v !== 0 && (Math.abs(v) < 1e-3 || Math.abs(v) >= 1e5) ? d3.format('~e')(v) : d3.format('~g')(v);
}
