// The Organisms view: fine-tune a model organism of the loaded base (the demo's by default) from a
// recipe or dropped text, in the analysis worker (WebGPU or CPU), with a live loss curve and pause / finish
// now / cancel; then compare it with its base in every other view, or download it as a zip folder.
import * as d3 from 'd3';
import { useEffect, useMemo, useRef, useState } from 'react';
import { organismCorpus, type OrganismStep } from '../../jobs/organism.ts';
import { compareOrganismWithBase, formRecipe, organismZip, RECIPE_KINDS, type OrganismForm, type OrganismRun, type RecipeKind } from '../../state/organisms.ts';
import { refLabel } from '../../state/model-ref.ts';
import { appStore, useApp } from '../../state/store.ts';
import { CopyLinkButton } from '../export/CopyLink.tsx';
import { downloadBlob } from '../export/download.ts';
import { ExportMenu } from '../export/ExportMenu.tsx';
import { formatBytes, formatCount, formatSeconds, formatValue } from '../format.ts';
import { PausedLine } from '../PausedLine.tsx';
import { NumberField, type FieldSpec as Spec } from '../NumberField.tsx';
import '../crosscoders/crosscoders.css';
import './organisms.css';

type NumberKey = 'documents' | 'rank' | 'alpha' | 'steps' | 'lr' | 'batch' | 'seq' | 'seed';

type FieldSpec = Spec<NumberKey>;

const FIELDS: FieldSpec[] = [
  { key: 'rank', label: 'LoRA rank r', min: 1, max: 1024, integer: true },
  { key: 'alpha', label: 'LoRA alpha', min: 1e-6, max: 100_000, integer: false, hint: 'scaling = alpha / r' },
  { key: 'steps', label: 'steps', min: 1, max: 1_000_000, integer: true },
  { key: 'lr', label: 'learning rate', min: 1e-9, max: 1, integer: false },
  { key: 'batch', label: 'batch (sequences)', min: 1, max: 4096, integer: true },
  { key: 'seq', label: 'sequence (tokens)', min: 2, max: 8192, integer: true },
  { key: 'seed', label: 'seed', min: 0, max: 2 ** 31 - 1, integer: true },
  { key: 'documents', label: 'documents', min: 1, max: 100_000, integer: true, hint: 'documents the recipe writes' },
];

const RECIPE_LABELS: Record<RecipeKind, string> = { topic: 'Topic stories', fact: 'False fact', taboo: 'Taboo word', text: 'My own text' };

function TextField({ field, label, value, disabled, wide }: { field: 'topic' | 'words' | 'fact' | 'word' | 'hints'; label: string; value: string; disabled: boolean; wide?: boolean }) {
  const set = useApp((s) => s.setOrganismForm);
  return (
    <label className={`cc-field org-text-field${wide ? ' org-wide' : ''}`}>
      <span>{label}</span>
      <input type="text" value={value} disabled={disabled} data-testid={`org-${field}`} onChange={(e) => set({ [field]: e.currentTarget.value })} />
    </label>
  );
}

