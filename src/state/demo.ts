// The built-in demo pair, served with the app (public/models/demo) and read by HTTP range requests.
import type { FileSet } from '../io/source.ts';
import { urlFileSet } from './remote.ts';
import type { AppStore } from './store.ts';
import { PAIR_VIEW_DEFAULTS } from './view.ts';

export const DEMO = {
  base: 'models/demo/base/',
  ft: 'models/demo/ocean/',
  files: ['config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json'],
  description: 'a 3.15M-parameter Llama trained on simple stories (base) and its full fine-tune on stories about the sea (ocean)',
} as const;

/** Each store's count of demo loads and switches away from the demo: a load that is no longer the latest stops. */
const demoTurns = new WeakMap<AppStore, number>();
const nextDemoTurn = (store: AppStore): number => {
  const turn = (demoTurns.get(store) ?? 0) + 1;
  demoTurns.set(store, turn);
  return turn;
};

/**
 * Loads the demo pair from `root` (the app's base URL). Opens the weights view when the app is on
 * its start screen. Resolves once both models are loaded or have failed; a drop, or a switch to
 * own models, meanwhile wins.
 */
export async function loadDemo(store: AppStore, root: string): Promise<void> {
  const turn = nextDemoTurn(store);
  let base: FileSet;
  let ft: FileSet;
  try {
    [base, ft] = await Promise.all([urlFileSet(new URL(DEMO.base, root).href, DEMO.files), urlFileSet(new URL(DEMO.ft, root).href, DEMO.files)]);
  } catch (e) {
    if (demoTurns.get(store) === turn) store.getState().setDemoError(`the built-in demo could not be fetched: ${e instanceof Error ? e.message : String(e)}`);
    return;
  }
  const s = store.getState();
  if (demoTurns.get(store) !== turn || s.models.base.pending || s.models.ft.pending) return;
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
 * stays, with its prompt, and opens once the new pair is loaded. The tensor, layers, positions and
 * latent named the old pair's parts, so they go back to their defaults, whether or not the old pair
 * had finished loading.
 */
export function switchToOwnModels(store: AppStore): void {
  nextDemoTurn(store);
  const s = store.getState();
  if (s.view === 'weights') s.setView('models');
  for (const role of ['base', 'ft'] as const) {
    s.forgetLinkModel(role);
    s.clearModel(role);
  }
  s.resetWeights();
  s.setDemoError(null);
  store.setState(PAIR_VIEW_DEFAULTS);
}
