import { describe, expect, it } from 'vitest';
import { createWebGpuBackend } from './webgpu-backend.ts';
import { useDawn } from '../gpu/dawn-node.ts';
import { getGpu, type GpuContext } from '../gpu/device.ts';
import { KernelTimer } from '../gpu/kernel-timer.ts';

describe('KernelTimer', () => {
  it('times every dispatch by kernel name while set, and the results do not change', async () => {
    expect(useDawn()).toBe(true);
    const ctx = await getGpu();
    if (!ctx.device.features.has('timestamp-query')) {
      expect(() => new KernelTimer(ctx)).toThrow(/timestamp-query/);
      return;
    }
    const backend = await createWebGpuBackend();
    const x = backend.fromArray(Float32Array.from({ length: 64 * 48 }, (_, i) => Math.sin(i)), [64, 48]);
    const w = backend.fromArray(Float32Array.from({ length: 48 * 32 }, (_, i) => Math.cos(i)), [48, 32]);
    const untimed = await backend.read(backend.softmax(backend.matmul(x, w)));
    const timer = new KernelTimer(ctx);
    ctx.kernelTimer = timer;
    const outputs = [];
    try {
      for (let i = 0; i < 3; i++) outputs.push(backend.softmax(backend.matmul(x, w)));
      outputs.push(backend.matmul(x, w));
      await backend.sync();
    } finally {
      ctx.kernelTimer = undefined;
    }
    const totals = await timer.collect();
    expect(totals.get('matmul')?.count).toBe(4);
    expect(totals.get('softmax')?.count).toBe(3);
    expect([...totals.keys()].sort()).toEqual(['matmul', 'softmax']);
    for (const t of totals.values()) {
      expect(t.ns).toBeGreaterThan(0);
      // A 64×48·48×32 product or a softmax over 64 rows: far below a second even on a software adapter.
      expect(t.ns / t.count).toBeLessThan(1e9);
    }
    expect(timer.untimed).toBe(0);
    expect(Array.from(await backend.read(outputs[0]!))).toEqual(Array.from(untimed));
    // Dispatches after the timer is cleared are not counted.
    backend.softmax(x);
    await backend.sync();
    expect((await timer.collect()).get('softmax')?.count).toBe(3);
    timer.destroy();
  });

  it('refuses a device without timestamp queries with a clear error', () => {
    const ctx = { device: { features: new Set<string>() } } as unknown as GpuContext;
    expect(() => new KernelTimer(ctx)).toThrow(/no timestamp-query feature/);
  });
});
