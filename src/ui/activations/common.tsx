// What the activation views share: the run of a task for the current request, its status line,
// the prompt box, token labels, and a colour legend.
import * as d3 from 'd3';
import { useEffect, useRef, useState } from 'react';
import { isWordToken, tokenDisplay, tokenQuoted } from '../../io/token-text.ts';
import type { ActivationRequest, ActivationTask, ResultFor, TokenTexts } from '../../jobs/activations.ts';
import { DEFAULT_PROMPT, requestKey, resultFor, type TaskRun } from '../../state/activations.ts';
import { MAX_PROMPT_LENGTH } from '../../state/permalink.ts';
import { useApp } from '../../state/store.ts';
import { formatBytes, formatSeconds } from '../format.ts';

/** The layers of the loaded pair (from the base model's summary), or null before it loads. */
export function usePairLayers(): number | null {
  return useApp((s) => (s.models.base.status.kind === 'loaded' ? s.models.base.status.summary.layers : null));
}

/** The prompt the views run on: the one in the store, or the default story opening. */
export function usePrompt(): string {
  const prompt = useApp((s) => s.prompt);
  return prompt === '' ? DEFAULT_PROMPT : prompt;
}

/**
 * The run of `request`'s task and its result when the run answers this request. With `auto`, a
 * request that has no run yet is started (a failed or cancelled one waits for `start`).
 */
export function useTask<T extends ActivationTask>(task: T, request: Extract<ActivationRequest, { task: T }> | null, auto = true) {
  const key = request ? requestKey(request) : null;
  const run = useApp((s) => s.activationRuns[task]);
  const runActivation = useApp((s) => s.runActivation);
  const hasRunner = useApp((s) => s.activationsRunner !== null);
  const runKey = run?.key;
  useEffect(() => {
    if (auto && hasRunner && request && runKey !== key) void runActivation(request);
  }, [auto, hasRunner, request, key, runKey, runActivation]);
  const result: ResultFor<T> | null = useApp((s) => (key === null ? null : resultFor(s.activationRuns, task, key)));
  return { run: run && run.key === key ? run : undefined, result, start: () => request && void runActivation(request) };
}

const STAGE_LABELS: Record<string, string> = {
  lens: 'logit lens, layer',
  adl: 'corpus sample',
  patchscope: 'Patchscope step',
  steer: 'strength',
  patch: 'patched run',
  stitch: 'stitched model',
  differences: 'sample',
};

export function TaskStatus({ task, run, what, onRetry }: { task: ActivationTask; run: TaskRun | undefined; what: string; onRetry(): void }) {
  const cancel = useApp((s) => s.cancelActivation);
  const loadMs = useApp((s) => s.activationsInfo?.loadMs);
  if (!run) return <p className="muted">Starting…</p>;
  switch (run.status) {
    case 'running': {
      const p = run.progress;
      const isBytes = p !== null && /^(loading|merging)/.test(p.stage);
      const label = p === null ? 'starting the worker…' : isBytes ? `${p.stage}: ${formatBytes(p.done)} of ${formatBytes(p.total)}` : `${STAGE_LABELS[p.stage] ?? p.stage} ${p.done} of ${p.total}`;
      return (
        <div className="status run-status" data-testid={`${task}-progress`}>
          <progress value={p && p.total > 0 ? p.done / p.total : 0} max={1} />
          <span>
            {what}: {label} · {formatSeconds(run.elapsedMs / 1000)}
          </span>
          <button type="button" onClick={() => cancel(task)} data-testid={`${task}-cancel`}>
            Cancel
          </button>
        </div>
      );
    }
    case 'done':
      return (
        <p className="muted small" data-testid={`${task}-done`} data-ms={Math.round(run.ms)} data-cached={run.cachedAt !== null ? 'session' : run.cached ? 'memory' : 'false'}>
          {run.cachedAt !== null ? (
            <>
              {what}: read from this browser’s session cache; computed {new Date(run.cachedAt).toLocaleString()} in {formatSeconds(run.ms / 1000)} on the {run.backend}.
            </>
          ) : (
            <>
              {what} computed in {formatSeconds(run.ms / 1000)} on the {run.backend}
              {run.cached ? ' (kept from before)' : ''}
              {loadMs !== undefined && `; the models loaded there once, in ${formatSeconds(loadMs / 1000)}`}.
            </>
          )}
        </p>
      );
    case 'cancelled':
      return (
        <div className="status" data-testid={`${task}-cancelled`}>
          <span className="warn">{what} was cancelled.</span>
          <button type="button" onClick={onRetry}>
            Run again
          </button>
        </div>
      );
    case 'error':
      return (
        <div className="status error" data-testid={`${task}-error`}>
          <span>
            {what} failed: {run.message}
          </span>
          <button type="button" onClick={onRetry}>
            Run again
          </button>
        </div>
      );
  }
}

/** The prompt, edited here and applied with Enter or the button (each prompt is a run). */
export function PromptBox({ testId = 'prompt' }: { testId?: string }) {
  const prompt = usePrompt();
  // Keyed by the prompt: a prompt set elsewhere (another box, a link) replaces the draft.
  return <PromptForm key={prompt} prompt={prompt} testId={testId} />;
}

