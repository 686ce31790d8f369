// The matmul suite in Node: our backends on Dawn (SwiftShader here) and the CPU, plain
// JavaScript, and onnxruntime-web's wasm and webgpu EPs.

import { availableParallelism } from 'node:os';
import * as ort from 'onnxruntime-web';
import { create } from 'webgpu';
// Renamed: the React hooks lint rule mistakes use* functions for hooks.
import { useDawn as startDawn } from '../../src/gpu/dawn-node.ts';
import { gpuStatus } from '../../src/gpu/device.ts';
import { createCpuBackend } from '../../src/gpu/cpu-backend.ts';
import { createWebGpuBackend } from '../../src/kernels/webgpu-backend.ts';
import { backendImpl, jsIkj, jsNaive, ortImpl, ourMatmulFlags, type MatmulImpl, type OrtModule } from './impls.ts';
import { errorText, runSuite, type EnvOptions, type EnvResult, type Unavailable } from './suite.ts';

/**
 * Dawn's writeBuffer rejects views of a SharedArrayBuffer ("Invalid argument"), and the threaded
 * ORT build keeps its heap in one; copying such views first is what lets ORT's webgpu EP run in Node.
 */
function copySharedWrites(): void {
  const proto = (globalThis as unknown as { GPUQueue: { prototype: GPUQueue } }).GPUQueue.prototype;
  const write = proto.writeBuffer;
  proto.writeBuffer = function (this: GPUQueue, buffer, offset, data, dataOffset = 0, size) {
    if (!ArrayBuffer.isView(data) || !(data.buffer instanceof SharedArrayBuffer)) {
      return write.call(this, buffer, offset, data as GPUAllowSharedBufferSource, dataOffset, size);
    }
    const unit = 'BYTES_PER_ELEMENT' in data ? (data.BYTES_PER_ELEMENT as number) : 1;
    const bytes = size === undefined ? data.byteLength - dataOffset * unit : size * unit;
    write.call(this, buffer, offset, new Uint8Array(data.buffer, data.byteOffset + dataOffset * unit, bytes).slice());
  } as GPUQueue['writeBuffer'];
}

async function ortWebGpu(): Promise<MatmulImpl | Unavailable> {
  const label = 'ORT webgpu';
  try {
    const gpu = create([]);
    const nav = (globalThis as { navigator?: object }).navigator;
    if (nav) Object.defineProperty(nav, 'gpu', { value: gpu, configurable: true });
    else Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true });
    copySharedWrites();
    const ortGpu = (await import('onnxruntime-web/webgpu')) as OrtModule;
    // With more threads this bundle tries to fetch its wasm file, which fails in Node; the matmul runs on the GPU anyway.
    ortGpu.env.wasm.numThreads = 1;
    ortGpu.env.logLevel = 'error';
    return ortImpl('ort-webgpu', label, ortGpu, 'webgpu');
  } catch (e) {
    return { id: 'ort-webgpu', label, ours: false, error: errorText(e) };
  }
}

async function ourWebGpu(dawn: boolean): Promise<MatmulImpl | Unavailable> {
  const label = 'ours WebGPU';
  if (!dawn) return { id: 'ours-webgpu', label, ours: true, error: 'useDawn() could not create Dawn' };
  try {
    return backendImpl('ours-webgpu', label, await createWebGpuBackend());
  } catch (e) {
    return { id: 'ours-webgpu', label, ours: true, error: errorText(e) };
  }
}

export async function runNodeEnv(options: EnvOptions, log: (line: string) => void): Promise<EnvResult> {
  const threads = options.threads ?? availableParallelism();
  ort.env.wasm.numThreads = threads;
  ort.env.logLevel = 'error';
  const notes = [ourMatmulFlags()];

  const dawn = startDawn();
  const status = dawn ? await gpuStatus() : ({ available: false, reason: 'useDawn() could not create Dawn' } as const);
  const adapter = status.available
    ? { vendor: status.vendor, architecture: status.architecture, description: status.description, isFallbackAdapter: status.isFallbackAdapter }
    : { error: status.reason };

  const impls: (MatmulImpl | Unavailable)[] = [
    await ourWebGpu(dawn),
    backendImpl('ours-cpu', 'ours CPU', createCpuBackend()),
    ortImpl('ort-wasm', 'ORT wasm', ort, 'wasm'),
    await ortWebGpu(),
    jsIkj,
    jsNaive,
  ];
  notes.push('ORT webgpu in Node: onnxruntime-web/webgpu on a second Dawn instance, writeBuffer copies out of shared memory, 1 wasm thread');
  const sizes = await runSuite(impls, options.suite, log);
  return { env: 'node', runtime: `Node ${process.version} (${process.platform} ${process.arch})`, adapter, ortThreads: threads, notes, sizes };
}
