import { readFileSync, statSync } from 'node:fs';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { fingerprintModel } from '../io/fingerprint.ts';
import { pathFileSet } from '../io/node-source.ts';
import { bytesSource, type FileSet } from '../io/source.ts';
import { switchToOwnModels } from './demo.ts';
import { fingerprintRef, type ModelRefs } from './model-ref.ts';
import { openModelLoader } from './open-weights.ts';
import { connectPermalink, decodeLink, type LocationLike } from './permalink.ts';
import { connectLinkModels, loadLinkModel, openMismatchAnyway, openModelFiles, openUrlModel, wantedRef } from './session.ts';
import { createAppStore, type AppStore } from './store.ts';

const ROOT = 'http://app.test/';
const FIXTURES = new URL('../../test/fixtures/', import.meta.url).pathname;
const link = (state: unknown) => '#state=' + encodeURIComponent(JSON.stringify(state));

/** fetch over public/ (HEAD and byte ranges); requests to a path in `hold` wait until aborted. */
function servePublic(requests: string[], hold: string[] = []) {
  return (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const url = new URL(String(input));
    requests.push(`${init?.method ?? 'GET'} ${url.pathname}`);
    if (hold.includes(url.pathname)) {
      return new Promise((_, reject) => {
        const signal = init?.signal;
        if (!signal) return;
        signal.addEventListener('abort', () => reject(signal.reason as Error));
      });
    }
    const path = `public${decodeURIComponent(url.pathname)}`;
    let size: number;
    try {
      size = statSync(path).size;
    } catch {
      return Promise.resolve(new Response('not found', { status: 404 }));
    }
    if (init?.method === 'HEAD') return Promise.resolve(new Response(null, { status: 200, headers: { 'Content-Length': String(size) } }));
    const m = /^bytes=(\d+)-(\d+)$/.exec(new Headers(init?.headers).get('range') ?? '');
    const bytes = readFileSync(path);
    return Promise.resolve(m ? new Response(bytes.subarray(Number(m[1]), Number(m[2]) + 1), { status: 206 }) : new Response(bytes, { status: 200 }));
  };
}

function fakeWindow(hash: string) {
  const listeners = new Set<() => void>();
  const win = {
    location: { hash, pathname: '/', search: '' },
    history: {
      replaceState: (_data: unknown, _unused: string, url: string) => {
        win.location.hash = url.startsWith('#') ? url : '';
      },
    },
    addEventListener: (_type: 'hashchange', cb: () => void) => listeners.add(cb),
    removeEventListener: (_type: 'hashchange', cb: () => void) => listeners.delete(cb),
    navigate(newHash: string) {
      win.location.hash = newHash;
      for (const cb of listeners) cb();
    },
  };
  return win satisfies LocationLike;
}

/** A store wired like the app: loader, permalink in a fake address bar, and (unless `demo` is false) link models or the demo. */
function app(hash: string, demo = true): { store: AppStore; win: ReturnType<typeof fakeWindow> } {
  const store = createAppStore();
  store.getState().setModelLoader(openModelLoader);
  const win = fakeWindow(hash);
  connectPermalink(store, win);
  if (demo) connectLinkModels(store, ROOT);
  return { store, win };
}

const linkedModels = (win: { location: { hash: string } }): ModelRefs | undefined => {
  const r = decodeLink(win.location.hash);
  if (!r.ok) throw new Error(r.message);
  return r.state.modelRefs;
};

async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error(`timed out waiting for ${what}`);
}

const loaded = (store: AppStore, role: 'base' | 'ft') => () => store.getState().models[role].status.kind === 'loaded';

afterEach(() => vi.unstubAllGlobals());

