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

function logSoftmaxRef(x: Float32Array, n: number): number[] {
  const out: number[] = [];
  for (let r = 0; r < x.length / n; r++) {
    const row = Array.from(x.subarray(r * n, r * n + n));
    const m = Math.max(...row);
    const lse = m + Math.log(row.reduce((s, v) => s + Math.exp(v - m), 0));
    for (const v of row) out.push(v - lse);
  }
  return out;
}

describe('softmax kernels vs float64', () => {
  it('softmax and logSoftmax over rows longer than a workgroup, with large logits', async () => {
    const [rows, n] = [3, 513];
    const x = randomArray(rows * n, 41, -20, 20);
    x[5] = 1000;
    x[n + 7] = -1000;
    const xt = backend.fromArray(x, [rows, n]);
    const logp = logSoftmaxRef(x, n);
    expectClose(await backend.read(backend.logSoftmax(xt)), logp, { abs: 2e-5, rel: 1e-6 }, 'logSoftmax');
    expectClose(await backend.read(backend.softmax(xt)), logp.map(Math.exp), { abs: 1e-7, rel: 2e-5 }, 'softmax');
  });

  it('softmax of a single-element row is 1', async () => {
    expect(Array.from(await backend.read(backend.softmax(backend.fromArray(new Float32Array([3, -7]), [2, 1]))))).toEqual([1, 1]);
  });
});
