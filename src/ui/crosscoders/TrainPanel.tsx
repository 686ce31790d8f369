// Training a crosscoder in the background: the corpus, the settings form, the run's status with
// pause / resume / finish now / cancel, the live loss curve; and loading or saving a crosscoder file.
import { useRef, useState, type DragEvent } from 'react';
import type { CcRun, CcSettings } from '../../state/crosscoder.ts';
import { useApp } from '../../state/store.ts';
import { CopyLinkButton } from '../export/CopyLink.tsx';
import { downloadBlob } from '../export/download.ts';
import { ExportMenu } from '../export/ExportMenu.tsx';
import { formatBytes, formatCount, formatSeconds, formatValue } from '../format.ts';
import { PausedLine } from '../PausedLine.tsx';
import { NumberField, type FieldSpec as Spec } from '../NumberField.tsx';
import { LossCurve } from './charts.tsx';

type FieldSpec = Spec<keyof CcSettings>;

const FIELDS: FieldSpec[] = [
  { key: 'samples', label: 'samples', min: 1, max: 1_000_000, integer: true, hint: 'corpus lines used' },
  { key: 'tokensPerSample', label: 'tokens / sample', min: 2, max: 4096, integer: true },
  { key: 'dict', label: 'dictionary D', min: 1, max: 1 << 20, integer: true },
  { key: 'k', label: 'k', min: 1, max: 4096, integer: true, hint: 'latents per token' },
  { key: 'steps', label: 'steps', min: 1, max: 10_000_000, integer: true },
  { key: 'batch', label: 'batch (tokens)', min: 1, max: 1 << 16, integer: true },
  { key: 'lr', label: 'learning rate', min: 1e-7, max: 1, integer: false },
  { key: 'auxAlpha', label: 'auxk α', min: 0, max: 100, integer: false, hint: 'weight of the dead-latent loss' },
];

const STAGES: Record<string, string> = {
  loading: 'loading the models',
  activations: 'collecting activations, tokens',
  training: 'training, step',
  analysing: 'analysing the latents, tokens',
};

function RunLine({ run, settings }: { run: CcRun; settings: CcSettings }) {
  const command = useApp((s) => s.commandCrosscoder);
  const resume = useApp((s) => s.resumeCrosscoder);
  switch (run.status) {
    case 'idle':
      return null;
    case 'running': {
      const p = run.progress;
      const label = !p ? 'starting the worker…' : p.stage === 'loading' ? `loading the ${p.label === 'ft' ? 'fine-tuned' : 'base'} model: ${formatBytes(p.done)} of ${formatBytes(p.total)}` : /^(loading|merging) /.test(p.stage) ? `${p.stage}: ${formatBytes(p.done)} of ${formatBytes(p.total)}` : `${STAGES[p.stage] ?? p.stage} ${p.done.toLocaleString('en-US')} of ${p.total.toLocaleString('en-US')}`;
      const training = p?.stage === 'training';
      return (
        <div className="status run-status" data-testid="cc-progress" data-stage={p?.stage ?? 'starting'}>
          <progress value={p && p.total > 0 ? p.done / p.total : 0} max={1} />
          <span>
            {run.what === 'load' ? 'Analysing the loaded crosscoder' : 'Training'}: {label} · {formatSeconds(run.elapsedMs / 1000)}
          </span>
          {training && (
            <>
              <button type="button" onClick={() => command('pause')} data-testid="cc-pause">
                Pause
              </button>
              <button type="button" onClick={() => command('finish')} data-testid="cc-finish" title="Stop training here and analyse the crosscoder as it is">
                Finish now
              </button>
            </>
          )}
          <button type="button" onClick={() => command('cancel')} data-testid="cc-cancel">
            Cancel
          </button>
        </div>
      );
    }
    case 'paused':
      return <PausedLine prefix="cc" steps={run.steps} total={settings.steps} finishTitle="Analyse the crosscoder as it is" resume={resume} command={command} />;
    case 'done':
      return (
        <p className="muted small" data-testid="cc-done" data-collect-ms={Math.round(run.timings.collectMs)} data-train-ms={Math.round(run.timings.trainMs)} data-analyse-ms={Math.round(run.timings.analyseMs)}>
          {run.timings.collectMs > 0 ? `Activations collected in ${formatSeconds(run.timings.collectMs / 1000)}, ` : 'Activations reused, '}
          {run.timings.trainMs > 0 ? `trained in ${formatSeconds(run.timings.trainMs / 1000)}, ` : ''}latents analysed in {formatSeconds(run.timings.analyseMs / 1000)}.
        </p>
      );
    case 'cancelled':
      return (
        <p className="warn" data-testid="cc-cancelled">
          The crosscoder run was cancelled.
        </p>
      );
    case 'error':
      return (
        <p className="error" data-testid="cc-error">
          {run.message}
        </p>
      );
  }
}

function CorpusLine({ busy }: { busy: boolean }) {
  const corpus = useApp((s) => s.ccCorpus);
  const setText = useApp((s) => s.setCcCorpusText);
  const setState = useApp((s) => s.setCcCorpusState);
  const input = useRef<HTMLInputElement>(null);
  const pick = (file: File) => {
    setState({ status: 'loading', name: file.name });
    file.text().then(
      (text) => setText(file.name, text, false),
      (e: unknown) => setState({ status: 'error', name: file.name, message: e instanceof Error ? e.message : String(e) }),
    );
  };
  return (
    <p className="cc-corpus" data-testid="cc-corpus">
      Corpus:{' '}
      {corpus.status === 'ready' ? (
        <>
          <strong>{corpus.corpus.name}</strong> ({corpus.lines.toLocaleString('en-US')} lines{corpus.builtin ? ', built in: generic stories and eight topics, the sea among them' : ''})
        </>
      ) : corpus.status === 'loading' ? (
        <>loading {corpus.name}…</>
      ) : corpus.status === 'error' ? (
        <span className="error">
          {corpus.name}: {corpus.message}
        </span>
      ) : (
        'none'
      )}{' '}
      <button type="button" className="link-button" disabled={busy} onClick={() => input.current?.click()}>
        use another text file…
      </button>
      <input
        ref={input}
        type="file"
        accept=".txt,text/plain"
        hidden
        data-testid="cc-corpus-input"
        onChange={(e) => {
          const f = e.currentTarget.files?.[0];
          if (f) pick(f);
          e.currentTarget.value = '';
        }}
      />
    </p>
  );
}