describe('model refs of the session', () => {
  it('opens the demo when the link names no model, and names it in the link', async () => {
    vi.stubGlobal('fetch', servePublic([]));
    const { store, win } = app('');
    await until(() => loaded(store, 'base')() && loaded(store, 'ft')(), 'the demo');
    expect(store.getState().demo).toBe(true);
    expect(linkedModels(win)).toEqual({ base: { demo: 'base' }, ft: { demo: 'ocean' } });
    switchToOwnModels(store);
    expect(linkedModels(win)).toBeUndefined();
  });

  it('names dropped files by their fingerprint once known; clearing them drops it', async () => {
    vi.stubGlobal('fetch', servePublic([]));
    const { store, win } = app('', false);
    const files = await pathFileSet(`${FIXTURES}demo/base`);
    await openModelFiles(store, 'base', files, 'files');
    expect(store.getState().models.base.pending).toBe(files);
    const expected = fingerprintRef(await fingerprintModel(files));
    await until(() => linkedModels(win)?.base !== null && linkedModels(win)?.base !== undefined, 'the fingerprint in the link');
    expect(linkedModels(win)).toEqual({ base: expected, ft: null });
    expect(store.getState().demo).toBe(false);
    await until(loaded(store, 'base'), 'the base model');
    store.getState().clearModel('base');
    expect(linkedModels(win)).toBeUndefined();
  });

  it('loads the URLs a link names and keeps naming them', async () => {
    const requests: string[] = [];
    vi.stubGlobal('fetch', servePublic(requests));
    const url = ['config.json', 'model.safetensors', 'tokenizer.json'].map((f) => `${ROOT}models/demo/ocean/${f}`);
    const { store, win } = app(link({ models: { base: null, ft: { url } } }));
    await until(loaded(store, 'ft'), 'the linked fine-tune');
    expect([...store.getState().models.ft.pending!.keys()]).toEqual(['config.json', 'model.safetensors', 'tokenizer.json']);
    expect(store.getState().models.base.pending).toBeNull();
    expect(requests.some((r) => r.includes('/models/demo/base/'))).toBe(false);
    expect(linkedModels(win)).toEqual({ base: null, ft: { url } });
  });

  it('cancels a slow URL model; the link keeps it, and a new link is followed', async () => {
    const requests: string[] = [];
    vi.stubGlobal('fetch', servePublic(requests, ['/models/demo/ocean/model.safetensors']));
    const url = ['config.json', 'model.safetensors'].map((f) => `${ROOT}models/demo/ocean/${f}`);
    const { store, win } = app(link({ models: { base: null, ft: { url } } }));
    await until(() => store.getState().linkModelStatus.ft.kind === 'fetching' && requests.includes('HEAD /models/demo/ocean/model.safetensors'), 'the fetch');
    store.getState().cancelLinkModel('ft');
    expect(store.getState().linkModelStatus.ft).toEqual({ kind: 'cancelled' });
    await new Promise((r) => setTimeout(r, 20));
    expect(store.getState().models.ft.pending).toBeNull();
    expect(store.getState().linkModelStatus.ft).toEqual({ kind: 'cancelled' });
    expect(linkedModels(win)).toEqual({ base: null, ft: { url } });

    win.navigate(link({ models: { base: { demo: 'base' }, ft: null } }));
    await until(loaded(store, 'base'), 'the base of the new link');
    expect(linkedModels(win)?.base).toEqual({ demo: 'base' });
  });

  it('asks before reading a link\'s model from other servers: no request until the user agrees', async () => {
    const requests: string[] = [];
    vi.stubGlobal('fetch', servePublic(requests));
    const other = 'https://models.example/models/demo/ocean/';
    const url = ['config.json', 'model.safetensors', 'tokenizer.json'].map((f) => other + f);
    const local = ['config.json', 'model.safetensors', 'tokenizer.json'].map((f) => `http://localhost:8080/models/demo/base/${f}`);
    const { store, win } = app(link({ models: { base: { url: local }, ft: { url } } }));
    await new Promise((r) => setTimeout(r, 20));
    expect(requests).toEqual([]);
    expect(store.getState().linkModelStatus.ft).toEqual({ kind: 'confirm', hosts: ['models.example'] });
    expect(store.getState().linkModelStatus.base).toEqual({ kind: 'confirm', hosts: ['http://localhost:8080'] });
    expect(linkedModels(win)).toEqual({ base: { url: local }, ft: { url } });

    await loadLinkModel(store, 'ft', ROOT);
    await until(loaded(store, 'ft'), 'the accepted fine-tune');
    expect(requests.every((r) => r.includes('/models/demo/ocean/'))).toBe(true);
    expect(store.getState().linkModelStatus.base.kind).toBe('confirm');
    store.getState().forgetLinkModel('base');
    expect(linkedModels(win)).toEqual({ base: null, ft: { url } });
    expect(requests.some((r) => r.includes('/base/'))).toBe(false);
  });

  it('sizes a link\'s files a few at a time', async () => {
    let inFlight = 0;
    let most = 0;
    const serve = servePublic([]);
    vi.stubGlobal('fetch', async (input: string, init?: RequestInit) => {
      inFlight++;
      most = Math.max(most, inFlight);
      await new Promise((r) => setTimeout(r, 2));
      try {
        return await serve(input, init);
      } finally {
        inFlight--;
      }
    });
    const url = Array.from({ length: 16 }, (_, i) => `${ROOT}models/demo/base/${i === 0 ? 'config.json' : i === 1 ? 'model.safetensors' : `missing-${i}.json`}`);
    const { store } = app(link({ models: { base: { url }, ft: null } }));
    await until(() => store.getState().linkModelStatus.base.kind === 'error', 'the error');
    expect(most).toBeLessThanOrEqual(4);
    expect(store.getState().linkModelStatus.base).toEqual({ kind: 'error', message: 'missing-2.json: HTTP 404 for http://app.test/models/demo/base/missing-2.json' });
  });

  it('says which URL a failed request was for, and why', async () => {
    vi.stubGlobal('fetch', () => Promise.reject(new TypeError('Failed to fetch')));
    const { store } = app(link({ models: { base: { url: [`${ROOT}models/demo/base/config.json`] }, ft: null } }));
    await until(() => store.getState().linkModelStatus.base.kind === 'error', 'the error');
    const status = store.getState().linkModelStatus.base;
    expect(status.kind === 'error' && status.message).toMatch(/^config\.json: the request to http:\/\/app\.test\/models\/demo\/base\/config\.json failed \(Failed to fetch\): the server cannot be reached/);
  });

  it('reports a URL model that cannot be fetched', async () => {
    vi.stubGlobal('fetch', servePublic([]));
    const { store } = app(link({ models: { base: { url: [`${ROOT}models/demo/base/missing.safetensors`] }, ft: null } }));
    await until(() => store.getState().linkModelStatus.base.kind === 'error', 'the error');
    expect(store.getState().linkModelStatus.base).toEqual({ kind: 'error', message: 'missing.safetensors: HTTP 404 for http://app.test/models/demo/base/missing.safetensors' });
  });

  it('asks for fingerprinted files: wrong files are refused with what differs, the right ones open', async () => {
    const requests: string[] = [];
    vi.stubGlobal('fetch', servePublic(requests));
    const baseFiles = await pathFileSet(`${FIXTURES}demo/base`);
    const ref = fingerprintRef(await fingerprintModel(baseFiles));
    const { store, win } = app(link({ models: { base: ref, ft: null } }));
    expect(requests).toEqual([]);
    expect(wantedRef(store.getState(), 'base')).toEqual(ref);

    const ocean = await pathFileSet(`${FIXTURES}demo/ocean/model`);
    await openModelFiles(store, 'base', ocean, 'files');
    const status = store.getState().linkModelStatus.base;
    expect(status.kind).toBe('mismatch');
    expect(status.kind === 'mismatch' && status.message).toMatch(/^model\.safetensors has the expected size but different content/);
    expect(store.getState().models.base.pending).toBeNull();
    expect(linkedModels(win)?.base).toEqual(ref);

    const readme = bytesSource(new TextEncoder().encode('notes'), 'README.md');
    await openModelFiles(store, 'base', new Map([...baseFiles, ['README.md', readme]]), 'files');
    expect(store.getState().linkModelStatus.base).toEqual({ kind: 'idle' });
    expect([...store.getState().models.base.pending!.keys()].sort()).toEqual([...baseFiles.keys()].sort());
    await until(loaded(store, 'base'), 'the base model');
    expect(linkedModels(win)?.base).toEqual(ref);
  });

  it('opens mismatched files anyway when asked, naming them by their own fingerprint', async () => {
    vi.stubGlobal('fetch', servePublic([]));
    const tiny: FileSet = new Map([['model.safetensors', bytesSource(new Uint8Array(64), 'model.safetensors')]]);
    const ref = fingerprintRef(await fingerprintModel(tiny));
    const { store, win } = app(link({ models: { base: ref, ft: null } }));
    const other = await pathFileSet(`${FIXTURES}demo/base`);
    await openModelFiles(store, 'base', other, 'files');
    expect(store.getState().linkModelStatus.base.kind).toBe('mismatch');
    openMismatchAnyway(store, 'base');
    await until(loaded(store, 'base'), 'the base model');
    const own = fingerprintRef(await fingerprintModel(other));
    await until(() => JSON.stringify(linkedModels(win)?.base) === JSON.stringify(own), 'the new fingerprint');
  });

  it('names pasted URLs by their absolute URLs', async () => {
    vi.stubGlobal('fetch', servePublic([]));
    const { store, win } = app('', false);
    await openUrlModel(store, 'ft', '/models/demo/ocean/config.json\nmodels/demo/ocean/model.safetensors', ROOT);
    expect(linkedModels(win)?.ft).toEqual({ url: [`${ROOT}models/demo/ocean/config.json`, `${ROOT}models/demo/ocean/model.safetensors`] });
    await expect(openUrlModel(store, 'ft', 'ftp://x/model.safetensors', ROOT)).rejects.toThrow('line 1 is not an http(s) URL');
  });
});
