import { createElement } from 'react';
import { renderToStaticMarkup } from 'react-dom/server';
import { describe, expect, it } from 'vitest';
import type { PatchedLayers } from '../../analysis/activations/patching.ts';
import { tokenLabel, tokenTitle, TaskStatus } from './common.tsx';
import { criticalLayers } from './PatchingView.tsx';

describe('token labels', () => {
  const texts = { 1: ' sea', 2: '\n', 3: '  ', 4: 'Once', 5: '\t<b>' };
  it('drops the leading space in cells and makes whitespace-only tokens visible', () => {
    expect([1, 2, 3, 4, 5].map((id) => tokenLabel(texts, id))).toEqual(['sea', '⏎', '␣␣', 'Once', '⇥<b>']);
    expect(tokenLabel(texts, 99)).toBe('#99');
  });
  it('quotes the exact text with its id in tooltips', () => {
    expect(tokenTitle(texts, 1)).toBe('" sea" (#1)');
    expect(tokenTitle(texts, 2)).toBe('"\\n" (#2)');
  });
});

describe('criticalLayers', () => {
  it('picks the layer of largest recovery per hook kind, the first on ties', () => {
    const kinds: PatchedLayers[] = [
      { kind: 'attn_out', kl: new Float64Array(4), recovery: Float64Array.from([0.1, 0.7, 0.2, 0.7]) },
      { kind: 'mlp_out', kl: new Float64Array(4), recovery: Float64Array.from([-0.3, -0.1, -0.2, -0.5]) },
    ];
    expect([...criticalLayers(kinds)]).toEqual([
      ['attn_out', 1],
      ['mlp_out', 1],
    ]);
  });
});

describe('TaskStatus', () => {
  it('shows a worker failure as text, with a way to run again', () => {
    const html = renderToStaticMarkup(
      createElement(TaskStatus, { task: 'adl', run: { status: 'error', key: 'k', message: 'corpus.txt: no line has 64 tokens <b>' }, what: 'The ADL', onRetry: () => {} }),
    );
    expect(html).toContain('The ADL failed: corpus.txt: no line has 64 tokens &lt;b&gt;');
    expect(html).toContain('Run again');
  });
});
