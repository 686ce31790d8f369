import { describe, expect, it } from 'vitest';
import { DEFAULT_METHOD_SETTINGS, parseAlphas } from './methods.ts';
import { decodeLink } from './permalink.ts';

const link = (state: unknown) => '#state=' + encodeURIComponent(JSON.stringify(state));

describe('the Methods view in permalinks', () => {
  it('reads a subset of the settings and keeps the defaults for the rest', () => {
    expect(decodeLink(link({ methods: { tab: 'kl', klTop: 7 } }))).toEqual({ ok: true, state: { methods: { ...DEFAULT_METHOD_SETTINGS, tab: 'kl', klTop: 7 } } });
  });

  it('reads the diff-SAE tab with its training settings and the latent shown', () => {
    const sae = { tab: 'diff-sae', saeLayer: 2, saeDict: 64, saeK: 4, saeSteps: 50, saeBatch: 32, saeLr: 0.002, saeLatent: 7, saeSort: 'activation', saeQuery: 'sea' };
    expect(decodeLink(link({ methods: sae }))).toEqual({ ok: true, state: { methods: { ...DEFAULT_METHOD_SETTINGS, ...sae } } });
  });

  it('leaves out an unknown tab, an unknown field or a bad α list, naming the field, and keeps the rest of the link', () => {
    for (const [methods, key] of [
      [{ tab: 'sae' }, 'methods.tab'],
      [{ nope: 1 }, 'nope'],
      [{ alphas: [] }, 'methods.alphas'],
      [{ alphas: [1, 2, 3, 4, 5, 6, 7, 8, 9] }, 'methods.alphas'],
      [{ mineK: 0 }, 'methods.mineK'],
      [{ attnHead: { layer: -1, head: 0 } }, 'methods.attnHead.layer'],
      [{ saeLr: 0 }, 'methods.saeLr'],
      [{ saeBatch: 0 }, 'methods.saeBatch'],
      [{ saeLatent: -1 }, 'methods.saeLatent'],
      [{ saeSort: 'ratio' }, 'methods.saeSort'],
      [{ saeQuery: 'x'.repeat(101) }, 'methods.saeQuery'],
    ] as const) {
      const r = decodeLink(link({ methods, layer: 2 }));
      expect(r.ok).toBe(true);
      if (r.ok) {
        expect(r.message).toContain(key);
        expect(r.state.methods).toBeUndefined();
        expect(r.state.layer).toBe(2);
      }
    }
  });
});

describe('parseAlphas', () => {
  it('reads commas and spaces, negatives and decimals', () => {
    expect(parseAlphas('0, 1 2.5,-1')).toEqual({ ok: true, alphas: [0, 1, 2.5, -1] });
  });
  it('names the bad entry', () => {
    expect(parseAlphas('1, x')).toEqual({ ok: false, message: 'α must be a number between −100 and 100, got "x"' });
    expect(parseAlphas(' ')).toEqual({ ok: false, message: 'give at least one α' });
    expect(parseAlphas('1e9')).toEqual({ ok: false, message: 'α must be a number between −100 and 100, got "1e9"' });
  });
});
