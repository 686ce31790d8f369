// Attention-pattern diffing: JS divergence between the two models' attention per layer and head, head
// patching's recovery, and a clicked head's two patterns side by side.
import { useMemo } from 'react';
import type { HeadDiff, HeadPatching, LayerPatterns } from '../../analysis/attention/attention.ts';
import { mergeByteRuns, tokenDisplay } from '../../io/token-text.ts';
import type { MethodSettings } from '../../state/methods.ts';
import { ExportMenu } from '../export/ExportMenu.tsx';
import { formatValue } from '../format.ts';
import { Legend } from '../activations/common.tsx';
import { headColor, HeadHeatmap, PatternMatrix } from './charts.tsx';
import { Section } from './common.tsx';
import { attentionTable, headGrid, rankHeads, type TokenTexts } from './method-tables.ts';

export function AttentionSettings({ settings, onChange }: { settings: MethodSettings; onChange(patch: Partial<MethodSettings>): void }) {
  return (
    <div className="m-settings">
      <label className="small" title="JS averaged over the corpus samples instead of the prompt (the patterns and the patching stay on the prompt)">
        <input type="checkbox" checked={settings.attnCorpus} onChange={(e) => onChange({ attnCorpus: e.currentTarget.checked })} data-testid="attention-corpus" /> over the corpus
      </label>
    </div>
  );
}

export interface AttentionView {
  ids: readonly number[];
  heads: readonly HeadDiff[];
  /** Both models' patterns on the prompt (absent when only the corpus average was computed). */
  base: readonly LayerPatterns[] | null;
  ft: readonly LayerPatterns[] | null;
  patching: HeadPatching | null;
}

/** The section's heatmap and its legend, exported as one figure. */
const sectionFigure = (menu: HTMLElement) => Array.from(menu.closest('section')?.querySelectorAll<SVGSVGElement>('svg.m-chart, svg.legend') ?? []);

export function AttentionResults({ result, texts, selected, onSelect }: { result: AttentionView; texts: TokenTexts; selected: { layer: number; head: number } | null; onSelect(head: { layer: number; head: number }): void }) {
  const js = useMemo(() => headGrid(result.heads, (h) => h.js), [result.heads]);
  const recovery = useMemo(() => (result.patching ? headGrid(result.patching.heads, (h) => h.recovery) : null), [result.patching]);
  const labels = useMemo(() => mergeByteRuns(result.ids.map((id) => texts[id] ?? `#${id}`)).map(tokenDisplay), [result.ids, texts]);
  const head = selected ?? rankHeads(result.heads, 1)[0] ?? null;
  const pb = head && result.base?.[head.layer];
  const pf = head && result.ft?.[head.layer];
  const select = (layer: number, h: number) => onSelect({ layer, head: h });
  return (
    <>
      <div className="m-row">
        <Section title="JS(P_base ‖ P_ft) per layer and head (nats)" actions={<ExportMenu name="attention-heads" svg={sectionFigure} table={() => attentionTable(result.heads, result.patching?.heads ?? [])} />}>
          <HeadHeatmap grid={js} label="JS" selected={head} onSelect={select} testId="attention-js" />
          <Legend color={headColor(js.max)} domain={[0, js.max > 0 ? js.max : 1]} title="JS (nats)" width={180} />
        </Section>
        {recovery && result.patching && (
          <Section title={`Head patching ft → base: recovery of KL ${formatValue(result.patching.klFtBase)}`} actions={<ExportMenu name="attention-patching" svg={sectionFigure} />}>
            <HeadHeatmap grid={recovery} label="recovery" selected={head} onSelect={select} testId="attention-recovery" />
            <Legend color={headColor(recovery.max)} domain={[0, recovery.max > 0 ? recovery.max : 1]} title="|recovery| (the tooltip gives the sign)" width={180} />
          </Section>
        )}
      </div>
      {head && pb && pf && (
        <Section title={`Layer ${head.layer}, head ${head.head}`} actions={<ExportMenu name={`attention-L${head.layer}H${head.head}`} svg={(menu) => Array.from(menu.closest('section')?.querySelectorAll<SVGSVGElement>('svg.m-chart') ?? [])} />}>
          <div className="m-row" data-testid="attention-patterns">
            <PatternMatrix probs={pb.probs} positions={pb.positions} offset={head.head * pb.positions * pb.positions} title="base" labels={labels} testId="attention-pattern-base" />
            <PatternMatrix probs={pf.probs} positions={pf.positions} offset={head.head * pf.positions * pf.positions} title="fine-tune" labels={labels} testId="attention-pattern-ft" />
          </div>
        </Section>
      )}
    </>
  );
}
