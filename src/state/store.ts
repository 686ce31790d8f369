import { createStore, type StoreApi } from 'zustand/vanilla';
import { useStore } from 'zustand';
import { createGpuSlice, type GpuSlice } from './gpu.ts';
import { createModelsSlice, type ModelsSlice } from './models.ts';
import { createViewSlice, type ViewSlice } from './view.ts';

export type AppState = GpuSlice & ModelsSlice & ViewSlice;
export type AppStore = StoreApi<AppState>;

/** A fresh store; tests make their own, the app uses `appStore`. */
export function createAppStore(): AppStore {
  return createStore<AppState>()((...a) => ({
    ...createGpuSlice(...a),
    ...createModelsSlice(...a),
    ...createViewSlice(...a),
  }));
}

export const appStore = createAppStore();

export function useApp<T>(selector: (state: AppState) => T): T {
  return useStore(appStore, selector);
}
