// PCA of δ = h_ft − h_base at a layer: each component's share of the variance, its tokens through the
// fine-tune's logit lens in both directions, and the places that project most on it.
import { useMemo, useState } from 'react';
import { PCA_HOOKS, type MethodSettings } from '../../state/methods.ts';
import { ExportMenu } from '../export/ExportMenu.tsx';
import { formatValue } from '../format.ts';
import { VarianceBars } from './charts.tsx';
import { ContextCell, IntField, Section } from './common.tsx';
import { pcaTable, tokenLabel, varianceShares, type PcaView, type Samples, type TokenTexts } from './method-tables.ts';

export function PcaSettings({ settings, layers, onChange }: { settings: MethodSettings; layers: number; onChange(patch: Partial<MethodSettings>): void }) {
  return (
    <div className="m-settings">
      <IntField label="layer" value={settings.pcaLayer ?? Math.floor(layers / 2)} min={0} max={Math.max(0, layers - 1)} onChange={(pcaLayer) => onChange({ pcaLayer })} testId="pca-layer" />
      <label className="small">
        hook{' '}
        <select value={settings.pcaHook} onChange={(e) => onChange({ pcaHook: e.currentTarget.value as MethodSettings['pcaHook'] })} data-testid="pca-hook">
          {PCA_HOOKS.map((h) => (
            <option key={h}>{h}</option>
          ))}
        </select>
      </label>
      <IntField label="components" value={settings.pcaComponents} min={1} max={256} onChange={(pcaComponents) => onChange({ pcaComponents })} testId="pca-components" />
    </div>
  );
}

function Tokens({ list, texts }: { list: readonly { id: number; prob: number }[]; texts: TokenTexts }) {
  return (
    <p className="m-token-list">
      {list.slice(0, 15).map((t) => (
        <span key={t.id} className="m-token" title={`${(100 * t.prob).toFixed(1)}%`}>
          {tokenLabel(texts, t.id)}
        </span>
      ))}
    </p>
  );
}

export function PcaResults({ result, texts, samples }: { result: PcaView; texts: TokenTexts; samples: Samples }) {
  const [selected, setSelected] = useState(0);
  const shares = useMemo(() => varianceShares(result), [result]);
  const c = result.components[Math.min(selected, result.components.length - 1)];
  return (
    <>
      <p data-testid="pca-summary" data-total={result.totalVariance}>
        δ at {result.hook} over {result.tokens} tokens: total variance {formatValue(result.totalVariance)}, ‖mean δ‖ {formatValue(result.meanNorm)}.
      </p>
      <div className="m-row">
        <Section title="Share of the variance" actions={<ExportMenu name="pca-components" svg={(menu) => menu.closest('section')?.querySelector<SVGSVGElement>('svg[data-testid="pca-variance"]')} table={() => pcaTable(result, texts, samples)} />}>
          <VarianceBars shares={shares} selected={selected} onSelect={setSelected} testId="pca-variance" />
        </Section>
        {c && (
          <Section title={`Component ${selected}: ${(100 * c.varianceRatio).toFixed(1)}% of the variance`}>
            <h4 className="small">+ direction through the fine-tune's lens</h4>
            <Tokens list={c.positiveTokens} texts={texts} />
            <h4 className="small">− direction</h4>
            <Tokens list={c.negativeTokens} texts={texts} />
          </Section>
        )}
      </div>
      {c && (
        <Section title={`Places that project most on component ${selected}`}>
          <table className="m-table" data-testid="pca-contexts">
            <tbody>
              {[...c.topContexts, ...c.bottomContexts].map((x) => (
                <tr key={`${x.sample}:${x.position}:${x.projection}`}>
                  <td className="num">{formatValue(x.projection)}</td>
                  <td>
                    <ContextCell samples={samples} texts={texts} sample={x.sample} position={x.position} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </Section>
      )}
    </>
  );
}
