// Worker entry: the activation views' pair and analyses off the main thread (see activations-protocol.ts).
import { createCpuBackend } from '../gpu/cpu-backend.ts';
import { gpuStatus } from '../gpu/device.ts';
import { createWebGpuBackend } from '../kernels/webgpu-backend.ts';
import { serveActivations } from './activations-protocol.ts';
import type { Port } from './file-proxy.ts';

// A software WebGPU adapter (SwiftShader) is slower than plain JavaScript: the models run on the GPU
// only where the adapter is hardware.
async function pickBackend() {
  const status = await gpuStatus();
  if (status.available && !status.isFallbackAdapter) {
    return { backend: await createWebGpuBackend(), name: `WebGPU (${status.architecture || status.vendor || 'adapter'}) in a worker` };
  }
  return { backend: createCpuBackend(), name: status.available ? 'CPU in a worker (the WebGPU adapter is a software fallback)' : 'CPU in a worker' };
}

serveActivations(self as unknown as Port, pickBackend);
