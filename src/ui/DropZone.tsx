import { useRef, useState, type DragEvent } from 'react';
import type { FileSet } from '../io/source.ts';
import { fileSetBytes, type LoadStatus, type ModelSummary, type Role } from '../state/models.ts';
import { openModelFiles, openUrlModel } from '../state/session.ts';
import { appStore, useApp } from '../state/store.ts';
import { filesFromDataTransfer, filesFromInput, toFileSet, type DroppedFile } from './dropped-files.ts';
import { formatBytes, formatCount } from './format.ts';
import { ROLE_LABELS } from './labels.ts';
import { LinkModelPanel } from './LinkModelPanel.tsx';

function accept(role: Role, dropped: DroppedFile[]) {
  openFiles(role, toFileSet(dropped));
}

function openFiles(role: Role, files: FileSet) {
  void openModelFiles(appStore, role, files, 'files');
}

export function DropZone({ role }: { role: Role }) {
  const slot = useApp((s) => s.models[role]);
  const clearModel = useApp((s) => s.clearModel);
  const hasLoader = useApp((s) => s.modelLoader !== null);
  const [over, setOver] = useState(false);
  const [readError, setReadError] = useState<string | null>(null);
  const [urlsOpen, setUrlsOpen] = useState(false);
  const [urls, setUrls] = useState('');
  const [fetching, setFetching] = useState(false);
  const openUrls = () => {
    setReadError(null);
    setFetching(true);
    openUrlModel(appStore, role, urls, window.location.href)
      .then(
        () => setUrlsOpen(false),
        (err: unknown) => setReadError(err instanceof Error ? err.message : String(err)),
      )
      .finally(() => setFetching(false));
  };
  const filesInput = useRef<HTMLInputElement>(null);
  const folderInput = useRef<HTMLInputElement>(null);
  const setFolderMode = (el: HTMLInputElement | null) => {
    folderInput.current = el;
    if (el) el.webkitdirectory = true;
  };

  const onDrop = (e: DragEvent) => {
    e.preventDefault();
    setOver(false);
    setReadError(null);
    filesFromDataTransfer(e.dataTransfer).then(
      (dropped) => accept(role, dropped),
      (err: unknown) => setReadError(`could not read the dropped items: ${err instanceof Error ? err.message : String(err)}`),
    );
  };
  const onDragOver = (e: DragEvent) => {
    e.preventDefault();
    e.dataTransfer.dropEffect = 'copy';
    setOver(true);
  };
  const onInput = (input: HTMLInputElement) => {
    if (input.files) accept(role, filesFromInput(input.files));
    input.value = '';
  };

  return (
    <section
      className={`panel drop${over ? ' drop-over' : ''}`}
      data-testid={`drop-${role}`}
      onDragOver={onDragOver}
      onDragLeave={(e) => {
        if (!(e.relatedTarget instanceof Node && e.currentTarget.contains(e.relatedTarget))) setOver(false);
      }}
      onDrop={onDrop}
    >
      <div className="drop-head">
        <h2>{ROLE_LABELS[role]}</h2>
        {slot.pending && (
          <button type="button" className="link-button" onClick={() => clearModel(role)}>
            clear
          </button>
        )}
      </div>
      <p className="muted">
        Drop a model folder (config.json + safetensors, sharded or not), a .gguf file, or a llama2.c .bin here.
        {role === 'ft' && ' A PEFT adapter folder is applied to the base model.'} Files stay on this machine.
      </p>
      <LinkModelPanel role={role} />
      <div className="drop-buttons">
        <button type="button" onClick={() => filesInput.current?.click()}>
          Choose files…
        </button>
        <button type="button" onClick={() => folderInput.current?.click()}>
          Choose folder…
        </button>
        <button type="button" onClick={() => setUrlsOpen((o) => !o)} aria-expanded={urlsOpen} data-testid={`urls-toggle-${role}`}>
          Open URLs…
        </button>
        <input ref={filesInput} type="file" multiple hidden data-testid={`input-files-${role}`} onChange={(e) => onInput(e.currentTarget)} />
        <input ref={setFolderMode} type="file" multiple hidden data-testid={`input-folder-${role}`} onChange={(e) => onInput(e.currentTarget)} />
      </div>
      {urlsOpen && (
        <form
          className="urls"
          onSubmit={(e) => {
            e.preventDefault();
            openUrls();
          }}
        >
          <textarea
            rows={4}
            value={urls}
            onChange={(e) => setUrls(e.currentTarget.value)}
            placeholder={'One URL per line, read by HTTP range requests, e.g.\nhttps://example.org/model/config.json\nhttps://example.org/model/model.safetensors'}
            aria-label={`URLs of the ${ROLE_LABELS[role].toLowerCase()}`}
            data-testid={`urls-${role}`}
          />
          <button type="submit" disabled={fetching || urls.trim() === ''} data-testid={`urls-open-${role}`}>
            {fetching ? 'Fetching…' : 'Open'}
          </button>
        </form>
      )}
      {readError && (
        <p className="error" data-testid={`read-error-${role}`}>
          {readError}
        </p>
      )}
      {slot.pending && <FileListing files={slot.pending} role={role} />}
      {slot.pending && !hasLoader && <p className="muted">Not loaded: this build has no model loader yet.</p>}
      <StatusLine status={slot.status} onCancel={() => clearModel(role)} />
    </section>
  );
}

