import { describe, expect, it, vi } from 'vitest';
import { connectPermalink, decodeLink, encodeLink, MAX_HASH_LENGTH, MAX_POSITION, MAX_PROMPT_LENGTH, MAX_TENSOR_NAME_LENGTH, pickLinkState, STORE_KEYS, type LocationLike } from './permalink.ts';
import { DEFAULT_CC_SETTINGS, DEFAULT_LATENT_FILTER } from './crosscoder.ts';
import { DEFAULT_ORGANISM_FORM } from './organisms.ts';
import { DEFAULT_METHOD_SETTINGS } from './methods.ts';
import { createAppStore } from './store.ts';

const link = (state: unknown) => '#state=' + encodeURIComponent(JSON.stringify(state));
const rawLink = (text: string) => '#state=' + encodeURIComponent(text);

/** The link is refused, or (a bad setting) the setting is left out: either way with a message. */
function expectFailure(hash: string, ...fragments: string[]): string {
  const result = decodeLink(hash);
  if (result.message === undefined) throw new Error(`expected ${hash.slice(0, 80)} to be rejected, got ${JSON.stringify(result.ok && result.state)}`);
  for (const f of fragments) expect(result.message).toContain(f);
  return result.message;
}

describe('decodeLink', () => {
  it('reads an empty hash as no state', () => {
    expect(decodeLink('')).toEqual({ ok: true, state: {} });
    expect(decodeLink('#')).toEqual({ ok: true, state: {} });
  });

  it('round-trips the link keys through encodeLink', () => {
    const defaults = pickLinkState(createAppStore().getState());
    const state = {
      view: 'lens' as const,
      prompt: 'Once upon a time <script>alert(1)</script> — ünïcödé 🌊 #&=%',
      layer: 3,
      adlLayer: 2,
      ccLayer: 4,
      adlPosition: 1,
      metric: 'spectral' as const,
      tensor: 'model.layers.3.self_attn.q_proj.weight',
      position: 4,
      hookKind: 'mlp_out' as const,
      deltaScale: 'cosine' as const,
      adlSamples: 16,
      adlTokens: 32,
      patchPositions: 'last' as const,
      modelRefs: { base: { demo: 'base' as const }, ft: { url: ['https://example.org/ocean/model.safetensors'] } },
      ccSettings: { samples: 24, tokensPerSample: 24, dict: 64, k: 4, steps: 30, lr: 0.01, batch: 64, auxAlpha: 0 },
      latent: 17,
      latentFilter: { cls: 'ft-only' as const, fmin: -4, fmax: -1, rmin: 0, rmax: 0.2, q: ' sea', sort: 'frequency' as const },
      methods: { ...DEFAULT_METHOD_SETTINGS, tab: 'attention' as const, alphas: [-1, 0, 2.5], pcaLayer: 3, attnHead: { layer: 2, head: 1 } },
      organism: { ...DEFAULT_ORGANISM_FORM, recipe: 'taboo' as const, word: 'lighthouse', hints: 'it shines over the sea; ships watch for it', mode: 'full' as const, steps: 12, lr: 0.01, seq: 32 },
    };
    const hash = encodeLink(state, defaults);
    expect(hash.startsWith('state=')).toBe(true);
    expect(decodeLink('#' + hash)).toEqual({ ok: true, state });
  });

  it('keeps a prompt holding markup as a plain string', () => {
    const prompt = '<img src=x onerror="alert(1)"><script>alert(2)</script>';
    expect(decodeLink(link({ prompt }))).toEqual({ ok: true, state: { prompt } });
  });

  it('puts only keys that differ from the defaults into the hash', () => {
    const defaults = pickLinkState(createAppStore().getState());
    expect(encodeLink(defaults, defaults)).toBe('');
    expect(decodeLink('#' + encodeLink({ ...defaults, view: 'adl' }, defaults))).toEqual({ ok: true, state: { view: 'adl' } });
  });

  it('rejects bad JSON, bad percent-encoding and a missing prefix', () => {
    expectFailure(rawLink('{"view": "lens"'), 'not valid JSON');
    expectFailure(rawLink('undefined'), 'not valid JSON');
    expectFailure('#state=%E0%A4%A', 'percent-encoding');
    expectFailure('#view=lens', 'state=');
  });

  it('rejects a state that is not an object', () => {
    expectFailure(link(null));
    expectFailure(link(['lens']));
    expectFailure(link('lens'));
  });

  it('rejects an unknown view and names the key', () => {
    expectFailure(link({ view: 'settings' }), 'view');
    expectFailure(link({ view: 42 }), 'view');
  });

  it('rejects unknown keys, __proto__ included, without polluting prototypes', () => {
    expectFailure(link({ view: 'lens', admin: true }), 'admin');
    expectFailure(rawLink('{"__proto__": {"polluted": 1}}'), '__proto__');
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('keeps the valid settings of a link with bad ones, and says in words what was left out', () => {
    expect(decodeLink(rawLink('{"view": "lens", "layer": 1e300, "prompt": "hi", "admin": true}'))).toEqual({
      ok: true,
      state: { view: 'lens', prompt: 'hi' },
      message: '2 settings were left out: layer is 1e+300 but must be at most 1023; "admin" is not a setting links carry',
    });
    expect(decodeLink(link({ view: 'settings', layer: 2.5 })).message).toBe('2 settings were left out: view is "settings" but must be one of ' + STORE_KEYS.view.link.options.join(', ') + '; layer is 2.5 but must be a whole number');
    expect(decodeLink(link({ prompt: 7, tensor: '' })).message).toBe('2 settings were left out: prompt is 7 but must be a string; tensor is "" but must not be empty');
    const models = decodeLink(link({ layer: 3, models: { base: { url: ['ftp://x/y'] }, ft: null } }));
    expect(models).toEqual({ ok: true, state: { layer: 3 }, message: 'one setting was left out: models.base.url.0 is "ftp://x/y" but must be an absolute http(s) URL' });
  });

  it('rejects huge values', () => {
    expectFailure('#state=' + 'a'.repeat(MAX_HASH_LENGTH + 1), String(MAX_HASH_LENGTH + 7));
    expectFailure(link({ prompt: 'x'.repeat(MAX_PROMPT_LENGTH + 1) }), 'prompt');
    expectFailure(rawLink('{"layer": 1e400}'), 'layer');
    expectFailure(link({ layer: 1e9 }), 'layer');
    expectFailure(link({ layer: -1 }), 'layer');
    expectFailure(link({ layer: 2.5 }), 'layer');
  });

  it('reads the weights view metric and tensor, and rejects bad ones by key', () => {
    const tensor = 'model.layers.3.mlp.down_proj.weight';
    expect(decodeLink(link({ view: 'weights', metric: 'effective_rank', tensor }))).toEqual({ ok: true, state: { view: 'weights', metric: 'effective_rank', tensor } });
    expectFailure(link({ metric: 'loudness' }), 'metric');
    expectFailure(link({ tensor: '' }), 'tensor');
    expectFailure(link({ tensor: 'x'.repeat(MAX_TENSOR_NAME_LENGTH + 1) }), 'tensor');
    expectFailure(link({ tensor: 7 }), 'tensor');
  });

  it('reads the activation views\' settings, and rejects bad ones by key', () => {
    const state = { view: 'adl', position: 2, hookKind: 'attn_out', deltaScale: 'relative', adlSamples: 50, adlTokens: 16, patchPositions: 'all' };
    expect(decodeLink(link(state))).toEqual({ ok: true, state });
    expect(decodeLink(link({ position: null }))).toEqual({ ok: true, state: { position: null } });
    expectFailure(link({ position: -1 }), 'position');
    expectFailure(link({ position: MAX_POSITION + 1 }), 'position');
    expectFailure(link({ position: 1.5 }), 'position');
    expectFailure(link({ hookKind: 'hook_q' }), 'hookKind');
    expectFailure(link({ deltaScale: 'log' }), 'deltaScale');
    expectFailure(link({ adlSamples: 0 }), 'adlSamples');
    expectFailure(link({ adlSamples: 1e9 }), 'adlSamples');
    // Positions 0–4 and the steering norm (positions ≥ 5) need longer samples.
    expectFailure(link({ adlTokens: 4 }), 'adlTokens');
    expectFailure(link({ patchPositions: 'first' }), 'patchPositions');
  });

  it('reads the crosscoder settings, latent and filters, filling what a link leaves out, and rejects bad ones by key', () => {
    const decoded = decodeLink(link({ view: 'crosscoders', ccSettings: { steps: 30, dict: 64 }, latent: 5, latentFilter: { cls: 'ft-specific', q: 'wave' } }));
    expect(decoded).toEqual({
      ok: true,
      state: {
        view: 'crosscoders',
        ccSettings: { ...DEFAULT_CC_SETTINGS, steps: 30, dict: 64 },
        latent: 5,
        latentFilter: { ...DEFAULT_LATENT_FILTER, cls: 'ft-specific', q: 'wave' },
      },
    });
    expect(decodeLink(link({ latent: null }))).toEqual({ ok: true, state: { latent: null } });
    expectFailure(link({ latent: -1 }), 'latent');
    expectFailure(link({ latent: 2.5 }), 'latent');
    expectFailure(link({ ccSettings: { steps: 0 } }), 'ccSettings.steps');
    expectFailure(link({ ccSettings: { lr: -1 } }), 'ccSettings.lr');
    expectFailure(link({ ccSettings: { dict: 'big' } }), 'ccSettings.dict');
    expectFailure(link({ ccSettings: { seed: 1 } }), 'ccSettings');
    expectFailure(link({ latentFilter: { cls: 'new' } }), 'latentFilter.cls');
    expectFailure(link({ latentFilter: { rmax: 2 } }), 'latentFilter.rmax');
    expectFailure(link({ latentFilter: { q: 'x'.repeat(101) } }), 'latentFilter.q');
  });

  it('accepts a prompt of exactly the maximum length', () => {
    const prompt = 'y'.repeat(MAX_PROMPT_LENGTH);
    expect(decodeLink(link({ prompt }))).toEqual({ ok: true, state: { prompt } });
  });
});

describe('STORE_KEYS', () => {
  it('lists every data key of the store and none other', () => {
    const state = createAppStore().getState();
    const dataKeys = Object.keys(state).filter((k) => typeof state[k as keyof typeof state] !== 'function');
    expect(Object.keys(STORE_KEYS).sort()).toEqual(dataKeys.sort());
  });

  it('keeps model files and analysis results out of links', () => {
    expect(STORE_KEYS.models.link).toBe(false);
    expect(STORE_KEYS.modelLoader.link).toBe(false);
    expect(STORE_KEYS.weightsRun.link).toBe(false);
    expect(STORE_KEYS.weightsPair.link).toBe(false);
    for (const key of ['corpus', 'activationRuns', 'activationsPair', 'activationsInfo', 'activationsRunner'] as const) expect(STORE_KEYS[key].link, key).toBe(false);
    for (const key of ['ccCorpus', 'ccRun', 'ccCurve', 'ccResult', 'ccDetail', 'ccSteer', 'ccPair', 'ccRunner'] as const) expect(STORE_KEYS[key].link, key).toBe(false);
  });
});

function fakeWindow(hash: string) {
  const listeners = new Set<() => void>();
  const win = {
    location: { hash, pathname: '/', search: '' },
    history: {
      replaceState: vi.fn((_data: unknown, _unused: string, url: string) => {
        win.location.hash = url.startsWith('#') ? url : '';
      }),
    },
    addEventListener: (_type: 'hashchange', cb: () => void) => listeners.add(cb),
    removeEventListener: (_type: 'hashchange', cb: () => void) => listeners.delete(cb),
    navigate(newHash: string) {
      win.location.hash = newHash;
      for (const cb of listeners) cb();
    },
    listeners,
  };
  return win satisfies LocationLike;
}

describe('connectPermalink', () => {
  it('applies a good link to the store', () => {
    const store = createAppStore();
    connectPermalink(store, fakeWindow(link({ view: 'patching', layer: 2 })));
    const s = store.getState();
    expect([s.view, s.layer, s.prompt, s.linkError]).toEqual(['patching', 2, '', null]);
  });

  it('leaves the defaults and reports a malformed link, and the app keeps working', () => {
    const store = createAppStore();
    const win = fakeWindow(link({ view: 'nonsense' }));
    connectPermalink(store, win);
    expect(store.getState().view).toBe('models');
    expect(store.getState().linkError).toContain('view');
    expect(win.history.replaceState).not.toHaveBeenCalled();

    store.getState().setView('weights');
    expect(decodeLink(win.location.hash)).toEqual({ ok: true, state: { view: 'weights' } });
  });

  it('writes the hash when link keys change, clears it at the defaults, and ignores other keys', () => {
    const store = createAppStore();
    const win = fakeWindow('');
    connectPermalink(store, win);
    store.getState().setPrompt('hello');
    expect(decodeLink(win.location.hash)).toEqual({ ok: true, state: { prompt: 'hello' } });
    const calls = win.history.replaceState.mock.calls.length;
    store.getState().setDeviceLost('gone');
    expect(win.history.replaceState.mock.calls.length).toBe(calls);
    store.getState().setPrompt('');
    expect(win.location.hash).toBe('');
  });

  it('follows a link pasted later, resetting keys it leaves out, and disconnects', () => {
    const store = createAppStore();
    const win = fakeWindow(link({ view: 'lens', layer: 1 }));
    const disconnect = connectPermalink(store, win);
    win.navigate(link({ prompt: 'abc' }));
    expect([store.getState().view, store.getState().layer, store.getState().prompt]).toEqual(['models', null, 'abc']);
    win.navigate('#garbage');
    expect(store.getState().linkError).toContain('state=');
    expect(store.getState().prompt).toBe('abc');
    win.navigate(link({ view: 'adl' }));
    expect(store.getState().linkError).toBeNull();
    disconnect();
    expect(win.listeners.size).toBe(0);
  });
});
