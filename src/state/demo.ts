// The built-in demo pair, served with the app (public/models/demo) and read by HTTP range requests.
import type { FileSet } from '../io/source.ts';
import { urlFileSet } from './remote.ts';
import type { AppStore } from './store.ts';

export const DEMO = {
  base: 'models/demo/base/',
  ft: 'models/demo/ocean/',
  files: ['config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json'],
  description: 'a 3.15M-parameter Llama trained on simple stories (base) and its full fine-tune on stories about the sea (ocean)',
} as const;

/**
 * Loads the demo pair from `root` (the app's base URL). Opens the weights view when the app is on
 * its start screen. Resolves once both models are loaded or have failed; a drop meanwhile wins.
 */
export async function loadDemo(store: AppStore, root: string): Promise<void> {
  let base: FileSet;
  let ft: FileSet;
  try {
    [base, ft] = await Promise.all([urlFileSet(new URL(DEMO.base, root).href, DEMO.files), urlFileSet(new URL(DEMO.ft, root).href, DEMO.files)]);
  } catch (e) {
    store.getState().setDemoError(`the built-in demo could not be fetched: ${e instanceof Error ? e.message : String(e)}`);
    return;
  }
  const s = store.getState();
  if (s.models.base.pending || s.models.ft.pending) return;
  s.setPendingFiles('base', base);
  s.setPendingFiles('ft', ft);
  s.setModelRef('base', { demo: 'base' }, base);
  s.setModelRef('ft', { demo: 'ocean' }, ft);
  s.setDemo(true);
  await Promise.all([s.loadModel('base'), s.loadModel('ft')]);
  const after = store.getState();
  if (after.demo && after.view === 'models' && after.models.base.status.kind === 'loaded' && after.models.ft.status.kind === 'loaded') after.setView('weights');
}

/**
 * Drops the demo (or whatever is loaded) and shows the drop zones. The weights view goes back to
 * the models screen, so the new pair's summaries show once loaded; another view a link asked for
 * stays, and opens once the new pair is loaded.
 */
export function switchToOwnModels(store: AppStore): void {
  const s = store.getState();
  if (s.view === 'weights') s.setView('models');
  for (const role of ['base', 'ft'] as const) {
    s.forgetLinkModel(role);
    s.clearModel(role);
  }
  s.resetWeights();
  s.setDemoError(null);
}