function FileListing({ files, role }: { files: FileSet; role: Role }) {
  if (files.size === 0) return <p className="warn">Nothing to load: the drop held no files (hidden files and folders are skipped).</p>;
  return (
    <div className="files" data-testid={`files-${role}`}>
      <div className="files-total" data-testid={`files-total-${role}`}>
        {files.size} {files.size === 1 ? 'file' : 'files'}, {formatBytes(fileSetBytes(files))}
      </div>
      <div className="files-scroll">
        <table>
          <tbody>
            {[...files].map(([path, src]) => (
              <tr key={path}>
                <td className="files-path">{path}</td>
                <td className="num">{formatBytes(src.size)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </div>
  );
}

const FORMAT_LABELS: Record<ModelSummary['format'], string> = {
  hf: 'Hugging Face safetensors',
  gguf: 'GGUF',
  llama2c: 'llama2.c',
  onnx: 'ONNX',
  'peft-adapter': 'PEFT adapter',
};

function LoadedSummary({ s }: { s: ModelSummary }) {
  const dtypes = Object.entries(s.dtypes)
    .sort((a, b) => b[1] - a[1])
    .map(([dtype, n]) => (n === s.parameterCount ? dtype : `${dtype} ${((100 * n) / s.parameterCount).toFixed(0)}%`))
    .join(', ');
  return (
    <div className="status ok summary" data-testid="load-status">
      <div>
        Loaded <span className="mono">{s.label}</span> ({FORMAT_LABELS[s.format]}): {s.architecture}, {formatCount(s.parameterCount)} parameters
        {s.kind === 'model' && (
          <>
            , {s.layers ?? '?'} layers, d_model {s.dModel ?? '?'}, vocabulary {s.vocabSize ?? '?'}
          </>
        )}
      </div>
      <div className="muted" data-testid="load-memory">
        Stored as {dtypes}, {formatBytes(s.weightBytes)}; {formatBytes(4 * s.parameterCount)} as float32 if held whole.
        {s.largestTensor && ` Largest tensor ${formatCount(s.largestTensor.elements)} values.`}
      </div>
      {s.adapter && (
        <div className="muted">
          LoRA rank {s.adapter.r}, alpha {s.adapter.alpha}, {s.adapter.targets.length} adapted matrices: applied to the base, ΔW comes from the factors.
        </div>
      )}
    </div>
  );
}

function StatusLine({ status, onCancel }: { status: LoadStatus; onCancel(): void }) {
  switch (status.kind) {
    case 'idle':
      return null;
    case 'loading': {
      const fraction = status.bytesTotal > 0 ? status.bytesDone / status.bytesTotal : 0;
      return (
        <div className="status" data-testid="load-status">
          <progress value={fraction} max={1} /> reading headers: {formatBytes(status.bytesDone)} of {formatBytes(status.bytesTotal)}
          <button type="button" onClick={onCancel}>
            Cancel
          </button>
        </div>
      );
    }
    case 'loaded':
      return <LoadedSummary s={status.summary} />;
    case 'error':
      return (
        <div className="status error" data-testid="load-status">
          Could not load: {status.message}
        </div>
      );
  }
}
