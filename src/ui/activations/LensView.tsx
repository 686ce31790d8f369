import { useMemo } from 'react';
import { mergeByteRuns, tokenDisplay } from '../../io/token-text.ts';
import { HOOK_KINDS, type HookKind } from '../../analysis/activations/differences.ts';
import type { DeltasResult, LensResult } from '../../jobs/activations.ts';
import { DELTA_SCALES, LENS_TOP, type DeltaScale } from '../../state/activations.ts';
import { useApp } from '../../state/store.ts';
import { CopyLinkButton } from '../export/CopyLink.tsx';
import { ExportMenu, type ExportTable } from '../export/ExportMenu.tsx';
import { formatValue } from '../format.ts';
import { percent, PromptBox, sectionSvgs, TaskStatus, tokenLabel, tokenText, tokenTitle, usePrompt, useTask } from './common.tsx';
import { deltaValues, DeltaStrip, SCALE_INFO } from './DeltaStrip.tsx';
import { LensGrid, type Cell } from './LensGrid.tsx';
import './activations.css';

export function LensView() {
  const prompt = usePrompt();
  const hookKind = useApp((s) => s.hookKind);
  const setHookKind = useApp((s) => s.setHookKind);
  const scale = useApp((s) => s.deltaScale);
  const setScale = useApp((s) => s.setDeltaScale);
  const layer = useApp((s) => s.layer);
  const position = useApp((s) => s.position);
  const setLayer = useApp((s) => s.setLayer);
  const setPosition = useApp((s) => s.setPosition);
  const lensRequest = useMemo(() => ({ task: 'lens' as const, prompt, top: LENS_TOP }), [prompt]);
  const deltasRequest = useMemo(() => ({ task: 'deltas' as const, prompt, kind: hookKind }), [prompt, hookKind]);
  const lens = useTask('lens', lensRequest);
  const deltas = useTask('deltas', deltasRequest);
  const shape = lens.result ?? deltas.result;
  const selected: Cell | null = shape && layer !== null && position !== null && layer < shape.layers && position < shape.positions ? { layer, position } : null;
  const select = (c: Cell) => {
    setLayer(c.layer);
    setPosition(c.position);
  };

  return (
    <>
      <section className="panel">
        <div className="panel-head">
          <h2>Activations and logit lens: where the two models part on one prompt</h2>
          <CopyLinkButton />
        </div>
        <PromptBox />
        {shape && (
          <p className="token-row" data-testid="prompt-tokens">
            {promptChips(shape.ids, shape.tokens).map((label, t) => (
              <span key={t} className={`token-chip${t === selected?.position ? ' token-chip-selected' : ''}`} title={tokenTitle(shape.tokens, shape.ids[t]!)}>
                {label}
              </span>
            ))}
            <span className="muted small"> {shape.ids.length} tokens</span>
          </p>
        )}
      </section>

      <section className="panel">
        <div className="panel-head">
          <h2>Activation difference δ = x_ft − x_base per layer and token</h2>
          <div className="controls">
            <label>
              hook{' '}
              <select value={hookKind} onChange={(e) => setHookKind(e.currentTarget.value as HookKind)} data-testid="hook-kind">
                {HOOK_KINDS.map((k) => (
                  <option key={k} value={k}>
                    blocks.ℓ.hook_{k}
                  </option>
                ))}
              </select>
            </label>
            <span className="segmented" role="radiogroup" aria-label="Colour by">
              {DELTA_SCALES.map((s) => (
                <label key={s}>
                  <input type="radio" name="delta-scale" value={s} checked={scale === s} onChange={() => setScale(s as DeltaScale)} data-testid={`delta-scale-${s}`} />
                  {SCALE_INFO[s].label}
                </label>
              ))}
            </span>
          </div>
          {deltas.result && <ExportMenu name={`activation-delta-${deltas.result.kind}-${scale}`} svg={sectionSvgs('.delta-strip svg')} table={() => deltasTable(deltas.result!)} />}
        </div>
        <TaskStatus task="deltas" run={deltas.run} what="The activation differences" onRetry={deltas.start} />
        {deltas.result && <DeltaStrip deltas={deltas.result} scale={scale} selected={selected} onSelect={select} />}
      </section>

      <section className="panel">
        <div className="panel-head">
          <h2>Differential logit lens: both models’ top next token at every layer</h2>
          {lens.result && <ExportMenu name="logit-lens" svg={sectionSvgs('.lens-grid svg')} table={() => lensTable(lens.result!)} />}
        </div>
        <TaskStatus task="lens" run={lens.run} what="The logit lens" onRetry={lens.start} />
        {lens.result && <LensGrid lens={lens.result} selected={selected} onSelect={select} />}
      </section>

      {selected && lens.result && <CellDetail lens={lens.result} deltas={deltas.result} cell={selected} scale={scale} />}
    </>
  );
}

