// Amplification: generations from z_ft + α·(z_ft − z_base) (logits) or from W_base + α·ΔW (weights), per α.
import { useState } from 'react';
import type { AmplifiedSample } from '../../analysis/amplify/amplify.ts';
import { AMPLIFY_MODES, parseAlphas, type MethodSettings } from '../../state/methods.ts';
import { ExportMenu } from '../export/ExportMenu.tsx';
import { IntField, Section } from './common.tsx';
import { amplifyTable, formatAlpha, samplesByAlpha } from './method-tables.ts';

export function AmplifySettings({ settings, onChange }: { settings: MethodSettings; onChange(patch: Partial<MethodSettings>): void }) {
  const [alphaText, setAlphaText] = useState(settings.alphas.map(formatAlpha).join(', '));
  const [alphaError, setAlphaError] = useState<string | null>(null);
  return (
    <div className="m-settings">
      <label className="small">
        mode{' '}
        <select value={settings.ampMode} onChange={(e) => onChange({ ampMode: e.currentTarget.value as MethodSettings['ampMode'] })} data-testid="amplify-mode">
          {AMPLIFY_MODES.map((m) => (
            <option key={m}>{m}</option>
          ))}
        </select>
      </label>
      <label className="small" title="α = 0 is the fine-tune itself; α > 0 exaggerates what fine-tuning added">
        α{' '}
        <input
          value={alphaText}
          data-testid="amplify-alphas"
          onChange={(e) => {
            const text = e.currentTarget.value;
            setAlphaText(text);
            const parsed = parseAlphas(text.replace(/−/g, '-'));
            setAlphaError(parsed.ok ? null : parsed.message);
            if (parsed.ok) onChange({ alphas: parsed.alphas });
          }}
        />
      </label>
      {alphaError && <span className="error small">{alphaError}</span>}
      <IntField label="new tokens" value={settings.generate} min={1} max={4096} onChange={(generate) => onChange({ generate })} testId="amplify-generate" />
      <IntField label="samples per α" value={settings.ampSamples} min={1} max={64} onChange={(ampSamples) => onChange({ ampSamples })} testId="amplify-samples" />
      <IntField label="seed" value={settings.seed} min={0} max={2 ** 31 - 1} onChange={(seed) => onChange({ seed })} testId="amplify-seed" />
      <label className="small">
        temperature{' '}
        <input
          type="number"
          min={0}
          step={0.1}
          value={settings.temperature}
          data-testid="amplify-temperature"
          onChange={(e) => {
            const v = e.currentTarget.valueAsNumber;
            if (Number.isFinite(v) && v >= 0 && v <= 100) onChange({ temperature: v });
          }}
        />
      </label>
    </div>
  );
}

export function AmplifyResults({ samples, prompt }: { samples: readonly (AmplifiedSample & { text: string })[]; prompt: string }) {
  return (
    <Section title="Samples per α" actions={<ExportMenu name="amplification" table={() => amplifyTable(samples)} />}>
      <div data-testid="amplify-samples-list">
        {samplesByAlpha(samples).map((g) => (
          <div key={g.alpha} className="m-alpha" data-alpha={g.alpha}>
            <h4>
              α = {formatAlpha(g.alpha)} {g.alpha === 0 ? '(the fine-tune)' : ''}
            </h4>
            {g.samples.map((s) => (
              <p key={s.seed} className="m-sample" title={`${s.mode}, seed ${s.seed}`}>
                <span className="muted">{prompt}</span>
                {s.text}
              </p>
            ))}
          </div>
        ))}
      </div>
    </Section>
  );
}