export function TrainPanel({ layers, layer, dModel }: { layers: number; layer: number; dModel: number | null }) {
  const settings = useApp((s) => s.ccSettings);
  const setSettings = useApp((s) => s.setCcSettings);
  const setLayer = useApp((s) => s.setCcLayer);
  const run = useApp((s) => s.ccRun);
  const curve = useApp((s) => s.ccCurve);
  const result = useApp((s) => s.ccResult);
  const corpusReady = useApp((s) => s.ccCorpus.status === 'ready');
  const train = useApp((s) => s.trainCrosscoder);
  const load = useApp((s) => s.loadCrosscoderFile);
  const save = useApp((s) => s.saveCrosscoderFile);
  const [saveError, setSaveError] = useState<string | null>(null);
  const [over, setOver] = useState(false);
  const fileInput = useRef<HTMLInputElement>(null);
  const busy = run.status === 'running' || run.status === 'paused';

  const loadFile = (file: File) => {
    if (busy) return;
    void load(file, file.name, layer);
  };
  const onDrop = (e: DragEvent) => {
    e.preventDefault();
    setOver(false);
    const f = e.dataTransfer.files[0];
    if (f) loadFile(f);
  };
  const download = () => {
    setSaveError(null);
    save().then(
      ({ bytes, name }) => downloadBlob(new Blob([bytes], { type: 'application/octet-stream' }), name),
      (e: unknown) => setSaveError(e instanceof Error ? e.message : String(e)),
    );
  };

  return (
    <section
      className={`panel cc-train${over ? ' drop-over' : ''}`}
      data-testid="cc-train"
      onDragOver={(e) => {
        e.preventDefault();
        setOver(true);
      }}
      onDragLeave={() => setOver(false)}
      onDrop={onDrop}
    >
      <div className="panel-head">
        <h2>Crosscoders: a BatchTopK dictionary over both models' activations</h2>
        <span className="cc-file-buttons">
          <CopyLinkButton />
          <button type="button" disabled={busy} onClick={() => fileInput.current?.click()} data-testid="cc-load" title="A .safetensors crosscoder, ours or one from science-of-finetuning's crosscoder_learning; you can also drop it on this panel">
            Load a crosscoder…
          </button>
          <button type="button" disabled={busy || !result} onClick={download} data-testid="cc-save">
            Download .safetensors
          </button>
          <input
            ref={fileInput}
            type="file"
            accept=".safetensors"
            hidden
            data-testid="cc-load-input"
            onChange={(e) => {
              const f = e.currentTarget.files?.[0];
              if (f) loadFile(f);
              e.currentTarget.value = '';
            }}
          />
        </span>
      </div>
      {saveError && <p className="error small">{saveError}</p>}
      <CorpusLine busy={busy} />
      <div className="cc-form">
        <label className="cc-field">
          <span>layer (resid_post)</span>
          <select value={layer} disabled={busy} onChange={(e) => setLayer(Number(e.currentTarget.value))} data-testid="cc-layer">
            {Array.from({ length: layers }, (_, i) => (
              <option key={i} value={i}>
                {i}
              </option>
            ))}
          </select>
        </label>
        {FIELDS.map((f) => (
          <NumberField testIdPrefix="cc" key={`${f.key}-${settings[f.key]}`} spec={f} value={settings[f.key]} disabled={busy} onCommit={(v) => setSettings({ [f.key]: v })} />
        ))}
        <button type="button" className="primary cc-train-button" disabled={busy || !corpusReady} onClick={() => void train(layer)} data-testid="cc-train-button">
          Train
        </button>
      </div>
      <p className="muted small">
        D = {dModel ? `${formatValue(settings.dict / dModel)} × d_model` : `${settings.dict}`} ({formatCount(settings.dict)} latents); k annealing off; learning-rate warm-up over the first tenth of the steps; the
        inference threshold θ is estimated over the second half; a latent counts as dead after {formatCount(Math.min(10_000_000, Math.max(settings.batch, Math.round((settings.steps * settings.batch) / 5))))} tokens
        without firing. The reference uses D = 32 × d, k = 100 and far more tokens.
      </p>
      <RunLine run={run} settings={settings} />
      {curve.length > 0 && (
        <figure className="cc-figure">
          <figcaption>
            Training: step {curve[curve.length - 1]!.step + 1} · loss {formatValue(curve[curve.length - 1]!.loss)} · FVU {formatValue(curve[curve.length - 1]!.fvu)} · dead {curve[curve.length - 1]!.dead}
          </figcaption>
          <LossCurve points={curve} totalSteps={run.status === 'running' || run.status === 'paused' ? settings.steps : curve[curve.length - 1]!.step + 1} />
          <ExportMenu
            name="crosscoder-training"
            svg={(menu) => menu.closest('figure')?.querySelector('svg')}
            table={() => ({ header: ['step', 'loss', 'fvu', 'dead'], rows: curve.map((p) => [p.step, p.loss, p.fvu, p.dead]) })}
          />
        </figure>
      )}
    </section>
  );
}
