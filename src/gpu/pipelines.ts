// Compute pipelines compiled once per device and program key, labelled with the kernel's name.

/** How a kernel uses each binding of group 0, in binding order. */
export type BindingKind = 'read' | 'write' | 'uniform';

export interface GpuProgram {
  /** Kernel name, used as the pipeline label. */
  readonly name: string;
  /**
   * Everything baked into the WGSL besides the name (variant, tile sizes, dtypes, shape properties
   * such as vec4 alignment). Two programs with the same name and key must have the same source.
   */
  readonly key: string;
  readonly workgroupSize: readonly [number, number, number];
  readonly bindings: readonly BindingKind[];
  /** Values for the shader's `override` declarations (tunables that need no new source). */
  readonly constants?: Readonly<Record<string, number>>;
  /** The WGSL source; only called when the pipeline is not cached yet. */
  wgsl(): string;
}

interface Compiled {
  pipeline: GPUComputePipeline;
  layout: GPUBindGroupLayout;
}

// Per device, so a lost device takes its pipelines with it.
const caches = new WeakMap<GPUDevice, Map<string, Compiled>>();

export class PipelineCache {
  constructor(private readonly device: GPUDevice) {}

  get(program: GpuProgram): Compiled {
    let cache = caches.get(this.device);
    if (!cache) caches.set(this.device, (cache = new Map()));
    const key = `${program.name}|${program.key}|${JSON.stringify(program.constants ?? {})}`;
    let compiled = cache.get(key);
    if (!compiled) {
      compiled = this.compile(program, key);
      cache.set(key, compiled);
    }
    return compiled;
  }

  get size(): number {
    return caches.get(this.device)?.size ?? 0;
  }

  private compile(program: GpuProgram, key: string): Compiled {
    const label = `${program.name} [${program.key}]`;
    const layout = this.device.createBindGroupLayout({
      label,
      entries: program.bindings.map((kind, binding) => ({
        binding,
        visibility: GPUShaderStage.COMPUTE,
        buffer: { type: kind === 'uniform' ? 'uniform' : kind === 'read' ? 'read-only-storage' : 'storage' },
      })),
    });
    const module = this.device.createShaderModule({ label, code: program.wgsl() });
    const pipeline = this.device.createComputePipeline({
      label: key,
      layout: this.device.createPipelineLayout({ label, bindGroupLayouts: [layout] }),
      compute: { module, entryPoint: 'main', constants: { ...program.constants } },
    });
    return { pipeline, layout };
  }
}
