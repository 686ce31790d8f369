// Records dispatches into one command encoder and submits them in batches. Buffers released while
// commands that use them are still unsubmitted go back to the pool only after the next submit, so a
// queue.writeBuffer into a reused buffer can never overtake the commands that read it.

import type { GpuContext } from './device.ts';
import type { GpuProgram } from './pipelines.ts';
import { readBuffer } from './readback.ts';

/** Dispatches recorded before a submit is forced. */
export const DEFAULT_DISPATCHES_PER_SUBMIT = 64;

export class CommandRecorder {
  private encoder: GPUCommandEncoder | undefined;
  private pass: GPUComputePassEncoder | undefined;
  private recorded = 0;
  private releases: GPUBuffer[] = [];

  constructor(
    readonly ctx: GpuContext,
    private readonly dispatchesPerSubmit = DEFAULT_DISPATCHES_PER_SUBMIT,
  ) {}

  /** Records one dispatch; `buffers` bind in order to the program's storage bindings, then `uniforms` if given. */
  dispatch(program: GpuProgram, buffers: readonly GPUBuffer[], groups: readonly [number, number, number], uniforms?: ArrayBuffer): void {
    this.ctx.assertAlive();
    const limit = this.ctx.device.limits.maxComputeWorkgroupsPerDimension;
    if (groups.some((g) => g > limit)) throw new RangeError(`${program.name}: dispatch ${groups.join('×')} exceeds ${limit} workgroups per dimension`);
    const { pipeline, layout } = this.ctx.pipelines.get(program);
    const entries: GPUBindGroupEntry[] = buffers.map((buffer, binding) => ({ binding, resource: { buffer } }));
    if (uniforms) {
      const ub = this.ctx.pool.acquire(uniforms.byteLength, GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST);
      this.ctx.device.queue.writeBuffer(ub, 0, uniforms);
      entries.push({ binding: buffers.length, resource: { buffer: ub } });
      this.releases.push(ub);
    }
    if (entries.length !== program.bindings.length) {
      throw new Error(`${program.name}: ${entries.length} buffers given for ${program.bindings.length} bindings`);
    }
    const bindGroup = this.ctx.device.createBindGroup({ label: program.name, layout, entries });
    const timestampWrites = this.ctx.kernelTimer?.writes(program.name);
    if (timestampWrites) {
      // A pass of its own, whose beginning and end are timestamped.
      this.endPass();
      this.pass = this.currentEncoder().beginComputePass({ label: program.name, timestampWrites });
    }
    this.pass ??= this.currentEncoder().beginComputePass({ label: 'ops' });
    this.pass.setPipeline(pipeline);
    this.pass.setBindGroup(0, bindGroup);
    if (groups[0] > 0 && groups[1] > 0 && groups[2] > 0) this.pass.dispatchWorkgroups(groups[0], groups[1], groups[2]);
    if (timestampWrites) this.endPass();
    if (++this.recorded >= this.dispatchesPerSubmit) this.flush();
  }

  copy(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, bytes: number): void {
    this.ctx.assertAlive();
    this.endPass();
    this.currentEncoder().copyBufferToBuffer(src, srcOffset, dst, dstOffset, bytes);
  }

  /** Returns `buffer` to the pool once the commands recorded so far are submitted. */
  releaseAfterSubmit(buffer: GPUBuffer): void {
    this.releases.push(buffer);
  }

  flush(): void {
    this.endPass();
    const timer = this.ctx.kernelTimer;
    if (this.encoder && timer) timer.resolve(this.encoder);
    if (this.encoder && !this.ctx.isLost) this.ctx.device.queue.submit([this.encoder.finish()]);
    timer?.submitted();
    this.encoder = undefined;
    this.recorded = 0;
    const releases = this.releases;
    this.releases = [];
    for (const b of releases) this.ctx.pool.release(b);
  }

  /** Submits what is recorded and reads `byteLength` bytes of `buffer` back. */
  async read(buffer: GPUBuffer, byteLength: number, byteOffset = 0): Promise<ArrayBuffer> {
    this.flush();
    return readBuffer(this.ctx, buffer, byteLength, byteOffset);
  }

  /** Submits what is recorded and waits until the GPU has finished it. */
  async sync(): Promise<void> {
    this.flush();
    await this.ctx.guard(this.ctx.device.queue.onSubmittedWorkDone());
    const error = this.ctx.takeError();
    if (error) throw new Error(error);
  }

  private currentEncoder(): GPUCommandEncoder {
    return (this.encoder ??= this.ctx.device.createCommandEncoder({ label: 'ops' }));
  }

  private endPass(): void {
    this.pass?.end();
    this.pass = undefined;
  }
}
