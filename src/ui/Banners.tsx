import type { ReactNode } from 'react';
import { viewNeedsModels, type View } from '../state/views.ts';
import { VIEW_LABELS } from './labels.ts';

export function Banner({ kind, testId, children, onDismiss }: { kind: 'error' | 'warn' | 'info'; testId: string; children: ReactNode; onDismiss?: () => void }) {
  return (
    <div className={`banner banner-${kind}`} role={kind === 'info' ? 'status' : 'alert'} data-testid={testId}>
      <div className="banner-text">{children}</div>
      {onDismiss && (
        <button type="button" className="banner-close" onClick={onDismiss} aria-label="Dismiss">
          ×
        </button>
      )}
    </div>
  );
}

export function LinkErrorBanner({ message, onDismiss }: { message: string; onDismiss: () => void }) {
  return (
    <Banner kind="warn" testId="link-error" onDismiss={onDismiss}>
      This link could not be opened in full: {message}.
    </Banner>
  );
}

/** What a permalink asks for, shown until the models it needs are loaded. Everything is rendered as text. */
export function LinkNotice({ view, prompt, layer }: { view: View; prompt: string; layer: number | null }) {
  if (!viewNeedsModels(view)) return null;
  return (
    <Banner kind="info" testId="link-notice">
      <strong>{VIEW_LABELS[view]}</strong>
      {layer !== null && <> at layer {layer}</>}
      {prompt !== '' && (
        <>
          {' '}with the prompt <q data-testid="link-prompt">{prompt}</q>
        </>
      )}{' '}
      opens once the base and fine-tuned models are loaded.
    </Banner>
  );
}
