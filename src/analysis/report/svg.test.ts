import { describe, expect, it } from 'vitest';
import type { TensorDiff, WeightsDiff } from '../weights/types.ts';
import { escapeXml, heatColor, heatmapSvg, lineChartSvg } from './svg.ts';
import { findAll, parseXml } from './testing.ts';
import { layerPlacement, mostChangedMatrix, weightsHeatmap, weightsSummary } from './weights.ts';

const hostile = '<script>alert("x")</script> & \'q\'';

function tensor(name: string, relative: number | null, frobenius: number, sv: number[] = []): TensorDiff {
  return {
    name,
    shape: sv.length ? [4, 4] : [4],
    frobenius,
    relative,
    cosine: 1,
    base_frobenius: 1,
    ft_frobenius: 1,
    max_abs_delta: 0,
    sparsity: null,
    spectral: sv[0] ?? null,
    nuclear: null,
    effective_rank: null,
    energy_50: null,
    energy_90: null,
    energy_99: null,
    top_energy_fraction: null,
    numerical_rank: null,
    rank_tolerance: null,
    top_singular_values: sv,
    method: 'test',
  };
}

describe('SVG writer', () => {
  it('escapes every label, so hostile names stay text', () => {
    expect(escapeXml(hostile)).toBe('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;q&#39;');
    const svg = heatmapSvg({ title: hostile, rowLabels: [hostile], colLabels: [hostile], values: [[1]], cellTitles: [[hostile]], legend: hostile, log: false });
    const doc = parseXml(svg);
    expect(doc.name).toBe('svg');
    expect(findAll(doc, 'script')).toEqual([]);
    expect(findAll(doc, 'title').map((t) => t.text)).toEqual([hostile, hostile]);
    const chart = parseXml(lineChartSvg({ title: hostile, xLabel: hostile, yLabel: hostile, series: [{ label: hostile, values: [1, 2] }] }));
    expect(findAll(chart, 'g')[0]!.attrs['data-label']).toBe(hostile);
  });

  it('colours by value: higher is darker, null and (on a log scale) zero are grey', () => {
    const { color, domain } = heatColor([0, 1e-3, 1e-2, 1e-1, null], true);
    expect(domain).toEqual([1e-3, 1e-1]);
    expect(color(null)).toBe('#e4e7eb');
    expect(color(0)).toBe('#e4e7eb');
    const lum = (c: string) => {
      const [r, g, b] = c.match(/\d+/g)!.map(Number);
      return 0.299 * r! + 0.587 * g! + 0.114 * b!;
    };
    expect(lum(color(1e-3))).toBeGreaterThan(lum(color(1e-2)));
    expect(lum(color(1e-2))).toBeGreaterThan(lum(color(1e-1)));
  });

  it('draws one circle per finite value and breaks the line at gaps', () => {
    const doc = parseXml(lineChartSvg({ title: 't', xLabel: 'x', yLabel: 'y', series: [{ label: 'a', values: [1, null, 3, 4] }, { label: 'b', values: [2, 2] }], x0: 0 }));
    const [a, b] = findAll(doc, 'g');
    expect(findAll(a!, 'circle')).toHaveLength(3);
    expect(findAll(b!, 'circle')).toHaveLength(2);
    expect(findAll(a!, 'path')[0]!.attrs.d!.match(/M/g)).toHaveLength(2);
    const xs = findAll(a!, 'circle').map((c) => Number(c.attrs.cx));
    // x0, x0 + 2, x0 + 3: the gap keeps its place; coordinates are rounded to 0.01.
    expect(Math.abs(xs[1]! - xs[0]! - 2 * (xs[2]! - xs[1]!))).toBeLessThanOrEqual(0.03);
  });
});

describe('weights figures', () => {
  const diff: WeightsDiff = {
    tensors: [
      tensor('model.embed_tokens.weight', 0.5, 3, [2, 1]),
      tensor('model.layers.0.mlp.down_proj.weight', 0.1, 1, [0.9, 0.1]),
      tensor('model.layers.0.self_attn.q_proj.weight', 0.2, 1, [1, 0.5]),
      tensor('model.layers.1.self_attn.q_proj.weight', 0.3, 2, [1.5, 0.2]),
      tensor('model.layers.1.self_attn.q_proj.bias', 0.9, 1),
      tensor('model.layers.1.input_layernorm.weight', 0, 0),
    ],
    missing: [],
    mismatched: [],
    unsupported: [],
  };

  it('places per-layer weights by index and module, for several naming schemes', () => {
    expect(layerPlacement('model.layers.12.self_attn.q_proj.weight')).toEqual({ layer: 12, module: 'self_attn.q_proj' });
    expect(layerPlacement('transformer.h.3.attn.c_attn.weight')).toEqual({ layer: 3, module: 'attn.c_attn' });
    expect(layerPlacement('model.layers.1.self_attn.q_proj.bias')).toBeNull();
    expect(layerPlacement('model.embed_tokens.weight')).toBeNull();
  });

  it('builds the heatmap in computation order, with empty cells where a layer lacks a module', () => {
    const spec = weightsHeatmap(diff, 'relative');
    expect(spec.colLabels).toEqual(['q_proj', 'down_proj', 'input_layernorm']);
    expect(spec.values).toEqual([
      [0.2, 0.1, null],
      [0.3, null, 0],
    ]);
    expect(spec.title).toContain('2 model-wide tensors and biases');
    const cells = findAll(parseXml(heatmapSvg(spec)), 'rect').filter((r) => r.attrs.class === 'cell');
    expect(cells).toHaveLength(6);
    expect(cells.filter((c) => c.attrs['data-value'] !== undefined).map((c) => Number(c.attrs['data-value']))).toEqual([0.2, 0.1, 0.3, 0]);
  });

  it('picks the matrix with the largest relative change, and summarises', () => {
    expect(mostChangedMatrix(diff)!.name).toBe('model.embed_tokens.weight');
    const s = weightsSummary(diff, 2);
    expect([s.tensors, s.changed]).toEqual([6, 5]);
    expect(s.most_changed.map((t) => t.name)).toEqual(['model.layers.1.self_attn.q_proj.bias', 'model.embed_tokens.weight']);
    expect(Math.abs(s.total_frobenius - Math.sqrt(9 + 1 + 1 + 4 + 1))).toBeLessThanOrEqual(1e-12);
  });
});
