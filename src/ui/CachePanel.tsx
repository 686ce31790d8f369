import { useCallback, useEffect, useState } from 'react';
import type { CacheEntryInfo } from '../state/cache.ts';
import { useApp } from '../state/store.ts';
import { formatBytes } from './format.ts';

const message = (e: unknown) => (e instanceof Error ? e.message : String(e));

/** The session cache's entries with their sizes, and a button that empties it. */
export function CachePanel() {
  const cache = useApp((s) => s.resultCache);
  // Re-list when an analysis finishes: its result may have just been stored.
  const finished = useApp((s) => (s.weightsRun.status === 'done' ? s.weightsRun : null));
  const activationsDone = useApp((s) => Object.values(s.activationRuns).filter((r) => r?.status === 'done').length);
  const [entries, setEntries] = useState<CacheEntryInfo[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const refresh = useCallback(() => {
    if (!cache) return;
    cache.list().then(
      (list) => {
        setEntries(list);
        setError(null);
      },
      (e: unknown) => setError(`the cache could not be read: ${message(e)}`),
    );
  }, [cache]);
  useEffect(refresh, [refresh, finished, activationsDone]);

  if (!cache) return null;
  const total = (entries ?? []).reduce((n, e) => n + e.bytes, 0);
  return (
    <section className="panel cache-panel" data-testid="cache-panel">
      <div className="panel-head">
        <h2>Session cache</h2>
        <button
          type="button"
          disabled={!entries || entries.length === 0}
          onClick={() => cache.clear().then(refresh, (e: unknown) => setError(`the cache could not be cleared: ${message(e)}`))}
          data-testid="cache-clear"
        >
          Clear
        </button>
      </div>
      <p className="muted">
        Analysis results computed in this browser are kept here (IndexedDB), keyed by both models’ fingerprints and the settings, so a reopened link shows its
        view at once. Nothing leaves this machine.
      </p>
      {error && <p className="error">{error}</p>}
      {entries && entries.length === 0 && (
        <p className="muted" data-testid="cache-empty">
          Empty.
        </p>
      )}
      {entries && entries.length > 0 && (
        <>
          <table className="data cache-entries">
            <tbody>
              {entries.map((e) => (
                <tr key={e.key} data-testid="cache-entry">
                  <td>{e.kind}</td>
                  <td className="mono">{e.label}</td>
                  <td className="num">{formatBytes(e.bytes)}</td>
                  <td className="muted">{new Date(e.createdAt).toLocaleString()}</td>
                </tr>
              ))}
            </tbody>
          </table>
          <p className="muted small" data-testid="cache-total">
            {entries.length} {entries.length === 1 ? 'entry' : 'entries'}, {formatBytes(total)}
          </p>
        </>
      )}
    </section>
  );
}
