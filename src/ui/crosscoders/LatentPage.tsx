// One latent's page: its numbers, top-activating contexts with every token shaded by the latent's
// activation, the histogram of its activations, its logit effects, and steering with its
// fine-tuned decoder direction (on demand).
import { useEffect, useState } from 'react';
import type { ContextOut, CrosscoderSummary, LatentDetail } from '../../jobs/crosscoder.ts';
import { STEER_MAX_NEW, STEER_STRENGTHS } from '../../state/crosscoder.ts';
import { useApp } from '../../state/store.ts';
import { ExportMenu } from '../export/ExportMenu.tsx';
import { formatValue } from '../format.ts';
import { BarChart } from './charts.tsx';
import { latentClass } from './latent-table.ts';

/** Tokens before and after a context's peak that are shown. */
const BEFORE = 40;
const AFTER = 12;
const DEFAULT_STEER_PROMPT = 'Once upon a time';

/** A token as text with its whitespace visible where it would vanish. */
export function showToken(text: string): string {
  return text.replace(/\n/g, '↵').replace(/\t/g, '→');
}

function Context({ ctx, scale }: { ctx: ContextOut; scale: number }) {
  const peak = ctx.acts.indexOf(ctx.maxActivation);
  const from = Math.max(0, peak - BEFORE);
  const to = Math.min(ctx.tokens.length, peak + AFTER + 1);
  return (
    <div className="cc-context" data-testid="cc-context" data-max={ctx.maxActivation}>
      <span className="cc-context-max num">{formatValue(ctx.maxActivation)}</span>
      <span className="cc-context-text">
        {from > 0 && <span className="muted">…</span>}
        {ctx.tokens.slice(from, to).map((tok, i) => {
          const a = ctx.acts[from + i]!;
          const alpha = scale > 0 ? Math.min(1, a / scale) : 0;
          return (
            <span
              key={i}
              className={`ctx-tok${a > 0 ? ' ctx-active' : ''}${from + i === peak ? ' ctx-peak' : ''}`}
              style={a > 0 ? { backgroundColor: `rgba(214, 96, 20, ${(0.12 + 0.88 * alpha).toFixed(3)})` } : undefined}
              title={a > 0 ? `activation ${formatValue(a)}` : undefined}
              data-act={a}
            >
              {showToken(tok)}
            </span>
          );
        })}
        {to < ctx.tokens.length && <span className="muted">…</span>}
      </span>
    </div>
  );
}

function LogitList({ title, items, testId }: { title: string; items: { token: string; value: number }[]; testId: string }) {
  return (
    <div className="cc-logits" data-testid={testId}>
      <h3>{title}</h3>
      <ol>
        {items.map((e, i) => (
          <li key={i}>
            <span className="cc-tok">{showToken(e.token)}</span> <span className="num muted">{e.value > 0 ? '+' : ''}{formatValue(e.value)}</span>
          </li>
        ))}
      </ol>
    </div>
  );
}

