// createEmpty + writeRows on the CPU backend: tensors filled row range by row range.
import { describe, expect, it } from 'vitest';
import { f16ToF32, f32ToF16 } from '../io/dtype.ts';
import { createCpuBackend } from './cpu-backend.ts';

const be = createCpuBackend();

describe('cpu backend: createEmpty and writeRows', () => {
  it('fills f32 and f16 tensors from float32 rows and float16 bits, in any order', async () => {
    const values = Float32Array.from({ length: 5 * 3 }, (_, i) => (i - 7) * 0.3 + 1e-3);
    const t = be.createEmpty([5, 3], 'f32');
    be.writeRows(t, 3, values.subarray(9, 15));
    be.writeRows(t, 0, values.subarray(0, 9));
    expect(Array.from(await be.read(t))).toEqual(Array.from(values));

    const rounded = values.map((v) => f16ToF32(f32ToF16(v)));
    const h = be.createEmpty([5, 3], 'f16');
    expect(h.dtype).toBe('f16');
    be.writeRows(h, 0, values.subarray(0, 6));
    be.writeRows(h, 2, Uint16Array.from(values.subarray(6, 15), (v) => f32ToF16(v)));
    expect(Array.from(await be.read(h))).toEqual(Array.from(rounded));
  });

  it('refuses partial rows, rows past the end, f16 bits for f32 tensors, and i32', () => {
    const t = be.createEmpty([4, 3], 'f32');
    expect(() => be.writeRows(t, 0, new Float32Array(4))).toThrow(/writeRows: 4 values from row 0 are not whole rows of 3 within \[4, 3\]/);
    expect(() => be.writeRows(t, 3, new Float32Array(6))).toThrow(/from row 3 are not whole rows/);
    expect(() => be.writeRows(t, 0, new Uint16Array(3))).toThrow(/float16 bits \(Uint16Array\) need an f16 tensor, got f32/);
    expect(() => be.writeRows(be.fromArray(new Int32Array(3), [1, 3]), 0, new Float32Array(3))).toThrow(/expects a float tensor, got i32/);
    expect(() => be.createEmpty([2, -1], 'f32')).toThrow(/non-negative integers/);
  });
});
