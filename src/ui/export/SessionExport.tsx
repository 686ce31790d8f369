import { useState } from 'react';
import { buildSessionReport, reportJson } from '../../state/report.ts';
import { appStore } from '../../state/store.ts';
import { downloadBlob } from './download.ts';

/** Saves the whole session (models' names and fingerprints, settings, every result) as JSON. */
export function SessionExportButton() {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const save = () => {
    setBusy(true);
    setError(null);
    buildSessionReport(appStore.getState())
      .then((report) => downloadBlob(new Blob([reportJson(report)], { type: 'application/json' }), `neurodiff-session-${report.created.slice(0, 19).replace(/:/g, '-')}.json`))
      .catch((e: unknown) => setError(e instanceof Error ? e.message : String(e)))
      .finally(() => setBusy(false));
  };
  return (
    <button type="button" className="topbar-button" onClick={save} disabled={busy} data-testid="export-session" title={error ?? 'Models, settings and every result of this session as one JSON file'}>
      {busy ? 'Exporting…' : error ? 'Export failed' : 'Export session'}
    </button>
  );
}
