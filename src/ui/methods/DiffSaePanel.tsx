// diff-SAE: a BatchTopK sparse autoencoder trained on δ = h_ft − h_base; its latents read like the
// crosscoder's (frequency, top contexts, the fine-tune's logit lens of each decoder direction).
import type { MethodSettings } from '../../state/methods.ts';
import { ExportMenu } from '../export/ExportMenu.tsx';
import { formatValue } from '../format.ts';
import { ContextCell, IntField, Section } from './common.tsx';
import { contextLine, tokenJoin, tokenLabel, type Samples, type TokenTexts } from './method-tables.ts';

export function DiffSaeSettings({ settings, layers, onChange }: { settings: MethodSettings; layers: number; onChange(patch: Partial<MethodSettings>): void }) {
  return (
    <div className="m-settings">
      <IntField label="layer" value={settings.saeLayer ?? Math.floor(layers / 2)} min={0} max={Math.max(0, layers - 1)} onChange={(saeLayer) => onChange({ saeLayer })} testId="sae-layer" />
      <IntField label="latents" value={settings.saeDict} min={1} max={1 << 20} onChange={(saeDict) => onChange({ saeDict })} testId="sae-dict" />
      <IntField label="k" value={settings.saeK} min={1} max={4096} onChange={(saeK) => onChange({ saeK })} testId="sae-k" />
      <IntField label="steps" value={settings.saeSteps} min={1} max={10_000_000} onChange={(saeSteps) => onChange({ saeSteps })} testId="sae-steps" />
    </div>
  );
}

/** One latent as the table shows it: what the job reads from the trained SAE's latent report. */
export interface DiffSaeLatent {
  id: number;
  frequency: number;
  maxActivation: number;
  /** The fine-tune's logit lens of the decoder direction. */
  lens: readonly { id: number; prob: number }[];
  /** Places where the latent is most active. */
  top: readonly { sample: number; position: number; activation: number }[];
}

export interface DiffSaeView {
  tokens: number;
  fvu: number;
  latents: readonly DiffSaeLatent[];
}

export function DiffSaeResults({ result, texts, samples }: { result: DiffSaeView; texts: TokenTexts; samples: Samples }) {
  const table = () => ({
    header: ['latent', 'frequency', 'max_activation', 'lens_tokens', 'top_context'],
    rows: result.latents.map((l) => [l.id, l.frequency, l.maxActivation, tokenJoin(texts, l.lens, 10), l.top[0] ? contextLine(samples, texts, l.top[0].sample, l.top[0].position) : null]),
  });
  return (
    <Section title={`Latents over ${result.tokens} tokens (fraction of δ's variance unexplained ${formatValue(result.fvu)})`} actions={<ExportMenu name="diff-sae-latents" table={table} />}>
      <table className="m-table" data-testid="sae-latents">
        <thead>
          <tr>
            <th>latent</th>
            <th>frequency</th>
            <th>max</th>
            <th>fine-tune lens of the direction</th>
            <th>most active at</th>
          </tr>
        </thead>
        <tbody>
          {result.latents.map((l) => (
            <tr key={l.id}>
              <td>{l.id}</td>
              <td className="num" data-value={l.frequency}>{formatValue(l.frequency)}</td>
              <td className="num">{formatValue(l.maxActivation)}</td>
              <td className="small">{l.lens.slice(0, 8).map((t) => tokenLabel(texts, t.id)).join(', ')}</td>
              <td>{l.top[0] && <ContextCell samples={samples} texts={texts} sample={l.top[0].sample} position={l.top[0].position} />}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </Section>
  );
}
