// GPU buffers reused by size class and usage, with byte counters.
// The pool hands a released buffer out again at once: callers that still have commands recorded
// but not submitted against a buffer must release it only after submitting (see recorder.ts).

export interface PoolStats {
  /** Bytes of all live buffers the pool created (in use and free). */
  allocatedBytes: number;
  /** Bytes of buffers handed out and not yet released. */
  inUseBytes: number;
  peakAllocatedBytes: number;
  peakInUseBytes: number;
  /** Bytes of released buffers kept for reuse. */
  freeBytes: number;
  /** Number of live buffers. */
  buffers: number;
}

/** Released buffers beyond this many bytes are destroyed instead of kept. */
export const DEFAULT_MAX_FREE_BYTES = 256 * 1024 * 1024;

/**
 * The size a request is rounded up to: powers of two up to 4 KiB, then eight classes per octave,
 * so reuse is likely and no more than 12.5% is wasted.
 */
export function sizeClass(bytes: number): number {
  const b = Math.max(16, Math.ceil(bytes));
  if (b <= 4096) return 2 ** Math.ceil(Math.log2(b));
  const step = 2 ** (Math.floor(Math.log2(b)) - 3);
  return Math.ceil(b / step) * step;
}

export class BufferPool {
  private readonly free = new Map<string, GPUBuffer[]>();
  private readonly inUse = new Set<GPUBuffer>();
  private counters: PoolStats = { allocatedBytes: 0, inUseBytes: 0, peakAllocatedBytes: 0, peakInUseBytes: 0, freeBytes: 0, buffers: 0 };
  private dropped = false;

  constructor(
    private readonly device: GPUDevice,
    private readonly maxFreeBytes = DEFAULT_MAX_FREE_BYTES,
  ) {}

  /** A buffer of at least `bytes` bytes with exactly `usage`. */
  acquire(bytes: number, usage: GPUBufferUsageFlags): GPUBuffer {
    const size = this.roundedSize(bytes, usage);
    const key = `${usage}:${size}`;
    const c = this.counters;
    let buffer = this.free.get(key)?.pop();
    if (buffer) {
      c.freeBytes -= size;
    } else {
      buffer = this.device.createBuffer({ size, usage, label: `pool ${size}B` });
      c.allocatedBytes += size;
      c.buffers++;
      c.peakAllocatedBytes = Math.max(c.peakAllocatedBytes, c.allocatedBytes);
    }
    this.inUse.add(buffer);
    c.inUseBytes += size;
    c.peakInUseBytes = Math.max(c.peakInUseBytes, c.inUseBytes);
    return buffer;
  }

  release(buffer: GPUBuffer): void {
    if (!this.inUse.delete(buffer)) {
      if (this.dropped) return;
      throw new Error(`BufferPool.release: buffer "${buffer.label}" is not in use (released twice, or not from this pool)`);
    }
    const c = this.counters;
    c.inUseBytes -= buffer.size;
    if (c.freeBytes + buffer.size > this.maxFreeBytes || this.dropped) {
      this.destroy(buffer);
      return;
    }
    const key = `${buffer.usage}:${buffer.size}`;
    let list = this.free.get(key);
    if (!list) this.free.set(key, (list = []));
    list.push(buffer);
    c.freeBytes += buffer.size;
  }

  stats(): PoolStats {
    return { ...this.counters };
  }

  /** Destroys the buffers kept for reuse. */
  trim(): void {
    for (const list of this.free.values()) for (const b of list) this.destroy(b);
    this.free.clear();
    this.counters.freeBytes = 0;
  }

  /** Forgets everything (the device is lost); later releases are ignored. */
  drop(): void {
    this.trim();
    for (const b of this.inUse) this.destroy(b);
    this.inUse.clear();
    this.counters.inUseBytes = 0;
    this.dropped = true;
  }

  private destroy(buffer: GPUBuffer): void {
    this.counters.allocatedBytes -= buffer.size;
    this.counters.buffers--;
    buffer.destroy();
  }

  private roundedSize(bytes: number, usage: GPUBufferUsageFlags): number {
    const limits = this.device.limits;
    const exact = Math.max(16, Math.ceil(bytes / 16) * 16);
    const max = usage & GPUBufferUsage.STORAGE ? Math.min(limits.maxBufferSize, limits.maxStorageBufferBindingSize) : limits.maxBufferSize;
    if (exact > max) {
      throw new RangeError(`GPU buffer of ${bytes} bytes exceeds this device's limit of ${max} bytes (maxBufferSize / maxStorageBufferBindingSize)`);
    }
    return Math.min(sizeClass(exact), Math.floor(max / 16) * 16);
  }
}
