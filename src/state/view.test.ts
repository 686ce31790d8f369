import { describe, expect, it } from 'vitest';
import { bytesSource, type FileSet } from '../io/source.ts';
import type { ModelSummary } from './models.ts';
import { createAppStore } from './store.ts';
import { PAIR_VIEW_DEFAULTS } from './view.ts';

const files = (name: string): FileSet => new Map([[name, bytesSource(new Uint8Array(8), name)]]);

const summary: ModelSummary = {
  kind: 'model',
  format: 'hf',
  label: 'model.safetensors',
  architecture: 'llama',
  parameterCount: 128,
  layers: 6,
  dModel: 8,
  vocabSize: 16,
  dtypes: { F32: 128 },
  weightBytes: 512,
  largestTensor: { name: 'model.embed_tokens.weight', elements: 128 },
  shapes: new Map([['model.embed_tokens.weight', [16, 8]]]),
};

/** A store with a loaded pair (opened by the app, as the demo is) and some view state for it. */
function loadedPair() {
  const store = createAppStore();
  const base = files('base.safetensors');
  const ft = files('ft.safetensors');
  store.setState({
    models: { base: { pending: base, status: { kind: 'loaded', summary } }, ft: { pending: ft, status: { kind: 'loaded', summary } } },
    refFiles: { base, ft },
    modelRefs: { base: { demo: 'base' }, ft: { demo: 'ocean' } },
  });
  store.setState({ tensor: 'model.embed_tokens.weight', layer: 4, position: 7, adlLayer: 2, adlPosition: 1, ccLayer: 5, latent: 12, prompt: 'Once' });
  return store;
}

const pairView = (s: ReturnType<typeof createAppStore>) => {
  const { tensor, layer, position, adlLayer, adlPosition, ccLayer, latent } = s.getState();
  return { tensor, layer, position, adlLayer, adlPosition, ccLayer, latent };
};

describe('view state per view and per pair', () => {
  it('keeps one layer per view; the lens hands its layer to the ADL only when asked', () => {
    const store = createAppStore();
    store.getState().setLayer(4);
    expect([store.getState().adlLayer, store.getState().ccLayer]).toEqual([null, null]);
    store.getState().openAdlAtLayer(4);
    expect([store.getState().view, store.getState().adlLayer, store.getState().ccLayer]).toEqual(['adl', 4, null]);
  });

  it('forgets the old pair’s tensor, layers and latent when other files are opened', () => {
    const store = loadedPair();
    store.getState().setPendingFiles('ft', files('other.safetensors'));
    expect(pairView(store)).toEqual(PAIR_VIEW_DEFAULTS);
    expect(store.getState().prompt).toBe('Once');
  });

  it('forgets it when the models are cleared ("Use your own models")', () => {
    const store = loadedPair();
    store.getState().clearModel('base');
    expect(pairView(store)).toEqual(PAIR_VIEW_DEFAULTS);
  });

  it('keeps the state a link set for the models it names', () => {
    const store = loadedPair();
    // A link names other models: its refs wait for their files, then those files open.
    store.getState().setModelRef('ft', { url: ['https://example.org/ft/model.safetensors'] }, null);
    store.getState().setPendingFiles('ft', files('linked.safetensors'));
    expect(pairView(store)).toEqual({ tensor: 'model.embed_tokens.weight', layer: 4, position: 7, adlLayer: 2, adlPosition: 1, ccLayer: 5, latent: 12 });
  });
});
