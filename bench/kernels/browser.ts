// The kernel suite inside the benchmark page (headless Chromium's WebGPU).
import { getGpu } from '../../src/gpu/device.ts';
import { createWebGpuBackend } from '../../src/kernels/webgpu-backend.ts';
import { runKernelSuite, softwareAdapter, type KernelScale } from './suite.ts';

export async function runBrowserKernels(options: { full?: boolean; calls?: number }, log: (line: string) => void): Promise<unknown> {
  const ctx = await getGpu();
  const { vendor, architecture, description, isFallbackAdapter } = ctx.info;
  const adapter = `Chromium: ${[vendor, architecture, description].filter(Boolean).join(' / ')}`;
  const software = softwareAdapter(adapter, isFallbackAdapter);
  const scale: KernelScale = software && !options.full ? 'software' : 'gpu';
  const result = await runKernelSuite(await createWebGpuBackend(), ctx, adapter, { scale, calls: options.calls ?? (software ? 3 : 20) }, log);
  return { ...result, software, scale };
}
