import { beforeAll, describe, expect, it } from 'vitest';
import type { Backend } from '../../model/backend.ts';
import { useDawn } from '../../gpu/dawn-node.ts';
import { randomArray, roundF16 } from '../testing.ts';
import { createWebGpuBackend } from '../webgpu-backend.ts';

let backend: Backend;

beforeAll(async () => {
  expect(useDawn()).toBe(true);
  backend = await createWebGpuBackend();
});

describe('embedding', () => {
  for (const dtype of ['f32', 'f16'] as const) {
    it(`gathers rows of an ${dtype} table`, async () => {
      const [vocab, d] = [11, 7];
      const table = randomArray(vocab * d, 81, -5, 5);
      const held = dtype === 'f16' ? roundF16(table) : table;
      const ids = Int32Array.from([3, 0, 10, 3, 5, 9]);
      const out = backend.embedding(backend.fromArray(table, [vocab, d], dtype), ids, [2, 3]);
      expect(out.shape).toEqual([2, 3, d]);
      const want = Array.from(ids).flatMap((id) => Array.from(held.subarray(id * d, id * d + d)));
      expect(Array.from(await backend.read(out))).toEqual(want);
    });
  }

  it('refuses ids outside the vocabulary', () => {
    const table = backend.fromArray(new Float32Array(8), [4, 2]);
    expect(() => backend.embedding(table, Int32Array.from([1, 4]), [2])).toThrow(/id 4 at position 1 is outside the vocabulary of 4/);
    expect(() => backend.embedding(table, Int32Array.from([-1]), [1])).toThrow(/id -1/);
  });
});
