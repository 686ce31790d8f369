import { describe, expect, it } from 'vitest';
import { f16ToF32, f32ToF16 } from '../io/dtype.ts';
import { toF16Bits } from './f16.ts';
import { randomArray } from './testing.ts';

describe('toF16Bits', () => {
  it('matches f32ToF16 on normals, subnormals, ties, overflow, infinities and NaN', () => {
    const edge = [0, -0, 1, -1, 65504, 65520, 65519, 1e6, -1e6, Infinity, -Infinity, NaN, 6e-8, 3e-8, 2.9e-8, 6.1e-5, 1e-7, -5.96e-8, 1 + 2 ** -11, 1 + 3 * 2 ** -11, 2 ** -24 * 1.5, 2 ** -25];
    const values = Float32Array.from([...edge, ...randomArray(2000, 5, -70000, 70000), ...randomArray(2000, 6, -1e-4, 1e-4)]);
    const bits = toF16Bits(values);
    expect(bits.length).toBe(values.length + (values.length % 2));
    values.forEach((v, i) => expect(bits[i], `value ${v}`).toBe(f32ToF16(v)));
    expect(f16ToF32(bits[1]!)).toBe(-0);
  });
});
