// Weights kept as float16 or bfloat16 bits in the CPU backend: the GEMM widens them per block
// (WebAssembly packing, or the JavaScript fallback), and must give what the float32 path gives on the
// widened values; a model loaded with dtype 'f16', or a bf16 checkpoint loaded in its stored
// precision, holds its matrices in 2 bytes a value.
import { afterEach, describe, expect, it } from 'vitest';
import { Bf16Bits, bf16FromF32, halfBitsIntoF32 } from '../io/chunks.ts';
import { f16ToF32, f32ToF16 } from '../io/dtype.ts';
import { pathFileSet } from '../io/node-source.ts';
import { openSafetensorsFolder, writeSafetensors } from '../io/safetensors.ts';
import { bytesSource, readJson } from '../io/source.ts';
import { loadModel, loadModelFromStore, residentBytes } from '../model/load.ts';
import { createCpuBackend } from './cpu-backend.ts';
import { matmulInto } from './cpu-matmul.ts';
import { startWasmGemmThreads, wasmGemmOptions, wasmMatmul } from './cpu-wasm/gemm.ts';

const defaults = { ...wasmGemmOptions };
afterEach(() => Object.assign(wasmGemmOptions, defaults));

function values(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s / 2 ** 31 - 1) * 3;
  }
  return out;
}

function halfBits(x: Float32Array): Uint16Array {
  return Uint16Array.from(x, (v) => f32ToF16(v));
}

function widened(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  halfBitsIntoF32(bits, out);
  return out;
}

/** The float32 whose upper 16 bits are `h`. */
function bf16Value(h: number): number {
  return new Float32Array(new Uint32Array([h << 16]).buffer)[0]!;
}

const SHAPES: [number, number, number][] = [
  [1, 1, 1],
  [7, 13, 5],
  [33, 17, 260],
  [100, 77, 300],
];

describe('GEMM on float16 bits', () => {
  it('widens every float16 bit pattern exactly (zeros, subnormals, normals, infinities, NaNs)', () => {
    // c [1, 65536] = [1] · bᵀ with b [65536, 1]: each entry is one widened pattern.
    const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
    const c = new Float32Array(65536);
    expect(wasmMatmul(new Float32Array([1]), all, c, 1, 65536, 1, true)).toBe(true);
    const wrong: number[] = [];
    for (let h = 0; h < 65536; h++) {
      const want = f16ToF32(h);
      // A sum starts at +0, so −0 comes out as +0 (as on the float32 path).
      if (!(c[h] === want || (Number.isNaN(want) && Number.isNaN(c[h]!)))) wrong.push(h);
    }
    expect(wrong).toEqual([]);
  });

  for (const path of ['WebAssembly', 'JavaScript'] as const) {
    it(`${path}: equals the float32 GEMM on the widened values, bit for bit, in both layouts`, () => {
      wasmGemmOptions.enabled = path === 'WebAssembly';
      for (const transposeB of [false, true]) {
        for (const [M, N, K] of SHAPES) {
          const a = values(M * K, M + K);
          const bits = halfBits(values(N * K, N + 2 * K));
          const half = new Float32Array(M * N).fill(Number.NaN);
          const wide = new Float32Array(M * N).fill(Number.NaN);
          matmulInto(a, bits, half, M, N, K, transposeB);
          matmulInto(a, widened(bits), wide, M, N, K, transposeB);
          expect(half).toEqual(wide);
        }
      }
    });
  }

  it('is unchanged by small blocks and worker threads', async () => {
    const [M, N, K] = [37, 203, 70];
    const a = values(M * K, 5);
    for (const transposeB of [false, true]) {
      const bits = halfBits(values(N * K, 6));
      const wide = new Float32Array(M * N);
      matmulInto(a, widened(bits), wide, M, N, K, transposeB);
      Object.assign(wasmGemmOptions, { threads: 3, flopsPerThread: 1, kcBlock: 8, mcTiles: 1, blockFloats: 2400 });
      await startWasmGemmThreads();
      const half = new Float32Array(M * N);
      expect(wasmMatmul(a, bits, half, M, N, K, transposeB)).toBe(true);
      expect(half).toEqual(wide);
      Object.assign(wasmGemmOptions, defaults);
    }
  });
});

