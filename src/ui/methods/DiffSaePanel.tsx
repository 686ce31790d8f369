// diff-SAE: a BatchTopK sparse autoencoder trained in the worker on δ = h_ft − h_base at a layer; its
// loss curve (live while it trains), and a latent browser read like the crosscoder's: frequency, the
// fine-tune's logit lens of ± each decoder direction, and the places where a latent is most active.
import { useMemo } from 'react';
import type { DiffSaeOutcome } from '../../jobs/diff-sae.ts';
import { SAE_SORTS, type MethodSettings } from '../../state/methods.ts';
import { LossCurve } from '../crosscoders/charts.tsx';
import '../crosscoders/crosscoders.css';
import { ExportMenu } from '../export/ExportMenu.tsx';
import { formatValue } from '../format.ts';
import { ContextCell, IntField, Section } from './common.tsx';
import { diffSaeTable, filterLatents, tokenLabel, type Samples, type TokenTexts } from './method-tables.ts';

type Change = (patch: Partial<MethodSettings>) => void;

export function DiffSaeSettings({ settings, layers, onChange }: { settings: MethodSettings; layers: number; onChange: Change }) {
  return (
    <div className="m-settings">
      <IntField label="layer" value={settings.saeLayer ?? Math.floor(layers / 2)} min={0} max={Math.max(0, layers - 1)} onChange={(saeLayer) => onChange({ saeLayer })} testId="sae-layer" />
      <IntField label="latents" value={settings.saeDict} min={1} max={1 << 20} onChange={(saeDict) => onChange({ saeDict })} testId="sae-dict" />
      <IntField label="k" value={settings.saeK} min={1} max={Math.min(4096, settings.saeDict)} onChange={(saeK) => onChange({ saeK })} testId="sae-k" title="latents active per token, on average over a batch" />
      <IntField label="steps" value={settings.saeSteps} min={1} max={10_000_000} onChange={(saeSteps) => onChange({ saeSteps })} testId="sae-steps" />
      <IntField label="batch (tokens)" value={settings.saeBatch} min={1} max={1 << 16} onChange={(saeBatch) => onChange({ saeBatch })} testId="sae-batch" />
      <label className="small">
        learning rate{' '}
        <input
          type="number"
          min={0}
          max={1}
          step={0.001}
          value={settings.saeLr}
          data-testid="sae-lr"
          onChange={(e) => {
            const v = e.currentTarget.valueAsNumber;
            if (Number.isFinite(v) && v > 0 && v <= 1) onChange({ saeLr: v });
          }}
        />
      </label>
    </div>
  );
}

/** The loss curve of a training in progress (the points its progress carries). */
export function DiffSaeLiveCurve({ points, steps }: { points: readonly DiffSaeOutcome['curve'][number][]; steps: number }) {
  return (
    <Section title="Training">
      <LossCurve points={points} totalSteps={steps} />
    </Section>
  );
}

function Tokens({ list, texts, testId }: { list: readonly { id: number; prob: number }[]; texts: TokenTexts; testId: string }) {
  return (
    <p className="m-token-list" data-testid={testId}>
      {list.map((t) => (
        <span key={t.id} className="m-token" title={`${(100 * t.prob).toFixed(1)}%`}>
          {tokenLabel(texts, t.id)}
        </span>
      ))}
    </p>
  );
}

