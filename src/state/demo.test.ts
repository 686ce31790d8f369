import { readFileSync, statSync } from 'node:fs';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { DEMO, loadDemo, switchToOwnModels } from './demo.ts';
import { openModelLoader } from './open-weights.ts';
import { fileSetFromUrls } from './remote.ts';
import { createAppStore } from './store.ts';

const ROOT = 'http://app.test/';

/** fetch over public/, with HEAD and single byte ranges, as the dev and e2e servers answer. */
function servePublic(requests: string[]) {
  return async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const url = new URL(String(input));
    const path = `public${decodeURIComponent(url.pathname)}`;
    const range = new Headers(init?.headers).get('range');
    requests.push(`${init?.method ?? 'GET'} ${url.pathname}${range ? ` ${range}` : ''}`);
    let size: number;
    try {
      size = statSync(path).size;
    } catch {
      return new Response('not found', { status: 404 });
    }
    if (init?.method === 'HEAD') return new Response(null, { status: 200, headers: { 'Content-Length': String(size) } });
    const m = /^bytes=(\d+)-(\d+)$/.exec(range ?? '');
    const bytes = readFileSync(path);
    if (!m) return new Response(bytes, { status: 200 });
    return new Response(bytes.subarray(Number(m[1]), Number(m[2]) + 1), { status: 206 });
  };
}

afterEach(() => vi.unstubAllGlobals());

describe('loadDemo', () => {
  it('loads the demo pair by range requests and opens the weights view', async () => {
    const requests: string[] = [];
    vi.stubGlobal('fetch', servePublic(requests));
    const store = createAppStore();
    store.getState().setModelLoader(openModelLoader);
    await loadDemo(store, ROOT);
    const s = store.getState();
    expect(s.demo).toBe(true);
    expect(s.view).toBe('weights');
    for (const role of ['base', 'ft'] as const) {
      expect(s.models[role].status.kind, role).toBe('loaded');
      expect([...s.models[role].pending!.keys()]).toEqual([...DEMO.files]);
    }
    const weightsSize = statSync('public/models/demo/ocean/model.safetensors').size;
    expect(s.models.ft.pending!.get('model.safetensors')!.size).toBe(weightsSize);
    // Opening reads headers by range, never a whole weights file.
    expect(requests.filter((r) => r.startsWith('GET /models/demo/ocean/model.safetensors')).every((r) => / bytes=\d+-\d+$/.test(r))).toBe(true);
    expect(requests).not.toContain(`GET /models/demo/ocean/model.safetensors bytes=0-${weightsSize - 1}`);

    switchToOwnModels(store);
    const after = store.getState();
    expect([after.demo, after.models.base.pending, after.models.ft.status.kind, after.view]).toEqual([false, null, 'idle', 'models']);
  });

  it('keeps the view and prompt a link asked for, and leaves models dropped meanwhile alone', async () => {
    vi.stubGlobal('fetch', servePublic([]));
    const store = createAppStore();
    store.getState().setModelLoader(openModelLoader);
    store.getState().setView('lens');
    store.getState().setLayer(2);
    store.getState().setPrompt('the sea');
    await loadDemo(store, ROOT);
    expect([store.getState().view, store.getState().layer]).toEqual(['lens', 2]);
    switchToOwnModels(store);
    expect([store.getState().view, store.getState().prompt, store.getState().layer]).toEqual(['lens', 'the sea', null]);

    // The same whether or not the demo had finished loading when the user switched.
    const early = createAppStore();
    early.getState().setModelLoader(openModelLoader);
    early.getState().setView('lens');
    early.getState().setLayer(2);
    const loading = loadDemo(early, ROOT);
    switchToOwnModels(early);
    await loading;
    expect([early.getState().view, early.getState().layer, early.getState().demo]).toEqual(['lens', null, false]);

    const busy = createAppStore();
    const pending = loadDemo(busy, ROOT);
    busy.getState().setPendingFiles('base', new Map());
    await pending;
    expect(busy.getState().demo).toBe(false);
    expect(busy.getState().models.ft.pending).toBeNull();
  });

  it('says why when the demo files cannot be fetched', async () => {
    vi.stubGlobal('fetch', async () => new Response('not found', { status: 404 }));
    const store = createAppStore();
    await loadDemo(store, ROOT);
    expect(store.getState().demoError).toMatch(/^the built-in demo could not be fetched: config\.json: HTTP 404 for http:\/\/app\.test\/models\/demo\/base\/config\.json$/);
    expect(store.getState().models.base.pending).toBeNull();
  });
});

describe('fileSetFromUrls', () => {
  it('keys pasted URLs by file name, relative ones resolved, comments and blank lines skipped', async () => {
    vi.stubGlobal('fetch', servePublic([]));
    const files = await fileSetFromUrls('# the ocean organism\n/models/demo/ocean/config.json\n\n  models/demo/ocean/model.safetensors  \n', ROOT);
    expect([...files.keys()]).toEqual(['config.json', 'model.safetensors']);
    expect(files.get('model.safetensors')!.size).toBe(statSync('public/models/demo/ocean/model.safetensors').size);
    const head = await files.get('config.json')!.read(0, 5);
    expect(new TextDecoder().decode(head)).toBe(readFileSync('public/models/demo/ocean/config.json', 'utf8').slice(0, 5));
  });

  it('names the line that is wrong', async () => {
    vi.stubGlobal('fetch', servePublic([]));
    await expect(fileSetFromUrls('\n', ROOT)).rejects.toThrow('URL list: is empty');
    await expect(fileSetFromUrls('/a/config.json\nftp://x/model.safetensors', ROOT)).rejects.toThrow('line 2 is not an http(s) URL: ftp://x/model.safetensors');
    await expect(fileSetFromUrls('http://[bad/config.json', ROOT)).rejects.toThrow('line 1 is not a URL');
    await expect(fileSetFromUrls('/models/demo/', ROOT)).rejects.toThrow('line 1 names a folder');
    await expect(fileSetFromUrls('/a/config.json\n/b/config.json', ROOT)).rejects.toThrow('two URLs end in the same file name "config.json"');
    await expect(fileSetFromUrls('/models/demo/ocean/nothing.json', ROOT)).rejects.toThrow('nothing.json: HTTP 404');
  });
});
