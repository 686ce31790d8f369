import type { GpuProgram } from '../../gpu/pipelines.ts';
import { embeddingWgsl } from './embedding.wgsl.ts';

export function embeddingProgram(f16Table: boolean): GpuProgram {
  return {
    name: 'embedding',
    key: '',
    workgroupSize: [256, 1, 1],
    bindings: ['read', 'read', 'write', 'uniform'],
    constants: { F16: f16Table ? 1 : 0 },
    wgsl: () => embeddingWgsl,
  };
}
