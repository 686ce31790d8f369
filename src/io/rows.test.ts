// Row-range reads (safetensors, GGUF, the whole-read fallback) and the per-chunk conversions.
import { describe, expect, it } from 'vitest';
import { bf16ToF16, f16BitsIntoF32, f16Overflow, rowChunks } from './chunks.ts';
import { f16ToF32, f32ToF16 } from './dtype.ts';
import { openGguf } from './gguf.ts';
import { openLlama2c } from './llama2c.ts';
import { pathSource } from './node-source.ts';
import { openSafetensorsFolder, safetensorsStore, readSafetensorsHeader, writeSafetensors } from './safetensors.ts';
import { bytesSource, FormatError } from './source.ts';
import { readRowsF32, type WeightStore } from './store.ts';
import { writeGguf } from './test-helpers.ts';

/** Deterministic values in [-scale, scale). */
function values(n: number, seed: number, scale = 1): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s / 2 ** 32 - 0.5) * 2 * scale;
  });
}

/** bfloat16 bits by truncation, as a simple independent encoder. */
function bf16Bits(x: Float32Array): Uint16Array {
  const u = new Uint32Array(x.buffer, x.byteOffset, x.length);
  return Uint16Array.from(u, (v) => v >>> 16);
}

const f16Bits = (x: Float32Array) => Uint16Array.from(x, (v) => f32ToF16(v));

async function expectRowsMatch(store: WeightStore, name: string, ranges: Array<[number, number]>): Promise<void> {
  const t = store.tensors.get(name)!;
  const rowLength = t.shape.slice(1).reduce((a, b) => a * b, 1);
  const all = await store.readF32(name);
  for (const [a, b] of ranges) {
    const rows = await store.readRows!(name, a, b);
    expect(Array.from(rows), `${name} rows ${a}..${b}`).toEqual(Array.from(all.subarray(a * rowLength, b * rowLength)));
  }
}

describe('rowChunks', () => {
  it('covers the range with chunks of about the asked size, in multiples of rowMultiple', () => {
    expect(rowChunks(0, 10, 100, 350)).toEqual([[0, 3], [3, 6], [6, 9], [9, 10]]);
    expect(rowChunks(4, 9, 100, 350, 2)).toEqual([[4, 6], [6, 8], [8, 9]]);
    expect(rowChunks(0, 3, 1000, 10)).toEqual([[0, 1], [1, 2], [2, 3]]);
    expect(rowChunks(0, 5, 1000, 10, 2)).toEqual([[0, 2], [2, 4], [4, 5]]);
    expect(rowChunks(2, 2, 8, 64)).toEqual([]);
    expect(() => rowChunks(0, 2, 8, 0)).toThrow(/chunk size must be positive/);
  });
});

describe('half-precision chunks', () => {
  it('bf16 → f16 equals rounding the bf16 value, and counts overflow', () => {
    const x = Float32Array.from([0, -0, 1, -2.5, 0.1, 3e-5, 1e-7, 1e-9, 65504, -65280, 70000, -1e10, Infinity, NaN, 60000, 2 ** -14]);
    const bits = bf16Bits(x);
    const { bits: half, overflow } = bf16ToF16(bits);
    for (let i = 0; i < x.length; i++) {
      const exact = new Float32Array(new Uint32Array([bits[i]! << 16]).buffer)[0]!;
      const want = f32ToF16(exact);
      if (Number.isNaN(exact)) expect(Number.isNaN(f16ToF32(half[i]!))).toBe(true);
      else expect(half[i], `value ${x[i]}`).toBe(want);
    }
    // 70000 and -1e10 are finite and overflow; Infinity stays infinite without counting.
    expect(overflow).toBe(2);
    const normal = Float32Array.from(bf16Bits(values(1000, 3, 100)), (b) => new Float32Array(new Uint32Array([b << 16]).buffer)[0]!);
    const out = new Float32Array(normal.length);
    f16BitsIntoF32(bf16ToF16(bf16Bits(normal)).bits, out);
    // bf16 has fewer mantissa bits than f16: normal-range values convert exactly.
    let bad = 0;
    for (let i = 0; i < normal.length; i++) if (Math.abs(normal[i]!) >= 2 ** -14 && out[i] !== normal[i]) bad++;
    expect(bad).toBe(0);
  });

  it('f16Overflow counts finite values at or beyond 65520', () => {
    expect(f16Overflow(Float32Array.from([65504, 65519, -65519.9, 65520, -1e6, Infinity, NaN]))).toBe(2);
  });

  it('f16 bits decode by table as f16ToF32 does', () => {
    const bits = Uint16Array.from({ length: 65536 }, (_, i) => i);
    const out = new Float32Array(65536 + 3);
    f16BitsIntoF32(bits, out, 3);
    let bad = 0;
    for (let h = 0; h < 65536; h++) {
      const want = f16ToF32(h);
      if (!(out[h + 3] === want || (Number.isNaN(want) && Number.isNaN(out[h + 3])))) bad++;
    }
    expect(bad).toBe(0);
  });
});

