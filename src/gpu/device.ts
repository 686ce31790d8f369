// Adapter and device acquisition, the same code in the browser and in Node (via dawn-node.ts).
// One device is shared by everything; when it is lost, listeners hear why, its caches are dropped,
// and the next getGpu() creates a fresh one.

import type { KernelTimer } from './kernel-timer.ts';
import { BufferPool } from './pool.ts';
import { PipelineCache } from './pipelines.ts';

export interface GpuInfo {
  available: true;
  vendor: string;
  architecture: string;
  description: string;
  isFallbackAdapter: boolean;
  features: { shaderF16: boolean; subgroups: boolean; timestampQuery: boolean };
  limits: {
    maxStorageBufferBindingSize: number;
    maxBufferSize: number;
    maxComputeWorkgroupStorageSize: number;
    maxComputeInvocationsPerWorkgroup: number;
  };
}

export type GpuStatus = GpuInfo | { available: false; reason: string };

export class DeviceLostError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DeviceLostError';
  }
}

/** Limits requested at the adapter's own values instead of the (small) WebGPU defaults. */
const REQUESTED_LIMITS = [
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupSizeY',
  'maxComputeWorkgroupSizeZ',
  'maxComputeWorkgroupsPerDimension',
  'maxStorageBuffersPerShaderStage',
  'maxUniformBufferBindingSize',
] as const;

/** How long a failed GPU operation waits to learn whether the device was lost meanwhile. */
const LOSS_GRACE_MS = 100;

const OPTIONAL_FEATURES: GPUFeatureName[] = ['shader-f16', 'subgroups', 'timestamp-query'];

export class GpuContext {
  readonly pool: BufferPool;
  readonly pipelines: PipelineCache;
  /** Resolves (never rejects) with a readable message once the device is lost. */
  readonly lost: Promise<string>;
  private lostMessage: string | undefined;
  private firstError: string | undefined;
  /** While set, every dispatch is timed on the GPU (kernel-timer.ts; benchmarks). */
  kernelTimer: KernelTimer | undefined;

  constructor(
    readonly device: GPUDevice,
    readonly info: GpuInfo,
  ) {
    this.pool = new BufferPool(device);
    this.pipelines = new PipelineCache(device);
    this.lost = device.lost.then((lost) => {
      const message = `WebGPU device lost (${lost.reason}): ${lost.message || 'no message from the driver'}`;
      this.lostMessage = message;
      this.pool.drop();
      return message;
    });
    device.addEventListener('uncapturederror', (event) => {
      const error = (event as GPUUncapturedErrorEvent).error;
      this.firstError ??= `WebGPU error: ${error.message}`;
    });
  }

  get isLost(): boolean {
    return this.lostMessage !== undefined;
  }

  /** Throws a DeviceLostError when the device is gone, so work on it fails at once instead of hanging. */
  assertAlive(): void {
    if (this.lostMessage !== undefined) throw new DeviceLostError(this.lostMessage);
  }

  /**
   * Rejects with a DeviceLostError if the device is lost before `work` settles, or if `work` fails
   * because of the loss (mapAsync on a destroyed device rejects with a bare AbortError).
   */
  async guard<T>(work: Promise<T>): Promise<T> {
    this.assertAlive();
    const lost = this.lost.then((message): never => {
      throw new DeviceLostError(message);
    });
    try {
      return await Promise.race([work, lost]);
    } catch (e) {
      if (e instanceof DeviceLostError) throw e;
      const message = await Promise.race([this.lost, new Promise<undefined>((r) => setTimeout(r, LOSS_GRACE_MS))]);
      if (message !== undefined) throw new DeviceLostError(message);
      throw e;
    }
  }

  /** The first validation or out-of-memory error reported since the last call, if any. */
  takeError(): string | undefined {
    const e = this.firstError;
    this.firstError = undefined;
    return e;
  }
}

let provider: () => GPU | undefined = () => (typeof navigator !== 'undefined' ? navigator.gpu : undefined);
let current: Promise<GpuContext> | undefined;
const lostListeners = new Set<(message: string) => void>();

/** Chooses where the GPU object comes from (dawn-node.ts installs Dawn; the browser default is navigator.gpu). */
export function setGpuProvider(p: () => GPU | undefined): void {
  provider = p;
}

/** Called with a readable message whenever the shared device is lost. Returns an unsubscribe function. */
export function onDeviceLost(cb: (message: string) => void): () => void {
  lostListeners.add(cb);
  return () => lostListeners.delete(cb);
}

/** The shared device context, created on first use and again after the device is lost. */
export async function getGpu(): Promise<GpuContext> {
  for (;;) {
    const pending = (current ??= startContext());
    const ctx = await pending;
    if (!ctx.isLost) return ctx;
    if (current === pending) current = undefined;
  }
}

function startContext(): Promise<GpuContext> {
  const created = createContext();
  created.catch(() => {
    if (current === created) current = undefined;
  });
  return created;
}

/** Whether WebGPU works here, and what the adapter offers. Never throws. */
export async function gpuStatus(): Promise<GpuStatus> {
  try {
    return (await getGpu()).info;
  } catch (e) {
    return { available: false, reason: e instanceof Error ? e.message : String(e) };
  }
}

async function createContext(): Promise<GpuContext> {
  const gpu = provider();
  if (!gpu) throw new Error('WebGPU is not available: no GPU object (navigator.gpu is missing; in Node call useDawn() first)');
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) throw new Error('WebGPU is not available: requestAdapter() found no adapter');

  const requiredFeatures = OPTIONAL_FEATURES.filter((f) => adapter.features.has(f));
  const requiredLimits: Record<string, number> = {};
  for (const name of REQUESTED_LIMITS) {
    const value = adapter.limits[name];
    if (typeof value === 'number') requiredLimits[name] = value;
  }
  const device = await adapter.requestDevice({ requiredFeatures, requiredLimits, label: 'neurodiff' });

  const a = adapter.info;
  const info: GpuInfo = {
    available: true,
    vendor: a.vendor,
    architecture: a.architecture,
    description: a.description,
    isFallbackAdapter: a.isFallbackAdapter ?? false,
    features: {
      shaderF16: device.features.has('shader-f16'),
      subgroups: device.features.has('subgroups'),
      timestampQuery: device.features.has('timestamp-query'),
    },
    limits: {
      maxStorageBufferBindingSize: device.limits.maxStorageBufferBindingSize,
      maxBufferSize: device.limits.maxBufferSize,
      maxComputeWorkgroupStorageSize: device.limits.maxComputeWorkgroupStorageSize,
      maxComputeInvocationsPerWorkgroup: device.limits.maxComputeInvocationsPerWorkgroup,
    },
  };
  const ctx = new GpuContext(device, info);
  void ctx.lost.then((message) => {
    for (const cb of [...lostListeners]) cb(message);
  });
  return ctx;
}
