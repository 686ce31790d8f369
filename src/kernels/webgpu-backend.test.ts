import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Backend } from '../model/backend.ts';
import { useDawn } from '../gpu/dawn-node.ts';
import { DeviceLostError, getGpu } from '../gpu/device.ts';
import { resetFlags, setFlags } from './flags.ts';
import { expectClose, randomArray } from './testing.ts';
import { createWebGpuBackend } from './webgpu-backend.ts';

let backend: Backend;

beforeAll(async () => {
  expect(useDawn()).toBe(true);
  backend = await createWebGpuBackend();
});
afterEach(() => resetFlags());

describe('webgpu backend: storage', () => {
  it('round-trips f32, i32 and f16 tensors, including odd lengths and empty ones', async () => {
    const f = randomArray(13, 1);
    expect(Array.from(await backend.read(backend.fromArray(f, [13])))).toEqual(Array.from(f));
    const i = Int32Array.from([7, -3, 2147483647, -2147483648, 0]);
    const it32 = backend.fromArray(i, [5]);
    expect(it32.dtype).toBe('i32');
    const back = await backend.read(it32);
    expect(back).toBeInstanceOf(Int32Array);
    expect(Array.from(back)).toEqual(Array.from(i));
    const h = await backend.read(backend.fromArray(Float32Array.from([1, -0.5, 65504, 1e-8, 3.14159]), [5], 'f16'));
    expectClose(h, [1, -0.5, 65504, 0, 3.140625], { abs: 6e-8, rel: 0 }, 'f16');
    expect((await backend.read(backend.fromArray(new Float32Array(0), [0, 4]))).length).toBe(0);
  });

  it('refuses data that does not fit the shape or dtype', () => {
    expect(() => backend.fromArray(new Float32Array(5), [2, 3])).toThrow(/5 values do not fill shape \[2, 3\]/);
    expect(() => backend.fromArray(new Float32Array(2), [2], 'i32')).toThrow(/needs an Int32Array/);
    expect(() => backend.fromArray(new Float32Array(2), [2, -1])).toThrow(/non-negative integers/);
  });

  it('sliceSeq and concatSeq copy f32 and i32 rows', async () => {
    const [b, t, d] = [2, 5, 3];
    const x = Float32Array.from({ length: b * t * d }, (_, i) => i);
    const xt = backend.fromArray(x, [b, t, d]);
    const s = backend.sliceSeq(xt, 1, 4);
    expect(s.shape).toEqual([b, 3, d]);
    const want = [0, 1].flatMap((bi) => Array.from(x.subarray((bi * t + 1) * d, (bi * t + 4) * d)));
    expect(Array.from(await backend.read(s))).toEqual(want);
    const c = backend.concatSeq(s, backend.sliceSeq(xt, 0, 1));
    expect(c.shape).toEqual([b, 4, d]);
    const wantC = [0, 1].flatMap((bi) => [...Array.from(x.subarray((bi * t + 1) * d, (bi * t + 4) * d)), ...Array.from(x.subarray(bi * t * d, (bi * t + 1) * d))]);
    expect(Array.from(await backend.read(c))).toEqual(wantC);
    const ids = backend.fromArray(Int32Array.from([1, 2, 3, 4]), [1, 4, 1]);
    expect(Array.from(await backend.read(backend.concatSeq(backend.sliceSeq(ids, 2, 4), ids)))).toEqual([3, 4, 1, 2, 3, 4]);
    expect(() => backend.sliceSeq(xt, 3, 6)).toThrow(/range \[3, 6\) is not within 0..5/);
    expect(() => backend.concatSeq(xt, ids)).toThrow(/\[B, S1, D\] and \[B, S2, D\]/);
  });

  it('reshape shares storage: the view outlives the disposed original', async () => {
    const x = backend.fromArray(Float32Array.from([1, 2, 3, 4, 5, 6]), [2, 3]);
    const v = backend.reshape(x, [3, 2]);
    expect(v.shape).toEqual([3, 2]);
    backend.dispose(x);
    backend.dispose(x);
    expect(Array.from(await backend.read(v))).toEqual([1, 2, 3, 4, 5, 6]);
    await expect(backend.read(x)).rejects.toThrow(/was disposed/);
    expect(() => backend.reshape(v, [4])).toThrow(/needs 4/);
  });

  it('returns the buffers of disposed tensors to the pool', async () => {
    const pool = (await getGpu()).pool;
    await backend.sync();
    const before = pool.stats().inUseBytes;
    const a = backend.fromArray(randomArray(1000, 2), [10, 100]);
    const b = backend.softmax(a);
    const c = backend.add(a, b);
    await backend.read(c);
    expect(pool.stats().inUseBytes).toBeGreaterThanOrEqual(before + 3 * 4000);
    for (const t of [a, b, c]) backend.dispose(t);
    await backend.sync();
    expect(pool.stats().inUseBytes).toBe(before);
  });

  it('keeps results right across many submits (long op chains, reused buffers)', async () => {
    setFlags({ dispatchesPerSubmit: 4 });
    const batched = await createWebGpuBackend();
    let x = batched.fromArray(Float32Array.from([1, 2, 3]), [3]);
    const one = batched.fromArray(Float32Array.from([1, 1, 1]), [3]);
    for (let i = 0; i < 50; i++) {
      const next = batched.add(x, one);
      batched.dispose(x);
      x = next;
    }
    expect(Array.from(await batched.read(x))).toEqual([51, 52, 53]);
  });

  it('refuses tensors from another backend and i32 where floats are needed', () => {
    const foreign = { shape: [2], dtype: 'f32', backend: 'cpu' } as const;
    expect(() => backend.scale(foreign, 2)).toThrow(/belongs to the cpu backend/);
    expect(() => backend.softmax(backend.fromArray(Int32Array.from([1, 2]), [2]))).toThrow(/expects float tensors, got i32/);
  });
});

describe('webgpu backend: device loss', () => {
  it('fails ops and reads on a lost device with a clear error; a new backend works', async () => {
    const lostBackend = await createWebGpuBackend();
    const x = lostBackend.fromArray(Float32Array.from([1, 2, 3]), [3]);
    const y = lostBackend.scale(x, 2);
    const ctx = await getGpu();
    ctx.device.destroy();
    await expect(lostBackend.read(y)).rejects.toThrow(DeviceLostError);
    await ctx.lost;
    expect(() => lostBackend.scale(x, 2)).toThrow(/WebGPU device lost \(destroyed\)/);
    await expect(lostBackend.sync()).rejects.toThrow(DeviceLostError);

    const fresh = await createWebGpuBackend();
    const z = fresh.scale(fresh.fromArray(Float32Array.from([1, 2, 3]), [3]), 2);
    expect(Array.from(await fresh.read(z))).toEqual([2, 4, 6]);
    backend = fresh;
  });
});
