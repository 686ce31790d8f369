import type { GpuProgram } from '../../gpu/pipelines.ts';
import { grid } from '../common.ts';
import type { KernelFlags } from '../flags.ts';
import { MATVEC_WORKGROUP, matmulWgsl, matvecWgsl, type MatmulBType, type MatmulVariant, type MatvecVariant } from './matmul.wgsl.ts';

export type { MatmulBType } from './matmul.wgsl.ts';

export interface MatmulShape {
  m: number;
  n: number;
  k: number;
  transposeB: boolean;
  bias: boolean;
  /** B stored as f16 (two values per 32-bit word). */
  bF16: boolean;
}

export interface MatmulPlan {
  program: GpuProgram;
  grid: [number, number, number];
}

/** Chooses the kernel and variant for one matmul: the matrix-vector kernel for a few rows of A·Bᵀ, else the tiled one. */
export function planMatmul(s: MatmulShape, f: KernelFlags, nativeF16: boolean, maxGroupsPerDim: number): MatmulPlan {
  const bType: MatmulBType = s.bF16 ? (nativeF16 && f.matmulNativeF16 ? 'f16' : 'f16packed') : 'f32';
  if (f.matvecMaxM > MATVEC_WORKGROUP) throw new RangeError(`matvecMaxM must be at most ${MATVEC_WORKGROUP}, got ${f.matvecMaxM}`);
  if (s.transposeB && s.m <= f.matvecMaxM) {
    const v: MatvecVariant = { bias: s.bias, bType, vec: f.matmulVec4 && s.k % 4 === 0, maxM: f.matvecMaxM };
    return {
      program: {
        name: 'matvec',
        key: `${v.bType} bias=${v.bias} vec=${v.vec} maxM=${v.maxM}`,
        workgroupSize: [MATVEC_WORKGROUP, 1, 1],
        bindings: bindings(s.bias),
        wgsl: () => matvecWgsl(v),
      },
      grid: grid(s.n, maxGroupsPerDim),
    };
  }
  const contiguousB = s.transposeB ? s.k : s.n;
  const v: MatmulVariant = {
    transposeB: s.transposeB,
    bias: s.bias,
    bType,
    vecA: f.matmulVec4 && s.k % 4 === 0 && f.matmulTileK % 4 === 0,
    vecB: f.matmulVec4 && contiguousB % 4 === 0 && (s.transposeB ? f.matmulTileK % 4 === 0 : true),
    tileM: f.matmulTileM,
    tileN: f.matmulTileN,
    workgroupM: f.matmulWorkgroupM,
    workgroupN: f.matmulWorkgroupN,
    tileK: f.matmulTileK,
  };
  if (v.tileN % 4 !== 0) throw new RangeError(`matmulTileN must be a multiple of 4, got ${v.tileN}`);
  const bm = v.tileM * v.workgroupM;
  const bn = v.tileN * v.workgroupN;
  return {
    program: {
      name: 'matmul',
      key: `${v.transposeB ? 'ABt' : 'AB'} ${v.bType} bias=${v.bias} vecA=${v.vecA} vecB=${v.vecB} tile=${v.tileM}x${v.tileN}x${v.tileK} wg=${v.workgroupM}x${v.workgroupN}`,
      workgroupSize: [v.workgroupN, v.workgroupM, 1],
      bindings: bindings(s.bias),
      wgsl: () => matmulWgsl(v),
    },
    grid: [Math.ceil(s.n / bn), Math.ceil(s.m / bm), 1],
  };
}

function bindings(bias: boolean): GpuProgram['bindings'] {
  return bias ? ['read', 'read', 'read', 'write', 'uniform'] : ['read', 'read', 'write', 'uniform'];
}
