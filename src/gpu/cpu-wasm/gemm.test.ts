import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { matmulInto } from '../cpu-matmul.ts';
import { gemmModuleBytes, type GemmExports } from './gemm-module.ts';
import { resetWasmGemm, startWasmGemmThreads, wasmGemmAvailable, wasmGemmOptions, wasmGemmRelaxed, wasmMatmul } from './gemm.ts';

const defaults = { ...wasmGemmOptions };
afterEach(() => Object.assign(wasmGemmOptions, defaults));

/** Values in [-1, 1) from a linear congruential generator, with some exact zeros and integers. */
function values(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}

/**
 * Checks c against float64 dot products: |c − ref| ≤ 1e-7 + rel · Σ_k |a_ik · b_kj|, the scale of
 * float32 rounding in a sum of K products (a missing or doubled term is about Σ/K, far above it).
 */
function expectProduct(c: Float32Array, a: Float32Array, b: Float32Array, M: number, N: number, K: number, transposeB: boolean, rel = 1e-5): void {
  expect(c.length).toBe(M * N);
  let worst = 0;
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let ref = 0;
      let scale = 0;
      for (let k = 0; k < K; k++) {
        const p = a[i * K + k]! * (transposeB ? b[j * K + k]! : b[k * N + j]!);
        ref += p;
        scale += Math.abs(p);
      }
      const excess = Math.abs(c[i * N + j]! - ref) - (1e-7 + rel * scale);
      worst = Math.max(worst, Number.isNaN(excess) ? Infinity : excess);
    }
  }
  expect(worst).toBeLessThanOrEqual(0);
}

const SHAPES: [number, number, number][] = [
  [1, 1, 1],
  [3, 1, 1],
  [7, 13, 5],
  [4, 8, 16],
  [100, 300, 77],
  [33, 17, 260],
];

function product(M: number, N: number, K: number, transposeB: boolean): { a: Float32Array; b: Float32Array; c: Float32Array; ran: boolean } {
  const a = values(M * K, M * 31 + K);
  const b = values(K * N, N * 17 + K + (transposeB ? 1 : 0));
  const c = new Float32Array(M * N).fill(Number.NaN);
  const ran = wasmMatmul(a, b, c, M, N, K, transposeB);
  return { a, b, c, ran };
}

