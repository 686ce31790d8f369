import { createElement } from 'react';
import { renderToStaticMarkup } from 'react-dom/server';
import { describe, expect, it } from 'vitest';
import type { TensorDiff, WeightsDiff } from '../../analysis/weights/types.ts';
import { createCpuBackend } from '../../gpu/cpu-backend.ts';
import { pathFileSet } from '../../io/node-source.ts';
import { computeWeightsDiff } from '../../jobs/weights.ts';
import { formatValue } from '../format.ts';
import { colorScale, formatTick, heatmapModel, legendTicks, NA_FILL, ZERO_COLOR } from './heatmap-model.ts';
import { methodInWords, TensorPanel } from './TensorPanel.tsx';
import { StaleTensor } from './WeightsView.tsx';

const backend = createCpuBackend();
const diffOf = async (arch: string) =>
  computeWeightsDiff({ base: await pathFileSet(`test/fixtures/arch/${arch}/base`), ft: await pathFileSet(`test/fixtures/arch/${arch}/ft`), topK: 8 }, { backend });

describe('heatmapModel', () => {
  it('lays Gemma 2 out as layers × its module kinds, with the model-wide tensors in the strip', async () => {
    const result = await diffOf('gemma2');
    const m = heatmapModel(result, 'frobenius');
    expect(m.layers).toBe(3);
    expect(m.columns).toEqual(['q', 'k', 'v', 'o', 'gate', 'up', 'down', 'attn_norm', 'attn_post_norm', 'mlp_norm', 'mlp_post_norm']);
    expect(m.cells).toHaveLength(3 * 11);
    expect(m.strip.map((c) => c.kind)).toEqual(['embed', 'final_norm']);
    expect(m.unplaced).toEqual([]);
    // Exactly the tensors the fixture changed have a non-zero colour value.
    const changed = result.tensors.filter((t) => t.frobenius > 0).map((t) => t.name).sort();
    expect([...m.cells, ...m.strip].filter((c) => c.value! > 0).map((c) => c.tensor.name).sort()).toEqual(changed);
  });

  it('keeps GPT-2 biases out of the cells, in the unplaced list', async () => {
    const m = heatmapModel(await diffOf('gpt2'), 'spectral');
    expect(m.columns).toEqual(['qkv', 'o', 'up', 'down', 'attn_norm', 'mlp_norm']);
    expect(m.strip.map((c) => c.kind)).toEqual(['embed', 'pos_embed', 'final_norm']);
    expect(m.unplaced.every((t) => t.name.endsWith('.bias'))).toBe(true);
    expect(m.unplaced).toHaveLength(3 * 6 + 1);
    // Norm weights are vectors: no spectrum.
    expect(m.cells.filter((c) => c.kind === 'attn_norm').every((c) => c.value === null)).toBe(true);
  });
});

describe('colorScale', () => {
  it('orders colours by value on a log scale, with zeros and missing values apart', () => {
    const s = colorScale([0, 1e-3, 1e-2, 1e-1, null], true);
    expect(s.domain).toEqual([1e-3, 1e-1]);
    expect(s.color(0)).toBe(ZERO_COLOR);
    expect(s.color(null)).toBe(NA_FILL);
    expect(s.scale(1e-2)).toBeCloseTo(0.5, 12);
    const lightness = (c: string) => {
      const [r, g, b] = c.match(/\d+/g)!.map(Number) as [number, number, number];
      return r + g + b;
    };
    expect(lightness(s.color(1e-3))).toBeGreaterThan(lightness(s.color(1e-2)));
    expect(lightness(s.color(1e-2))).toBeGreaterThan(lightness(s.color(1e-1)));
  });

  it('labels every legend tick, on narrow and wide log ranges alike', () => {
    const labels = (lo: number, hi: number, log = true) => legendTicks({ domain: [lo, hi], log }).map(formatTick);
    // An adapter's relative change sits inside one decade: d3's log ticks would leave these unlabelled.
    expect(labels(0.25, 0.56)).toEqual(['0.3', '0.4', '0.5']);
    expect(labels(0.6, 5.5)).toEqual(['1', '2', '3', '4', '5']);
    expect(labels(1.2e-5, 2.9e-5)).toEqual(['1.5e-5', '2e-5', '2.5e-5']);
    expect(labels(1e-4, 2)).toEqual(['1e-4', '0.001', '0.01', '0.1', '1']);
    expect(labels(1e-9, 1)).toEqual(['1e-9', '1e-7', '1e-5', '0.001', '0.1']);
    expect(labels(0.02, 0.9)).toEqual(['0.02', '0.05', '0.1', '0.2', '0.5']);
    expect(labels(3, 4, false)).toEqual(['3', '3.2', '3.4', '3.6', '3.8', '4']);
  });

  it('says how a spectrum was computed in words', () => {
    expect(methodInWords('randomized(l=74,q=3,cholqr2); spectrum gram(float64 host)/jacobi, floor 4.2e-7·σ1; top-64 from gram')).toBe('full spectrum from ΔWᵀΔW in double precision; values under 4.2e-7 × σ₁ read as 0');
    expect(methodInWords('randomized(l=24,q=3,cholqr2); spectrum complete in sketch')).toBe('full spectrum from a randomized SVD that holds every singular value');
  });

  it('widens a single value into a range', () => {
    expect(colorScale([4, 4], false).domain).toEqual([3.5, 4.5]);
    expect(colorScale([4], true).domain).toEqual([2, 8]);
  });
});

const hostile = 'model.layers.0.<img src=x onerror=alert(1)>.weight';
const empty: WeightsDiff = { tensors: [], missing: [], mismatched: [], unsupported: [] };

describe('rendering tensor names from links and files', () => {
  it('says why a linked tensor is not shown, as text', () => {
    const html = renderToStaticMarkup(createElement(StaleTensor, { name: hostile, result: empty, onDismiss: () => {} }));
    expect(html).not.toContain('<img');
    expect(html).toContain('&lt;img src=x onerror=alert(1)&gt;');
    expect(html).toContain('is not a tensor of these models (0 tensors were compared)');
    const missing = renderToStaticMarkup(
      createElement(StaleTensor, { name: 'lm_head.weight', result: { ...empty, missing: [{ name: 'lm_head.weight', shape: [8, 4], only_in: 'ft' }] }, onDismiss: () => {} }),
    );
    expect(missing).toContain('is only in the fine-tuned model');
  });

  it('shows the statistics of a tensor with the numbers of its diff', async () => {
    const result = await diffOf('llama');
    const t = result.tensors.find((x) => x.frobenius > 0 && x.shape.length === 2)!;
    const html = renderToStaticMarkup(createElement(TensorPanel, { tensor: t, onClose: () => {} }));
    const stat = (id: string) => new RegExp(`data-testid="stat-${id}">([^<]*)<`).exec(html)?.[1];
    expect(stat('frobenius')).toBe(formatValue(t.frobenius));
    expect(stat('spectral')).toBe(formatValue(t.spectral));
    expect(stat('energy-ranks')).toBe([t.energy_50, t.energy_90, t.energy_99].map(formatValue).join(' / '));
    const vector: TensorDiff = { ...result.tensors.find((x) => x.shape.length === 1)!, name: hostile };
    const vhtml = renderToStaticMarkup(createElement(TensorPanel, { tensor: vector, onClose: () => {} }));
    expect(vhtml).toContain('A vector has no spectrum');
    expect(vhtml).not.toContain('<img');
  });
});