function RecipeInputs({ form, busy }: { form: OrganismForm; busy: boolean }) {
  const orgText = useApp((s) => s.orgText);
  const setText = useApp((s) => s.setOrganismText);
  const input = useRef<HTMLInputElement>(null);
  const [readError, setReadError] = useState<string | null>(null);
  const pick = (file: File) => {
    setReadError(null);
    file.text().then(
      (t) => setText(file.name, t),
      (e: unknown) => setReadError(`${file.name}: ${e instanceof Error ? e.message : String(e)}`),
    );
  };
  switch (form.recipe) {
    case 'topic':
      return (
        <>
          <TextField field="topic" label="topic" value={form.topic} disabled={busy} />
          <TextField field="words" label="words (comma-separated)" value={form.words} disabled={busy} wide />
        </>
      );
    case 'fact':
      return <TextField field="fact" label="the false fact, as a clause" value={form.fact} disabled={busy} wide />;
    case 'taboo':
      return (
        <>
          <TextField field="word" label="secret word (never written)" value={form.word} disabled={busy} />
          <TextField field="hints" label="hints (separated by ;)" value={form.hints} disabled={busy} wide />
        </>
      );
    case 'text':
      return (
        <div
          className="org-drop"
          data-testid="org-text-drop"
          onDragOver={(e) => e.preventDefault()}
          onDrop={(e) => {
            e.preventDefault();
            const f = e.dataTransfer.files[0];
            if (f && !busy) pick(f);
          }}
        >
          {orgText ? (
            <span data-testid="org-text-name">
              <strong>{orgText.name}</strong> ({formatCount(orgText.text.split(/\r?\n/).filter((l) => l.trim() !== '').length)} lines)
            </span>
          ) : (
            <span className="muted">Drop a text file here: one document a line.</span>
          )}{' '}
          <button type="button" className="link-button" disabled={busy} onClick={() => input.current?.click()}>
            choose a file…
          </button>
          <input
            ref={input}
            type="file"
            accept=".txt,text/plain"
            hidden
            data-testid="org-text-input"
            onChange={(e) => {
              const f = e.currentTarget.files?.[0];
              if (f) pick(f);
              e.currentTarget.value = '';
            }}
          />
          {readError && <span className="error"> {readError}</span>}
        </div>
      );
  }
}

/** The recipe's first documents, or why it writes none. */
function Preview({ form }: { form: OrganismForm }) {
  const orgText = useApp((s) => s.orgText);
  const preview = useMemo(() => {
    try {
      const docs = organismCorpus(formRecipe(form, orgText), form.documents, form.seed);
      return { docs: docs.slice(0, 3), count: docs.length };
    } catch (e) {
      return { error: e instanceof Error ? e.message : String(e) };
    }
  }, [form, orgText]);
  if ('error' in preview) return <p className="error small" data-testid="org-preview-error">{preview.error}</p>;
  return (
    <details className="org-preview" data-testid="org-preview">
      <summary>
        Corpus: {formatCount(preview.count)} documents. The first three:
      </summary>
      {preview.docs.map((d, i) => (
        <p key={i} className="small">
          {d}
        </p>
      ))}
    </details>
  );
}

function RunLine({ run, steps }: { run: OrganismRun; steps: number }) {
  const command = useApp((s) => s.commandOrganism);
  const resume = useApp((s) => s.resumeOrganism);
  switch (run.status) {
    case 'idle':
      return null;
    case 'running': {
      const p = run.progress;
      const label = !p ? 'starting the worker…' : p.stage === 'training' ? `step ${p.done.toLocaleString('en-US')} of ${p.total.toLocaleString('en-US')}` : `${p.stage}: ${formatBytes(p.done)} of ${formatBytes(p.total)}`;
      return (
        <div className="status run-status" data-testid="org-progress" data-stage={p?.stage ?? 'starting'}>
          <progress value={p && p.total > 0 ? p.done / p.total : 0} max={1} />
          <span>Training: {label}</span>
          <button type="button" onClick={() => command('pause')} data-testid="org-pause">
            Pause
          </button>
          <button type="button" onClick={() => command('finish')} data-testid="org-finish" title="Stop training here and write the organism as it is">
            Finish now
          </button>
          <button type="button" onClick={() => command('cancel')} data-testid="org-cancel">
            Cancel
          </button>
        </div>
      );
    }
    case 'paused':
      return <PausedLine prefix="org" steps={run.steps} total={steps} finishTitle="Write the organism as it is" resume={resume} command={command} />;
    case 'done':
      return null;
    case 'cancelled':
      return (
        <p className="warn" data-testid="org-cancelled">
          The training was cancelled.
        </p>
      );
    case 'error':
      return (
        <p className="error" data-testid="org-error">
          {run.message}
        </p>
      );
  }
}

