import { useEffect } from 'react';
import type { WeightsDiff } from '../../analysis/weights/types.ts';
import { METRIC_INFO, METRICS, type Metric } from '../../state/metrics.ts';
import type { ModelSlot } from '../../state/models.ts';
import { useApp } from '../../state/store.ts';
import { runIsCurrent, WEIGHTS_TOP_K, type WeightsRun } from '../../state/weights.ts';
import { Banner } from '../Banners.tsx';
import { CopyLinkButton } from '../export/CopyLink.tsx';
import { ExportMenu } from '../export/ExportMenu.tsx';
import { formatBytes, formatSeconds } from '../format.ts';
import { Heatmap } from './Heatmap.tsx';
import { TensorPanel } from './TensorPanel.tsx';
import { NotCompared, TensorTable } from './TensorTable.tsx';
import './weights.css';

/** Peak memory of the diff: base, fine-tune and ΔW of the largest tensor in float32, plus the backend's copy. */
function peakBytes(models: Record<'base' | 'ft', ModelSlot>): number | null {
  const b = models.base.status;
  const f = models.ft.status;
  if (b.kind !== 'loaded' || f.kind !== 'loaded') return null;
  const largest = Math.max(b.summary.largestTensor?.elements ?? 0, f.summary.kind === 'model' ? (f.summary.largestTensor?.elements ?? 0) : 0);
  return 4 * 4 * largest;
}

export function WeightsView() {
  const run = useApp((s) => s.weightsRun);
  const current = useApp(runIsCurrent);
  const runWeights = useApp((s) => s.runWeights);
  const hasRunner = useApp((s) => s.weightsRunner !== null);
  const metric = useApp((s) => s.metric);
  const setMetric = useApp((s) => s.setMetric);
  const tensor = useApp((s) => s.tensor);
  const selectTensor = useApp((s) => s.selectTensor);
  const models = useApp((s) => s.models);

  useEffect(() => {
    if (!current && hasRunner) void runWeights();
  }, [current, hasRunner, runWeights]);

  const result = run.status === 'done' && current ? run.result : null;
  const selected = result && tensor ? (result.tensors.find((t) => t.name === tensor) ?? null) : null;

  return (
    <>
      <section className="panel weights-head">
        <div className="panel-head">
          <h2>Weights: what fine-tuning changed, tensor by tensor (ΔW = W_ft − W_base)</h2>
          <label className="metric-picker">
            colour by{' '}
            <select value={metric} onChange={(e) => setMetric(e.currentTarget.value as Metric)} data-testid="metric-select">
              {METRICS.map((m) => (
                <option key={m} value={m}>
                  {METRIC_INFO[m].label}
                </option>
              ))}
            </select>
          </label>
          <CopyLinkButton />
        </div>
        <RunStatus run={current ? run : { status: 'idle' }} peak={peakBytes(models)} onRetry={() => void runWeights()} />
      </section>
      {result && tensor && !selected && <StaleTensor name={tensor} result={result} onDismiss={() => selectTensor(null)} />}
      {result && (
        <>
          <div className="weights-grid">
            <section className="panel">
              <div className="panel-head">
                <h2>
                  {METRIC_INFO[metric].label} per layer and module <span className="muted">(click a cell)</span>
                </h2>
                <ExportMenu name={`weights-heatmap-${metric}`} svg={(menu) => menu.closest('section')?.querySelector<SVGSVGElement>('.heatmap svg')} />
              </div>
              <Heatmap result={result} metric={metric} selected={tensor} onSelect={selectTensor} />
            </section>
            {selected ? (
              <TensorPanel tensor={selected} onClose={() => selectTensor(null)} />
            ) : (
              <section className="panel tensor-panel muted" data-testid="tensor-hint">
                Click a cell of the heatmap or a row of the table to see that tensor’s spectrum, cumulative energy and statistics.
              </section>
            )}
          </div>
          <TensorTable result={result} selected={tensor} onSelect={selectTensor} />
          <NotCompared result={result} />
        </>
      )}
    </>
  );
}

function RunStatus({ run, peak, onRetry }: { run: WeightsRun; peak: number | null; onRetry(): void }) {
  const cancel = useApp((s) => s.cancelWeights);
  const memory = peak !== null ? `Reads one tensor pair at a time: about ${formatBytes(peak)} of memory at most.` : '';
  switch (run.status) {
    case 'idle':
      return <p className="muted">Starting… {memory}</p>;
    case 'running': {
      const p = run.progress;
      const elapsed = run.elapsedMs / 1000;
      const fraction = p && p.bytesTotal > 0 ? p.bytesDone / p.bytesTotal : 0;
      const left = p && p.bytesDone > 0 ? (elapsed * (p.bytesTotal - p.bytesDone)) / p.bytesDone : null;
      return (
        <div className="status run-status" data-testid="weights-progress">
          <progress value={fraction} max={1} />
          <span>
            {p ? (
              <>
                tensor {p.done} of {p.total} · {formatBytes(p.bytesDone)} of {formatBytes(p.bytesTotal)} read{left !== null && ` · about ${formatSeconds(left)} left`}
              </>
            ) : (
              'opening both models…'
            )}
          </span>
          <button type="button" onClick={cancel} data-testid="weights-cancel">
            Cancel
          </button>
          <span className="muted">{memory}</span>
        </div>
      );
    }
    case 'done':
      return (
        <p className="muted" data-testid="weights-done" data-ms={Math.round(run.ms)} data-cached={run.cachedAt !== undefined}>
          {run.cachedAt !== undefined ? (
            <>
              {run.result.tensors.length} tensors, from this browser’s session cache (computed {new Date(run.cachedAt).toLocaleString()} on the {run.backend}); top {WEIGHTS_TOP_K}{' '}
              singular values per matrix.
            </>
          ) : (
            <>
              {run.result.tensors.length} tensors compared in {formatSeconds(run.ms / 1000)} on the {run.backend}; top {WEIGHTS_TOP_K} singular values per matrix.
            </>
          )}
        </p>
      );
    case 'cancelled':
      return (
        <div className="status" data-testid="weights-cancelled">
          <span className="warn">The weight diff was cancelled.</span>
          <button type="button" onClick={onRetry}>
            Run again
          </button>
        </div>
      );
    case 'error':
      return (
        <div className="status error" data-testid="weights-error">
          <span>The weight diff failed: {run.message}</span>
          <button type="button" onClick={onRetry}>
            Run again
          </button>
        </div>
      );
  }
}

/** A tensor named by a link that this pair does not have (or cannot compare): said plainly, as text. */
export function StaleTensor({ name, result, onDismiss }: { name: string; result: WeightsDiff; onDismiss(): void }) {
  const missing = result.missing.find((m) => m.name === name);
  const mismatched = result.mismatched.find((m) => m.name === name);
  const why = missing
    ? `is only in the ${missing.only_in === 'base' ? 'base' : 'fine-tuned'} model, so it has no difference to show`
    : mismatched
      ? `has shape [${mismatched.base_shape.join('×')}] in the base and [${mismatched.ft_shape.join('×')}] in the fine-tune, so it cannot be compared`
      : `is not a tensor of these models (${result.tensors.length} tensors were compared)`;
  return (
    <Banner kind="warn" testId="stale-tensor" onDismiss={onDismiss}>
      The link selects the tensor <q className="mono">{name}</q>, which {why}.
    </Banner>
  );
}
