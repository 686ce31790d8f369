import { isFingerprintRef, isUrlRef, type ModelRef } from '../state/model-ref.ts';
import type { Role } from '../state/models.ts';
import { loadLinkModel, openMismatchAnyway, wantedRef, type LinkModelStatus } from '../state/session.ts';
import { appStore, useApp } from '../state/store.ts';
import { formatBytes } from './format.ts';
import { LinkConsent } from './LinkConsent.tsx';

const appRoot = () => new URL(import.meta.env.BASE_URL, window.location.href).href;

/** What the link asks this drop zone for, and how opening it goes. */
export function LinkModelPanel({ role }: { role: Role }) {
  const wanted = useApp((s) => wantedRef(s, role));
  const status = useApp((s) => s.linkModelStatus[role]);
  const forget = useApp((s) => s.forgetLinkModel);
  const cancel = useApp((s) => s.cancelLinkModel);
  if (!wanted) return null;
  return (
    <LinkModelView
      role={role}
      wanted={wanted}
      status={status}
      actions={{
        forget: () => forget(role),
        cancel: () => cancel(role),
        retry: () => void loadLinkModel(appStore, role, appRoot()),
        openAnyway: () => openMismatchAnyway(appStore, role),
      }}
    />
  );
}

interface ViewProps {
  role: Role;
  wanted: ModelRef;
  status: LinkModelStatus;
  actions: { forget(): void; cancel(): void; retry(): void; openAnyway(): void };
}

/** The panel itself, from the ref and status. URLs and file names are rendered as text. */
export function LinkModelView({ role, wanted, status, actions }: ViewProps) {
  return (
    <div className="link-model" data-testid={`link-model-${role}`}>
      <Request model={wanted} role={role} />
      {status.kind === 'confirm' ? <LinkConsent role={role} hosts={status.hosts} accept={actions.retry} /> : <Status status={status} role={role} />}
      <div className="drop-buttons">
        {status.kind === 'fetching' && (
          <button type="button" onClick={actions.cancel} data-testid={`link-model-cancel-${role}`}>
            Cancel
          </button>
        )}
        {(status.kind === 'cancelled' || (status.kind === 'error' && !isFingerprintRef(wanted))) && (
          <button type="button" onClick={actions.retry} data-testid={`link-model-retry-${role}`}>
            Load again
          </button>
        )}
        {status.kind === 'mismatch' && (
          <button type="button" onClick={actions.openAnyway} data-testid={`link-model-anyway-${role}`}>
            Open the dropped files anyway
          </button>
        )}
        {status.kind !== 'fetching' && (
          <button type="button" onClick={actions.forget} data-testid={`link-model-forget-${role}`}>
            Forget the link’s model
          </button>
        )}
      </div>
    </div>
  );
}

function Request({ model: ref, role }: { model: ModelRef; role: Role }) {
  if (isFingerprintRef(ref)) {
    return (
      <>
        <p>
          <strong>This link compares files on your machine.</strong> Drop or choose the same files here; they are checked against the link’s fingerprint
          <span className="mono"> {ref.fingerprint.slice(0, 12)}…</span> before they open:
        </p>
        <table className="files link-files" data-testid={`link-model-files-${role}`}>
          <tbody>
            {ref.files.map((f) => (
              <tr key={f.name}>
                <td className="files-path">{f.name}</td>
                <td className="num">{formatBytes(f.size)}</td>
                <td className="num muted">{f.size.toLocaleString('en-US')} bytes</td>
              </tr>
            ))}
          </tbody>
        </table>
      </>
    );
  }
  if (isUrlRef(ref)) {
    return (
      <>
        <p>
          <strong>This link reads this model from {ref.url.length === 1 ? 'a URL' : `${ref.url.length} URLs`}</strong> by range requests (headers first, tensors when an analysis needs them):
        </p>
        <ul className="mono link-urls" data-testid={`link-model-urls-${role}`}>
          {ref.url.map((u) => (
            <li key={u}>{u}</li>
          ))}
        </ul>
      </>
    );
  }
  return (
    <p>
      <strong>This link uses the built-in demo model “{ref.demo}”.</strong>
    </p>
  );
}

function Status({ status, role }: { status: LinkModelStatus; role: Role }) {
  const id = `link-model-status-${role}`;
  switch (status.kind) {
    case 'idle':
    case 'confirm':
      return null;
    case 'fetching':
      return (
        <p className="status" data-testid={id}>
          Opening the link’s model…
        </p>
      );
    case 'checking':
      return (
        <p className="status" data-testid={id}>
          Checking the dropped files against the link…
        </p>
      );
    case 'mismatch':
      return (
        <p className="status error" data-testid={id}>
          These are not the files the link was made with: {status.message}.
        </p>
      );
    case 'cancelled':
      return (
        <p className="status warn" data-testid={id}>
          Loading the link’s model was cancelled.
        </p>
      );
    case 'error':
      return (
        <p className="status error" data-testid={id}>
          The link’s model could not be opened: {status.message}
        </p>
      );
  }
}
