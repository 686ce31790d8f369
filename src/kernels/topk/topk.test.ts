import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Backend } from '../../model/backend.ts';
import { useDawn } from '../../gpu/dawn-node.ts';
import { resetFlags, setFlags } from '../flags.ts';
import { randomArray } from '../testing.ts';
import { createWebGpuBackend } from '../webgpu-backend.ts';

let backend: Backend;

beforeAll(async () => {
  expect(useDawn()).toBe(true);
  backend = await createWebGpuBackend();
});
afterEach(() => resetFlags());

function topkRef(row: Float32Array, k: number): number[] {
  return Array.from(row.keys())
    .sort((i, j) => row[j]! - row[i]! || i - j)
    .slice(0, k);
}

describe('topk', () => {
  for (const wg of [256, 32]) {
    it(`finds the k largest per row, ties to the lower index (workgroup ${wg})`, async () => {
      setFlags({ reduceWorkgroupSize: wg });
      const [rows, n, k] = [3, 300, 7];
      // Values on a coarse grid, so ties are common.
      const x = randomArray(rows * n, 101, 0, 20).map(Math.floor);
      const out = backend.topk(backend.fromArray(x, [1, rows, n]), k);
      expect(out.values.shape).toEqual([1, rows, k]);
      expect(out.indices.dtype).toBe('i32');
      const values = await backend.read(out.values);
      const indices = await backend.read(out.indices);
      for (let r = 0; r < rows; r++) {
        const row = x.subarray(r * n, r * n + n);
        const want = topkRef(row, k);
        expect(Array.from(indices.subarray(r * k, r * k + k))).toEqual(want);
        expect(Array.from(values.subarray(r * k, r * k + k))).toEqual(want.map((i) => row[i]!));
      }
    });
  }

  it('k equal to the row length sorts the row', async () => {
    const x = Float32Array.from([0.5, -1, 3, 0.5, 2]);
    const out = backend.topk(backend.fromArray(x, [5]), 5);
    expect(Array.from(await backend.read(out.indices))).toEqual([2, 4, 0, 3, 1]);
    expect(() => backend.topk(backend.fromArray(x, [5]), 6)).toThrow(/k = 6/);
  });
});
