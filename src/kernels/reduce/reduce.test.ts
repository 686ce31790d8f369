import { beforeAll, describe, expect, it } from 'vitest';
import type { Backend } from '../../model/backend.ts';
import { useDawn } from '../../gpu/dawn-node.ts';
import { expectClose, randomArray } from '../testing.ts';
import { createWebGpuBackend } from '../webgpu-backend.ts';

let backend: Backend;

beforeAll(async () => {
  expect(useDawn()).toBe(true);
  backend = await createWebGpuBackend();
});

describe('row reductions vs float64', () => {
  it('sum and sumSquares over the last dimension', async () => {
    const [rows, n] = [5, 700];
    const x = randomArray(rows * n, 51, -2, 2);
    const xt = backend.fromArray(x, [1, rows, n]);
    const sums: number[] = [];
    const squares: number[] = [];
    for (let r = 0; r < rows; r++) {
      const row = Array.from(x.subarray(r * n, r * n + n));
      sums.push(row.reduce((s, v) => s + v, 0));
      squares.push(row.reduce((s, v) => s + v * v, 0));
    }
    const s = backend.sum(xt);
    expect(s.shape).toEqual([1, rows]);
    expectClose(await backend.read(s), sums, { abs: 1e-4, rel: 1e-5 }, 'sum');
    expectClose(await backend.read(backend.sumSquares(xt)), squares, { abs: 1e-4, rel: 1e-5 }, 'sumSquares');
  });

  it('reduces a vector to a scalar', async () => {
    const s = backend.sum(backend.fromArray(new Float32Array([1.5, -2, 4]), [3]));
    expect(s.shape).toEqual([]);
    expect(Math.abs((await backend.read(s))[0]! - 3.5)).toBeLessThanOrEqual(1e-6);
  });
});
