import type { RopeParams } from '../../model/backend.ts';
import { ropeAngle, ropeInvFreq } from '../../model/rope.ts';
import type { GpuProgram } from '../../gpu/pipelines.ts';
import { ropeWgsl } from './rope.wgsl.ts';

export const ropeProgram: GpuProgram = {
  name: 'rope',
  key: '',
  workgroupSize: [256, 1, 1],
  bindings: ['read', 'read', 'write', 'uniform'],
  wgsl: () => ropeWgsl,
};

/** cos then sin of the rotation angles (shared with the CPU backend) at positions startPos.., as [2, T, rd/2]. */
export function ropeTable(params: RopeParams, startPos: number, length: number): Float32Array {
  const inv = ropeInvFreq(params);
  const half = inv.length;
  const table = new Float32Array(2 * length * half);
  for (let t = 0; t < length; t++) {
    for (let j = 0; j < half; j++) {
      const angle = ropeAngle(inv, j, startPos + t);
      table[t * half + j] = Math.cos(angle);
      table[(length + t) * half + j] = Math.sin(angle);
    }
  }
  return table;
}
