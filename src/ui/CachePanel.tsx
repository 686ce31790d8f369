import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { useEffect } from 'react';
import { ANALYSIS } from '../state/queries.ts';
import { useApp } from '../state/store.ts';
import { formatBytes } from './format.ts';

const STORED = ['stored-results'] as const;

/** The analysis results kept in this browser with their sizes, and a button that empties the store. */
export function CachePanel() {
  const stored = useApp((s) => s.storedResults);
  const client = useQueryClient();
  const entries = useQuery({ queryKey: STORED, queryFn: () => stored!.list(), enabled: stored !== null });
  // Listed again whenever a result is stored, evicted or cleared.
  useEffect(() => stored?.onChange(() => void client.invalidateQueries({ queryKey: STORED })), [stored, client]);
  const clear = useMutation({
    mutationFn: async () => {
      await stored!.clear();
      client.removeQueries({ queryKey: [ANALYSIS] });
    },
  });

  if (!stored) return null;
  const list = entries.data;
  const total = (list ?? []).reduce((n, e) => n + e.bytes, 0);
  return (
    <section className="panel cache-panel" data-testid="cache-panel">
      <div className="panel-head">
        <h2>Session cache</h2>
        <button type="button" disabled={!list || list.length === 0 || clear.isPending} onClick={() => clear.mutate()} data-testid="cache-clear">
          Clear
        </button>
      </div>
      <p className="muted">
        Analysis results computed in this browser are kept here (IndexedDB), keyed by both models’ fingerprints and the settings, so a reopened link shows its
        view at once. Nothing leaves this machine.
      </p>
      {entries.error && <p className="error">the cache could not be read: {entries.error.message}</p>}
      {clear.error && <p className="error">the cache could not be cleared: {clear.error.message}</p>}
      {list && list.length === 0 && (
        <p className="muted" data-testid="cache-empty">
          Empty.
        </p>
      )}
      {list && list.length > 0 && (
        <>
          <table className="data cache-entries">
            <tbody>
              {list.map((e) => (
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
            {list.length} {list.length === 1 ? 'entry' : 'entries'}, {formatBytes(total)}
          </p>
        </>
      )}
    </section>
  );
}
