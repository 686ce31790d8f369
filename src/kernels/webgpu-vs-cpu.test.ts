// Every op on the WebGPU and the CPU reference backend, same random inputs, compared element by element.

import { beforeAll, describe, expect, it } from 'vitest';
import type { Backend, Tensor } from '../model/backend.ts';
import { createCpuBackend } from '../gpu/cpu-backend.ts';
import { useDawn } from '../gpu/dawn-node.ts';
import { expectClose, randomArray } from './testing.ts';
import { createWebGpuBackend } from './webgpu-backend.ts';

type Input = { data: Float32Array | Int32Array; shape: number[]; dtype?: 'f16' };
type Op = (be: Backend, t: Tensor[]) => Tensor | Tensor[];

let gpu: Backend;
const cpu = createCpuBackend();

beforeAll(async () => {
  expect(useDawn()).toBe(true);
  gpu = await createWebGpuBackend();
});

const r = (shape: number[], seed: number, lo = -2, hi = 2): Input => ({ data: randomArray(shape.reduce((a, b) => a * b, 1), seed, lo, hi), shape });
const TOL = { abs: 1e-5, rel: 1e-5 };

const CASES: [string, Input[], Op, { abs: number; rel: number }?][] = [
  ['matmul', [r([2, 5, 12], 1), r([12, 9], 2)], (be, [a, b]) => be.matmul(a!, b!)],
  ['matmul transposeB', [r([5, 12], 3), r([9, 12], 4)], (be, [a, b]) => be.matmul(a!, b!, { transposeB: true })],
  ['linear, f16 weights, one row', [r([1, 1, 16], 5), { ...r([6, 16], 6), dtype: 'f16' }, r([6], 7)], (be, [x, w, b]) => be.linear(x!, w!, b!)],
  ['linear, several rows', [r([1, 7, 16], 8), r([6, 16], 9), r([6], 10)], (be, [x, w, b]) => be.linear(x!, w!, b!)],
  ['add (broadcast)', [r([3, 8], 11), r([8], 12)], (be, [a, b]) => be.add(a!, b!)],
  ['sub', [r([3, 8], 13), r([3, 8], 14)], (be, [a, b]) => be.sub(a!, b!)],
  ['mul', [r([3, 8], 15), r([3, 8], 16)], (be, [a, b]) => be.mul(a!, b!)],
  ['scale', [r([3, 8], 17)], (be, [a]) => be.scale(a!, 1.7)],
  ['gelu', [r([64], 18, -5, 5)], (be, [a]) => be.activation(a!, 'gelu')],
  ['gelu_tanh', [r([64], 19, -5, 5)], (be, [a]) => be.activation(a!, 'gelu_tanh')],
  ['silu', [r([64], 20, -5, 5)], (be, [a]) => be.activation(a!, 'silu')],
  ['relu', [r([64], 21)], (be, [a]) => be.activation(a!, 'relu')],
  ['gated gelu_tanh', [r([2, 16], 22), r([2, 16], 23)], (be, [g, u]) => be.gated(g!, u!, 'gelu_tanh')],
  ['softcap', [r([40], 24, -100, 100)], (be, [a]) => be.softcap(a!, 30)],
  ['rmsNorm', [r([2, 3, 20], 25), r([20], 26)], (be, [x, w]) => be.rmsNorm(x!, w!, 1e-6)],
  ['rmsNorm addOne', [r([2, 3, 20], 27), r([20], 28)], (be, [x, w]) => be.rmsNorm(x!, w!, 1e-6, true)],
  ['layerNorm', [r([4, 20], 29), r([20], 30), r([20], 31)], (be, [x, w, b]) => be.layerNorm(x!, w!, b!, 1e-5)],
  ['softmax', [r([3, 50], 32, -10, 10)], (be, [x]) => be.softmax(x!)],
  ['logSoftmax', [r([3, 50], 33, -10, 10)], (be, [x]) => be.logSoftmax(x!)],
  ['rope llama3', [r([1, 4, 32], 34)], (be, [x]) => be.rope(x!, 2, 16, 3, { theta: 500000, rotaryDim: 16, scaling: { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 32 } })],
  ['rope partial', [r([1, 4, 32], 35)], (be, [x]) => be.rope(x!, 2, 16, 0, { theta: 10000, rotaryDim: 8 })],
  ['headRmsNorm', [r([1, 3, 32], 36), r([8], 37)], (be, [x, w]) => be.headRmsNorm(x!, w!, 8, 1e-6, true)],
  [
    'attention GQA, window, softcap, offset',
    [r([2, 3, 32], 38), r([2, 7, 16], 39), r([2, 7, 16], 40)],
    (be, [q, k, v]) => be.attention(q!, k!, v!, { nHeads: 4, nKvHeads: 2, headDim: 8, scale: 0.35, queryOffset: 4, window: 3, softcap: 20 }),
  ],
  ['sliceSeq', [r([2, 6, 4], 41)], (be, [x]) => be.sliceSeq(x!, 2, 5)],
  ['concatSeq', [r([2, 3, 4], 42), r([2, 2, 4], 43)], (be, [a, b]) => be.concatSeq(a!, b!)],
  ['reshape', [r([2, 6], 44)], (be, [x]) => be.reshape(x!, [3, 4])],
  ['transpose', [r([5, 7], 45)], (be, [x]) => be.transpose(x!)],
  ['sum', [r([3, 40], 46)], (be, [x]) => be.sum(x!)],
  ['sumSquares', [r([3, 40], 47)], (be, [x]) => be.sumSquares(x!)],
  ['topk', [r([3, 40], 48)], (be, [x]) => { const t = be.topk(x!, 5); return [t.values, t.indices]; }],
  ['embedding f16', [{ ...r([10, 6], 49), dtype: 'f16' }], (be, [table]) => be.embedding(table!, Int32Array.from([9, 0, 4, 4]), [2, 2])],
];

async function runOn(be: Backend, inputs: Input[], op: Op): Promise<{ shape: readonly number[]; dtype: string; data: Float32Array | Int32Array }[]> {
  const tensors = inputs.map((i) => be.fromArray(i.data, i.shape, i.dtype));
  const out = op(be, tensors);
  return Promise.all((Array.isArray(out) ? out : [out]).map(async (t) => ({ shape: t.shape, dtype: t.dtype, data: await be.read(t) })));
}

describe('webgpu backend agrees with the cpu backend', () => {
  for (const [name, inputs, op, tol] of CASES) {
    it(name, async () => {
      const want = await runOn(cpu, inputs, op);
      const got = await runOn(gpu, inputs, op);
      expect(got.length).toBe(want.length);
      got.forEach((g, i) => {
        expect(g.shape).toEqual(want[i]!.shape);
        expect(g.dtype).toBe(want[i]!.dtype);
        expectClose(g.data, want[i]!.data, tol ?? TOL, name);
      });
    });
  }
});