describe('GEMM on bfloat16 bits', () => {
  it('widens every bfloat16 bit pattern exactly (zeros, subnormals, normals, infinities, NaNs)', () => {
    const all = Bf16Bits.from({ length: 65536 }, (_, i) => i);
    expect(all).toBeInstanceOf(Bf16Bits);
    const c = new Float32Array(65536);
    expect(wasmMatmul(new Float32Array([1]), all, c, 1, 65536, 1, true)).toBe(true);
    const js = new Float32Array(65536);
    halfBitsIntoF32(all, js);
    const wrong: number[] = [];
    for (let h = 0; h < 65536; h++) {
      const want = bf16Value(h);
      if (!(c[h] === want || (Number.isNaN(want) && Number.isNaN(c[h]!)))) wrong.push(h);
      if (!(Object.is(js[h], want) || (Number.isNaN(want) && Number.isNaN(js[h]!)))) wrong.push(-h);
    }
    expect(wrong).toEqual([]);
  });

  it('rounds float32 to the nearest bfloat16, ties to even, NaN kept', () => {
    const x = new Float32Array([1, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -8 + 2 ** -20, -2.5, Number.NaN, Infinity, 3e38 * 10]);
    expect([...widened(bf16FromF32(x))]).toEqual([1, 1, 1 + 2 ** -6, 1 + 2 ** -7, -2.5, Number.NaN, Infinity, Infinity]);
  });

  for (const path of ['WebAssembly', 'JavaScript'] as const) {
    it(`${path}: equals the float32 GEMM on the widened values, bit for bit, in both layouts`, () => {
      wasmGemmOptions.enabled = path === 'WebAssembly';
      for (const transposeB of [false, true]) {
        for (const [M, N, K] of SHAPES) {
          const a = values(M * K, M + K);
          const bits = bf16FromF32(values(N * K, N + 2 * K));
          const half = new Float32Array(M * N).fill(Number.NaN);
          const wide = new Float32Array(M * N).fill(Number.NaN);
          matmulInto(a, bits, half, M, N, K, transposeB);
          matmulInto(a, widened(bits), wide, M, N, K, transposeB);
          expect(half).toEqual(wide);
        }
      }
    });
  }

  it('is unchanged by small blocks and worker threads', async () => {
    const [M, N, K] = [37, 203, 70];
    const a = values(M * K, 5);
    for (const transposeB of [false, true]) {
      const bits = bf16FromF32(values(N * K, 6));
      const wide = new Float32Array(M * N);
      matmulInto(a, widened(bits), wide, M, N, K, transposeB);
      Object.assign(wasmGemmOptions, { threads: 3, flopsPerThread: 1, kcBlock: 8, mcTiles: 1, blockFloats: 2400 });
      await startWasmGemmThreads();
      const half = new Float32Array(M * N);
      expect(wasmMatmul(a, bits, half, M, N, K, transposeB)).toBe(true);
      expect(half).toEqual(wide);
      Object.assign(wasmGemmOptions, defaults);
    }
  });
});

describe('cpu backend: bf16 checkpoints in their stored precision', () => {
  const be = createCpuBackend();

  /** The stories260K base with every tensor rounded to bfloat16 and stored as BF16. */
  async function bf16Model() {
    const files = await pathFileSet(new URL('../../test/fixtures/stories260K/base', import.meta.url).pathname);
    const store = await openSafetensorsFolder(files);
    const tensors = [];
    for (const t of store.tensors.values()) tensors.push({ name: t.name, shape: t.shape, data: bf16FromF32(await store.readF32(t.name)), dtype: 'BF16' as const });
    const bf16Store = await openSafetensorsFolder(new Map([['model.safetensors', bytesSource(writeSafetensors(tensors), 'model.safetensors')]]));
    return { store: bf16Store, config: await readJson(files.get('config.json')!) };
  }

  it('keeps matrices as bf16 bits by default (2 bytes a value) and gives the logits of the float32 load bit for bit', async () => {
    const { store, config } = await bf16Model();
    const stored = await loadModelFromStore(store, config, be);
    const wide = await loadModelFromStore(store, config, be, { dtype: 'f32' });
    const matrices = [...stored.weights.values()].filter((t) => t.shape.length >= 2);
    expect(matrices.length).toBeGreaterThan(0);
    for (const t of matrices) expect(t.dtype).toBe('bf16');
    let held = 0;
    for (const t of stored.weights.values()) held += (t as unknown as { data: ArrayBufferView }).data.byteLength;
    expect(held).toBe(residentBytes(store, 'stored', true));
    // Within 1% of the file (vectors are widened to float32; they are few).
    const fileBytes = [...store.tensors.values()].reduce((s, t) => s + t.byteLength, 0);
    expect(Math.abs(held - fileBytes)).toBeLessThan(0.01 * fileBytes);
    const ids = Int32Array.from({ length: 24 }, (_, i) => (i * 37) % stored.config.vocab);
    const a = await be.read(stored.forward({ ids, batch: 1, seq: 24 }).logits!);
    const b = await be.read(wide.forward({ ids, batch: 1, seq: 24 }).logits!);
    expect(a).toEqual(b);
  });

  it('refuses bfloat16 bits for an f16 tensor and float16 bits for a bf16 one', () => {
    const t16 = be.createEmpty([2, 2], 'f16');
    const tb = be.createEmpty([2, 2], 'bf16');
    expect(() => be.writeRows(t16, 0, new Bf16Bits(4))).toThrow('bfloat16 bits (Bf16Bits) need a bf16 tensor, got f16');
    expect(() => be.writeRows(tb, 0, new Uint16Array(4))).toThrow('float16 bits (Uint16Array) need an f16 tensor, got bf16');
  });
});

