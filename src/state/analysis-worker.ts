// Worker entry: the one analysis worker of a browser session (src/jobs/transport.ts, analysis-worker-state.ts).
import { createWebGpuEngine } from '../analysis/crosscoder/webgpu-engine.ts';
import { WebGpuTrainEngine } from '../analysis/training/webgpu-engine.ts';
import { createCpuBackend } from '../gpu/cpu-backend.ts';
import { DeviceLostError, gpuStatus } from '../gpu/device.ts';
import { analysisHandlers, openWorkerState, type WorkerDeps, type WorkerOptions } from '../jobs/analysis-worker-state.ts';
import { serve, type Port } from '../jobs/transport.ts';
import { setFlags } from '../kernels/flags.ts';
import { createWebGpuBackend } from '../kernels/webgpu-backend.ts';

let onGpu = false;

const deps: WorkerDeps = {
  // Auto: WebGPU on a hardware adapter, the CPU otherwise (a software adapter such as SwiftShader is
  // slower than plain JavaScript). WebGPU: the GPU whatever the adapter. CPU: the CPU.
  async makeBackend(options: WorkerOptions) {
    const choice = options.backend ?? 'auto';
    const status = choice === 'cpu' ? null : await gpuStatus();
    if (status?.available && (choice === 'webgpu' || !status.isFallbackAdapter)) {
      onGpu = true;
      const software = status.isFallbackAdapter ? ', a software adapter: slow' : '';
      // The test-only binding size (tests of the row-block path) is named in every status line.
      const binding = options.testBindingBytes;
      if (binding !== undefined) setFlags({ maxBindingBytes: binding });
      const test = binding !== undefined ? `; row blocks above ${binding} bytes, a test setting` : '';
      return {
        backend: await createWebGpuBackend(),
        name: `WebGPU (${status.architecture || status.vendor || 'adapter'}${software}${test}) in a worker`,
        kind: 'webgpu' as const,
        limits: { maxBufferSize: status.limits.maxBufferSize, maxStorageBufferBindingSize: Math.min(status.limits.maxStorageBufferBindingSize, binding ?? Infinity) },
      };
    }
    onGpu = false;
    const why = choice === 'cpu' ? ' (chosen)' : !status ? '' : status.available ? ' (the WebGPU adapter is a software fallback)' : ` (${status.reason})`;
    return { backend: createCpuBackend(), name: `CPU in a worker${why}`, kind: 'cpu' as const };
  },
  async makeEngine(d, D) {
    return onGpu ? createWebGpuEngine(d, D) : undefined;
  },
  async makeTrainEngine(model, run) {
    if (!onGpu) return 'the compute backend is the CPU';
    try {
      return await WebGpuTrainEngine.create(model, run);
    } catch (e) {
      if (e instanceof RangeError) return e.message;
      throw e;
    }
  },
  hostBytes() {
    const gib = (navigator as { deviceMemory?: number }).deviceMemory;
    return typeof gib === 'number' && gib > 0 ? gib * 2 ** 30 : undefined;
  },
};

serve(self as unknown as Port, (files, options) => openWorkerState(files, options as WorkerOptions, deps), analysisHandlers, (e) => e instanceof DeviceLostError || /device (was )?lost/i.test(e instanceof Error ? e.message : String(e)));
