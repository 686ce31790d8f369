import { describe, expect, it } from 'vitest';
import { pct, plural, shownToken, table, wrapList } from './format.ts';

describe('CLI text format', () => {
  it('aligns columns, numbers to the right, and cuts the widest text column to the width', () => {
    const rows = [
      ['model.layers.0.self_attn.q_proj.weight', '0.2547'],
      ['model.norm.weight', '12.5'],
    ];
    const wide = table([{ header: 'tensor' }, { header: 'relative', right: true }], rows, 200).split('\n');
    expect(wide.slice(0, 3)).toEqual(['tensor                                  relative', 'model.layers.0.self_attn.q_proj.weight    0.2547', 'model.norm.weight                           12.5']);
    const narrow = table([{ header: 'tensor' }, { header: 'relative', right: true }], rows, 30).split('\n');
    expect(narrow.every((l) => l.length <= 30)).toBe(true);
    expect(narrow[1]).toBe('model.layers.0.self…    0.2547');
  });

  it('says counts, probabilities and tokens in words a reader expects', () => {
    expect([plural(1, 'argument'), plural(2, 'argument')]).toEqual(['1 argument', '2 arguments']);
    expect([pct(0.42), pct(0.035), pct(0.0005), pct(0)]).toEqual(['42%', '3.5%', '<0.1%', '0%']);
    expect([shownToken(' beach', 9), shownToken('\u0007', 7), shownToken(null, 3)]).toEqual(['beach', '␇', '#3']);
    expect(wrapList(['d_model 192', 'layers 6', 'heads 6'], 20)).toBe('d_model 192,\nlayers 6, heads 6');
  });
});
