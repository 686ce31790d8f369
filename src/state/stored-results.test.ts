import 'fake-indexeddb/auto';
import { describe, expect, it } from 'vitest';
import { createQueryClient } from './query-client.ts';
import { estimateBytes, evictions, storedResults, type AnalysisMeta, type StoredEntryInfo, type StoredResults } from './stored-results.ts';

let dbCount = 0;
const freshName = () => `results-test-${++dbCount}`;

/** Resolves at the next write, eviction or clear of `stored`. */
const nextChange = (stored: StoredResults) =>
  new Promise<void>((resolve) => {
    const off = stored.onChange(() => {
      off();
      resolve();
    });
  });

const lensLike = () => ({
  ids: [1, 7],
  probs: Float32Array.from([0.5, 0.25, 0.125]),
  kl: Float64Array.from([0.1, 1e-300]),
  top: Int32Array.from([5, -6]),
  tokens: { 1: 'a', 7: ' b' },
});

/** Fetches `key` on `client` through the persister; `compute` is the query function. */
function fetchThrough<T>(client: ReturnType<typeof createQueryClient>, stored: StoredResults, key: unknown[], meta: AnalysisMeta, compute: () => Promise<T>) {
  return client.fetchQuery<T>({ queryKey: key, queryFn: compute, meta, persister: stored.persister });
}

describe('storedResults (the IndexedDB persister)', () => {
  it('writes a query as computed and reads it back in a new session, typed arrays intact, without computing', async () => {
    const name = freshName();
    const first = createQueryClient();
    const stored = storedResults(first, { name });
    const key = ['analysis', 'lens', { base: 'aa', ft: 'bb' }, { prompt: 'Once', top: 5 }];
    const meta = { kind: 'lens', label: 'demo base vs demo ocean · “Once” · top 5' };
    const written = nextChange(stored);
    const value = await fetchThrough(first, stored, key, meta, async () => lensLike());
    await written;
    const [entry, ...rest] = await stored.list();
    expect(rest).toEqual([]);
    expect(entry).toMatchObject({ kind: 'lens', label: meta.label, bytes: estimateBytes(value) });
    expect(Math.abs(entry!.createdAt - Date.now())).toBeLessThan(60_000);

    // A reload: a new client and persister over the same database; the query function must not run.
    const second = createQueryClient();
    const again = storedResults(second, { name });
    let computed = 0;
    const restored = await fetchThrough(second, again, key, meta, async () => {
      computed++;
      return lensLike();
    });
    expect(computed).toBe(0);
    expect(restored.probs).toBeInstanceOf(Float32Array);
    expect(restored.kl).toBeInstanceOf(Float64Array);
    expect(restored.top).toBeInstanceOf(Int32Array);
    expect(Array.from(restored.probs)).toEqual([0.5, 0.25, 0.125]);
    expect(Array.from(restored.kl)).toEqual([0.1, 1e-300]);
    expect(Array.from(restored.top)).toEqual([5, -6]);
    expect(restored.tokens).toEqual({ 1: 'a', 7: ' b' });

    // Another setting is another query: computed.
    await fetchThrough(second, again, ['analysis', 'lens', { base: 'aa', ft: 'bb' }, { prompt: 'Once', top: 6 }], meta, async () => {
      computed++;
      return lensLike();
    });
    expect(computed).toBe(1);

    const cleared = nextChange(again);
    await again.clear();
    await cleared;
    expect(await again.list()).toEqual([]);
    const third = createQueryClient();
    await fetchThrough(third, storedResults(third, { name }), key, meta, async () => {
      computed++;
      return lensLike();
    });
    expect(computed).toBe(2);
  });

  it('drops the oldest entries beyond its size, never the one just written', async () => {
    const client = createQueryClient();
    const value = () => ({ v: new Float32Array(256) });
    const bytes = estimateBytes(value());
    const stored = storedResults(client, { name: freshName(), maxBytes: 2.5 * bytes });
    for (const layer of [1, 2, 3]) {
      const written = nextChange(stored);
      await fetchThrough(client, stored, ['analysis', 'adl', { base: 'a', ft: 'b' }, { layer }], { kind: 'adl', label: `layer ${layer}` }, async () => value());
      await written;
      // Entries written in one millisecond would tie on age.
      await new Promise((r) => setTimeout(r, 5));
    }
    expect((await stored.list()).map((e) => e.label)).toEqual(['layer 3', 'layer 2']);
  });

  it('warns and keeps the result when it cannot be stored', async () => {
    const client = createQueryClient();
    const stored = storedResults(client, { name: freshName() });
    const warnings: unknown[] = [];
    const warn = console.warn;
    console.warn = (m: unknown) => warnings.push(m);
    try {
      const written = nextChange(stored);
      // A function cannot be cloned into IndexedDB.
      const value = await fetchThrough(client, stored, ['analysis', 'kl', { base: 'a', ft: 'b' }, {}], { kind: 'kl', label: 'x' }, async () => ({ n: 3, f: () => 1 }));
      await written;
      expect(value.n).toBe(3);
    } finally {
      console.warn = warn;
    }
    expect(warnings).toHaveLength(1);
    expect(String(warnings[0])).toMatch(/^the kl result was not stored: .*could not be cloned/i);
    expect(await stored.list()).toEqual([]);
  });
});

describe('evictions and sizes', () => {
  const entry = (key: string, bytes: number, createdAt: number): StoredEntryInfo => ({ key, kind: 'lens', label: key, bytes, createdAt });

  it('drops oldest first until the rest fit', () => {
    const entries = [entry('c', 30, 3), entry('a', 30, 1), entry('b', 30, 2)];
    expect(evictions(entries, 100, 'c')).toEqual([]);
    expect(evictions(entries, 60, 'c')).toEqual(['a']);
    expect(evictions(entries, 10, 'a')).toEqual(['b', 'c']);
  });

  it('counts typed arrays by their bytes and text as UTF-16', () => {
    expect(estimateBytes({ ab: new Float32Array(10), s: 'xyz', n: 1, list: [true, null] })).toBe(2 * 2 + 40 + 2 + 6 + 2 + 8 + 2 * 4 + 4);
  });
});
