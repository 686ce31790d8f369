import * as d3 from 'd3';
import { useEffect, useMemo, useRef, useState, type DragEvent } from 'react';
import { DEFAULT_ADL_POSITIONS, defaultAdlLayer, type TokenProb } from '../../analysis/activations/adl.ts';
import { MIN_TOKENS_PER_SAMPLE, type AdlPositionResult, type CorpusSettings, type AdlResult, type TokenTexts } from '../../jobs/activations.ts';
import { ADL_TOP, DEFAULT_ADL_SAMPLES, DEFAULT_TOKENS_PER_SAMPLE, loadBuiltinCorpus, MAX_ADL_SAMPLES, MAX_TOKENS_PER_SAMPLE, STEER_MAX_NEW, STEER_STRENGTHS } from '../../state/activations.ts';
import { appStore, useApp } from '../../state/store.ts';
import { CopyLinkButton } from '../export/CopyLink.tsx';
import { ExportMenu, type ExportTable } from '../export/ExportMenu.tsx';
import { formatValue } from '../format.ts';
import { HideNonWords, percent, PromptBox, rankedWords, TaskStatus, tokenLabel, tokenText, tokenTitle, usePairLayers, usePrompt, useTask } from './common.tsx';
import './activations.css';

const PATCHSCOPE_SHOWN = 6;
const STABLE_SHOWN = 12;
/** Tokens asked for per list (the lens gives at most 32): room for ADL_TOP words once non-words are hidden. */
const ADL_FETCHED = 32;

export function AdlView() {
  const L = usePairLayers();
  const storedLayer = useApp((s) => s.adlLayer);
  const setLayer = useApp((s) => s.setAdlLayer);
  const storedPosition = useApp((s) => s.adlPosition);
  const setPosition = useApp((s) => s.setAdlPosition);
  const samples = useApp((s) => s.adlSamples);
  const tokens = useApp((s) => s.adlTokens);
  const corpus = useApp((s) => s.corpus);
  const [hideNonWords, setHideNonWords] = useState(true);
  const layer = storedLayer !== null && L !== null && storedLayer < L ? storedLayer : L === null ? null : defaultAdlLayer(L);
  const position = storedPosition !== null && DEFAULT_ADL_POSITIONS.includes(storedPosition) ? storedPosition : 0;

  useEffect(() => {
    void loadBuiltinCorpus(appStore, new URL(import.meta.env.BASE_URL, window.location.href).href);
  }, []);

  const ref = corpus.status === 'ready' ? corpus.ref : null;
  const request = useMemo(() => (ref && layer !== null ? { task: 'adl' as const, layer, top: ADL_FETCHED, corpus: ref, samples, tokensPerSample: tokens } : null), [ref, layer, samples, tokens]);
  const adl = useTask('adl', request);
  const result = adl.result;
  const selected = result?.positions.find((p) => p.position === position) ?? null;

  return (
    <>
      <section className="panel">
        <div className="panel-head">
          <h2>
            ADL: the mean activation difference δ_p at the first positions of generic text, read through the fine-tuned model’s logit lens
          </h2>
          <CopyLinkButton />
        </div>
        <div className="controls adl-controls">
          <label>
            layer{' '}
            <select value={layer ?? ''} onChange={(e) => setLayer(Number(e.currentTarget.value))} data-testid="adl-layer" disabled={L === null}>
              {Array.from({ length: L ?? 0 }, (_, l) => (
                <option key={l} value={l}>
                  {l}
                  {l === (L === null ? -1 : defaultAdlLayer(L)) ? ' (default: half the depth)' : ''}
                </option>
              ))}
            </select>
          </label>
          <CorpusSizeForm key={`${samples}×${tokens}`} samples={samples} tokens={tokens} />
        </div>
        <CorpusLine result={result} />
        <TaskStatus task="adl" run={adl.run} what="The ADL" onRetry={adl.start} />
      </section>
      {result && (
        <>
          <AdlTables result={result} position={position} onPosition={setPosition} hide={hideNonWords} onHide={setHideNonWords} />
          {selected && <PatchscopeTable result={result} pos={selected} hide={hideNonWords} onHide={setHideNonWords} />}
        </>
      )}
      {request && <SteerPanel layer={request.layer} position={position} request={request} />}
    </>
  );
}

