import { describe, expect, it } from 'vitest';
import { useDawn } from './dawn-node.ts';
import { getGpu } from './device.ts';
import { BufferPool, sizeClass } from './pool.ts';

describe('sizeClass', () => {
  it('rounds up to powers of two below 4 KiB and wastes at most 12.5% above', () => {
    expect(sizeClass(1)).toBe(16);
    expect(sizeClass(100)).toBe(128);
    expect(sizeClass(4096)).toBe(4096);
    for (const bytes of [4097, 5000, 65_537, 1_000_000, 123_456_789]) {
      const c = sizeClass(bytes);
      expect(c).toBeGreaterThanOrEqual(bytes);
      expect((c - bytes) / bytes).toBeLessThanOrEqual(0.125);
      expect(c % 16).toBe(0);
    }
  });
});

describe('BufferPool', () => {
  it('reuses released buffers of the same class and usage and counts bytes', async () => {
    expect(useDawn()).toBe(true);
    const ctx = await getGpu();
    const pool = new BufferPool(ctx.device);
    const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST;
    const a = pool.acquire(1000, usage);
    expect(a.size).toBe(1024);
    const b = pool.acquire(600, usage);
    expect(pool.stats()).toMatchObject({ allocatedBytes: 2048, inUseBytes: 2048, buffers: 2 });
    pool.release(a);
    expect(pool.stats()).toMatchObject({ inUseBytes: 1024, freeBytes: 1024, peakInUseBytes: 2048 });
    expect(pool.acquire(900, usage)).toBe(a);
    expect(pool.acquire(900, usage | GPUBufferUsage.COPY_SRC)).not.toBe(a);
    pool.release(b);
    expect(() => pool.release(b)).toThrow(/not in use/);
    pool.trim();
    expect(pool.stats()).toMatchObject({ freeBytes: 0, allocatedBytes: 2048, inUseBytes: 2048, peakAllocatedBytes: 3072, buffers: 2 });
  });

  it('refuses buffers beyond the device limits with a clear error', async () => {
    expect(useDawn()).toBe(true);
    const ctx = await getGpu();
    const pool = new BufferPool(ctx.device);
    expect(() => pool.acquire(ctx.device.limits.maxBufferSize + 16, GPUBufferUsage.STORAGE)).toThrow(/exceeds this device's limit/);
  });
});
