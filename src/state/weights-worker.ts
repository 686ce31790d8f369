// Worker entry: the weight diff off the main thread (see weights-protocol.ts).
import { createCpuBackend } from '../gpu/cpu-backend.ts';
import { gpuStatus } from '../gpu/device.ts';
import { createWebGpuBackend } from '../kernels/webgpu-backend.ts';
import type { Port } from './file-proxy.ts';
import { serveWeightsDiff } from './weights-protocol.ts';

// A software WebGPU adapter (SwiftShader) is several times slower than plain JavaScript, so the
// spectra run on the GPU only where the adapter is hardware.
async function pickBackend() {
  const status = await gpuStatus();
  if (status.available && !status.isFallbackAdapter) {
    return { backend: await createWebGpuBackend(), name: `WebGPU (${status.architecture || status.vendor || 'adapter'}) in a worker` };
  }
  return { backend: createCpuBackend(), name: status.available ? 'CPU in a worker (the WebGPU adapter is a software fallback)' : 'CPU in a worker' };
}

serveWeightsDiff(self as unknown as Port, pickBackend);
