import { gpuStatus, onDeviceLost } from '../gpu/device.ts';
import type { AppStore } from './store.ts';

/** Probes the adapter once and reports device losses into the store. Returns the unsubscribe function. */
export function connectGpu(store: AppStore): () => void {
  const stop = onDeviceLost((message) => store.getState().setDeviceLost(message));
  void gpuStatus().then((status) => store.getState().setGpuStatus(status));
  return stop;
}