function CorpusSizeForm({ samples, tokens }: { samples: number; tokens: number }) {
  const setSamples = useApp((s) => s.setAdlSamples);
  const setTokens = useApp((s) => s.setAdlTokens);
  const [draft, setDraft] = useState({ samples: String(samples), tokens: String(tokens) });
  const s = Number(draft.samples);
  const t = Number(draft.tokens);
  const valid = Number.isInteger(s) && s >= 1 && s <= MAX_ADL_SAMPLES && Number.isInteger(t) && t >= MIN_TOKENS_PER_SAMPLE && t <= MAX_TOKENS_PER_SAMPLE;
  const changed = s !== samples || t !== tokens;
  return (
    <form
      className="corpus-settings"
      onSubmit={(e) => {
        e.preventDefault();
        if (!valid) return;
        setSamples(s);
        setTokens(t);
      }}
    >
      <label>
        samples{' '}
        <input type="number" min={1} max={MAX_ADL_SAMPLES} value={draft.samples} onChange={(e) => setDraft({ ...draft, samples: e.currentTarget.value })} data-testid="adl-samples" />
      </label>
      <label>
        × tokens{' '}
        <input type="number" min={MIN_TOKENS_PER_SAMPLE} max={MAX_TOKENS_PER_SAMPLE} value={draft.tokens} onChange={(e) => setDraft({ ...draft, tokens: e.currentTarget.value })} data-testid="adl-tokens" />
      </label>
      <button type="submit" disabled={!valid || !changed} data-testid="adl-apply">
        Apply
      </button>
      {(samples !== DEFAULT_ADL_SAMPLES || tokens !== DEFAULT_TOKENS_PER_SAMPLE) && (
        <button
          type="button"
          className="link-button"
          onClick={() => {
            setSamples(DEFAULT_ADL_SAMPLES);
            setTokens(DEFAULT_TOKENS_PER_SAMPLE);
          }}
        >
          default ({DEFAULT_ADL_SAMPLES} × {DEFAULT_TOKENS_PER_SAMPLE})
        </button>
      )}
    </form>
  );
}

/** Which corpus, how much of it the run used, and a way to drop another. */
export function CorpusLine({ result }: { result: AdlResult | null }) {
  const corpus = useApp((s) => s.corpus);
  const setCorpusText = useApp((s) => s.setCorpusText);
  const setCorpusState = useApp((s) => s.setCorpusState);
  const input = useRef<HTMLInputElement>(null);
  const [over, setOver] = useState(false);
  const open = (file: File | undefined) => {
    if (!file) return;
    setCorpusState({ status: 'loading', name: file.name });
    file.text().then(
      (text) => setCorpusText(file.name, text, false),
      (e: unknown) => setCorpusState({ status: 'error', name: file.name, message: `${file.name} could not be read: ${e instanceof Error ? e.message : String(e)}` }),
    );
  };
  const onDrop = (e: DragEvent) => {
    e.preventDefault();
    setOver(false);
    open(e.dataTransfer.files[0]);
  };
  return (
    <div
      className={`corpus-line${over ? ' drop-over' : ''}`}
      data-testid="corpus"
      onDragOver={(e) => {
        e.preventDefault();
        setOver(true);
      }}
      onDragLeave={() => setOver(false)}
      onDrop={onDrop}
    >
      <span>
        Corpus:{' '}
        {corpus.status === 'ready' ? (
          <>
            <b data-testid="corpus-name">{corpus.ref.name}</b> ({corpus.builtin ? 'built in, generic stories' : 'your file'}, {corpus.lines} lines)
            {result && (
              <span data-testid="corpus-used">
                {' '}
                · {result.samples} samples × {result.tokensPerSample} tokens used{result.tooShort > 0 ? `, ${result.tooShort} shorter lines skipped` : ''}
              </span>
            )}
          </>
        ) : corpus.status === 'loading' ? (
          <>reading {corpus.name}…</>
        ) : corpus.status === 'error' ? (
          <span className="error" data-testid="corpus-error">
            {corpus.message}
          </span>
        ) : (
          'none'
        )}
      </span>
      <button type="button" onClick={() => input.current?.click()} data-testid="corpus-choose">
        Choose a text file…
      </button>
      <input
        ref={input}
        type="file"
        accept=".txt,text/plain"
        hidden
        data-testid="corpus-input"
        onChange={(e) => {
          open(e.currentTarget.files?.[0]);
          e.currentTarget.value = '';
        }}
      />
      <span className="muted small">or drop one here: one sample per line, generic text unrelated to the fine-tune.</span>
    </div>
  );
}

