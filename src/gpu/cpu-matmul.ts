// Matrix products over Float32Array. `matmulInto` runs the WebAssembly SIMD kernels (cpu-wasm/,
// about 50 GFLOP/s on one core here) where the engine has wasm SIMD, and the JavaScript kernels
// below otherwise. These are register-tiled 4×4 so that each loaded value feeds four multiply-adds
// (V8 keeps the sixteen accumulators in registers; about 6 GFLOP/s on one core) and sum in float64.
// b may be float16 bits (a Uint16Array) or bfloat16 bits (a Bf16Bits): weights kept in 16 bits,
// widened to float32 a block at a time.
import { halfBitsIntoF32 } from '../io/chunks.ts';
import { wasmMatmul } from './cpu-wasm/gemm.ts';

/** Values of 16-bit b widened per block in the JavaScript path. */
const HALF_BLOCK_VALUES = 1 << 16;

/** c [M, N] = a [M, K] · b, b [K, N] or, with transposeB, b [N, K] (weights stored [out, in]); b float32, or float16 or bfloat16 bits. */
export function matmulInto(a: Float32Array, b: Float32Array | Uint16Array, c: Float32Array, M: number, N: number, K: number, transposeB: boolean): void {
  if (wasmMatmul(a, b, c, M, N, K, transposeB)) return;
  if (b instanceof Uint16Array) matmulHalf(a, b, c, M, N, K, transposeB);
  else if (transposeB) matmulTransB(a, b, c, M, N, K);
  else matmulPlain(a, b, c, M, N, K);
}

/** The JavaScript path for 16-bit b: blocks of output columns, b's block widened, multiplied, scattered into c. */
function matmulHalf(a: Float32Array, b: Uint16Array, c: Float32Array, M: number, N: number, K: number, transposeB: boolean): void {
  const nb = Math.max(1, Math.min(N, Math.floor(HALF_BLOCK_VALUES / Math.max(K, 1))));
  const wide = new Float32Array(nb * K);
  const block = new Float32Array(M * nb);
  for (let j0 = 0; j0 < N; j0 += nb) {
    const cols = Math.min(nb, N - j0);
    const w = wide.subarray(0, cols * K);
    const cb = block.subarray(0, M * cols);
    if (transposeB) {
      halfBitsIntoF32(b.subarray(j0 * K, (j0 + cols) * K), w);
      matmulTransB(a, w, cb, M, cols, K);
    } else {
      for (let k = 0; k < K; k++) halfBitsIntoF32(b.subarray(k * N + j0, k * N + j0 + cols), w, k * cols);
      matmulPlain(a, w, cb, M, cols, K);
    }
    for (let i = 0; i < M; i++) c.set(cb.subarray(i * cols, (i + 1) * cols), i * N + j0);
  }
}

/** c [M, N] = a [M, K] · bᵀ, b [N, K] (weights stored [out, in]): dot products of contiguous rows. */
export function matmulTransB(a: Float32Array, b: Float32Array, c: Float32Array, M: number, N: number, K: number): void {
  // Rows of b per block, so that the block stays in cache while every row of a passes over it.
  const blockRows = Math.max(4, Math.floor(65536 / (K * 4)) & ~3);
  for (let j0 = 0; j0 < N; j0 += blockRows) {
    const j1 = Math.min(N, j0 + blockRows);
    let i = 0;
    for (; i + 4 <= M; i += 4) {
      const a0 = i * K, a1 = a0 + K, a2 = a1 + K, a3 = a2 + K;
      let j = j0;
      for (; j + 4 <= j1; j += 4) {
        const b0 = j * K, b1 = b0 + K, b2 = b1 + K, b3 = b2 + K;
        let c00 = 0, c01 = 0, c02 = 0, c03 = 0, c10 = 0, c11 = 0, c12 = 0, c13 = 0;
        let c20 = 0, c21 = 0, c22 = 0, c23 = 0, c30 = 0, c31 = 0, c32 = 0, c33 = 0;
        for (let k = 0; k < K; k++) {
          const x0 = a[a0 + k]!, x1 = a[a1 + k]!, x2 = a[a2 + k]!, x3 = a[a3 + k]!;
          const y0 = b[b0 + k]!, y1 = b[b1 + k]!, y2 = b[b2 + k]!, y3 = b[b3 + k]!;
          c00 += x0 * y0; c01 += x0 * y1; c02 += x0 * y2; c03 += x0 * y3;
          c10 += x1 * y0; c11 += x1 * y1; c12 += x1 * y2; c13 += x1 * y3;
          c20 += x2 * y0; c21 += x2 * y1; c22 += x2 * y2; c23 += x2 * y3;
          c30 += x3 * y0; c31 += x3 * y1; c32 += x3 * y2; c33 += x3 * y3;
        }
        let o = i * N + j;
        c[o] = c00; c[o + 1] = c01; c[o + 2] = c02; c[o + 3] = c03; o += N;
        c[o] = c10; c[o + 1] = c11; c[o + 2] = c12; c[o + 3] = c13; o += N;
        c[o] = c20; c[o + 1] = c21; c[o + 2] = c22; c[o + 3] = c23; o += N;
        c[o] = c30; c[o + 1] = c31; c[o + 2] = c32; c[o + 3] = c33;
      }
      for (; j < j1; j++) {
        const b0 = j * K;
        let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (let k = 0; k < K; k++) {
          const y = b[b0 + k]!;
          s0 += a[a0 + k]! * y; s1 += a[a1 + k]! * y; s2 += a[a2 + k]! * y; s3 += a[a3 + k]! * y;
        }
        c[i * N + j] = s0; c[(i + 1) * N + j] = s1; c[(i + 2) * N + j] = s2; c[(i + 3) * N + j] = s3;
      }
    }
    // Remaining rows (all of them for a single token while generating): one row against four rows of b.
    for (; i < M; i++) {
      const a0 = i * K;
      let j = j0;
      for (; j + 4 <= j1; j += 4) {
        const b0 = j * K, b1 = b0 + K, b2 = b1 + K, b3 = b2 + K;
        let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (let k = 0; k < K; k++) {
          const x = a[a0 + k]!;
          s0 += x * b[b0 + k]!; s1 += x * b[b1 + k]!; s2 += x * b[b2 + k]!; s3 += x * b[b3 + k]!;
        }
        const o = i * N + j;
        c[o] = s0; c[o + 1] = s1; c[o + 2] = s2; c[o + 3] = s3;
      }
      for (; j < j1; j++) c[i * N + j] = dot(a, a0, b, j * K, K);
    }
  }
}

