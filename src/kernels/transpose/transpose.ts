import type { GpuProgram } from '../../gpu/pipelines.ts';
import { transposeWgsl } from './transpose.wgsl.ts';

export const TRANSPOSE_TILE = 16;

export const transposeProgram: GpuProgram = {
  name: 'transpose',
  key: '',
  workgroupSize: [TRANSPOSE_TILE, TRANSPOSE_TILE, 1],
  bindings: ['read', 'write', 'uniform'],
  wgsl: () => transposeWgsl,
};
