import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Backend } from '../../model/backend.ts';
import { useDawn } from '../../gpu/dawn-node.ts';
import { resetFlags, setFlags } from '../flags.ts';
import { expectClose, randomArray } from '../testing.ts';
import { createWebGpuBackend } from '../webgpu-backend.ts';

let backend: Backend;

beforeAll(async () => {
  expect(useDawn()).toBe(true);
  backend = await createWebGpuBackend();
});
afterEach(() => resetFlags());

const TOL = { abs: 2e-6, rel: 1e-5 };

function rmsRef(x: Float32Array, w: Float32Array, n: number, eps: number, addOne: boolean): number[] {
  const out: number[] = [];
  for (let r = 0; r < x.length / n; r++) {
    let ss = 0;
    for (let i = 0; i < n; i++) ss += x[r * n + i]! ** 2;
    const inv = 1 / Math.sqrt(ss / n + eps);
    for (let i = 0; i < n; i++) out.push(x[r * n + i]! * inv * (w[i]! + (addOne ? 1 : 0)));
  }
  return out;
}

describe('norm kernels vs float64', () => {
  for (const wg of [256, 64]) {
    it(`rmsNorm (w and 1 + w), rows shorter and longer than the workgroup of ${wg}`, async () => {
      setFlags({ reduceWorkgroupSize: wg });
      for (const [rows, n] of [[3, 5], [2, 300]] as const) {
        const x = randomArray(rows * n, n, -4, 4);
        const w = randomArray(n, n + 1, 0.5, 1.5);
        const xt = backend.fromArray(x, [1, rows, n]);
        const wt = backend.fromArray(w, [n]);
        for (const addOne of [false, true]) {
          const y = backend.rmsNorm(xt, wt, 1e-5, addOne);
          expect(y.shape).toEqual([1, rows, n]);
          expectClose(await backend.read(y), rmsRef(x, w, n, 1e-5, addOne), TOL, `rmsNorm ${rows}x${n} addOne=${addOne}`);
        }
      }
    });
  }

  it('headRmsNorm normalises each head separately', async () => {
    const [t, heads, hd] = [3, 4, 8];
    const x = randomArray(t * heads * hd, 21, -3, 3);
    const w = randomArray(hd, 22, -0.5, 0.5);
    const got = await backend.read(backend.headRmsNorm(backend.fromArray(x, [1, t, heads * hd]), backend.fromArray(w, [hd]), hd, 1e-6, true));
    expectClose(got, rmsRef(x, w, hd, 1e-6, true), TOL, 'headRmsNorm');
    expect(() => backend.headRmsNorm(backend.fromArray(x, [1, t, heads * hd]), backend.fromArray(w, [hd]), 5, 1e-6)).toThrow(/not a multiple of headDim 5/);
  });

  it('layerNorm', async () => {
    const [rows, n] = [4, 130];
    const x = randomArray(rows * n, 31, 2, 6);
    const w = randomArray(n, 32);
    const b = randomArray(n, 33);
    const want: number[] = [];
    for (let r = 0; r < rows; r++) {
      const row = Array.from(x.subarray(r * n, r * n + n));
      const mean = row.reduce((s, v) => s + v, 0) / n;
      const variance = row.reduce((s, v) => s + (v - mean) ** 2, 0) / n;
      row.forEach((v, i) => want.push(((v - mean) / Math.sqrt(variance + 1e-5)) * w[i]! + b[i]!));
    }
    const got = await backend.read(backend.layerNorm(backend.fromArray(x, [rows, n]), backend.fromArray(w, [n]), backend.fromArray(b, [n]), 1e-5));
    expectClose(got, want, { abs: 1e-5, rel: 1e-5 }, 'layerNorm');
  });
});
