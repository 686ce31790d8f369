import type { GpuProgram } from '../../gpu/pipelines.ts';
import { LENS_MAX_K } from '../../model/backend.ts';
import type { KernelFlags } from '../flags.ts';
import { lensKlWgsl, lensMergeWgsl, lensScanWgsl, type LensTiles, type LensWType } from './lens.wgsl.ts';

export { partialWords } from './lens.wgsl.ts';

export function lensTiles(f: KernelFlags): LensTiles {
  const t = { tileM: f.lensTileM, workgroupM: f.lensWorkgroupM, tileN: f.lensTileN, workgroupN: f.lensWorkgroupN, tileK: f.lensTileK };
  for (const [name, v] of Object.entries(t)) if (!(Number.isInteger(v) && v >= 1)) throw new RangeError(`lens tile ${name} must be a positive integer, got ${v}`);
  // Each row of the tile is folded by workgroupN / tileM threads ("lanes").
  if (t.workgroupN % t.tileM !== 0) throw new RangeError(`lensWorkgroupN (${t.workgroupN}) must be a multiple of lensTileM (${t.tileM})`);
  return t;
}

export function lensWType(dtype: 'f32' | 'f16', nativeF16: boolean, f: KernelFlags): LensWType {
  return dtype === 'f32' ? 'f32' : nativeF16 && f.matmulNativeF16 ? 'f16' : 'f16packed';
}

/** Capacity of the lanes' top-k lists: the next of 4, 8, 16, 32 that holds k (few pipelines, small registers). */
export function lensKmax(k: number): number {
  let kmax = 4;
  while (kmax < k) kmax *= 2;
  if (kmax > LENS_MAX_K) throw new RangeError(`k = ${k} exceeds ${LENS_MAX_K}`);
  return kmax;
}

/**
 * Splits `count` tokens into slices of whole tiles so that about `target` workgroups run over all row
 * tiles; every slice holds at least one token.
 */
export function lensSlices(rows: number, count: number, t: LensTiles, target: number): { sliceLen: number; slices: number; rowTiles: number } {
  const bn = t.tileN * t.workgroupN;
  const rowTiles = Math.ceil(rows / (t.tileM * t.workgroupM));
  const tiles = Math.ceil(count / bn);
  const wanted = Math.min(tiles, Math.max(1, Math.ceil(target / rowTiles)));
  const sliceLen = Math.ceil(tiles / wanted) * bn;
  return { sliceLen, slices: Math.ceil(count / sliceLen), rowTiles };
}

function tilesKey(t: LensTiles): string {
  return `tile=${t.tileM}x${t.tileN}x${t.tileK} wg=${t.workgroupM}x${t.workgroupN}`;
}

export function lensScanProgram(wType: LensWType, kmax: number, t: LensTiles): GpuProgram {
  return {
    name: 'lens_scan',
    key: `${wType} kmax=${kmax} ${tilesKey(t)}`,
    workgroupSize: [t.workgroupN, t.workgroupM, 1],
    bindings: ['read', 'read', 'write', 'uniform'],
    wgsl: () => lensScanWgsl({ ...t, wType, kmax }),
  };
}

export function lensKlProgram(wTypes: readonly [LensWType, LensWType], t: LensTiles): GpuProgram {
  return {
    name: 'lens_kl',
    key: `${wTypes.join(',')} ${tilesKey(t)}`,
    workgroupSize: [t.workgroupN, t.workgroupM, 1],
    bindings: ['read', 'read', 'read', 'read', 'read', 'read', 'write', 'uniform'],
    wgsl: () => lensKlWgsl({ ...t, wTypes }),
  };
}

export function lensMergeProgram(workgroupSize: number): GpuProgram {
  return {
    name: 'lens_merge',
    key: '',
    workgroupSize: [workgroupSize, 1, 1],
    bindings: ['read', 'write', 'write', 'write', 'uniform'],
    constants: { WG: workgroupSize },
    wgsl: () => lensMergeWgsl,
  };
}
