import { beforeAll, describe, expect, it } from 'vitest';
import type { Backend } from '../../model/backend.ts';
import { useDawn } from '../../gpu/dawn-node.ts';
import { randomArray } from '../testing.ts';
import { createWebGpuBackend } from '../webgpu-backend.ts';

let backend: Backend;

beforeAll(async () => {
  expect(useDawn()).toBe(true);
  backend = await createWebGpuBackend();
});

describe('transpose', () => {
  it('transposes f32 and i32 matrices with ragged tiles exactly', async () => {
    const [m, n] = [17, 35];
    const x = randomArray(m * n, 91);
    const want = Array.from({ length: m * n }, (_, i) => x[(i % m) * n + Math.floor(i / m)]!);
    const t = backend.transpose(backend.fromArray(x, [m, n]));
    expect(t.shape).toEqual([n, m]);
    expect(Array.from(await backend.read(t))).toEqual(want);
    const ints = Int32Array.from({ length: m * n }, (_, i) => i - 300);
    const ti = backend.transpose(backend.fromArray(ints, [m, n]));
    expect(ti.dtype).toBe('i32');
    expect(Array.from(await backend.read(ti))).toEqual(Array.from({ length: m * n }, (_, i) => ints[(i % m) * n + Math.floor(i / m)]!));
  });
});
