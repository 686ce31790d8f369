import type { GpuProgram } from '../../gpu/pipelines.ts';
import { reduceWgsl } from './reduce.wgsl.ts';

export function reduceProgram(squares: boolean, workgroupSize: number): GpuProgram {
  return {
    name: squares ? 'sum_squares' : 'sum',
    key: '',
    workgroupSize: [workgroupSize, 1, 1],
    bindings: ['read', 'write', 'uniform'],
    constants: { WG: workgroupSize, SQUARES: squares ? 1 : 0 },
    wgsl: () => reduceWgsl,
  };
}