describe('safetensors row reads', () => {
  const w = values(37 * 6, 1);
  const bytes = writeSafetensors([
    { name: 'f32', shape: [37, 6], data: w },
    { name: 'f16', shape: [37, 6], data: f16Bits(w), dtype: 'F16' },
    { name: 'bf16', shape: [37, 2, 3], data: bf16Bits(w), dtype: 'BF16' },
    { name: 'vec', shape: [5], data: values(5, 2) },
  ]);

  it('equal slices of the whole read, for F32, F16, BF16 and vectors', async () => {
    const store = await openSafetensorsFolder(new Map([['model.safetensors', bytesSource(bytes, 'model.safetensors')]]));
    const ranges: Array<[number, number]> = [[0, 37], [0, 1], [36, 37], [5, 19], [7, 7]];
    for (const name of ['f32', 'f16', 'bf16']) await expectRowsMatch(store, name, ranges);
    await expectRowsMatch(store, 'vec', [[1, 4]]);
  });

  it('reads only the bytes of the rows asked for', async () => {
    const reads: Array<[number, number]> = [];
    const inner = bytesSource(bytes, 'model.safetensors');
    const src = { ...inner, read: (o: number, n: number) => (reads.push([o, n]), inner.read(o, n)) };
    const file = await readSafetensorsHeader(src);
    const store = safetensorsStore([file], 'model.safetensors');
    reads.length = 0;
    await store.readRows!('f16', 10, 13);
    expect(reads).toEqual([[file.entries.get('f16')!.offset + 10 * 12, 3 * 12]]);
  });

  it('give the stored 16-bit patterns of F16 and BF16 tensors, even at an odd file offset', async () => {
    const store = await openSafetensorsFolder(new Map([['model.safetensors', bytesSource(bytes, 'model.safetensors')]]));
    expect(Array.from(await store.readRowsHalf!('f16', 3, 9))).toEqual(Array.from(f16Bits(w).subarray(18, 54)));
    expect(Array.from(await store.readRowsHalf!('bf16', 0, 37))).toEqual(Array.from(bf16Bits(w)));
    await expect(store.readRowsHalf!('f32', 0, 1)).rejects.toThrow(/model\.safetensors: tensor "f32" is F32, not F16 or BF16/);
    // A source whose bytes start at an odd offset of their buffer.
    const shifted = new Uint8Array(bytes.length + 1);
    shifted.set(bytes, 1);
    const odd = await openSafetensorsFolder(new Map([['model.safetensors', bytesSource(shifted.subarray(1), 'model.safetensors')]]));
    expect(Array.from(await odd.readRowsHalf!('f16', 1, 2))).toEqual(Array.from(f16Bits(w).subarray(6, 12)));
  });

  it('refuse rows outside the tensor, naming it', async () => {
    const store = await openSafetensorsFolder(new Map([['model.safetensors', bytesSource(bytes, 'model.safetensors')]]));
    await expect(store.readRows!('f32', 30, 38)).rejects.toThrow(/model\.safetensors: rows \[30, 38\) are not within the 37 rows of "f32"/);
    await expect(store.readRows!('f32', 3, 2)).rejects.toThrow(/rows \[3, 2\)/);
    await expect(store.readRows!('nope', 0, 1)).rejects.toThrow(/no tensor named "nope"/);
  });
});

