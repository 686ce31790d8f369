// A number input for a run's settings: typed text is kept until it is committed (Enter or leaving the
// field), shown as invalid while it is not a number in [min, max] (an integer where asked), and only a
// valid, changed value is committed.
import { useState } from 'react';

export interface FieldSpec<K extends string = string> {
  key: K;
  label: string;
  min: number;
  max: number;
  integer: boolean;
  hint?: string;
}

export function NumberField<K extends string>({ spec, value, disabled, testIdPrefix, onCommit }: { spec: FieldSpec<K>; value: number; disabled: boolean; testIdPrefix: string; onCommit(v: number): void }) {
  const [text, setText] = useState<string | null>(null);
  const shown = text ?? String(value);
  const parsed = Number(shown);
  const valid = shown.trim() !== '' && Number.isFinite(parsed) && parsed >= spec.min && parsed <= spec.max && (!spec.integer || Number.isInteger(parsed));
  const commit = () => {
    if (valid && parsed !== value) onCommit(parsed);
    setText(null);
  };
  return (
    <label className="cc-field" title={spec.hint}>
      <span>{spec.label}</span>
      <input
        type="text"
        inputMode="decimal"
        value={shown}
        disabled={disabled}
        aria-invalid={!valid}
        className={valid ? '' : 'invalid'}
        data-testid={`${testIdPrefix}-${spec.key}`}
        onChange={(e) => setText(e.currentTarget.value)}
        onBlur={commit}
        onKeyDown={(e) => {
          if (e.key === 'Enter') commit();
        }}
      />
    </label>
  );
}
