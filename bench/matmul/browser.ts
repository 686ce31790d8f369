// The matmul suite inside the benchmark page (headless Chromium). onnxruntime-web is loaded unbundled
// from /ort/ (bench/lib/browser.ts serves its dist folder there), as a page would load it from a CDN.

import { gpuStatus } from '../../src/gpu/device.ts';
import { createCpuBackend } from '../../src/gpu/cpu-backend.ts';
import { createWebGpuBackend } from '../../src/kernels/webgpu-backend.ts';
import { backendImpl, jsIkj, jsNaive, ortImpl, ourMatmulFlags, type MatmulImpl, type OrtModule } from './impls.ts';
import { errorText, runSuite, type EnvOptions, type EnvResult, type Unavailable } from './suite.ts';

async function loadOrt(file: string, threads: number): Promise<OrtModule> {
  const url = `/ort/${file}`;
  const ort = (await import(/* @vite-ignore */ url)) as OrtModule;
  ort.env.wasm.numThreads = threads;
  ort.env.logLevel = 'error';
  return ort;
}

async function ortPeer(id: string, label: string, file: string, ep: 'wasm' | 'webgpu', threads: number): Promise<MatmulImpl | Unavailable> {
  try {
    return ortImpl(id, label, await loadOrt(file, threads), ep);
  } catch (e) {
    return { id, label, ours: false, error: errorText(e) };
  }
}

async function ourWebGpu(): Promise<MatmulImpl | Unavailable> {
  try {
    return backendImpl('ours-webgpu', 'ours WebGPU', await createWebGpuBackend());
  } catch (e) {
    return { id: 'ours-webgpu', label: 'ours WebGPU', ours: true, error: errorText(e) };
  }
}

export async function runBrowserEnv(options: EnvOptions, log: (line: string) => void): Promise<EnvResult> {
  const threads = options.threads ?? navigator.hardwareConcurrency;
  const status = await gpuStatus();
  const adapter = status.available
    ? { vendor: status.vendor, architecture: status.architecture, description: status.description, isFallbackAdapter: status.isFallbackAdapter }
    : { error: status.reason };

  const impls: (MatmulImpl | Unavailable)[] = [
    await ourWebGpu(),
    backendImpl('ours-cpu', 'ours CPU', createCpuBackend()),
    await ortPeer('ort-wasm', 'ORT wasm', 'ort.wasm.min.mjs', 'wasm', threads),
    await ortPeer('ort-webgpu', 'ORT webgpu', 'ort.webgpu.min.mjs', 'webgpu', threads),
    jsIkj,
    jsNaive,
  ];
  const notes = [ourMatmulFlags(), `crossOriginIsolated: ${String(crossOriginIsolated)}`];
  const sizes = await runSuite(impls, options.suite, log);
  return { env: 'browser', runtime: navigator.userAgent, adapter, ortThreads: threads, notes, sizes };
}