describe('readRowsF32 fallback', () => {
  it('slices a whole read for stores without row reads (llama2.c), and refuses tensors over the limit', async () => {
    const { store } = await openLlama2c(await pathSource('test/fixtures/llama2c/stories260K.bin'));
    expect(store.readRows).toBeUndefined();
    const name = 'model.layers.1.self_attn.q_proj.weight';
    const all = await store.readF32(name);
    expect(Array.from(await readRowsF32(store, name, 9, 21))).toEqual(Array.from(all.subarray(9 * 64, 21 * 64)));
    const err = await readRowsF32(store, 'model.embed_tokens.weight', 0, 4, { maxWholeBytes: 100_000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FormatError);
    expect((err as Error).message).toMatch(/stories260K\.bin: tensor "model\.embed_tokens\.weight" is 131\.1 kB as float32, and this format is read one whole tensor at a time \(limit 100\.0 kB\)/);
    await expect(readRowsF32(store, name, 60, 65)).rejects.toThrow(/rows \[60, 65\) are not within the 64 rows/);
  });
});

describe('GGUF row reads', () => {
  it('equal slices of the whole read, across rotary heads (Q/K reordered)', async () => {
    const { store } = await openGguf(await pathSource('test/fixtures/gguf/stories260K.gguf'));
    // q: 8 heads of 8 rows; k: 4 KV heads. Ranges start and end inside heads.
    await expectRowsMatch(store, 'model.layers.0.self_attn.q_proj.weight', [[0, 64], [3, 13], [8, 16], [61, 64], [5, 6]]);
    await expectRowsMatch(store, 'model.layers.4.self_attn.k_proj.weight', [[2, 30], [0, 1]]);
    await expectRowsMatch(store, 'model.embed_tokens.weight', [[0, 512], [100, 333]]);
    await expectRowsMatch(store, 'model.norm.weight', [[10, 20]]);
  });

  it('give F16 and BF16 bit patterns, reordered for rotary tensors', async () => {
    const kv = {
      'general.architecture': { type: 'string', value: 'llama' },
      'llama.context_length': { type: 'u32', value: 16 },
      'llama.embedding_length': { type: 'u32', value: 8 },
      'llama.block_count': { type: 'u32', value: 1 },
      'llama.feed_forward_length': { type: 'u32', value: 16 },
      'llama.attention.head_count': { type: 'u32', value: 2 },
    } as const;
    const q = values(64, 5);
    const emb = values(10 * 8, 6);
    const u8 = (a: Uint16Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
    const bytes = writeGguf({ ...kv }, [
      { name: 'token_embd.weight', ne: [8, 10], type: 30, data: u8(bf16Bits(emb)) },
      { name: 'blk.0.attn_q.weight', ne: [8, 8], type: 1, data: u8(f16Bits(q)) },
    ]);
    const { store } = await openGguf(bytesSource(bytes, 'tiny.gguf'));
    expect(Array.from(await store.readRowsHalf!('model.embed_tokens.weight', 2, 7))).toEqual(Array.from(bf16Bits(emb).subarray(16, 56)));
    const name = 'model.layers.0.self_attn.q_proj.weight';
    await expectRowsMatch(store, name, [[1, 6], [0, 8]]);
    const all = await store.readF32(name);
    const half = await store.readRowsHalf!(name, 1, 6);
    expect(Array.from(half, f16ToF32)).toEqual(Array.from(all.subarray(8, 48)));
  });
});
