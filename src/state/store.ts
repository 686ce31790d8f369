import { createStore, type StoreApi } from 'zustand/vanilla';
import { useStore } from 'zustand';
import { activationsPairIsCurrent, createActivationsSlice, type ActivationsSlice } from './activations.ts';
import { createCrosscoderSlice, crosscoderPairIsCurrent, type CrosscoderSlice } from './crosscoder.ts';
import { createGpuSlice, type GpuSlice } from './gpu.ts';
import { createMethodsSlice, type MethodsSlice } from './methods.ts';
import { createModelsSlice, pairReady, type ModelsSlice } from './models.ts';
import { createOrganismsSlice, type OrganismsSlice } from './organisms.ts';
import { createSessionSlice, keepModelRefsCurrent, ROLES, wantedRef, type SessionSlice } from './session.ts';
import { createViewSlice, PAIR_VIEW_DEFAULTS, type ViewSlice } from './view.ts';
import { createWeightsSlice, runIsCurrent, type WeightsSlice } from './weights.ts';

export type AppState = GpuSlice & ModelsSlice & ViewSlice & WeightsSlice & ActivationsSlice & SessionSlice & CrosscoderSlice & MethodsSlice & OrganismsSlice;
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
    ...createMethodsSlice(...a),
    ...createOrganismsSlice(...a),
  }));
  keepModelRefsCurrent(store);
  forgetPairViewOnModelChange(store);
  // A weight diff for files that are no longer loaded is stopped and forgotten.
  store.subscribe((s) => {
    if (s.weightsPair !== null && !runIsCurrent(s)) s.resetWeights();
    // Likewise the activation runs, and the models loaded for them.
    if (s.activationsPair !== null && !activationsPairIsCurrent(s)) s.resetActivations();
    if (s.ccPair !== null && !crosscoderPairIsCurrent(s)) s.resetCrosscoder();
  });
  return store;
}

/**
 * When a loaded pair is replaced by files no link asked for, its view state goes with it: the new
 * pair opens at its defaults, not at the old pair's tensor or layer. Files a link names keep the
 * link's state (it was made for them).
 */
function forgetPairViewOnModelChange(store: AppStore): void {
  store.subscribe((s, prev) => {
    if (!pairReady(prev.models)) return;
    const replaced = ROLES.filter((role) => s.models[role].pending !== prev.models[role].pending);
    if (replaced.length === 0 || replaced.some((role) => wantedRef(s, role) !== null)) return;
    store.setState(PAIR_VIEW_DEFAULTS);
  });
}

export const appStore = createAppStore();

export function useApp<T>(selector: (state: AppState) => T): T {
  return useStore(appStore, selector);
}
