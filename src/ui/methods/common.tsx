// What the Methods view's tabs share: the run bar (Run, progress, Cancel, how it ended), number
// fields that commit on change, a context cell and the tab strip.
import type { ReactNode } from 'react';
import type { Progress } from '../../analysis/activations/run.ts';
import { METHOD_TABS, type MethodTab } from '../../state/methods.ts';
import { formatSeconds } from '../format.ts';
import { contextParts, type Samples, type TokenTexts } from './method-tables.ts';
import './methods.css';

/** A method's run as its view shows it (the job registry's state, reduced). */
export type MethodRun =
  | { status: 'idle' }
  | { status: 'running'; progress: Progress | null; elapsedMs: number }
  | { status: 'done'; ms: number; backend: string }
  | { status: 'cancelled' }
  | { status: 'error'; message: string };

export const METHOD_LABELS: Record<MethodTab, string> = {
  mine: 'Diff mining',
  kl: 'Corpus KL',
  pca: 'PCA of δ',
  'diff-sae': 'diff-SAE',
  amplify: 'Amplification',
  attention: 'Attention',
};

export function MethodTabs({ tab, onTab }: { tab: MethodTab; onTab(tab: MethodTab): void }) {
  return (
    <nav className="method-tabs" role="tablist">
      {METHOD_TABS.map((t) => (
        <button key={t} type="button" role="tab" aria-selected={t === tab} className={t === tab ? 'active' : ''} onClick={() => onTab(t)} data-testid={`method-tab-${t}`}>
          {METHOD_LABELS[t]}
        </button>
      ))}
    </nav>
  );
}

/** Run / progress with Cancel / how the last run ended. */
export function RunBar({ name, what, run, onRun, onCancel, disabled }: { name: MethodTab; what: string; run: MethodRun; onRun(): void; onCancel(): void; disabled?: string | null }) {
  if (run.status === 'running') {
    const p = run.progress;
    return (
      <div className="status run-status" data-testid={`${name}-progress`}>
        <progress value={p && p.total > 0 ? p.done / p.total : 0} max={1} />
        <span>
          {what}: {p ? `${p.stage} ${p.done} of ${p.total}` : 'starting…'} · {formatSeconds(run.elapsedMs / 1000)}
        </span>
        <button type="button" onClick={onCancel} data-testid={`${name}-cancel`}>
          Cancel
        </button>
      </div>
    );
  }
  return (
    <div className="status">
      <button type="button" onClick={onRun} disabled={Boolean(disabled)} title={disabled ?? undefined} data-testid={`${name}-run`}>
        {run.status === 'idle' ? 'Run' : 'Run again'}
      </button>
      {run.status === 'done' && (
        <span className="muted small" data-testid={`${name}-done`} data-ms={Math.round(run.ms)}>
          {what} computed in {formatSeconds(run.ms / 1000)} on the {run.backend}.
        </span>
      )}
      {run.status === 'cancelled' && <span className="warn">{what} was cancelled.</span>}
      {run.status === 'error' && (
        <span className="error" data-testid={`${name}-error`}>
          {what} failed: {run.message}
        </span>
      )}
      {disabled && <span className="muted small">{disabled}</span>}
    </div>
  );
}

/** A whole-number field: a value outside [min, max] or not whole is not committed (the field shows why). */
export function IntField({ label, value, min, max, onChange, testId, title }: { label: string; value: number; min: number; max: number; onChange(v: number): void; testId: string; title?: string }) {
  return (
    <label className="small" title={title}>
      {label}{' '}
      <input
        type="number"
        value={value}
        min={min}
        max={max}
        step={1}
        data-testid={testId}
        onChange={(e) => {
          const v = e.currentTarget.valueAsNumber;
          if (Number.isInteger(v) && v >= min && v <= max) onChange(v);
        }}
      />
    </label>
  );
}

/** The text around a corpus place with the place's token marked. */
export function ContextCell({ samples, texts, sample, position }: { samples: Samples; texts: TokenTexts; sample: number; position: number }) {
  const c = contextParts(samples, texts, sample, position);
  return (
    <span className="m-context" title={`sample ${sample}, position ${position}`}>
      {c.before}
      <mark>{c.at}</mark>
      {c.after}
    </span>
  );
}

export function Section({ title, children, actions }: { title: string; children: ReactNode; actions?: ReactNode }) {
  return (
    <section className="m-section">
      <header className="m-section-head">
        <h3>{title}</h3>
        {actions}
      </header>
      {children}
    </section>
  );
}
