import { createStore, type StoreApi } from 'zustand/vanilla';
import { useStore } from 'zustand';
import { activationsPairIsCurrent, createActivationsSlice, type ActivationsSlice } from './activations.ts';
import { createCrosscoderSlice, crosscoderPairIsCurrent, type CrosscoderSlice } from './crosscoder.ts';
import { createGpuSlice, type GpuSlice } from './gpu.ts';
import { createModelsSlice, type ModelsSlice } from './models.ts';
import { createSessionSlice, keepModelRefsCurrent, type SessionSlice } from './session.ts';
import { createViewSlice, type ViewSlice } from './view.ts';
import { createWeightsSlice, runIsCurrent, type WeightsSlice } from './weights.ts';

export type AppState = GpuSlice & ModelsSlice & ViewSlice & WeightsSlice & ActivationsSlice & SessionSlice & CrosscoderSlice;
export type AppStore = StoreApi<AppState>;

/** A fresh store; tests make their own, the app uses `appStore`. */
export function createAppStore(): AppStore {
  const store = createStore<AppState>()((...a) => ({
    ...createGpuSlice(...a),
    ...createModelsSlice(...a),
    ...createViewSlice(...a),
    ...createWeightsSlice(...a),
    ...createActivationsSlice(...a),
    ...createSessionSlice(...a),
    ...createCrosscoderSlice(...a),
  }));
  keepModelRefsCurrent(store);
  // A weight diff for files that are no longer loaded is stopped and forgotten.
  store.subscribe((s) => {
    if (s.weightsPair !== null && !runIsCurrent(s)) s.resetWeights();
    // Likewise the activation runs, and the models loaded for them.
    if (s.activationsPair !== null && !activationsPairIsCurrent(s)) s.resetActivations();
    if (s.ccPair !== null && !crosscoderPairIsCurrent(s)) s.resetCrosscoder();
  });
  return store;
}

export const appStore = createAppStore();

export function useApp<T>(selector: (state: AppState) => T): T {
  return useStore(appStore, selector);
}