/** Per-sample cosine with δ_p, as a histogram over [−1, 1]. */
function ConsistencyHistogram({ values }: { values: Float32Array }) {
  const ref = useRef<SVGSVGElement>(null);
  const W = 150;
  const H = 34;
  useEffect(() => {
    const svg = d3.select(ref.current!);
    svg.selectAll('*').remove();
    const x = d3.scaleLinear().domain([-1, 1]).range([2, W - 2]);
    const bins = d3.bin().domain([-1, 1]).thresholds(20)(Array.from(values));
    const y = d3
      .scaleLinear()
      .domain([0, d3.max(bins, (b) => b.length) ?? 1])
      .range([H - 8, 2]);
    svg
      .selectAll('rect')
      .data(bins)
      .join('rect')
      .attr('class', 'hist-bar')
      .attr('x', (b) => x(b.x0!) + 0.5)
      .attr('width', (b) => Math.max(x(b.x1!) - x(b.x0!) - 1, 1))
      .attr('y', (b) => y(b.length))
      .attr('height', (b) => H - 8 - y(b.length));
    svg.append('line').attr('class', 'hist-axis').attr('x1', 2).attr('x2', W - 2).attr('y1', H - 8).attr('y2', H - 8);
    for (const v of [-1, 0, 1]) svg.append('text').attr('class', 'hist-label').attr('x', x(v)).attr('y', H).attr('text-anchor', v === -1 ? 'start' : v === 1 ? 'end' : 'middle').text(v);
  }, [values]);
  return <svg ref={ref} width={W} height={H} role="img" aria-label="Histogram of per-sample cosine with δ_p" />;
}

/** A token with its probability, over a bar scaled to the largest probability of its table. */
function TokenCell({ t, texts, max }: { t: TokenProb | undefined; texts: TokenTexts; max: number }) {
  if (!t) return <td />;
  return (
    <td className="adl-token" title={`${tokenTitle(texts, t.id)}: ${percent(t.prob)}`}>
      <span className="bar-bg" style={{ width: `${max > 0 ? (t.prob / max) * 100 : 0}%` }} />
      <span className="token-line">
        <span className="mono">{tokenLabel(texts, t.id)}</span> <span className="muted num">{percent(t.prob)}</span>
      </span>
    </td>
  );
}

