// Worker entry: the Crosscoders view's models, training and analyses off the main thread (see crosscoder-protocol.ts).
import { createWebGpuEngine } from '../analysis/crosscoder/webgpu-engine.ts';
import { createCpuBackend } from '../gpu/cpu-backend.ts';
import { gpuStatus } from '../gpu/device.ts';
import { createWebGpuBackend } from '../kernels/webgpu-backend.ts';
import { serveCrosscoder } from './crosscoder-protocol.ts';
import type { Port } from './file-proxy.ts';

// A software WebGPU adapter (SwiftShader) is slower than plain JavaScript: the models and the
// crosscoder run on the GPU only where the adapter is hardware.
const hardware = gpuStatus().then((s) => (s.available && !s.isFallbackAdapter ? s : null));

serveCrosscoder(self as unknown as Port, {
  async makeBackend() {
    const status = await gpuStatus();
    const gpu = await hardware;
    if (gpu) return { backend: await createWebGpuBackend(), name: `WebGPU (${gpu.architecture || gpu.vendor || 'adapter'}) in a worker` };
    return { backend: createCpuBackend(), name: status.available ? 'CPU in a worker (the WebGPU adapter is a software fallback)' : 'CPU in a worker' };
  },
  async makeEngine(d, D) {
    return (await hardware) ? createWebGpuEngine(d, D) : undefined;
  },
});