function Steering({ latent, layer }: { latent: number; layer: number }) {
  const steer = useApp((s) => s.ccSteer);
  const run = useApp((s) => s.steerWithLatent);
  const [prompt, setPrompt] = useState(DEFAULT_STEER_PROMPT);
  const mine = steer && (JSON.parse(steer.key) as [number, string])[0] === latent ? steer : null;
  return (
    <section className="panel" data-testid="cc-steer">
      <h2>Steering with the fine-tuned decoder direction</h2>
      <p className="muted small">
        Adds s · mean‖h_ft‖ · d̂_ft of this latent to resid_post of layer {layer} at every position, and generates {STEER_MAX_NEW} tokens greedily with each model, for s in {STEER_STRENGTHS.join(', ')}.
      </p>
      <div className="cc-steer-form">
        <input type="text" value={prompt} maxLength={400} onChange={(e) => setPrompt(e.currentTarget.value)} aria-label="Prompt" data-testid="cc-steer-prompt" />
        <button type="button" className="primary" disabled={steer?.status === 'running' || prompt.trim() === ''} onClick={() => void run(latent, prompt)} data-testid="cc-steer-run">
          Generate
        </button>
        {mine?.status === 'running' && <span className="muted">generating…</span>}
      </div>
      {mine?.status === 'error' && <p className="error">{mine.message}</p>}
      {mine?.status === 'done' && (
        <table className="cc-steer-table" data-testid="cc-steer-table">
          <thead>
            <tr>
              <th className="num">s</th>
              <th>base</th>
              <th>fine-tuned</th>
            </tr>
          </thead>
          <tbody>
            {mine.value.generations.map((g) => (
              <tr key={g.strength}>
                <td className="num">{g.strength}</td>
                <td className="cc-gen">
                  <span className="muted">{mine.value.prompt}</span>
                  {g.base}
                </td>
                <td className="cc-gen">
                  <span className="muted">{mine.value.prompt}</span>
                  {g.ft}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

function DetailBody({ detail, summary }: { detail: LatentDetail; summary: CrosscoderSummary }) {
  const j = detail.id;
  const leans: 'ft' | 'base' = summary.latents.ratio[j]! <= 0.5 ? 'ft' : 'base';
  const [direction, setDirection] = useState<'ft' | 'base'>(leans);
  const effects = detail.logits[direction];
  const scale = summary.latents.maxActivation[j]!;
  const figure = (menu: HTMLElement) => menu.closest('figure')?.querySelector('svg');
  return (
    <>
      <section className="panel" data-testid="cc-contexts">
        <div className="panel-head">
          <h2>Top-activating contexts</h2>
          <ExportMenu
            name={`latent-${j}-contexts`}
            table={() => ({ header: ['sample', 'position', 'token', 'activation'], rows: detail.contexts.flatMap((c) => c.tokens.map((tok, p) => [c.sample, p, tok, c.acts[p]!])) })}
          />
        </div>
        <p className="muted small">Each token is shaded by the latent's activation on it (darkest: its maximum, {formatValue(scale)}); hover a token for the value.</p>
        {detail.contexts.length === 0 ? <p className="muted">This latent never fired on the corpus.</p> : detail.contexts.map((c) => <Context key={c.sample} ctx={c} scale={scale} />)}
      </section>
      <div className="cc-latent-grid">
        <section className="panel">
          <figure className="cc-figure">
            <figcaption>Activation density: the latent's non-zero activations over the corpus</figcaption>
            <BarChart edges={detail.histogram.edges} counts={detail.histogram.counts} xLabel="activation" yLabel="tokens" testId="latent-histogram" width={400} />
            <ExportMenu name={`latent-${j}-activations`} svg={figure} table={() => ({ header: ['from', 'to', 'tokens'], rows: detail.histogram.counts.map((c, i) => [detail.histogram.edges[i]!, detail.histogram.edges[i + 1]!, c]) })} />
          </figure>
        </section>
        <section className="panel" data-testid="cc-logit-effects">
          <div className="panel-head">
            <h2>Logit effects: W_U · d through the fine-tuned model's final norm and unembedding</h2>
            <ExportMenu
              name={`latent-${j}-logits`}
              table={() => ({
                header: ['decoder', 'sign', 'rank', 'token', 'value'],
                rows: (['ft', 'base'] as const).flatMap((m) => [...detail.logits[m].positive.map((e, i) => [m, '+', i + 1, e.token, e.value]), ...detail.logits[m].negative.map((e, i) => [m, '-', i + 1, e.token, e.value])]),
              })}
            />
          </div>
          <label className="small">
            decoder vector of{' '}
            <select value={direction} onChange={(e) => setDirection(e.currentTarget.value as 'ft' | 'base')} data-testid="cc-logit-direction">
              <option value="ft">the fine-tuned model{leans === 'ft' ? ' (larger)' : ''}</option>
              <option value="base">the base model{leans === 'base' ? ' (larger)' : ''}</option>
            </select>
          </label>
          <div className="cc-logit-lists">
            <LogitList title="promoted" items={effects.positive} testId="cc-logits-positive" />
            <LogitList title="suppressed" items={effects.negative} testId="cc-logits-negative" />
          </div>
        </section>
      </div>
    </>
  );
}

export function LatentPage({ latent, summary }: { latent: number; summary: CrosscoderSummary }) {
  const detail = useApp((s) => s.ccDetail);
  const load = useApp((s) => s.loadLatentDetail);
  const setLatent = useApp((s) => s.setLatent);
  const key = String(latent);
  const inRange = latent < summary.D;
  useEffect(() => {
    if (inRange && detail?.key !== key) void load(latent);
  }, [inRange, detail?.key, key, latent, load]);
  const t = summary.latents;
  const back = (
    <button type="button" onClick={() => setLatent(null)} data-testid="cc-back">
      ← all latents
    </button>
  );
  if (!inRange) {
    return (
      <section className="panel" data-testid="cc-latent-missing">
        {back}
        <p className="warn">The link opens latent #{latent}, but this crosscoder has {summary.D} latents (0 to {summary.D - 1}).</p>
      </section>
    );
  }
  const cls = latentClass(t, latent);
  return (
    <>
      <section className="panel cc-latent-head" data-testid="cc-latent-page" data-latent={latent}>
        <div className="panel-head">
          <h2>
            Latent #{latent} <span className={`cls-badge cls-${cls}`}>{cls}</span>
            {t.specific[latent] ? <span className="cls-badge cls-specific">{t.specific[latent] === 1 ? 'ft-specific' : 'base-specific'}</span> : null}
          </h2>
          <span>
            {latent > 0 && (
              <button type="button" onClick={() => setLatent(latent - 1)}>
                ← #{latent - 1}
              </button>
            )}{' '}
            {latent < summary.D - 1 && (
              <button type="button" onClick={() => setLatent(latent + 1)}>
                #{latent + 1} →
              </button>
            )}{' '}
            {back}
          </span>
        </div>
        <dl className="cc-stats">
          <div>
            <dt>decoder norm ratio r</dt>
            <dd data-testid="cc-latent-ratio">{t.ratio[latent]!.toFixed(4)}</dd>
          </div>
          <div>
            <dt>ν^ε, ν^r (ft decoder: β_base / β_ft)</dt>
            <dd>
              {formatValue(t.nuErrorFt[latent])}, {formatValue(t.nuReconFt[latent])}
            </dd>
          </div>
          <div>
            <dt>ν^ε, ν^r (base decoder: β_ft / β_base)</dt>
            <dd>
              {formatValue(t.nuErrorBase[latent])}, {formatValue(t.nuReconBase[latent])}
            </dd>
          </div>
          <div>
            <dt>frequency</dt>
            <dd>{formatValue(t.frequency[latent])}</dd>
          </div>
          <div>
            <dt>max activation</dt>
            <dd>{formatValue(t.maxActivation[latent])}</dd>
          </div>
        </dl>
      </section>
      {detail?.key === key && detail.status === 'running' && <p className="muted">Reading the latent's contexts…</p>}
      {detail?.key === key && detail.status === 'error' && <p className="error">{detail.message}</p>}
      {detail?.key === key && detail.status === 'done' && <DetailBody key={latent} detail={detail.value} summary={summary} />}
      <Steering latent={latent} layer={summary.layer} />
    </>
  );
}