export function DiffSaeResults({ result, texts, samples, settings, onChange }: { result: DiffSaeOutcome; texts: TokenTexts; samples: Samples; settings: MethodSettings; onChange: Change }) {
  const shown = useMemo(() => filterLatents(result.latents, texts, samples, settings.saeQuery, settings.saeSort), [result, texts, samples, settings.saeQuery, settings.saeSort]);
  const selected = result.latents.find((l) => l.id === settings.saeLatent) ?? shown[0] ?? null;
  const curveTable = () => ({ header: ['step', 'loss', 'fvu', 'dead'], rows: result.curve.map((p) => [p.step, p.loss, p.fvu, p.dead]) });
  return (
    <>
      <p data-testid="sae-summary" data-fvu={result.fvu} data-live={result.live} data-rows={result.rows}>
        δ at {result.hook} over {result.rows} tokens: {result.D} latents, k = {result.k}, {result.steps} steps. The SAE leaves {formatValue(100 * result.fvu)}% of δ's variance unexplained;{' '}
        {result.live} latents fired{result.live > result.latents.length ? `, the ${result.latents.length} most frequent are listed` : ''}.
      </p>
      <Section title="Training" actions={<ExportMenu name="diff-sae-curve" svg={(menu) => menu.closest('section')?.querySelector<SVGSVGElement>('svg[data-testid="loss-curve"]')} table={curveTable} />}>
        <LossCurve points={result.curve} totalSteps={result.steps} />
      </Section>
      <div className="m-settings">
        <label className="small">
          tokens containing{' '}
          <input value={settings.saeQuery} maxLength={100} data-testid="sae-query" onChange={(e) => onChange({ saeQuery: e.currentTarget.value })} />
        </label>
        <label className="small">
          sort by{' '}
          <select value={settings.saeSort} onChange={(e) => onChange({ saeSort: e.currentTarget.value as MethodSettings['saeSort'] })} data-testid="sae-sort">
            {SAE_SORTS.map((s) => (
              <option key={s} value={s}>
                {s === 'frequency' ? 'frequency' : 'largest activation'}
              </option>
            ))}
          </select>
        </label>
      </div>
      <div className="m-row">
        <Section title={`Latents (${shown.length} shown)`} actions={<ExportMenu name="diff-sae-latents" table={() => diffSaeTable(result, texts, samples)} />}>
          <table className="m-table" data-testid="sae-latents">
            <thead>
              <tr>
                <th>latent</th>
                <th>frequency</th>
                <th>max</th>
                <th>fine-tune lens of +direction</th>
                <th>most active at</th>
              </tr>
            </thead>
            <tbody>
              {shown.map((l) => (
                <tr key={l.id} data-latent={l.id} aria-selected={l.id === selected?.id} className={l.id === selected?.id ? 'm-selected' : 'm-clickable'} onClick={() => onChange({ saeLatent: l.id })}>
                  <td>{l.id}</td>
                  <td className="num" data-value={l.frequency}>
                    {formatValue(l.frequency)}
                  </td>
                  <td className="num" data-value={l.maxActivation}>
                    {formatValue(l.maxActivation)}
                  </td>
                  <td className="small">
                    {l.positive
                      .slice(0, 6)
                      .map((t) => tokenLabel(texts, t.id))
                      .join(', ')}
                  </td>
                  <td>{l.top[0] && <ContextCell samples={samples} texts={texts} sample={l.top[0].sample} position={l.top[0].position} />}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </Section>
        {selected && (
          <Section title={`Latent ${selected.id}: active on ${formatValue(100 * selected.frequency)}% of tokens, at most ${formatValue(selected.maxActivation)}`}>
            <div data-testid="sae-latent-detail" data-latent={selected.id}>
              <h4 className="small">+ decoder direction through the fine-tune's lens</h4>
              <Tokens list={selected.positive} texts={texts} testId="sae-lens-positive" />
              <h4 className="small">− direction</h4>
              <Tokens list={selected.negative} texts={texts} testId="sae-lens-negative" />
              <h4 className="small">Where it is most active</h4>
              <table className="m-table" data-testid="sae-contexts">
                <tbody>
                  {selected.top.map((x) => (
                    <tr key={`${x.sample}:${x.position}`}>
                      <td className="num" data-value={x.activation}>
                        {formatValue(x.activation)}
                      </td>
                      <td>
                        <ContextCell samples={samples} texts={texts} sample={x.sample} position={x.position} />
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          </Section>
        )}
      </div>
    </>
  );
}