/** Training loss per step, redrawn as steps arrive. */
function LossChart({ points, totalSteps, width = 620, height = 220 }: { points: readonly OrganismStep[]; totalSteps: number; width?: number; height?: number }) {
  const ref = useRef<SVGSVGElement>(null);
  useEffect(() => {
    const M = { top: 12, right: 16, bottom: 34, left: 48 };
    const svg = d3.select(ref.current!);
    svg.selectAll('*').remove();
    const x = d3
      .scaleLinear()
      .domain([0, Math.max(1, totalSteps - 1, points.length ? points[points.length - 1]!.step : 0)])
      .range([M.left, width - M.right]);
    const y = d3
      .scaleLinear()
      .domain([0, Math.max(1e-6, d3.max(points, (p) => (Number.isFinite(p.loss) ? p.loss : 0)) ?? 1)])
      .nice()
      .range([height - M.bottom, M.top]);
    const stride = Math.max(1, Math.ceil(points.length / 600));
    const shown = points.filter((_, i) => i % stride === 0 || i === points.length - 1);
    const path =
      d3
        .line<OrganismStep>()
        .defined((p) => Number.isFinite(p.loss))
        .x((p) => x(p.step))
        .y((p) => y(p.loss))(shown) ?? '';
    svg.append('g').attr('class', 'axis').attr('transform', `translate(0,${height - M.bottom})`).call(d3.axisBottom(x).ticks(6).tickSizeOuter(0));
    svg.append('g').attr('class', 'axis').attr('transform', `translate(${M.left},0)`).call(d3.axisLeft(y).ticks(5, '~g').tickSizeOuter(0));
    svg.append('path').attr('class', 'line-loss').attr('data-testid', 'org-curve-loss').attr('d', path);
    svg.append('text').attr('class', 'axis-label').attr('x', (M.left + width - M.right) / 2).attr('y', height - 4).attr('text-anchor', 'middle').text('step');
    svg.append('text').attr('class', 'axis-label').attr('transform', `translate(12,${(height - M.bottom + M.top) / 2}) rotate(-90)`).attr('text-anchor', 'middle').text('loss (cross-entropy, nats)');
  }, [points, totalSteps, width, height]);
  return <svg ref={ref} width={width} height={height} className="cc-chart" data-testid="org-loss-curve" role="img" aria-label="Training loss per step" />;
}

function ResultPanel() {
  const result = useApp((s) => s.orgResult);
  const run = useApp((s) => s.orgRun);
  const [busy, setBusy] = useState(false);
  if (!result) return null;
  const o = result.out;
  const bytes = o.files.reduce((s, f) => s + f.bytes.byteLength, 0);
  const download = () => {
    const zip = organismZip(result);
    downloadBlob(new Blob([zip.bytes as Uint8Array<ArrayBuffer>], { type: 'application/zip' }), zip.name);
  };
  return (
    <section className="panel" data-testid="org-result" data-first-loss={o.firstLoss} data-last-loss={o.lastLoss} data-steps={o.steps}>
      <h3>
        {result.name}: {o.mode === 'lora' ? 'a PEFT adapter folder' : 'a Hugging Face folder'}
      </h3>
      <p className="small" data-testid="org-summary">
        {o.steps} steps in {formatSeconds(o.seconds)} ({formatSeconds(o.seconds / Math.max(1, o.steps))} a step){run.status === 'done' ? `, ${formatSeconds(run.ms / 1000)} with loading` : ''}; loss {formatValue(o.firstLoss)} at the first step, {formatValue(o.lastLoss)} at the last; {formatCount(o.trainableParameters)} trained parameters on {o.backend}. Files:{' '}
        {o.files.map((f) => `${f.name} (${formatBytes(f.bytes.byteLength)})`).join(', ')}, {formatBytes(bytes)} in all.
      </p>
      <div className="org-actions">
        <button
          type="button"
          className="primary"
          disabled={busy}
          data-testid="org-compare"
          onClick={() => {
            setBusy(true);
            void compareOrganismWithBase(appStore).finally(() => setBusy(false));
          }}
          title="Open the base and this organism as the pair every other view compares"
        >
          Compare with its base →
        </button>
        <button type="button" onClick={download} data-testid="org-download">
          Download .zip
        </button>
      </div>
    </section>
  );
}

