// The session cache: analysis results kept in this browser (IndexedDB), keyed by both models'
// fingerprints, the analysis, its inputs and its settings, so a reopened link shows its view at
// once. Nothing here leaves the machine.
import { sha256Hex } from '../io/fingerprint.ts';

/** Bumped when a cached result's shape or meaning changes, so old entries are never read. */
export const CACHE_VERSION = 1;
/** Entries beyond this total are dropped, oldest first. */
export const DEFAULT_MAX_CACHE_BYTES = 256 * 2 ** 20;

export interface CacheEntryInfo {
  key: string;
  /** The analysis ("weights", "adl", …). */
  kind: string;
  /** What it was computed on, in words. */
  label: string;
  /** Approximate size of the stored value. */
  bytes: number;
  createdAt: number;
}

export interface ResultCache {
  get<T>(key: string): Promise<{ value: T; info: CacheEntryInfo } | undefined>;
  put(key: string, about: { kind: string; label: string }, value: unknown): Promise<void>;
  /** Newest first. */
  list(): Promise<CacheEntryInfo[]>;
  clear(): Promise<void>;
}

export interface ResultKeyParts {
  kind: string;
  /** Fingerprints (or other stable names) of the base and fine-tuned models. */
  models: { base: string; ft: string };
  /** What the analysis reads besides the models (a prompt, a corpus digest). */
  inputs?: Record<string, unknown>;
  settings: Record<string, unknown>;
}

/** JSON with object keys sorted at every depth: equal values give equal text. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (v === null || typeof v !== 'object' || Array.isArray(v) || ArrayBuffer.isView(v)) return v;
    const obj = v as Record<string, unknown>;
    return Object.fromEntries(Object.keys(obj).sort().map((k) => [k, obj[k]]));
  });
}

export async function resultKey(parts: ResultKeyParts): Promise<string> {
  return sha256Hex(canonicalJson({ version: CACHE_VERSION, kind: parts.kind, models: parts.models, inputs: parts.inputs ?? {}, settings: parts.settings }));
}

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
export function evictions(entries: readonly CacheEntryInfo[], maxBytes: number, keep: string): string[] {
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

const newestFirst = (a: CacheEntryInfo, b: CacheEntryInfo) => b.createdAt - a.createdAt;

/** A cache in memory: for tests, and where IndexedDB is unavailable. Values are deep-copied like IndexedDB does. */
export function memoryCache(maxBytes = DEFAULT_MAX_CACHE_BYTES, now = () => Date.now()): ResultCache {
  const entries = new Map<string, { info: CacheEntryInfo; value: unknown }>();
  return {
    async get<T>(key: string) {
      const e = entries.get(key);
      return e && { value: structuredClone(e.value) as T, info: { ...e.info } };
    },
    async put(key, about, value) {
      entries.set(key, { info: { key, ...about, bytes: estimateBytes(value), createdAt: now() }, value: structuredClone(value) });
      for (const k of evictions([...entries.values()].map((e) => e.info), maxBytes, key)) entries.delete(k);
    },
    async list() {
      return [...entries.values()].map((e) => ({ ...e.info })).sort(newestFirst);
    },
    async clear() {
      entries.clear();
    },
  };
}

function request<T>(r: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error ?? new Error('an IndexedDB request failed'));
  });
}

function finished(tx: IDBTransaction): Promise<void> {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error ?? new Error('an IndexedDB transaction failed'));
    tx.onabort = () => reject(tx.error ?? new Error('an IndexedDB transaction was aborted'));
  });
}

const META = 'meta';
const VALUES = 'values';

/** The cache in IndexedDB: entry descriptions and values in two stores, so listing never reads values. */
export function indexedDbCache(opts: { name?: string; maxBytes?: number; factory?: IDBFactory; now?: () => number } = {}): ResultCache {
  const { name = 'neurodiff-cache', maxBytes = DEFAULT_MAX_CACHE_BYTES, now = () => Date.now() } = opts;
  let db: Promise<IDBDatabase> | null = null;
  const open = () =>
    (db ??= new Promise<IDBDatabase>((resolve, reject) => {
      const factory = opts.factory ?? globalThis.indexedDB;
      if (!factory) {
        reject(new Error('IndexedDB is not available'));
        return;
      }
      const r = factory.open(name, 1);
      r.onupgradeneeded = () => {
        r.result.createObjectStore(META, { keyPath: 'key' });
        r.result.createObjectStore(VALUES);
      };
      r.onsuccess = () => resolve(r.result);
      r.onerror = () => reject(r.error ?? new Error(`IndexedDB "${name}" could not be opened`));
      r.onblocked = () => reject(new Error(`IndexedDB "${name}" is blocked by another tab`));
    }).catch((e: unknown) => {
      db = null;
      throw e;
    }));
  const list = async () => {
    const tx = (await open()).transaction(META, 'readonly');
    return ((await request(tx.objectStore(META).getAll())) as CacheEntryInfo[]).sort(newestFirst);
  };
  return {
    async get<T>(key: string) {
      const tx = (await open()).transaction([META, VALUES], 'readonly');
      const [info, value] = await Promise.all([request(tx.objectStore(META).get(key)), request(tx.objectStore(VALUES).get(key))]);
      return info === undefined || value === undefined ? undefined : { value: value as T, info: info as CacheEntryInfo };
    },
    async put(key, about, value) {
      const info: CacheEntryInfo = { key, ...about, bytes: estimateBytes(value), createdAt: now() };
      const d = await open();
      const tx = d.transaction([META, VALUES], 'readwrite');
      tx.objectStore(META).put(info);
      tx.objectStore(VALUES).put(value, key);
      await finished(tx);
      const drop = evictions(await list(), maxBytes, key);
      if (drop.length === 0) return;
      const del = d.transaction([META, VALUES], 'readwrite');
      for (const k of drop) {
        del.objectStore(META).delete(k);
        del.objectStore(VALUES).delete(k);
      }
      await finished(del);
    },
    list,
    async clear() {
      const tx = (await open()).transaction([META, VALUES], 'readwrite');
      tx.objectStore(META).clear();
      tx.objectStore(VALUES).clear();
      await finished(tx);
    },
  };
}
