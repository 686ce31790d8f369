import type { StateCreator } from 'zustand/vanilla';
import type { View } from './views.ts';

export interface ViewSlice {
  view: View;
  /** The prompt the activation views run on. */
  prompt: string;
  /** The layer a view focuses on; null means the view's own default (ADL: half the depth). */
  layer: number | null;
  /** Why the permalink in the address could not be opened, shown until dismissed. */
  linkError: string | null;
  setView(view: View): void;
  setPrompt(prompt: string): void;
  setLayer(layer: number | null): void;
  setLinkError(message: string | null): void;
}

export const createViewSlice: StateCreator<ViewSlice, [], [], ViewSlice> = (set) => ({
  view: 'models',
  prompt: '',
  layer: null,
  linkError: null,
  setView: (view) => set({ view }),
  setPrompt: (prompt) => set({ prompt }),
  setLayer: (layer) => set({ layer }),
  setLinkError: (linkError) => set({ linkError }),
});
