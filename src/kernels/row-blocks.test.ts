// Tensors filled by rows (createEmpty + writeRows) and, above the binding limit (flags.maxBindingBytes,
// tiny here), kept as row blocks: embedding and x·Wᵀ against the CPU backend on the same values.
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createCpuBackend } from '../gpu/cpu-backend.ts';
import { useDawn } from '../gpu/dawn-node.ts';
import { f32ToF16 } from '../io/dtype.ts';
import type { Backend, Tensor } from '../model/backend.ts';
import { resetFlags, setFlags } from './flags.ts';
import { expectClose, randomArray, roundF16 } from './testing.ts';
import { createWebGpuBackend } from './webgpu-backend.ts';

let gpu: Backend;
const cpu = createCpuBackend();

beforeAll(async () => {
  expect(useDawn()).toBe(true);
  gpu = await createWebGpuBackend();
});
afterEach(() => resetFlags());

/** A [rows, cols] tensor written in chunks of `chunkRows` rows, f16 ones as bits. */
function filled(be: Backend, data: Float32Array, rows: number, cols: number, dtype: 'f32' | 'f16', chunkRows: number): Tensor {
  const t = be.createEmpty([rows, cols], dtype);
  for (let r = 0; r < rows; r += chunkRows) {
    const part = data.subarray(r * cols, Math.min(rows, r + chunkRows) * cols);
    be.writeRows(t, r, dtype === 'f16' ? Uint16Array.from(part, (v) => f32ToF16(v)) : part);
  }
  return t;
}

const TOL = { abs: 1e-5, rel: 1e-5 };

describe('webgpu: createEmpty and writeRows', () => {
  it('round-trip f32 and f16 (bits and floats), in one buffer and in row blocks', async () => {
    const [rows, cols] = [23, 6];
    const data = randomArray(rows * cols, 11);
    for (const limit of [0, 96]) {
      setFlags({ maxBindingBytes: limit });
      expectClose(await gpu.read(filled(gpu, data, rows, cols, 'f32', 5)), data, { abs: 0, rel: 0 }, `f32, limit ${limit}`);
      expectClose(await gpu.read(filled(gpu, data, rows, cols, 'f16', 4)), roundF16(data), { abs: 0, rel: 0 }, `f16 bits, limit ${limit}`);
      const h = gpu.createEmpty([rows, cols], 'f16');
      gpu.writeRows(h, 0, data);
      expectClose(await gpu.read(h), roundF16(data), { abs: 0, rel: 0 }, `f16 floats, limit ${limit}`);
    }
  });

  it('rows of odd length in f16: blocks and chunks keep writes word-aligned; an odd tail ends the tensor', async () => {
    setFlags({ maxBindingBytes: 64 });
    const [rows, cols] = [9, 5];
    const data = randomArray(rows * cols, 12);
    // 64 bytes hold 6 rows of 10 bytes: blocks of 6 rows (even) and 3.
    expectClose(await gpu.read(filled(gpu, data, rows, cols, 'f16', 2)), roundF16(data), { abs: 0, rel: 0 }, 'odd rows');
    const t = gpu.createEmpty([rows, cols], 'f16');
    expect(() => gpu.writeRows(t, 1, new Float32Array(cols))).toThrow(/an f16 write must start at an even element, got 5/);
    expect(() => gpu.writeRows(t, 0, new Float32Array(cols))).toThrow(/an f16 write of an odd number of values \(5\) must end the tensor/);
  });

  it('refuses partial rows, rows past the end, and f16 bits for an f32 tensor', () => {
    const t = gpu.createEmpty([4, 3], 'f32');
    expect(() => gpu.writeRows(t, 0, new Float32Array(4))).toThrow(/writeRows: 4 values from row 0 are not whole rows of 3 within \[4, 3\]/);
    expect(() => gpu.writeRows(t, 3, new Float32Array(6))).toThrow(/from row 3 are not whole rows/);
    expect(() => gpu.writeRows(t, 0, new Uint16Array(3))).toThrow(/need an f16 tensor, got f32/);
    setFlags({ maxBindingBytes: 16 });
    expect(() => gpu.createEmpty([2, 8], 'f32')).toThrow(/a row of 32 bytes exceeds the storage binding limit of 16 bytes/);
  });
});