describe('cpu backend: f16 tensors', () => {
  const be = createCpuBackend();

  it('matmul, linear and embedding on an f16 tensor equal their f32 versions on the widened values', async () => {
    const [M, N, K] = [9, 21, 16];
    const x = be.fromArray(values(M * K, 1), [M, K]);
    const raw = values(N * K, 2);
    const w16 = be.fromArray(raw, [N, K], 'f16');
    const w32 = be.fromArray(widened(halfBits(raw)), [N, K]);
    expect(await be.read(be.linear(x, w16))).toEqual(await be.read(be.linear(x, w32)));
    const xt = be.fromArray(values(M * N, 3), [M, N]);
    expect(await be.read(be.matmul(xt, w16))).toEqual(await be.read(be.matmul(xt, w32)));
    const ids = new Int32Array([0, 20, 7]);
    expect(await be.read(be.embedding(w16, ids, [3]))).toEqual(await be.read(be.embedding(w32, ids, [3])));
    expect(await be.read(w16)).toEqual(widened(halfBits(raw)));
  });

  it('loads a model with dtype f16 at half the resident bytes of f32, with logits within f16 rounding of the f32 load', async () => {
    const files = await pathFileSet(new URL('../../test/fixtures/stories260K/base', import.meta.url).pathname);
    const f32 = await loadModel(files, be);
    const f16 = await loadModel(files, be, { dtype: 'f16', onWarning: () => {} });
    const bytes = (m: typeof f32, dtype: string) => {
      let n = 0;
      for (const t of m.weights.values()) if (t.dtype === dtype) n += (t as unknown as { data: ArrayBufferView }).data.byteLength;
      return n;
    };
    const matrices32 = [...f32.weights.values()].filter((t) => t.shape.length >= 2);
    const matrixBytes32 = matrices32.reduce((s, t) => s + 4 * t.shape.reduce((p, d) => p * d, 1), 0);
    // Every matrix of the f16 load is 2 bytes a value; vectors stay float32.
    expect(bytes(f16, 'f16')).toBe(matrixBytes32 / 2);
    expect(bytes(f16, 'f32')).toBe(bytes(f32, 'f32') - matrixBytes32);
    const ids = Int32Array.from({ length: 24 }, (_, i) => (i * 37) % f32.config.vocab);
    const a = (await be.read(f32.forward({ ids, batch: 1, seq: 24 }).logits!)) as Float32Array;
    const b = (await be.read(f16.forward({ ids, batch: 1, seq: 24 }).logits!)) as Float32Array;
    let scale = 0;
    let worst = 0;
    for (let i = 0; i < a.length; i++) {
      scale = Math.max(scale, Math.abs(a[i]!));
      worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
    }
    // float16 keeps 11 significant bits (relative rounding 2⁻¹¹ ≈ 4.9e-4 per weight); through 5
    // layers the logits move by well under 1% of their range, and by more than float32 rounding.
    expect(worst).toBeLessThan(1e-2 * scale);
    expect(worst).toBeGreaterThan(1e-6 * scale);
  });
});