/** The prompt's tokens as chips; a run of byte tokens that makes a character shows it on its first chip, "…" on the others. */
function promptChips(ids: readonly number[], texts: LensResult['tokens']): string[] {
  return mergeByteRuns(ids.map((id) => texts[id] ?? `#${id}`)).map((text, t) => (text === '' ? '…' : text === texts[ids[t]!] ? tokenLabel(texts, ids[t]!) : tokenDisplay(text)));
}

function deltasTable(d: DeltasResult): ExportTable {
  const rows = d.ids.flatMap((_, position) => Array.from({ length: d.layers }, (_, layer) => {
    const i = layer * d.positions + position;
    return [`blocks.${layer}.hook_${d.kind}`, layer, position, tokenText(d.tokens, d.ids[position]!), d.norm[i]!, d.relative[i]!, d.cosine[i]!];
  }));
  return { header: ['hook', 'layer', 'position', 'input_token', 'delta_norm', 'relative_norm', 'cosine'], rows };
}

/** Layer, position and rank, with both models' token and probability there, and KL(P_ft ‖ P_base) of the cell. */
function lensTable(lens: LensResult): ExportTable {
  const k = lens.base.k;
  const rows = [];
  for (let layer = 0; layer < lens.layers; layer++) {
    for (let position = 0; position < lens.positions; position++) {
      const row = layer * lens.positions + position;
      for (let j = 0; j < k; j++) {
        const b = lens.base.ids[row * k + j]!;
        const f = lens.ft.ids[row * k + j]!;
        rows.push([layer, position, tokenText(lens.tokens, lens.ids[position]!), j + 1, tokenText(lens.tokens, b), lens.base.probs[row * k + j]!, tokenText(lens.tokens, f), lens.ft.probs[row * k + j]!, lens.kl[row]!]);
      }
    }
  }
  return { header: ['layer', 'position', 'input_token', 'rank', 'base_token', 'base_prob', 'ft_token', 'ft_prob', 'kl_ft_base'], rows };
}

function TopList({ title, texts, ids, probs, testId }: { title: string; texts: LensResult['tokens']; ids: ArrayLike<number>; probs: ArrayLike<number>; testId: string }) {
  return (
    <table className="top-list" data-testid={testId}>
      <caption>{title}</caption>
      <tbody>
        {Array.from({ length: ids.length }, (_, j) => (
          <tr key={j}>
            <td className="mono" title={tokenTitle(texts, ids[j]!)}>
              {tokenLabel(texts, ids[j]!)}
            </td>
            <td className="bar-cell">
              <span className="bar" style={{ width: `${Math.max(probs[j]! * 100, 0.5)}%` }} />
            </td>
            <td className="num">{percent(probs[j]!)}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function CellDetail({ lens, deltas, cell, scale }: { lens: LensResult; deltas: DeltasResult | null; cell: Cell; scale: DeltaScale }) {
  const openAdlAtLayer = useApp((s) => s.openAdlAtLayer);
  const row = cell.layer * lens.positions + cell.position;
  const k = lens.base.k;
  const slice = (a: Int32Array | Float32Array) => a.subarray(row * k, (row + 1) * k);
  const delta = deltas && deltas.layers === lens.layers && deltas.positions === lens.positions ? deltaValues(deltas, scale)[row] : undefined;
  return (
    <section className="panel" data-testid="lens-detail">
      <div className="panel-head">
        <h2>
          Layer {cell.layer}, position {cell.position}: after {tokenTitle(lens.tokens, lens.ids[cell.position]!)}
        </h2>
        <button type="button" onClick={() => openAdlAtLayer(cell.layer)} data-testid="use-layer-in-adl" title="Open the ADL view at this layer (the ADL keeps its own layer otherwise)">
          Use layer {cell.layer} in ADL →
        </button>
        <ExportMenu
          name={`logit-lens-L${cell.layer}-p${cell.position}`}
          table={() => ({
            header: ['rank', 'base_id', 'base_token', 'base_prob', 'ft_id', 'ft_token', 'ft_prob'],
            rows: Array.from({ length: k }, (_, j) => {
              const b = lens.base.ids[row * k + j]!;
              const f = lens.ft.ids[row * k + j]!;
              return [j + 1, b, tokenText(lens.tokens, b), lens.base.probs[row * k + j]!, f, tokenText(lens.tokens, f), lens.ft.probs[row * k + j]!];
            }),
          })}
        />
      </div>
      <p className="muted">
        KL(P_ft ‖ P_base) = <span data-testid="detail-kl">{formatValue(lens.kl[row]!)}</span> nats
        {delta !== undefined && deltas && (
          <>
            {' '}
            · {SCALE_INFO[scale].label} at hook_{deltas.kind} = {formatValue(delta)}
          </>
        )}
      </p>
      <div className="top-lists">
        <TopList title="base" texts={lens.tokens} ids={slice(lens.base.ids)} probs={slice(lens.base.probs)} testId="detail-base" />
        <TopList title="fine-tuned" texts={lens.tokens} ids={slice(lens.ft.ids)} probs={slice(lens.ft.probs)} testId="detail-ft" />
      </div>
    </section>
  );
}
