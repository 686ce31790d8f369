import type { Activation } from '../../model/backend.ts';
import type { GpuProgram } from '../../gpu/pipelines.ts';
import { ACTIVATION_CODES } from '../common.ts';
import { binaryWgsl, castF16Wgsl, gatedWgsl, unaryWgsl } from './elementwise.wgsl.ts';

export const ELEMENTWISE_WORKGROUP = 256;

export type BinaryOp = 'add' | 'sub' | 'mul';
const BINARY_CODES: Record<BinaryOp, number> = { add: 0, sub: 1, mul: 2 };

export function binaryProgram(op: BinaryOp): GpuProgram {
  return {
    name: `binary_${op}`,
    key: '',
    workgroupSize: [ELEMENTWISE_WORKGROUP, 1, 1],
    bindings: ['read', 'read', 'write', 'uniform'],
    constants: { OP: BINARY_CODES[op] },
    wgsl: () => binaryWgsl,
  };
}

export type UnaryOp = { kind: 'scale' } | { kind: 'softcap' } | { kind: 'activation'; act: Activation };

export function unaryProgram(op: UnaryOp): GpuProgram {
  const code = op.kind === 'scale' ? 0 : op.kind === 'softcap' ? 1 : 2;
  const act = op.kind === 'activation' ? ACTIVATION_CODES[op.act] : 0;
  return {
    name: op.kind === 'activation' ? `activation_${op.act}` : op.kind,
    key: '',
    workgroupSize: [ELEMENTWISE_WORKGROUP, 1, 1],
    bindings: ['read', 'write', 'uniform'],
    constants: { OP: code, ACT: act },
    wgsl: () => unaryWgsl,
  };
}

export function gatedProgram(act: Activation): GpuProgram {
  return {
    name: `gated_${act}`,
    key: '',
    workgroupSize: [ELEMENTWISE_WORKGROUP, 1, 1],
    bindings: ['read', 'read', 'write', 'uniform'],
    constants: { ACT: ACTIVATION_CODES[act] },
    wgsl: () => gatedWgsl,
  };
}

export const castF16Program: GpuProgram = {
  name: 'cast_f16_f32',
  key: '',
  workgroupSize: [ELEMENTWISE_WORKGROUP, 1, 1],
  bindings: ['read', 'write', 'uniform'],
  wgsl: () => castF16Wgsl,
};