// Both kernel variants: plain SIMD multiply and add, and relaxed SIMD's fused multiply-add (Node 20
// has it behind a flag, which gemm.ts turns on; later Nodes and Chromium have it by default).
for (const relaxed of [false, true]) describe(`WebAssembly SIMD matmul (${relaxed ? 'relaxed-SIMD FMA' : 'plain SIMD'} kernels)`, () => {
  beforeAll(() => {
    defaults.relaxed = relaxed;
    wasmGemmOptions.relaxed = relaxed;
    resetWasmGemm();
  });
  afterAll(() => {
    defaults.relaxed = true;
    wasmGemmOptions.relaxed = true;
    resetWasmGemm();
  });

  it('has wasm SIMD in this Node, and the kernel variant asked for', () => {
    expect(wasmGemmAvailable()).toBe(true);
    expect(wasmGemmRelaxed()).toBe(relaxed);
  });

  for (const transposeB of [false, true]) {
    const layout = transposeB ? 'a·bᵀ' : 'a·b';
    it(`${layout} matches float64 dot products on odd shapes`, () => {
      for (const [M, N, K] of SHAPES) {
        const { a, b, c, ran } = product(M, N, K, transposeB);
        expect(ran).toBe(true);
        expectProduct(c, a, b, M, N, K, transposeB);
      }
    });

    it(`${layout} is unchanged by small K blocks, tile blocks and copy blocks`, () => {
      // 100×77 with K 300: 38 K blocks, 13 row blocks of 8, column blocks of 8 (N = 77: ragged last panel).
      Object.assign(wasmGemmOptions, { kcBlock: 8, mcTiles: 1, blockFloats: 2400 });
      for (const [M, N, K] of [[100, 77, 300], [9, 23, 5]] as const) {
        const { a, b, c, ran } = product(M, N, K, transposeB);
        expect(ran).toBe(true);
        expectProduct(c, a, b, M, N, K, transposeB);
      }
    });

    it(`${layout} split over worker threads equals the single-thread result`, async () => {
      Object.assign(wasmGemmOptions, { threads: 3, flopsPerThread: 1 });
      expect(await startWasmGemmThreads()).toBe(3);
      const M = 37;
      const N = 203;
      const K = 70;
      const threaded = product(M, N, K, transposeB);
      expectProduct(threaded.c, threaded.a, threaded.b, M, N, K, transposeB);
      wasmGemmOptions.threads = 1;
      const single = product(M, N, K, transposeB);
      expect(threaded.c).toEqual(single.c);
    });
  }

  it('leaves c alone and returns false when disabled', () => {
    wasmGemmOptions.enabled = false;
    const off = product(8, 8, 8, false);
    expect(off.ran).toBe(false);
    expect(off.c.every(Number.isNaN)).toBe(true);
  });

  it('gives zeros for K = 0 and does nothing for empty outputs', () => {
    const c = new Float32Array(12).fill(5);
    expect(wasmMatmul(new Float32Array(0), new Float32Array(0), c, 3, 4, 0, false)).toBe(true);
    expect([...c]).toEqual(new Array(12).fill(0));
    expect(wasmMatmul(new Float32Array(0), new Float32Array(10), new Float32Array(0), 0, 5, 2, true)).toBe(true);
  });

  it('matmulInto agrees with float64 on both paths (wasm and the JavaScript fallback)', () => {
    for (const enabled of [true, false]) {
      wasmGemmOptions.enabled = enabled;
      for (const transposeB of [false, true]) {
        for (const [M, N, K] of [[1, 9, 7], [2, 5, 3], [7, 13, 5], [100, 300, 77]] as const) {
          const a = values(M * K, 3);
          const b = values(K * N, 4);
          const c = new Float32Array(M * N);
          matmulInto(a, b, c, M, N, K, transposeB);
          expectProduct(c, a, b, M, N, K, transposeB);
        }
      }
    }
  });

  it('gives a row the same bits alone as among others, whatever the blocks and threads', async () => {
    const M = 13;
    const N = 29;
    const K = 301;
    for (const transposeB of [false, true]) {
      const a = values(M * K, 21);
      const b = values(K * N, 22);
      const all = new Float32Array(M * N);
      Object.assign(wasmGemmOptions, { kcBlock: 16, threads: 2, flopsPerThread: 1 });
      await startWasmGemmThreads();
      matmulInto(a, b, all, M, N, K, transposeB);
      Object.assign(wasmGemmOptions, defaults);
      for (const i of [0, 5, 12]) {
        const row = new Float32Array(N);
        matmulInto(a.subarray(i * K, (i + 1) * K), b, row, 1, N, K, transposeB);
        expect(row).toEqual(all.subarray(i * N, (i + 1) * N));
      }
      const two = new Float32Array(2 * N);
      matmulInto(a.subarray(3 * K, 5 * K), b, two, 2, N, K, transposeB);
      expect(two).toEqual(all.subarray(3 * N, 5 * N));
    }
  });

  it('runs on an unshared memory too (a page main thread, where workers cannot be waited for)', () => {
    const memory = new WebAssembly.Memory({ initial: 2, maximum: 2 });
    const bytes = gemmModuleBytes({ initialPages: 2, maximumPages: 2, shared: false }, relaxed);
    const { work } = new WebAssembly.Instance(new WebAssembly.Module(bytes), { env: { memory } }).exports as unknown as GemmExports;
    const heap = new Float32Array(memory.buffer);
    // One tile of A (4 rows, K = 3) packed as [k][row], and one panel of B (8 columns) row-major.
    const K = 3;
    const a = values(4 * K, 9);
    const b = values(K * 8, 10);
    for (let k = 0; k < K; k++) for (let r = 0; r < 4; r++) heap[k * 4 + r] = a[r * K + k]!;
    heap.set(b, 64);
    work(0, 0, 1, 0, K, 64 * 4, 8 * 4, 0, 256 * 4, 512 * 4, 8 * 4, 1, 256, 32, 0, 0);
    expectProduct(heap.slice(512, 512 + 32), a, b, 4, 8, K, false);
    // accumulate: C += A·B.
    work(0, 0, 1, 0, K, 64 * 4, 8 * 4, 0, 256 * 4, 512 * 4, 8 * 4, 1, 256, 32, 0, 1);
    expectProduct(Float32Array.from(heap.slice(512, 512 + 32), (v) => v / 2), a, b, 4, 8, K, false);
  });

  it('splits a deep K (an unembedding gradient: K is the vocabulary) into chunks accumulated in C, bit for bit the unsplit product', () => {
    for (const transposeB of [false, true]) {
      for (const [M, N, K] of [[9, 20, 700], [5, 3, 1000]] as const) {
        const { a, b, c: whole, ran } = product(M, N, K, transposeB);
        expect(ran).toBe(true);
        expectProduct(whole, a, b, M, N, K, transposeB);
        // Blocks of 4096 floats: K beyond 64 is cut into chunks of whole kcBlocks (16 here).
        Object.assign(wasmGemmOptions, { blockFloats: 4096, kcBlock: 16 });
        const split = new Float32Array(M * N).fill(Number.NaN);
        expect(wasmMatmul(a, b, split, M, N, K, transposeB)).toBe(true);
        Object.assign(wasmGemmOptions, { blockFloats: defaults.blockFloats });
        const unsplit = new Float32Array(M * N).fill(Number.NaN);
        expect(wasmMatmul(a, b, unsplit, M, N, K, transposeB)).toBe(true);
        Object.assign(wasmGemmOptions, defaults);
        expect(split).toEqual(unsplit);
      }
    }
  });
});
