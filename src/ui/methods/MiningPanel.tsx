// Diff mining: the tokens most often in the top-K of logit_ft − logit_base over a corpus, and their NMF topics.
import type { MiningResult } from '../../analysis/logit-diff/mine.ts';
import type { MethodSettings } from '../../state/methods.ts';
import { ExportMenu } from '../export/ExportMenu.tsx';
import { formatValue } from '../format.ts';
import { ContextCell, IntField, Section } from './common.tsx';
import { miningTable, miningTopicsTable, tokenLabel, tokenRaw, type Samples, type TokenTexts } from './method-tables.ts';

export function MiningSettings({ settings, onChange }: { settings: MethodSettings; onChange(patch: Partial<MethodSettings>): void }) {
  return (
    <div className="m-settings">
      <IntField label="top-K per position" value={settings.mineK} min={1} max={1000} onChange={(mineK) => onChange({ mineK })} testId="mine-k" />
      <IntField label="tokens listed" value={settings.mineTop} min={1} max={10_000} onChange={(mineTop) => onChange({ mineTop })} testId="mine-top" />
      <IntField label="topics" value={settings.mineTopics} min={0} max={100} onChange={(mineTopics) => onChange({ mineTopics })} testId="mine-topics" />
    </div>
  );
}

export function MiningResults({ result, texts, samples }: { result: MiningResult; texts: TokenTexts; samples: Samples }) {
  return (
    <>
      <Section title={`Tokens in the top-${result.k} of logit_ft − logit_base at ${result.positions} positions of ${result.samples} samples`} actions={<ExportMenu name="diff-mining-tokens" table={() => miningTable(result, texts)} />}>
        <table className="m-table" data-testid="mine-tokens">
          <thead>
            <tr>
              <th>#</th>
              <th>token</th>
              <th title="positions where the token is in the top-K">count</th>
              <th title="share of all positions">share</th>
              <th title="mean of logit_ft − logit_base where counted">mean diff</th>
              <th>max diff</th>
            </tr>
          </thead>
          <tbody>
            {result.tokens.map((t, i) => (
              <tr key={t.id} data-id={t.id}>
                <td>{i + 1}</td>
                <td className="tok" title={`${JSON.stringify(tokenRaw(texts, t.id))} (#${t.id})`}>
                  {tokenLabel(texts, t.id)}
                </td>
                <td className="num" data-value={t.count}>{t.count}</td>
                <td className="num">{result.positions > 0 ? `${((100 * t.count) / result.positions).toFixed(1)}%` : '–'}</td>
                <td className="num" data-value={t.meanDiff}>{formatValue(t.meanDiff)}</td>
                <td className="num">{formatValue(t.maxDiff)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </Section>
      {result.topics.length > 0 && (
        <Section title={`Topics (NMF, relative error ${formatValue(result.topicError)})`} actions={<ExportMenu name="diff-mining-topics" table={() => miningTopicsTable(result, texts, samples)} />}>
          <ol className="m-topics" data-testid="mine-topics-list">
            {result.topics.map((topic, i) => (
              <li key={i}>
                <p className="m-token-list">
                  {topic.tokens.slice(0, 15).map((t) => (
                    <span key={t.id} className="m-token" title={`weight ${formatValue(t.weight)}`}>
                      {tokenLabel(texts, t.id)}
                    </span>
                  ))}
                </p>
                <ul className="m-contexts">
                  {topic.contexts.slice(0, 5).map((c) => (
                    <li key={`${c.sample}:${c.position}`}>
                      <ContextCell samples={samples} texts={texts} sample={c.sample} position={c.position} />
                    </li>
                  ))}
                </ul>
              </li>
            ))}
          </ol>
        </Section>
      )}
    </>
  );
}