describe('webgpu: row-blocked weights', () => {
  const [vocab, d] = [37, 8];
  const table = randomArray(vocab * d, 21);

  it.each(['f32', 'f16'] as const)('embedding from a %s table in blocks equals the CPU gather', async (dtype) => {
    setFlags({ maxBindingBytes: dtype === 'f32' ? 8 * d * 4 : 8 * d * 2 });
    const t = filled(gpu, table, vocab, d, dtype, 3);
    const ids = Int32Array.from([0, 36, 8, 9, 10, 7, 7, 15, 16, 31, 32, 33, 1, 2]);
    const want = await cpu.read(cpu.embedding(filled(cpu, table, vocab, d, dtype, 5), ids, [2, 7]));
    const got = gpu.embedding(t, ids, [2, 7]);
    expect(got.shape).toEqual([2, 7, d]);
    expectClose(await gpu.read(got), want, { abs: 0, rel: 0 }, `${dtype} gather`);
    expect(() => gpu.embedding(t, Int32Array.from([37]), [1])).toThrow(/id 37 at position 0 is outside the vocabulary of 37/);
  });

  it.each(['f32', 'f16'] as const)('linear and matmul(transposeB) against a %s W in blocks equal the CPU result', async (dtype) => {
    setFlags({ maxBindingBytes: 10 * d * 4 });
    const w = filled(gpu, table, vocab, d, dtype, 7);
    const x = randomArray(3 * 4 * d, 22);
    const bias = randomArray(vocab, 23);
    const wc = filled(cpu, table, vocab, d, dtype, 7);
    const xg = gpu.fromArray(x, [3, 4, d]);
    const xc = cpu.fromArray(x, [3, 4, d]);
    const got = gpu.linear(xg, w, gpu.fromArray(bias, [vocab]));
    expect(got.shape).toEqual([3, 4, vocab]);
    expectClose(await gpu.read(got), await cpu.read(cpu.linear(xc, wc, cpu.fromArray(bias, [vocab]))), TOL, `${dtype} linear + bias`);
    const row = randomArray(d, 24);
    expectClose(await gpu.read(gpu.matmul(gpu.fromArray(row, [1, d]), w, { transposeB: true })), await cpu.read(cpu.matmul(cpu.fromArray(row, [1, d]), wc, { transposeB: true })), TOL, `${dtype} one row`);
  });

  it('whole reads concatenate the blocks; other ops refuse a blocked tensor by name; dispose frees every block', async () => {
    setFlags({ maxBindingBytes: 8 * d * 4 });
    const w = filled(gpu, table, vocab, d, 'f32', 37);
    expectClose(await gpu.read(w), table, { abs: 0, rel: 0 }, 'read');
    expect(() => gpu.matmul(gpu.fromArray(randomArray(2 * vocab, 1), [2, vocab]), w)).toThrow(/only a transposed 2-D b \(weights \[out, in\]\) is supported/);
    expect(() => gpu.transpose(w)).toThrow(/transpose: tensor \[37, 8\] is kept as 5 row blocks/);
    expect(() => gpu.linear(gpu.fromArray(randomArray(d, 2), [1, d]), w, gpu.fromArray(new Float32Array(3), [3]))).toThrow(/bias has 3 values for 37 outputs/);
    gpu.dispose(w);
    await expect(gpu.read(w)).rejects.toThrow(/was disposed/);
    expect(() => gpu.embedding(w, Int32Array.from([1]), [1])).toThrow(/was disposed/);
  });
});