function PromptForm({ prompt, testId }: { prompt: string; testId: string }) {
  const setPrompt = useApp((s) => s.setPrompt);
  const [draft, setDraft] = useState(prompt);
  const apply = () => setPrompt(draft === DEFAULT_PROMPT ? '' : draft);
  return (
    <form
      className="prompt-box"
      onSubmit={(e) => {
        e.preventDefault();
        apply();
      }}
    >
      <label htmlFor={`${testId}-input`}>Prompt</label>
      <input id={`${testId}-input`} type="text" value={draft} maxLength={MAX_PROMPT_LENGTH} onChange={(e) => setDraft(e.currentTarget.value)} data-testid={testId} spellCheck={false} />
      <button type="submit" disabled={draft.trim() === '' || draft === prompt} data-testid={`${testId}-run`}>
        Run
      </button>
      {prompt !== DEFAULT_PROMPT && (
        <button type="button" className="link-button" onClick={() => setPrompt('')}>
          default
        </button>
      )}
    </form>
  );
}

/** A token as shown in cells and lists (token-text.ts): control characters visible, bytes as <0xE2>, no leading space. */
export function tokenLabel(texts: TokenTexts, id: number): string {
  const t = texts[id];
  return t === undefined ? `#${id}` : tokenDisplay(t);
}

/**
 * The first `n` of a ranked list, leaving out tokens that are not words when `hide` is set
 * (punctuation, spaces, bytes, control characters), with how many were left out on the way.
 */
export function rankedWords<T extends { id: number }>(list: readonly T[], texts: TokenTexts, n: number, hide: boolean): { shown: T[]; hidden: number } {
  if (!hide) return { shown: list.slice(0, n), hidden: 0 };
  const shown: T[] = [];
  let hidden = 0;
  for (const t of list) {
    if (shown.length === n) break;
    const text = texts[t.id];
    if (text === undefined || isWordToken(text)) shown.push(t);
    else hidden++;
  }
  return { shown, hidden };
}

/** The "hide non-word tokens" switch of ranked lists, with how many it hides. */
export function HideNonWords({ hide, onChange, hidden }: { hide: boolean; onChange(hide: boolean): void; hidden: number }) {
  return (
    <label className="hide-non-words small" title="Punctuation, spaces, bytes (<0xE2>) and control characters">
      <input type="checkbox" checked={hide} onChange={(e) => onChange(e.currentTarget.checked)} data-testid="hide-non-words" /> hide non-word tokens
      {hide && (
        <span className="muted" data-testid="hidden-count">
          {' '}
          ({hidden} hidden)
        </span>
      )}
    </label>
  );
}

/** A token's text exactly as the tokenizer decodes it (for exported tables), or #id when unknown. */
export function tokenText(texts: TokenTexts, id: number): string {
  return texts[id] ?? `#${id}`;
}

/** The SVGs matching `selector` in the export menu's section, in page order: a chart and its legend, exported as one figure. */
export const sectionSvgs = (selector: string) => (menu: HTMLElement) => Array.from(menu.closest('section')?.querySelectorAll<SVGSVGElement>(selector) ?? []);

/** A token exactly (quoted, leading space kept) with its id: for tooltips. */
export function tokenTitle(texts: TokenTexts, id: number): string {
  const t = texts[id];
  return t === undefined ? `#${id}` : `${tokenQuoted(t)} (#${id})`;
}

/** A probability as a percentage: 42%, 3.5%, and "<0.1%" below a tenth of a percent (never "5e-2%"). */
export const percent = (p: number) => (p >= 0.1 ? `${(p * 100).toFixed(0)}%` : p >= 0.001 ? `${(p * 100).toFixed(1)}%` : p > 0 ? '<0.1%' : '0%');

/** A colour ramp with an axis, as an SVG of its own. */
export function Legend({ color, domain, title, testId, width = 240 }: { color: (v: number) => string; domain: [number, number]; title: string; testId?: string; width?: number }) {
  const ref = useRef<SVGSVGElement>(null);
  useEffect(() => {
    const svg = d3.select(ref.current!);
    svg.selectAll('*').remove();
    const x = d3.scaleLinear().domain(domain).range([0, width]);
    const id = `legend-${Math.random().toString(36).slice(2)}`;
    const gradient = svg.append('defs').append('linearGradient').attr('id', id);
    gradient
      .selectAll('stop')
      .data(d3.range(0, 1.0001, 0.1))
      .join('stop')
      .attr('offset', (t) => `${t * 100}%`)
      .attr('stop-color', (t) => color(x.invert(t * width)));
    const g = svg.append('g').attr('transform', 'translate(14,0)');
    g.append('text').attr('class', 'legend-title').attr('y', 11).text(title);
    g.append('rect').attr('y', 16).attr('width', width).attr('height', 10).attr('fill', `url(#${id})`);
    g.append('g').attr('class', 'legend-axis').attr('transform', 'translate(0,26)').call(d3.axisBottom(x).ticks(5).tickSizeOuter(0));
  }, [color, domain, title, width]);
  // The title is one line of 11px text: about 6.5px a character.
  return <svg ref={ref} className="legend" width={Math.max(width + 32, 22 + title.length * 6.5)} height={48} data-testid={testId} role="img" aria-label={title} />;
}
