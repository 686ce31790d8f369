// Analysis results kept in this browser: the query cache's persister (queries.ts) writes each
// analysis query to IndexedDB as it is computed and reads it back when the same query is asked for
// again (a reload, a reopened link), so the view shows without recomputing. Nothing leaves the machine.
//
// Results hold typed arrays (lens probabilities, δ norms, ADL vectors) that JSON cannot carry, so
// each persisted query is stored as a structured clone in IndexedDB (idb-keyval), not as text. A
// second small store describes every entry (analysis, label, size, date), so the cache panel lists
// them without reading the results.
import { experimental_createQueryPersister, type AsyncStorage, type PersistedQuery } from '@tanstack/react-query-persist-client';
import type { QueryClient } from '@tanstack/react-query';
import { clear, del, get, promisifyRequest, set, values, type UseStore } from 'idb-keyval';

/** Bumped when a stored result's shape or meaning changes, so old entries are never read. */
export const RESULTS_VERSION = 2;
/** Entries beyond this total are dropped, oldest first. */
export const DEFAULT_MAX_STORED_BYTES = 256 * 2 ** 20;

export interface StoredEntryInfo {
  /** The storage key (the persister's prefix and the query's hash). */
  key: string;
  /** The analysis ("weights", "adl", …). */
  kind: string;
  /** What it was computed on, in words. */
  label: string;
  /** Approximate size of the stored value. */
  bytes: number;
  createdAt: number;
}

export interface StoredResults {
  /** The analysis queries' `persister`. */
  persister: ReturnType<typeof experimental_createQueryPersister>['persisterFn'];
  /** Newest first. */
  list(): Promise<StoredEntryInfo[]>;
  clear(): Promise<void>;
  /** Called after each write, eviction and clear; returns the unsubscribe function. */
  onChange(cb: () => void): () => void;
}

/** What a query's `meta` says about it, for the cache panel. */
export interface AnalysisMeta extends Record<string, unknown> {
  kind: string;
  label: string;
}

const message = (e: unknown) => (e instanceof Error ? e.message : String(e));

/** Approximate bytes a value takes when stored: typed arrays by their length, text as UTF-16. */
export function estimateBytes(value: unknown): number {
  const seen = new Set<object>();
  const walk = (v: unknown): number => {
    if (v === null || v === undefined) return 0;
    switch (typeof v) {
      case 'string':
        return 2 * v.length;
      case 'number':
      case 'bigint':
        return 8;
      case 'boolean':
        return 4;
      case 'object': {
        if (seen.has(v)) return 0;
        seen.add(v);
        if (ArrayBuffer.isView(v)) return v.byteLength;
        if (v instanceof ArrayBuffer) return v.byteLength;
        if (Array.isArray(v)) return v.reduce((n: number, x) => n + walk(x), 0);
        return Object.entries(v).reduce((n, [k, x]) => n + 2 * k.length + walk(x), 0);
      }
      default:
        return 0;
    }
  };
  return walk(value);
}

/** Which entries to drop so the rest fit in `maxBytes`: oldest first, never the one just added. */
export function evictions(entries: readonly StoredEntryInfo[], maxBytes: number, keep: string): string[] {
  let total = entries.reduce((n, e) => n + e.bytes, 0);
  const out: string[] = [];
  for (const e of [...entries].sort((a, b) => a.createdAt - b.createdAt)) {
    if (total <= maxBytes) break;
    if (e.key === keep) continue;
    out.push(e.key);
    total -= e.bytes;
  }
  return out;
}

/**
 * idb-keyval's stores for object stores of one database (its createStore makes a database per
 * store, and each database costs its own files).
 */
function objectStores(name: string, stores: string[]): UseStore[] {
  const request = indexedDB.open(name, 1);
  request.onupgradeneeded = () => {
    for (const store of stores) request.result.createObjectStore(store);
  };
  const db = promisifyRequest(request);
  return stores.map((store) => (mode, callback) => db.then((d) => callback(d.transaction(store, mode).objectStore(store))));
}

/**
 * The persister over IndexedDB database `name` (one object store for the queries, one for their
 * descriptions). `client` is asked for each query's `meta` (its analysis and label) when it is written.
 */
export function storedResults(client: QueryClient, opts: { name?: string; maxBytes?: number } = {}): StoredResults {
  const { name = 'neurodiff-results', maxBytes = DEFAULT_MAX_STORED_BYTES } = opts;
  const [queries, about] = objectStores(name, ['queries', 'about']);
  const listeners = new Set<() => void>();
  const changed = () => {
    for (const cb of listeners) cb();
  };
  const list = async () => (await values<StoredEntryInfo>(about)).sort((a, b) => b.createdAt - a.createdAt);
  const remove = async (key: string) => {
    await Promise.all([del(key, queries), del(key, about)]);
  };
  const storage: AsyncStorage<PersistedQuery> = {
    getItem: (key) => get<PersistedQuery>(key, queries),
    // The persister writes in the background and reads back what it can: a write or delete that
    // fails (quota, private mode) is a warning, and costs only a recomputation later.
    async setItem(key, value) {
      const meta = client.getQueryCache().get(value.queryHash)?.meta as AnalysisMeta | undefined;
      const kind = meta?.kind ?? String(value.queryKey[1]);
      // The analysis queries' data carries when it was computed (queries.ts): the date the view shows too.
      const computedAt = (value.state.data as { computedAt?: unknown } | undefined)?.computedAt;
      const createdAt = typeof computedAt === 'number' ? computedAt : value.state.dataUpdatedAt;
      const info: StoredEntryInfo = { key, kind, label: meta?.label ?? '', bytes: estimateBytes(value.state.data), createdAt };
      try {
        await set(key, value, queries);
        await set(key, info, about);
        for (const k of evictions(await list(), maxBytes, key)) await remove(k);
      } catch (e) {
        console.warn(`the ${kind} result was not stored: ${message(e)}`);
      }
      changed();
    },
    async removeItem(key) {
      try {
        await remove(key);
      } catch (e) {
        console.warn(`a stored result could not be removed: ${message(e)}`);
      }
      changed();
    },
  };
  // Results never go stale (the key names everything they depend on): no age limit, and a restored
  // result is not recomputed. Structured clones, not JSON: identity (de)serialisation.
  const { persisterFn } = experimental_createQueryPersister<PersistedQuery>({
    storage,
    buster: String(RESULTS_VERSION),
    maxAge: Infinity,
    refetchOnRestore: false,
    serialize: (q) => q,
    deserialize: (q) => q,
  });
  return {
    persister: persisterFn,
    list,
    async clear() {
      await Promise.all([clear(queries), clear(about)]);
      changed();
    },
    onChange(cb) {
      listeners.add(cb);
      return () => listeners.delete(cb);
    },
  };
}
