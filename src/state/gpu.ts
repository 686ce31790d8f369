import type { StateCreator } from 'zustand/vanilla';
import type { GpuStatus } from '../gpu/device.ts';

export interface GpuSlice {
  /** null while the adapter is being probed. */
  gpu: GpuStatus | null;
  /** The message of the last device loss, shown as a banner. */
  deviceLost: string | null;
  setGpuStatus(status: GpuStatus): void;
  setDeviceLost(message: string | null): void;
}

export const createGpuSlice: StateCreator<GpuSlice, [], [], GpuSlice> = (set) => ({
  gpu: null,
  deviceLost: null,
  setGpuStatus: (gpu) => set({ gpu }),
  setDeviceLost: (deviceLost) => set({ deviceLost }),
});