/** c [M, N] = a [M, K] · b [K, N]: k innermost over a 4×4 tile, walking down four columns of b. */
export function matmulPlain(a: Float32Array, b: Float32Array, c: Float32Array, M: number, N: number, K: number): void {
  let i = 0;
  for (; i + 4 <= M; i += 4) {
    const a0 = i * K, a1 = a0 + K, a2 = a1 + K, a3 = a2 + K;
    let j = 0;
    for (; j + 4 <= N; j += 4) {
      let c00 = 0, c01 = 0, c02 = 0, c03 = 0, c10 = 0, c11 = 0, c12 = 0, c13 = 0;
      let c20 = 0, c21 = 0, c22 = 0, c23 = 0, c30 = 0, c31 = 0, c32 = 0, c33 = 0;
      for (let k = 0, bo = j; k < K; k++, bo += N) {
        const y0 = b[bo]!, y1 = b[bo + 1]!, y2 = b[bo + 2]!, y3 = b[bo + 3]!;
        const x0 = a[a0 + k]!, x1 = a[a1 + k]!, x2 = a[a2 + k]!, x3 = a[a3 + k]!;
        c00 += x0 * y0; c01 += x0 * y1; c02 += x0 * y2; c03 += x0 * y3;
        c10 += x1 * y0; c11 += x1 * y1; c12 += x1 * y2; c13 += x1 * y3;
        c20 += x2 * y0; c21 += x2 * y1; c22 += x2 * y2; c23 += x2 * y3;
        c30 += x3 * y0; c31 += x3 * y1; c32 += x3 * y2; c33 += x3 * y3;
      }
      let o = i * N + j;
      c[o] = c00; c[o + 1] = c01; c[o + 2] = c02; c[o + 3] = c03; o += N;
      c[o] = c10; c[o + 1] = c11; c[o + 2] = c12; c[o + 3] = c13; o += N;
      c[o] = c20; c[o + 1] = c21; c[o + 2] = c22; c[o + 3] = c23; o += N;
      c[o] = c30; c[o + 1] = c31; c[o + 2] = c32; c[o + 3] = c33;
    }
    for (; j < N; j++) {
      let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      for (let k = 0, bo = j; k < K; k++, bo += N) {
        const y = b[bo]!;
        s0 += a[a0 + k]! * y; s1 += a[a1 + k]! * y; s2 += a[a2 + k]! * y; s3 += a[a3 + k]! * y;
      }
      c[i * N + j] = s0; c[(i + 1) * N + j] = s1; c[(i + 2) * N + j] = s2; c[(i + 3) * N + j] = s3;
    }
  }
  // Remaining rows: i-k-j order, a row of c accumulated from contiguous rows of b.
  const acc = new Float64Array(N);
  for (; i < M; i++) {
    acc.fill(0);
    const a0 = i * K;
    for (let k = 0; k < K; k++) {
      const x = a[a0 + k]!;
      if (x === 0) continue;
      const bo = k * N;
      for (let j = 0; j < N; j++) acc[j]! += x * b[bo + j]!;
    }
    const o = i * N;
    for (let j = 0; j < N; j++) c[o + j] = acc[j]!;
  }
}

/** Σ a[ao + k] · b[bo + k] for k < n, four partial sums. */
export function dot(a: Float32Array, ao: number, b: Float32Array, bo: number, n: number): number {
  let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  let k = 0;
  for (; k + 4 <= n; k += 4) {
    s0 += a[ao + k]! * b[bo + k]!;
    s1 += a[ao + k + 1]! * b[bo + k + 1]!;
    s2 += a[ao + k + 2]! * b[bo + k + 2]!;
    s3 += a[ao + k + 3]! * b[bo + k + 3]!;
  }
  for (; k < n; k++) s0 += a[ao + k]! * b[bo + k]!;
  return s0 + s1 + s2 + s3;
}
