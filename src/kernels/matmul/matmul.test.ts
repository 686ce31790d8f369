import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Backend } from '../../model/backend.ts';
import { useDawn } from '../../gpu/dawn-node.ts';
import { getGpu } from '../../gpu/device.ts';
import { DEFAULT_FLAGS, flags, resetFlags, setFlags, type KernelFlags } from '../flags.ts';
import { expectClose, matmulRef, randomArray, roundF16 } from '../testing.ts';
import { createWebGpuBackend } from '../webgpu-backend.ts';
import { planMatmul } from './matmul.ts';

// [M, K, N]
const SHAPES: [number, number, number][] = [
  [1, 1, 1],
  [7, 13, 5],
  [64, 64, 64],
  [100, 300, 77],
];
const TOL = { abs: 2e-5, rel: 2e-5 };

const VARIANTS: [string, Partial<KernelFlags>][] = [
  ['default flags', {}],
  ['scalar loads', { matmulVec4: false }],
  ['2x8 tiles, 4x4 threads, K slice 8', { matmulTileM: 2, matmulTileN: 8, matmulWorkgroupM: 4, matmulWorkgroupN: 4, matmulTileK: 8 }],
  ['no matrix-vector kernel', { matvecMaxM: 0 }],
];

let backend: Backend;

beforeAll(async () => {
  expect(useDawn()).toBe(true);
  backend = await createWebGpuBackend();
});

afterEach(() => resetFlags());

async function run(m: number, k: number, n: number, transposeB: boolean, seed: number, bF16 = false): Promise<void> {
  const a = randomArray(m * k, seed);
  const b = randomArray(k * n, seed + 1);
  const at = backend.fromArray(a, [m, k]);
  const bt = backend.fromArray(b, transposeB ? [n, k] : [k, n], bF16 ? 'f16' : 'f32');
  const out = backend.matmul(at, bt, { transposeB });
  expect(out.shape).toEqual([m, n]);
  const got = await backend.read(out);
  expectClose(got, matmulRef(a, bF16 ? roundF16(b) : b, m, k, n, transposeB), TOL, `${m}x${k}x${n}${transposeB ? ' Bt' : ''}`);
  for (const t of [at, bt, out]) backend.dispose(t);
}

describe('matmul (webgpu) vs float64', () => {
  for (const [label, change] of VARIANTS) {
    for (const transposeB of [false, true]) {
      it(`${label}, ${transposeB ? 'A·Bᵀ' : 'A·B'}`, async () => {
        setFlags(change);
        for (const [m, k, n] of SHAPES) await run(m, k, n, transposeB, m * 1000 + k + n);
      });
    }
  }

  it('reads f16 weights (native f16 where the device has shader-f16, else unpacked u32 pairs)', async () => {
    const info = (await getGpu()).info;
    const plan = planMatmul({ m: 9, n: 5, k: 12, transposeB: true, bias: false, bF16: true }, DEFAULT_FLAGS, info.features.shaderF16, 65535);
    expect(plan.program.key.split(' ')).toContain(info.features.shaderF16 ? 'f16' : 'f16packed');
    for (const transposeB of [false, true]) {
      await run(9, 12, 5, transposeB, 7, true);
      await run(2, 13, 7, transposeB, 8, true);
    }
    setFlags({ matmulNativeF16: false, matmulVec4: false });
    await run(9, 12, 5, true, 9, true);
  });

  it('linear adds the bias and flattens leading dimensions', async () => {
    for (const [rows, matvec] of [[6, 0], [3, 4]] as const) {
      setFlags({ matvecMaxM: matvec });
      const [inF, outF] = [12, 10];
      const x = randomArray(rows * inF, 11);
      const w = randomArray(outF * inF, 12);
      const bias = randomArray(outF, 13);
      const xt = backend.fromArray(x, [1, rows, inF]);
      const wt = backend.fromArray(w, [outF, inF]);
      const bt = backend.fromArray(bias, [outF]);
      const y = backend.linear(xt, wt, bt);
      expect(y.shape).toEqual([1, rows, outF]);
      const want = matmulRef(x, w, rows, inF, outF, true).map((v, i) => v + bias[i % outF]!);
      expectClose(await backend.read(y), want, TOL, 'linear');
    }
  });

  it('refuses mismatched inner dimensions with a clear error', () => {
    const a = backend.fromArray(new Float32Array(6), [2, 3]);
    const b = backend.fromArray(new Float32Array(8), [4, 2]);
    expect(() => backend.matmul(a, b)).toThrow(/inner dimensions 3 and 4/);
    expect(flags.matmulTileM).toBe(DEFAULT_FLAGS.matmulTileM);
  });
});
