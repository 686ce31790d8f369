// Copying GPU buffers back to the host. Work already submitted on the queue runs first.

import type { GpuContext } from './device.ts';

/** Copies `byteLength` bytes of `buffer` from `byteOffset` into a new ArrayBuffer. */
export async function readBuffer(ctx: GpuContext, buffer: GPUBuffer, byteLength: number, byteOffset = 0): Promise<ArrayBuffer> {
  ctx.assertAlive();
  const size = Math.ceil(byteLength / 4) * 4;
  const staging = ctx.pool.acquire(size, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST);
  try {
    const encoder = ctx.device.createCommandEncoder({ label: 'readback' });
    encoder.copyBufferToBuffer(buffer, byteOffset, staging, 0, size);
    ctx.device.queue.submit([encoder.finish()]);
    await ctx.guard(staging.mapAsync(GPUMapMode.READ, 0, size));
    const bytes = staging.getMappedRange(0, size).slice(0, byteLength);
    staging.unmap();
    const error = ctx.takeError();
    if (error) throw new Error(error);
    return bytes;
  } finally {
    if (staging.mapState !== 'unmapped') staging.unmap();
    ctx.pool.release(staging);
  }
}

export async function readFloat32(ctx: GpuContext, buffer: GPUBuffer, count: number, elementOffset = 0): Promise<Float32Array> {
  return new Float32Array(await readBuffer(ctx, buffer, count * 4, elementOffset * 4));
}

export async function readInt32(ctx: GpuContext, buffer: GPUBuffer, count: number, elementOffset = 0): Promise<Int32Array> {
  return new Int32Array(await readBuffer(ctx, buffer, count * 4, elementOffset * 4));
}
