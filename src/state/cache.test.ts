import { describe, expect, it } from 'vitest';
import { canonicalJson, estimateBytes, evictions, memoryCache, resultKey, type CacheEntryInfo } from './cache.ts';

describe('result keys', () => {
  const parts = { kind: 'weights', models: { base: 'aa', ft: 'bb' }, inputs: { prompt: 'hi', corpus: 'c1' }, settings: { topK: 64, layer: 3 } };

  it('do not depend on key order, at any depth', async () => {
    expect(canonicalJson({ b: 1, a: { d: [1, { y: 2, x: 1 }], c: null } })).toBe('{"a":{"c":null,"d":[1,{"x":1,"y":2}]},"b":1}');
    const reordered = { settings: { layer: 3, topK: 64 }, inputs: { corpus: 'c1', prompt: 'hi' }, models: { ft: 'bb', base: 'aa' }, kind: 'weights' };
    expect(await resultKey(reordered)).toBe(await resultKey(parts));
    expect(await resultKey(parts)).toMatch(/^[0-9a-f]{64}$/);
  });

  it('change with the analysis, either model, the inputs and every setting', async () => {
    const key = await resultKey(parts);
    const variants = [
      { ...parts, kind: 'adl' },
      { ...parts, models: { base: 'bb', ft: 'aa' } },
      { ...parts, models: { base: 'aa', ft: 'bc' } },
      { ...parts, inputs: { prompt: 'hi!', corpus: 'c1' } },
      { kind: parts.kind, models: parts.models, settings: parts.settings },
      { ...parts, settings: { topK: 64, layer: 4 } },
      { ...parts, settings: { topK: 64 } },
    ];
    const keys = await Promise.all(variants.map((v) => resultKey(v)));
    expect(new Set([key, ...keys]).size).toBe(variants.length + 1);
  });
});

describe('sizes and eviction', () => {
  it('estimates stored bytes: typed arrays by length, text as UTF-16, numbers as 8', () => {
    expect(estimateBytes(new Float32Array(10))).toBe(40);
    expect(estimateBytes('abc')).toBe(6);
    expect(estimateBytes([1, 2, null])).toBe(16);
    expect(estimateBytes({ ab: 1, c: new Uint8Array(5) })).toBe(4 + 8 + 2 + 5);
    const shared = new Float64Array(4);
    expect(estimateBytes({ a: shared, b: shared })).toBe(2 + 32 + 2);
  });

  it('drops the oldest entries until the rest fit, never the one just added', () => {
    const e = (key: string, bytes: number, createdAt: number): CacheEntryInfo => ({ key, kind: 'k', label: key, bytes, createdAt });
    const entries = [e('new', 50, 3), e('old', 40, 1), e('mid', 30, 2)];
    expect(evictions(entries, 200, 'new')).toEqual([]);
    expect(evictions(entries, 90, 'new')).toEqual(['old']);
    expect(evictions(entries, 50, 'new')).toEqual(['old', 'mid']);
    expect(evictions([e('big', 500, 1)], 100, 'big')).toEqual([]);
  });
});

describe('memoryCache', () => {
  it('stores copies, lists newest first with sizes, evicts beyond its budget, and clears', async () => {
    let t = 0;
    const cache = memoryCache(100, () => ++t);
    const value = { data: new Float32Array([1, 2, 3]) };
    await cache.put('a', { kind: 'weights', label: 'A' }, value);
    value.data[0] = 99;
    const hit = await cache.get<typeof value>('a');
    expect(Array.from(hit!.value.data)).toEqual([1, 2, 3]);
    expect(hit!.info).toEqual({ key: 'a', kind: 'weights', label: 'A', bytes: 8 + 12, createdAt: 1 });
    await cache.put('b', { kind: 'adl', label: 'B' }, new Float32Array(15));
    expect((await cache.list()).map((e) => [e.key, e.bytes])).toEqual([['b', 60], ['a', 20]]);
    await cache.put('c', { kind: 'adl', label: 'C' }, new Float32Array(10));
    expect((await cache.list()).map((e) => e.key)).toEqual(['c', 'b']);
    expect(await cache.get('a')).toBeUndefined();
    await cache.clear();
    expect(await cache.list()).toEqual([]);
  });
});
