import type { StateCreator } from 'zustand/vanilla';
import type { View } from './views.ts';
import type { AppState } from './store.ts';

/** The view state that names parts of one pair (a tensor, layers, positions, a latent), at its defaults. */
export const PAIR_VIEW_DEFAULTS = { tensor: null, layer: null, position: null, adlLayer: null, adlPosition: null, ccLayer: null, latent: null } as const satisfies Partial<AppState>;

export interface ViewSlice {
  view: View;
  /** The prompt the activation views run on. */
  prompt: string;
  /** The layer of the lens's selected cell; null: none selected. */
  layer: number | null;
  /**
   * The ADL's and the crosscoders' layers; null means the view's own default (half the depth).
   * Each view keeps its own: a click in one never moves another (the lens carries its layer to the
   * ADL only on request, with `openAdlAtLayer`).
   */
  adlLayer: number | null;
  ccLayer: number | null;
  /** The ADL's selected position (its δ_p shown in detail and steered with); null: position 0. */
  adlPosition: number | null;
  /** Why the permalink in the address could not be opened, shown until dismissed. */
  linkError: string | null;
  setView(view: View): void;
  setPrompt(prompt: string): void;
  setLayer(layer: number | null): void;
  setAdlLayer(layer: number | null): void;
  setCcLayer(layer: number | null): void;
  setAdlPosition(position: number | null): void;
  /** Opens the ADL at `layer` (the lens's "use this layer in ADL"). */
  openAdlAtLayer(layer: number): void;
  setLinkError(message: string | null): void;
}

export const createViewSlice: StateCreator<ViewSlice, [], [], ViewSlice> = (set) => ({
  view: 'models',
  prompt: '',
  layer: null,
  adlLayer: null,
  ccLayer: null,
  adlPosition: null,
  linkError: null,
  setView: (view) => set({ view }),
  setPrompt: (prompt) => set({ prompt }),
  setLayer: (layer) => set({ layer }),
  setAdlLayer: (adlLayer) => set({ adlLayer }),
  setCcLayer: (ccLayer) => set({ ccLayer }),
  setAdlPosition: (adlPosition) => set({ adlPosition }),
  openAdlAtLayer: (adlLayer) => set({ adlLayer, view: 'adl' }),
  setLinkError: (linkError) => set({ linkError }),
});

/** The layer a view works at as stored (null: its default), for the views that have one. */
export function storedLayerOf(s: ViewSlice, view: View): number | null {
  return view === 'lens' ? s.layer : view === 'adl' ? s.adlLayer : view === 'crosscoders' ? s.ccLayer : null;
}
