import { describe, expect, it, vi } from 'vitest';
import type { GpuStatus } from '../gpu/device.ts';

const lostListeners: ((message: string) => void)[] = [];
const status: GpuStatus = { available: false, reason: 'no adapter' };
vi.mock('../gpu/device.ts', () => ({
  gpuStatus: async () => status,
  onDeviceLost: (cb: (message: string) => void) => {
    lostListeners.push(cb);
    return () => lostListeners.splice(lostListeners.indexOf(cb), 1);
  },
}));

const { connectGpu } = await import('./connect-gpu.ts');
const { createAppStore } = await import('./store.ts');

describe('connectGpu', () => {
  it('stores the probed status and device losses, and unsubscribes', async () => {
    const store = createAppStore();
    expect(store.getState().gpu).toBeNull();
    const stop = connectGpu(store);
    await vi.waitFor(() => expect(store.getState().gpu).toEqual(status));
    for (const cb of lostListeners) cb('WebGPU device lost (destroyed): gone');
    expect(store.getState().deviceLost).toBe('WebGPU device lost (destroyed): gone');
    stop();
    expect(lostListeners).toHaveLength(0);
  });
});