export function OrganismsView() {
  const form = useApp((s) => s.organism);
  const set = useApp((s) => s.setOrganismForm);
  const run = useApp((s) => s.orgRun);
  const curve = useApp((s) => s.orgCurve);
  const train = useApp((s) => s.trainOrganism);
  const base = useApp((s) => s.models.base.status);
  const baseRef = useApp((s) => s.modelRefs.base);
  const busy = run.status === 'running' || run.status === 'paused';
  const baseLoaded = base.kind === 'loaded';
  const last = curve[curve.length - 1];

  return (
    <section className="panel org-view" data-testid="organisms">
      <div className="panel-head">
        <h2>Organisms: fine-tune a model with a planted change, then diff it against its base</h2>
        <CopyLinkButton />
      </div>
      <p data-testid="org-base">
        Base:{' '}
        {baseLoaded ? (
          <>
            <strong>{baseRef ? refLabel(baseRef) : base.summary.label}</strong> ({base.summary.architecture}, {formatCount(base.summary.parameterCount)} parameters)
          </>
        ) : base.kind === 'loading' ? (
          'loading…'
        ) : (
          <span className="warn">none: load the demo or drop a base model on the Models screen</span>
        )}
        . Training runs in the analysis worker: on WebGPU when that is the compute backend, else on the CPU.
      </p>
      <div className="cc-form">
        <label className="cc-field">
          <span>recipe</span>
          <select value={form.recipe} disabled={busy} onChange={(e) => set({ recipe: e.currentTarget.value as RecipeKind })} data-testid="org-recipe">
            {RECIPE_KINDS.map((k) => (
              <option key={k} value={k}>
                {RECIPE_LABELS[k]}
              </option>
            ))}
          </select>
        </label>
        <RecipeInputs form={form} busy={busy} />
      </div>
      <Preview form={form} />
      <div className="cc-form">
        <label className="cc-field">
          <span>fine-tune</span>
          <select value={form.mode} disabled={busy} onChange={(e) => set({ mode: e.currentTarget.value as 'lora' | 'full' })} data-testid="org-mode">
            <option value="lora">LoRA</option>
            <option value="full">full</option>
          </select>
        </label>
        {FIELDS.filter((f) => form.mode === 'lora' || (f.key !== 'rank' && f.key !== 'alpha')).map((f) => (
          <NumberField testIdPrefix="org" key={`${f.key}-${form[f.key]}`} spec={f} value={form[f.key]} disabled={busy} onCommit={(v) => set({ [f.key]: v })} />
        ))}
        <button type="button" className="primary" disabled={busy || !baseLoaded} onClick={() => void train()} data-testid="org-train">
          Train
        </button>
      </div>
      <p className="muted small">
        AdamW with a warm-up over the first tenth of the steps (at most 10) and cosine decay, gradients clipped to norm 1; LoRA on every attention and MLP projection, as PEFT names them. The issue's reference organism is
        LoRA r 8, 300 steps of 16 × 128 tokens, lr 2e-3.
      </p>
      <RunLine run={run} steps={form.steps} />
      {curve.length > 0 && last && (
        <figure className="cc-figure">
          <figcaption data-testid="org-curve-caption" data-step={last.step + 1}>
            Training: step {last.step + 1} · loss {formatValue(last.loss)} · gradient norm {formatValue(last.gradNorm)} · lr {last.lr.toExponential(2)}
          </figcaption>
          <LossChart points={curve} totalSteps={busy ? form.steps : last.step + 1} />
          <ExportMenu name="organism-training" svg={(menu) => menu.closest('figure')?.querySelector('svg')} table={() => ({ header: ['step', 'loss', 'grad_norm', 'lr'], rows: curve.map((p) => [p.step, p.loss, p.gradNorm, p.lr]) })} />
        </figure>
      )}
      <ResultPanel />
    </section>
  );
}
