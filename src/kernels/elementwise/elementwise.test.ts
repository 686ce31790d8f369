import { beforeAll, describe, expect, it } from 'vitest';
import type { Activation, Backend } from '../../model/backend.ts';
import { useDawn } from '../../gpu/dawn-node.ts';
import { erf64, expectClose, randomArray, roundF16 } from '../testing.ts';
import { createWebGpuBackend } from '../webgpu-backend.ts';

let backend: Backend;

beforeAll(async () => {
  expect(useDawn()).toBe(true);
  backend = await createWebGpuBackend();
});

const TOL = { abs: 1e-6, rel: 1e-6 };

const ACTIVATIONS: Record<Activation, (x: number) => number> = {
  gelu: (x) => 0.5 * x * (1 + erf64(x / Math.SQRT2)),
  gelu_tanh: (x) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3))),
  silu: (x) => x / (1 + Math.exp(-x)),
  relu: (x) => Math.max(x, 0),
};

describe('elementwise kernels vs float64', () => {
  it('add, sub and mul, same shape and broadcast over the last dimension', async () => {
    const a = randomArray(3 * 4 * 5, 1, -3, 3);
    const b = randomArray(3 * 4 * 5, 2, -3, 3);
    const v = randomArray(5, 3, -3, 3);
    const at = backend.fromArray(a, [3, 4, 5]);
    const bt = backend.fromArray(b, [3, 4, 5]);
    const vt = backend.fromArray(v, [5]);
    const ops = { add: (x: number, y: number) => x + y, sub: (x: number, y: number) => x - y, mul: (x: number, y: number) => x * y };
    for (const [name, f] of Object.entries(ops) as [keyof typeof ops, (x: number, y: number) => number][]) {
      const same = backend[name](at, bt);
      expect(same.shape).toEqual([3, 4, 5]);
      expectClose(await backend.read(same), Array.from(a, (x, i) => f(x, b[i]!)), TOL, `${name} same shape`);
      const bcast = backend[name](at, vt);
      expectClose(await backend.read(bcast), Array.from(a, (x, i) => f(x, v[i % 5]!)), TOL, `${name} broadcast`);
    }
    expect(() => backend.add(at, backend.fromArray(new Float32Array(4), [4]))).toThrow(/vector of its last dimension/);
  });

  it('scale and softcap', async () => {
    const x = randomArray(1000, 4, -60, 60);
    const xt = backend.fromArray(x, [10, 100]);
    expectClose(await backend.read(backend.scale(xt, -0.37)), Array.from(x, (v) => v * -0.37), TOL, 'scale');
    expectClose(await backend.read(backend.softcap(xt, 30)), Array.from(x, (v) => 30 * Math.tanh(v / 30)), { abs: 4e-6, rel: 1e-6 }, 'softcap');
    const small = randomArray(100, 5, -0.01, 0.01);
    expectClose(await backend.read(backend.softcap(backend.fromArray(small, [100]), 50)), Array.from(small, (v) => 50 * Math.tanh(v / 50)), { abs: 1e-9, rel: 1e-6 }, 'softcap near 0');
  });

  for (const act of Object.keys(ACTIVATIONS) as Activation[]) {
    it(`activation ${act}, including large |x|`, async () => {
      const x = Float32Array.from([...randomArray(600, 6, -6, 6), -100, -30, -10, 0, 10, 30, 100]);
      const got = await backend.read(backend.activation(backend.fromArray(x, [x.length]), act));
      const f = ACTIVATIONS[act];
      expectClose(got, Array.from(x, f), { abs: 2e-6, rel: 2e-6 }, act);
    });
  }

  it('gated: act(gate) · up', async () => {
    const g = randomArray(200, 7, -4, 4);
    const u = randomArray(200, 8, -2, 2);
    const got = await backend.read(backend.gated(backend.fromArray(g, [2, 100]), backend.fromArray(u, [2, 100]), 'silu'));
    expectClose(got, Array.from(g, (v, i) => ACTIVATIONS.silu(v) * u[i]!), { abs: 2e-6, rel: 2e-6 }, 'gated silu');
  });

  it('widens f16 inputs and stores f16 rounded to nearest', async () => {
    const a = randomArray(37, 9, -100, 100);
    const h = backend.fromArray(a, [37], 'f16');
    expect(h.dtype).toBe('f16');
    const rounded = roundF16(a);
    expect(Array.from(await backend.read(h))).toEqual(Array.from(rounded));
    const sum = backend.add(h, backend.fromArray(a, [37]));
    expect(sum.dtype).toBe('f32');
    expectClose(await backend.read(sum), Array.from(a, (v, i) => v + rounded[i]!), TOL, 'f16 + f32');
  });
});
