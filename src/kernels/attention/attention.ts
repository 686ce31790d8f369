import type { GpuProgram } from '../../gpu/pipelines.ts';
import { attentionWgsl } from './attention.wgsl.ts';

export { ATTENTION_MAX_HEAD_DIM } from './attention.wgsl.ts';

export const attentionProgram: GpuProgram = {
  name: 'attention',
  key: '',
  workgroupSize: [64, 1, 1],
  bindings: ['read', 'read', 'read', 'write', 'uniform'],
  wgsl: () => attentionWgsl,
};
