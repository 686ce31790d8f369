// The weights view's runner behind the session cache: a diff already computed for the same two
// models (by fingerprint) and settings is read back instead of recomputed.
import type { AppStore } from './store.ts';
import { resultKey } from './cache.ts';
import { refLabel } from './model-ref.ts';
import { fingerprintOf } from './session.ts';
import type { WeightsOutcome } from './weights-protocol.ts';
import type { WeightsRunner } from './weights.ts';

export const WEIGHTS_CACHE_KIND = 'weights';

/** "base vs fine-tune" in words, from how the session names each model. */
export function pairLabel(store: AppStore): string {
  const s = store.getState();
  const name = (role: 'base' | 'ft') => {
    const ref = s.modelRefs[role];
    if (ref) return refLabel(ref);
    const status = s.models[role].status;
    return status.kind === 'loaded' ? status.summary.label : role;
  };
  return `${name('base')} vs ${name('ft')}`;
}

export function cachedWeightsRunner(inner: WeightsRunner, store: AppStore): WeightsRunner {
  return async (req, onProgress, signal) => {
    const cache = store.getState().resultCache;
    let key: string | null = null;
    if (cache) {
      try {
        const [base, ft] = await Promise.all([fingerprintOf(req.base), fingerprintOf(req.ft)]);
        key = await resultKey({ kind: WEIGHTS_CACHE_KIND, models: { base: base.fingerprint, ft: ft.fingerprint }, settings: { topK: req.topK } });
        const hit = await cache.get<WeightsOutcome>(key);
        signal.throwIfAborted();
        if (hit) return { ...hit.value, cachedAt: hit.info.createdAt };
      } catch (e) {
        signal.throwIfAborted();
        // A cache that cannot be read (private mode, quota, unreadable file) only costs the recomputation.
        console.warn(`the session cache was skipped: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
    const outcome = await inner(req, onProgress, signal);
    if (cache && key) {
      const label = pairLabel(store);
      cache.put(key, { kind: WEIGHTS_CACHE_KIND, label }, outcome).catch((e: unknown) => console.warn(`the weight diff was not cached: ${e instanceof Error ? e.message : String(e)}`));
    }
    return outcome;
  };
}
