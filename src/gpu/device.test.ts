import { describe, expect, it } from 'vitest';
import { useDawn } from './dawn-node.ts';
import { DeviceLostError, getGpu, gpuStatus, onDeviceLost, setGpuProvider } from './device.ts';
import { readFloat32 } from './readback.ts';

async function roundTrip(data: Float32Array): Promise<Float32Array> {
  const ctx = await getGpu();
  const buffer = ctx.pool.acquire(data.byteLength, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST);
  ctx.device.queue.writeBuffer(buffer, 0, data);
  const out = await readFloat32(ctx, buffer, data.length);
  ctx.pool.release(buffer);
  return out;
}

// The vitest project per Vulkan driver (vitest.config.ts) names the adapter and the features it must offer.
const expectedAdapter = process.env.NEURODIFF_EXPECT_ADAPTER;
const expectedFeatures = (process.env.NEURODIFF_EXPECT_FEATURES ?? '').split(',').filter(Boolean);

describe('gpu device', () => {
  it('reports no GPU clearly when there is no provider', async () => {
    setGpuProvider(() => undefined);
    const status = await gpuStatus();
    expect(status.available).toBe(false);
    if (!status.available) expect(status.reason).toMatch(/WebGPU is not available/);
  });

  it('creates a device with the adapter limits and reads buffers back', async () => {
    expect(useDawn()).toBe(true);
    const status = await gpuStatus();
    if (!status.available) throw new Error(status.reason);
    // Above the WebGPU defaults (128 MiB binding, 256 MiB buffer): the adapter's own limits were requested.
    expect(status.limits.maxStorageBufferBindingSize).toBeGreaterThanOrEqual(128 * 1024 * 1024);
    expect(status.limits.maxBufferSize).toBeGreaterThan(256 * 1024 * 1024);
    expect(status.limits.maxComputeInvocationsPerWorkgroup).toBeGreaterThanOrEqual(256);
    const data = Float32Array.from({ length: 37 }, (_, i) => i * 0.5 - 3);
    expect(Array.from(await roundTrip(data))).toEqual(Array.from(data));
  });

  it('reports a lost device, rejects work in flight, and gives a fresh device next time', async () => {
    expect(useDawn()).toBe(true);
    const ctx = await getGpu();
    const messages: string[] = [];
    const heard = new Promise<void>((resolve) => {
      const off = onDeviceLost((m) => {
        messages.push(m);
        off();
        resolve();
      });
    });
    const buffer = ctx.pool.acquire(64, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC);
    ctx.device.destroy();
    await expect(readFloat32(ctx, buffer, 4)).rejects.toThrow(DeviceLostError);
    await heard;
    expect(messages).toHaveLength(1);
    expect(messages[0]).toMatch(/WebGPU device lost \(destroyed\)/);
    expect(() => ctx.assertAlive()).toThrow(/device lost/);

    const fresh = await getGpu();
    expect(fresh).not.toBe(ctx);
    expect(fresh.device).not.toBe(ctx.device);
    const data = new Float32Array([1, -2, 3.25]);
    expect(Array.from(await roundTrip(data))).toEqual([1, -2, 3.25]);
  });

  it('names the adapter the WebGPU tests run on, and its features', async () => {
    expect(useDawn()).toBe(true);
    const status = await gpuStatus();
    if (!status.available) throw new Error(status.reason);
    const features = [status.features.shaderF16 && 'shader-f16', status.features.subgroups && 'subgroups', status.features.timestampQuery && 'timestamp-query'].filter(Boolean);
    const binding = (status.limits.maxStorageBufferBindingSize / 2 ** 20).toFixed(0);
    console.log(`WebGPU adapter: ${status.description || status.vendor} (${status.architecture}); features: ${features.join(', ') || 'none'}; binding limit ${binding} MiB`);
    if (expectedAdapter) expect(status.description.toLowerCase()).toContain(expectedAdapter);
    for (const f of expectedFeatures) expect(features, `adapter offers ${f}`).toContain(f);
  });
});
