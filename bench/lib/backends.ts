// Our WebGPU backend as the Node benchmarks use it: through Dawn (a software adapter, SwiftShader,
// on machines without a GPU: its speed says nothing about GPUs).
import { useDawn as startDawn } from '../../src/gpu/dawn-node.ts';
import { gpuStatus } from '../../src/gpu/device.ts';
import { createWebGpuBackend } from '../../src/kernels/webgpu-backend.ts';
import type { Backend } from '../../src/model/backend.ts';

export interface WebGpuHandle {
  backend: Backend;
  /** vendor / architecture / description, with "(fallback adapter)" for software adapters. */
  adapter: string;
  software: boolean;
}

/** Dawn's WebGPU backend, or why there is none. */
export async function dawnBackend(): Promise<WebGpuHandle | { error: string }> {
  if (!startDawn()) return { error: 'useDawn() could not create Dawn' };
  const status = await gpuStatus();
  if (!status.available) return { error: status.reason };
  try {
    const backend = await createWebGpuBackend();
    const software = status.isFallbackAdapter || /swiftshader|llvmpipe/i.test(`${status.architecture} ${status.description}`);
    return {
      backend,
      adapter: `${status.vendor} / ${status.architecture} / ${status.description}${status.isFallbackAdapter ? ' (fallback adapter)' : ''}`,
      software,
    };
  } catch (e) {
    return { error: e instanceof Error ? e.message : String(e) };
  }
}
