import type { GpuProgram } from '../../gpu/pipelines.ts';
import { layerNormWgsl, rmsNormWgsl } from './norm.wgsl.ts';

export function rmsNormProgram(workgroupSize: number): GpuProgram {
  return {
    name: 'rms_norm',
    key: '',
    workgroupSize: [workgroupSize, 1, 1],
    bindings: ['read', 'read', 'write', 'uniform'],
    constants: { WG: workgroupSize },
    wgsl: () => rmsNormWgsl,
  };
}

export function layerNormProgram(workgroupSize: number): GpuProgram {
  return {
    name: 'layer_norm',
    key: '',
    workgroupSize: [workgroupSize, 1, 1],
    bindings: ['read', 'read', 'read', 'write', 'uniform'],
    constants: { WG: workgroupSize },
    wgsl: () => layerNormWgsl,
  };
}
