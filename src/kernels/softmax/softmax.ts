import type { GpuProgram } from '../../gpu/pipelines.ts';
import { softmaxWgsl } from './softmax.wgsl.ts';

export function softmaxProgram(workgroupSize: number): GpuProgram {
  return {
    name: 'softmax',
    key: '',
    workgroupSize: [workgroupSize, 1, 1],
    bindings: ['read', 'write', 'uniform'],
    constants: { WG: workgroupSize },
    wgsl: () => softmaxWgsl,
  };
}
