// The built-in corpora of the demo (public/models/demo/*.txt) are fetched once per view that needs one.

export interface BuiltinCorpus {
  name: string;
  /** Path under the app's base URL. */
  path: string;
}

/** Where a slice keeps its corpus: its status, and what to do when the text arrives or fails. */
export interface CorpusTarget {
  status(): 'none' | 'loading' | 'ready' | 'error';
  loading(name: string): void;
  loaded(name: string, text: string): void;
  failed(name: string, message: string): void;
}

/** Fetches `corpus` from the app's base URL `root` unless the target has a corpus or is loading one. */
export async function loadBuiltinCorpusInto(target: CorpusTarget, corpus: BuiltinCorpus, root: string): Promise<void> {
  const status = target.status();
  if (status === 'ready' || status === 'loading') return;
  target.loading(corpus.name);
  const url = new URL(corpus.path, root).href;
  try {
    const res = await fetch(url);
    if (!res.ok) throw new Error(`HTTP ${res.status} for ${url}`);
    const text = await res.text();
    if (target.status() === 'loading') target.loaded(corpus.name, text);
  } catch (e) {
    if (target.status() === 'loading') target.failed(corpus.name, e instanceof Error ? e.message : String(e));
  }
}