function AdlTables({ result, position, onPosition, hide, onHide }: { result: AdlResult; position: number; onPosition(p: number): void; hide: boolean; onHide(hide: boolean): void }) {
  const lists = { top: result.positions.map((p) => rankedWords(p.top, result.tokens, ADL_TOP, hide)), topNegative: result.positions.map((p) => rankedWords(p.topNegative, result.tokens, ADL_TOP, hide)) };
  const hidden = [...lists.top, ...lists.topNegative].reduce((n, l) => n + l.hidden, 0);
  const head = (buttons: boolean) => (
    <thead>
      <tr>
        <th />
        {result.positions.map((p) => (
          <th key={p.position} className={p.position === position ? 'col-selected' : ''}>
            {buttons ? (
              <button type="button" className="link-button" onClick={() => onPosition(p.position)} data-testid={`adl-position-${p.position}`} aria-pressed={p.position === position}>
                position {p.position}
              </button>
            ) : (
              `position ${p.position}`
            )}
          </th>
        ))}
      </tr>
    </thead>
  );
  const table = (sign: 'top' | 'topNegative', testId: string) => {
    const max = Math.max(...lists[sign].map((l) => l.shown[0]?.prob ?? 0));
    return (
      <table className="adl-table" data-testid={testId}>
        {head(false)}
        <tbody>
          {Array.from({ length: ADL_TOP }, (_, r) => (
            <tr key={r}>
              <th className="muted num">{r + 1}</th>
              {result.positions.map((p, i) => (
                <TokenCell key={p.position} t={lists[sign][i]!.shown[r]} texts={result.tokens} max={max} />
              ))}
            </tr>
          ))}
        </tbody>
      </table>
    );
  };
  return (
    <section className="panel">
      <div className="panel-head">
        <h2>
          blocks.{result.layer}.hook_resid_post: δ_p = mean over {result.samples} samples of (h_ft − h_base) at position p
        </h2>
        <ExportMenu
          name={`adl-L${result.layer}-consistency`}
          table={() => ({
            header: ['position', 'sample', 'cosine_with_mean_delta', 'delta_norm', 'mean_consistency'],
            rows: result.positions.flatMap((p) => Array.from(p.consistencyPerSample, (c, i) => [p.position, i, c, p.norm, p.consistency])),
          })}
        />
      </div>
      <table className="adl-table adl-stats" data-testid="adl-stats">
        {head(true)}
        <tbody>
          <tr>
            <th className="muted">‖δ_p‖</th>
            {result.positions.map((p) => (
              <td key={p.position} className="num">
                {formatValue(p.norm)}
              </td>
            ))}
          </tr>
          <tr>
            <th className="muted" title="mean cosine of each sample's δ with δ_p: near 1, the same direction on every input">
              consistency
            </th>
            {result.positions.map((p: AdlPositionResult) => (
              <td key={p.position} data-testid={`consistency-${p.position}`}>
                <span className="num">{formatValue(p.consistency)}</span>
                <ConsistencyHistogram values={p.consistencyPerSample} />
              </td>
            ))}
          </tr>
        </tbody>
      </table>
      <HideNonWords hide={hide} onChange={onHide} hidden={hidden} />
      <div className="adl-signs">
        <div>
          <div className="panel-head">
            <h3>+δ_p: tokens the fine-tune pushes towards</h3>
            <ExportMenu name={`adl-L${result.layer}-top`} table={() => adlTokensTable(result, 'top')} />
          </div>
          {table('top', 'adl-top')}
        </div>
        <div>
          <div className="panel-head">
            <h3>−δ_p: tokens it pushes away from</h3>
            <ExportMenu name={`adl-L${result.layer}-top-negative`} table={() => adlTokensTable(result, 'topNegative')} />
          </div>
          {table('topNegative', 'adl-top-negative')}
        </div>
      </div>
      <p className="muted small">
        Probabilities are the fine-tuned model’s logit lens (final norm, unembedding) of ±δ_p alone. A readable trace shows as topic words near the top; on a model this small
        expect one or two among twenty.
      </p>
    </section>
  );
}

function adlTokensTable(result: AdlResult, sign: 'top' | 'topNegative'): ExportTable {
  return {
    header: ['layer', 'position', 'direction', 'rank', 'id', 'token', 'prob'],
    rows: result.positions.flatMap((p) => p[sign].map((t, r) => [result.layer, p.position, sign === 'top' ? 'plus_delta' : 'minus_delta', r + 1, t.id, tokenText(result.tokens, t.id), t.prob])),
  };
}

