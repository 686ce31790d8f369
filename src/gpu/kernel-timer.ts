// GPU time per kernel from timestamp queries (the adapter's 'timestamp-query' feature): while a
// KernelTimer is set on the GpuContext, the CommandRecorder gives every dispatch its own compute
// pass whose beginning and end write timestamps, resolved and read back after each submit. For
// benchmarks: one pass per dispatch costs a little, and browsers may quantise the timestamps.
import type { GpuContext } from './device.ts';

/** Timed dispatches per submit (the recorder submits every few dozen dispatches): more go untimed. */
const CAPACITY = 1024;

export interface KernelTime {
  /** Timed dispatches. */
  count: number;
  /** Their GPU time, in nanoseconds. */
  ns: number;
}

export class KernelTimer {
  private readonly querySet: GPUQuerySet;
  private readonly resolveBuffer: GPUBuffer;
  /** Kernel names of the queries recorded since the last resolve, two queries each. */
  private names: string[] = [];
  private readonly pending: Promise<void>[] = [];
  private toRead: { buffer: GPUBuffer; names: string[] }[] = [];
  readonly totals = new Map<string, KernelTime>();
  /** Dispatches that found no free query (CAPACITY per submit). */
  untimed = 0;

  constructor(private readonly ctx: GpuContext) {
    if (!ctx.device.features.has('timestamp-query')) throw new Error('KernelTimer: this device has no timestamp-query feature');
    this.querySet = ctx.device.createQuerySet({ type: 'timestamp', count: 2 * CAPACITY });
    this.resolveBuffer = ctx.device.createBuffer({ size: 16 * CAPACITY, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
  }

  /** The timestamp writes of one dispatch's pass, or undefined when the queries of this submit are used up. */
  writes(name: string): GPUComputePassTimestampWrites | undefined {
    if (this.names.length === CAPACITY) {
      this.untimed++;
      return undefined;
    }
    const index = 2 * this.names.length;
    this.names.push(name);
    return { querySet: this.querySet, beginningOfPassWriteIndex: index, endOfPassWriteIndex: index + 1 };
  }

  /** Records the copy of this submit's timestamps into a buffer to read after the submit. */
  resolve(encoder: GPUCommandEncoder): void {
    if (this.names.length === 0) return;
    const count = 2 * this.names.length;
    const buffer = this.ctx.device.createBuffer({ size: 8 * count, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    encoder.resolveQuerySet(this.querySet, 0, count, this.resolveBuffer, 0);
    encoder.copyBufferToBuffer(this.resolveBuffer, 0, buffer, 0, 8 * count);
    this.toRead.push({ buffer, names: this.names });
    this.names = [];
  }

  /** After the submit that carried the resolves: reads them back (awaited by collect()). */
  submitted(): void {
    for (const { buffer, names } of this.toRead) {
      this.pending.push(
        buffer.mapAsync(GPUMapMode.READ).then(() => {
          const t = new BigInt64Array(buffer.getMappedRange());
          names.forEach((name, i) => {
            const total = this.totals.get(name) ?? { count: 0, ns: 0 };
            // Some drivers write an end before the beginning for passes they merge: count those as 0.
            total.ns += Math.max(0, Number(t[2 * i + 1]! - t[2 * i]!));
            total.count++;
            this.totals.set(name, total);
          });
          buffer.unmap();
          buffer.destroy();
        }),
      );
    }
    this.toRead = [];
  }

  /** Waits for every submitted timestamp; the totals then hold them. */
  async collect(): Promise<Map<string, KernelTime>> {
    await this.ctx.guard(Promise.all(this.pending.splice(0)));
    return this.totals;
  }

  reset(): void {
    this.totals.clear();
    this.untimed = 0;
  }

  destroy(): void {
    this.querySet.destroy();
    this.resolveBuffer.destroy();
  }
}
