// Helpers for the kernel tests (imported by *.test.ts only).

import { expect } from 'vitest';
import { f16ToF32, f32ToF16 } from '../io/dtype.ts';

/** Deterministic uniform values in [lo, hi) (mulberry32). */
export function randomArray(n: number, seed: number, lo = -1, hi = 1): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = lo + (hi - lo) * (((t ^ (t >>> 14)) >>> 0) / 4294967296);
  }
  return out;
}

/** Values rounded to f16 and back, as an f16 tensor holds them. */
export function roundF16(x: Float32Array): Float32Array {
  return x.map((v) => f16ToF32(f32ToF16(v)));
}

/** Every |got − want| ≤ abs + rel·|want|, reporting the worst element when not. */
export function expectClose(got: ArrayLike<number>, want: ArrayLike<number>, tol: { abs: number; rel: number }, what = 'values'): void {
  expect(got.length, `${what}: length`).toBe(want.length);
  let worst = -1;
  let worstExcess = 0;
  for (let i = 0; i < want.length; i++) {
    const g = got[i]!;
    const w = want[i]!;
    const excess = Math.abs(g - w) - (tol.abs + tol.rel * Math.abs(w));
    if (!(excess <= 0) && (worst < 0 || !(excess <= worstExcess))) {
      worst = i;
      worstExcess = excess;
    }
  }
  if (worst >= 0) {
    expect.fail(`${what}: element ${worst} is ${got[worst]}, expected ${want[worst]} (abs ${tol.abs}, rel ${tol.rel})`);
  }
}

/** Float64 reference matmul: a [m, k] · b, b [k, n] or [n, k] when transposed. */
export function matmulRef(a: ArrayLike<number>, b: ArrayLike<number>, m: number, k: number, n: number, transposeB: boolean): Float64Array {
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) s += a[i * k + p]! * (transposeB ? b[j * k + p]! : b[p * n + j]!);
      out[i * n + j] = s;
    }
  }
  return out;
}

/** erf in float64 to about 1e-10: Taylor series below 3.5, asymptotic erfc above. */
export function erf64(x: number): number {
  const z = Math.abs(x);
  let y: number;
  if (z < 3.5) {
    let term = z;
    let sum = z;
    for (let n = 1; n < 200 && Math.abs(term) > 1e-18; n++) {
      term *= (-z * z) / n;
      sum += term / (2 * n + 1);
    }
    y = (2 / Math.sqrt(Math.PI)) * sum;
  } else {
    const z2 = z * z;
    y = 1 - (Math.exp(-z2) / (z * Math.sqrt(Math.PI))) * (1 - 1 / (2 * z2) + 3 / (4 * z2 * z2) - 15 / (8 * z2 * z2 * z2));
  }
  return x < 0 ? -y : y;
}
