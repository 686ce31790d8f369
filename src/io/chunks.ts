// Pieces for streaming large tensors: row ranges of a bounded byte size, and half-precision
// conversions done per chunk so a tensor never needs a whole float32 copy on the host.
import { f16ToF32 } from './dtype.ts';

/** Finite values of at least this magnitude round to ±infinity in float16 (its largest value is 65504). */
export const F16_OVERFLOW = 65520;

/**
 * Row ranges [start, end) covering rows [first, last) with about `chunkBytes` bytes each (at least
 * `rowMultiple` rows per range, and a multiple of it except for the last).
 */
export function rowChunks(first: number, last: number, rowBytes: number, chunkBytes: number, rowMultiple = 1): Array<[number, number]> {
  if (!(chunkBytes > 0)) throw new RangeError(`chunk size must be positive, got ${chunkBytes}`);
  const fit = rowBytes > 0 ? Math.floor(chunkBytes / rowBytes) : last - first;
  const step = Math.max(rowMultiple, fit - (fit % rowMultiple));
  const out: Array<[number, number]> = [];
  for (let r = first; r < last; r += step) out.push([r, Math.min(last, r + step)]);
  return out;
}

/** float32 bits → float16 bits, rounding to nearest even (as f32ToF16 in dtype.ts). */
function halfFromF32Bits(u: number): number {
  const sign = (u >>> 16) & 0x8000;
  const exp = (u >>> 23) & 0xff;
  const mant = u & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 112;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    const m = mant | 0x800000;
    const shift = 14 - e;
    let half = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && half & 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half++;
  return sign | half;
}

/**
 * bfloat16 bits → float16 bits. Exact for magnitudes in float16's normal range (bf16 has fewer
 * mantissa bits); smaller ones become f16 subnormals or zero. `overflow` counts finite values that
 * became ±infinity: callers keep such a tensor in float32 rather than store infinities.
 */
export function bf16ToF16(src: Uint16Array): { bits: Uint16Array; overflow: number } {
  const bits = new Uint16Array(src.length);
  let overflow = 0;
  for (let i = 0; i < src.length; i++) {
    const b = src[i]!;
    const h = halfFromF32Bits(b << 16);
    if ((h & 0x7fff) === 0x7c00 && (b & 0x7f80) !== 0x7f80) overflow++;
    bits[i] = h;
  }
  return { bits, overflow };
}

/**
 * bfloat16 bits, kept as they are stored: a Uint16Array that says its format (subarray and slice keep
 * the class). Widening one is exact: the float32 with these bits as its upper half.
 */
export class Bf16Bits extends Uint16Array {}

/** float16 bits, or bfloat16 bits (a Bf16Bits), → float32 values written into `out` from `offset`. */
export function halfBitsIntoF32(bits: Uint16Array, out: Float32Array<ArrayBufferLike>, offset = 0): void {
  if (!(bits instanceof Bf16Bits)) return f16BitsIntoF32(bits, out, offset);
  const wide = new Uint32Array(out.buffer, out.byteOffset + offset * 4, bits.length);
  for (let i = 0; i < bits.length; i++) wide[i] = bits[i]! << 16;
}

/** float32 values → bfloat16 bits, rounded to nearest (ties to even); NaNs stay NaNs. */
export function bf16FromF32(values: Float32Array): Bf16Bits {
  const wide = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Bf16Bits(values.length);
  for (let i = 0; i < values.length; i++) {
    const x = wide[i]!;
    out[i] = (x & 0x7fffffff) > 0x7f800000 ? (x >>> 16) | 0x40 : (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
  }
  return out;
}

let f16Values: Float32Array | undefined;

/** float16 bits → float32 values written into `out` from `offset`, by table lookup. */
export function f16BitsIntoF32(bits: Uint16Array, out: Float32Array<ArrayBufferLike>, offset = 0): void {
  if (!f16Values) {
    f16Values = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) f16Values[h] = f16ToF32(h);
  }
  for (let i = 0; i < bits.length; i++) out[offset + i] = f16Values[bits[i]!]!;
}

/** How many finite values would become ±infinity when stored as float16. */
export function f16Overflow(values: Float32Array): number {
  let n = 0;
  for (let i = 0; i < values.length; i++) {
    const a = Math.abs(values[i]!);
    if (a >= F16_OVERFLOW && a !== Infinity) n++;
  }
  return n;
}