function PatchscopeTable({ result, pos, hide, onHide }: { result: AdlResult; pos: AdlPositionResult; hide: boolean; onHide(hide: boolean): void }) {
  const ps = pos.patchscope;
  if (!ps) return null;
  const rows = ps.scales.map((s) => ({ scale: s.scale, ...rankedWords(s.top, result.tokens, PATCHSCOPE_SHOWN, hide) }));
  const stable = rankedWords(ps.stable, result.tokens, STABLE_SHOWN, hide);
  const hidden = stable.hidden + rows.reduce((n, r) => n + r.hidden, 0);
  const patchscopeMax = Math.max(...rows.map((r) => r.shown[0]?.prob ?? 0));
  return (
    <section className="panel" data-testid="patchscope">
      <div className="panel-head">
        <h2>
          Patchscope of δ_{pos.position}: s · δ̂ replaces the residual at layer {result.layer} on the last token of identity prompts (“man -&gt; man … ?”)
        </h2>
        <ExportMenu
          name={`patchscope-L${result.layer}-p${pos.position}`}
          table={() => ({
            header: ['scale', 'rank', 'id', 'token', 'prob', 'stable_at_scales'],
            rows: ps.scales.flatMap((sc) => sc.top.map((t, r) => [sc.scale, r + 1, t.id, tokenText(result.tokens, t.id), t.prob, ps.stable.find((st) => st.id === t.id)?.scales ?? 0])),
          })}
        />
      </div>
      <p className="small">
        Stable across scales:{' '}
        <span data-testid="patchscope-stable">
          {stable.shown.map((t) => (
            <span key={t.id} className="token-chip" title={`${tokenTitle(result.tokens, t.id)}: top list at ${t.scales} scales`}>
              {tokenLabel(result.tokens, t.id)} <span className="muted">×{t.scales}</span>
            </span>
          ))}
        </span>
      </p>
      <p className="muted small">
        δ̂ = δ_{pos.position} rescaled to the fine-tuned model’s mean ‖h‖ ({result.ftNorm === null ? 'unknown: samples too short, so δ itself' : formatValue(result.ftNorm)}). Tokens count
        at a scale when they are in the top 100 for every identity prompt.
      </p>
      <HideNonWords hide={hide} onChange={onHide} hidden={hidden} />
      <div className="table-scroll">
        <table className="adl-table patchscope-table" data-testid="patchscope-table">
          <thead>
            <tr>
              <th>scale s</th>
              {Array.from({ length: PATCHSCOPE_SHOWN }, (_, j) => (
                <th key={j}>{j + 1}</th>
              ))}
            </tr>
          </thead>
          <tbody>
            {rows.map((s) => (
              <tr key={s.scale}>
                <th className="num">{s.scale}</th>
                {Array.from({ length: PATCHSCOPE_SHOWN }, (_, j) => (
                  <TokenCell key={j} t={s.shown[j]} texts={result.tokens} max={patchscopeMax} />
                ))}
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </section>
  );
}

function SteerPanel({ layer, position, request }: { layer: number; position: number; request: CorpusSettings }) {
  const prompt = usePrompt();
  const steerRequest = useMemo(
    () => ({ task: 'steer' as const, layer, position, prompt, strengths: STEER_STRENGTHS, maxNew: STEER_MAX_NEW, corpus: request.corpus, samples: request.samples, tokensPerSample: request.tokensPerSample }),
    [layer, position, prompt, request.corpus, request.samples, request.tokensPerSample],
  );
  const steer = useTask('steer', steerRequest, false);
  const anyRun = useApp((s) => s.activationRuns.steer);
  const result = steer.result;
  return (
    <section className="panel" data-testid="steering">
      <div className="panel-head">
        <h2>
          Steering: both models with s · v added at layer {layer} at every position, v = δ_{position} / ‖δ_{position}‖ · mean ‖h_ft‖
        </h2>
        {result && (
          <ExportMenu
            name={`steering-L${result.layer}-p${result.position}`}
            table={() => ({
              header: ['layer', 'position', 'strength', 'vector_norm', 'prompt', 'base_continuation', 'ft_continuation'],
              rows: result.generations.map((g) => [result.layer, result.position, g.strength, result.vectorNorm, result.prompt, g.base, g.ft]),
            })}
          />
        )}
      </div>
      <PromptBox testId="steer-prompt" />
      <div className="status">
        <button type="button" className="primary" onClick={steer.start} disabled={steer.run?.status === 'running'} data-testid="steer-run">
          Generate ({STEER_STRENGTHS.length} strengths × 2 models × {STEER_MAX_NEW} tokens)
        </button>
        <span className="muted small">Greedy generation is slower than the analyses above: it runs on demand.</span>
      </div>
      {steer.run ? (
        <TaskStatus task="steer" run={steer.run} what="Steering" onRetry={steer.start} />
      ) : (
        anyRun?.status === 'done' && <p className="muted small">The settings changed since the last generation: generate again.</p>
      )}
      {result && (
        <table className="data steer-table" data-testid="steer-table">
          <thead>
            <tr>
              <th className="num">s</th>
              <th>base + s·v</th>
              <th>fine-tuned + s·v</th>
            </tr>
          </thead>
          <tbody>
            {result.generations.map((g) => (
              <tr key={g.strength}>
                <td className="num">{g.strength}</td>
                <td>
                  <span className="muted">{result.prompt}</span>
                  <span data-testid="steer-base">{g.base}</span>
                </td>
                <td>
                  <span className="muted">{result.prompt}</span>
                  <span data-testid="steer-ft">{g.ft}</span>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
