import { useEffect, useRef, useState } from 'react';

/**
 * Copies the page's permalink. Where the clipboard is refused, the link is shown selected in a
 * text field instead, to copy by hand.
 */
export function CopyLinkButton() {
  const [state, setState] = useState<'idle' | 'copied' | 'manual'>('idle');
  const field = useRef<HTMLInputElement>(null);
  useEffect(() => {
    if (state === 'manual') field.current?.select();
    if (state !== 'copied') return;
    const timer = setTimeout(() => setState('idle'), 2000);
    return () => clearTimeout(timer);
  }, [state]);
  const copy = () => {
    const clipboard = navigator.clipboard as Clipboard | undefined;
    if (!clipboard) {
      setState('manual');
      return;
    }
    clipboard.writeText(window.location.href).then(
      () => setState('copied'),
      () => setState('manual'),
    );
  };
  return (
    <span className="copy-link">
      <button type="button" onClick={copy} data-testid="copy-link" title="A link to this view and its settings; models are named by URL or by a fingerprint of their files, never sent">
        {state === 'copied' ? 'Link copied' : 'Copy link'}
      </button>
      {state === 'manual' && <input ref={field} readOnly value={window.location.href} aria-label="Link to this view" data-testid="copy-link-field" onBlur={() => setState('idle')} />}
    </span>
  );
}
