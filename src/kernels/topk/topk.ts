import type { GpuProgram } from '../../gpu/pipelines.ts';
import { topkWgsl } from './topk.wgsl.ts';

export function topkProgram(workgroupSize: number): GpuProgram {
  return {
    name: 'topk',
    key: '',
    workgroupSize: [workgroupSize, 1, 1],
    bindings: ['read', 'write', 'write', 'uniform'],
    constants: { WG: workgroupSize },
    wgsl: () => topkWgsl,
  };
}
