import { useMemo } from 'react';
import { HOOK_KINDS, type HookKind } from '../../analysis/activations/differences.ts';
import type { DeltasResult, LensResult } from '../../state/activations-compute.ts';
import { DELTA_SCALES, LENS_TOP, type DeltaScale } from '../../state/activations.ts';
import { useApp } from '../../state/store.ts';
import { formatValue } from '../format.ts';
import { percent, PromptBox, TaskStatus, tokenLabel, tokenTitle, usePrompt, useTask } from './common.tsx';
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
        </div>
        <PromptBox />
        {shape && (
          <p className="token-row" data-testid="prompt-tokens">
            {shape.ids.map((id, t) => (
              <span key={t} className={`token-chip${t === selected?.position ? ' token-chip-selected' : ''}`} title={tokenTitle((lens.result ?? deltas.result)!.tokens, id)}>
                {tokenLabel((lens.result ?? deltas.result)!.tokens, id)}
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
        </div>
        <TaskStatus task="deltas" run={deltas.run} what="The activation differences" onRetry={deltas.start} />
        {deltas.result && <DeltaStrip deltas={deltas.result} scale={scale} selected={selected} onSelect={select} />}
      </section>

      <section className="panel">
        <div className="panel-head">
          <h2>Differential logit lens: both models’ top next token at every layer</h2>
        </div>
        <TaskStatus task="lens" run={lens.run} what="The logit lens" onRetry={lens.start} />
        {lens.result && <LensGrid lens={lens.result} selected={selected} onSelect={select} />}
      </section>

      {selected && lens.result && <CellDetail lens={lens.result} deltas={deltas.result} cell={selected} scale={scale} />}
    </>
  );
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
  const row = cell.layer * lens.positions + cell.position;
  const k = lens.base.k;
  const slice = (a: Int32Array | Float32Array) => a.subarray(row * k, (row + 1) * k);
  const delta = deltas && deltas.layers === lens.layers && deltas.positions === lens.positions ? deltaValues(deltas, scale)[row] : undefined;
  return (
    <section className="panel" data-testid="lens-detail">
      <h2>
        Layer {cell.layer}, position {cell.position}: after {tokenTitle(lens.tokens, lens.ids[cell.position]!)}
      </h2>
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
