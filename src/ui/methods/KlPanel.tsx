// Corpus KL: KL(P_ft ‖ P_base) at every token of a corpus — its distribution, its mean per position, and the places where it is largest.
import { useMemo } from 'react';
import type { CorpusKlResult } from '../../analysis/logit-diff/kl.ts';
import type { MethodSettings } from '../../state/methods.ts';
import { ExportMenu } from '../export/ExportMenu.tsx';
import { formatValue } from '../format.ts';
import { LineChart, LogHistogram } from './charts.tsx';
import { ContextCell, IntField, Section } from './common.tsx';
import { klContextsTable, klPerPosition, klPositionTable, tokenLabel, type Samples, type TokenTexts } from './method-tables.ts';

export function KlSettings({ settings, onChange }: { settings: MethodSettings; onChange(patch: Partial<MethodSettings>): void }) {
  return (
    <div className="m-settings">
      <IntField label="contexts listed" value={settings.klTop} min={1} max={10_000} onChange={(klTop) => onChange({ klTop })} testId="kl-top" />
    </div>
  );
}

const svgIn = (testId: string) => (menu: HTMLElement) => menu.closest('section')?.querySelector<SVGSVGElement>(`svg[data-testid="${testId}"]`);

export function KlResults({ result, texts, samples }: { result: CorpusKlResult; texts: TokenTexts; samples: Samples }) {
  const points = useMemo(() => klPerPosition(result).map((p) => ({ x: p.position, y: p.kl })), [result]);
  const probs = (list: readonly { id: number; prob: number }[]) => list.map((t) => `${tokenLabel(texts, t.id)} ${(100 * t.prob).toFixed(0)}%`).join(', ');
  return (
    <>
      <p data-testid="kl-summary" data-mean={result.meanKl} data-max={result.maxKl}>
        KL(P_ft ‖ P_base) over {result.tokens} tokens: mean <strong>{formatValue(result.meanKl)}</strong> nats, largest {formatValue(result.maxKl)}.
      </p>
      <div className="m-row">
        <Section title="Distribution" actions={<ExportMenu name="corpus-kl-histogram" svg={svgIn('kl-histogram')} table={() => ({ header: ['from', 'to', 'count'], rows: result.histogram.counts.map((c, i) => [result.histogram.edges[i]!, result.histogram.edges[i + 1]!, c]) })} />}>
          <LogHistogram edges={result.histogram.edges} counts={result.histogram.counts} xLabel="KL (nats, log scale)" yLabel="tokens" testId="kl-histogram" />
        </Section>
        <Section title="Mean per position" actions={<ExportMenu name="corpus-kl-per-position" svg={svgIn('kl-per-position')} table={() => klPositionTable(result)} />}>
          <LineChart points={points} xLabel="position in the sample" yLabel="mean KL (nats)" testId="kl-per-position" />
        </Section>
      </div>
      <Section title="Where the fine-tune's next-token distribution differs most" actions={<ExportMenu name="corpus-kl-contexts" table={() => klContextsTable(result, texts, samples)} />}>
        <table className="m-table" data-testid="kl-contexts">
          <thead>
            <tr>
              <th>KL</th>
              <th>context (next token predicted after the marked one)</th>
              <th>base predicts</th>
              <th>fine-tune predicts</th>
            </tr>
          </thead>
          <tbody>
            {result.topContexts.map((c) => (
              <tr key={`${c.sample}:${c.position}`}>
                <td className="num" data-value={c.kl}>{formatValue(c.kl)}</td>
                <td>
                  <ContextCell samples={samples} texts={texts} sample={c.sample} position={c.position} />
                </td>
                <td className="small">{probs(c.baseTop)}</td>
                <td className="small">{probs(c.ftTop)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </Section>
    </>
  );
}
