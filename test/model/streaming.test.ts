// Streaming loads: a generated bf16 / f16 checkpoint whose embedding exceeds a tiny chunk size and a
// tiny GPU binding limit, loaded in row chunks (f16 from the raw 16-bit patterns) on the CPU and on
// WebGPU (Dawn), must give the logits of the same weights loaded as float32 in one piece.
import { readFile } from 'node:fs/promises';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createCpuBackend } from '../../src/gpu/cpu-backend.ts';
import { useDawn } from '../../src/gpu/dawn-node.ts';
import { f16ToF32, f32ToF16 } from '../../src/io/dtype.ts';
import { openGguf } from '../../src/io/gguf.ts';
import { openLlama2c } from '../../src/io/llama2c.ts';
import { pathFileSet, pathSource } from '../../src/io/node-source.ts';
import { openSafetensorsFolder, writeSafetensors } from '../../src/io/safetensors.ts';
import { bytesSource, type ByteSource, type FileSet } from '../../src/io/source.ts';
import type { WeightStore } from '../../src/io/store.ts';
import { resetFlags, setFlags } from '../../src/kernels/flags.ts';
import { createWebGpuBackend } from '../../src/kernels/webgpu-backend.ts';
import type { Backend } from '../../src/model/backend.ts';
import { loadModel, loadModelFromStore, MemoryBudgetError, type LoadOptions } from '../../src/model/load.ts';
import { readLoraAdapter } from '../../src/model/lora.ts';
import type { Transformer } from '../../src/model/transformer.ts';
import { compareWithGolden, diff, failures, FIXTURES, readGolden } from './golden-helpers.ts';

const cpu = createCpuBackend();
let gpu: Backend;
beforeAll(async () => {
  expect(useDawn()).toBe(true);
  gpu = await createWebGpuBackend();
});
afterEach(() => resetFlags());

const IDS = [[5, 17, 200, 3, 99, 42, 8, 255], [0, 255, 12, 12, 64, 31, 2, 180]];
/** 8 rows of a 64-wide bf16 embedding: every matrix of the fixtures takes several chunks. */
const CHUNK = 1024;

/** float32 → bfloat16 bits, rounding to nearest even. */
function toBf16(x: Float32Array): Uint16Array {
  const u = new Uint32Array(x.buffer, x.byteOffset, x.length);
  return Uint16Array.from(u, (v) => (v + 0x7fff + ((v >>> 16) & 1)) >>> 16);
}

function fromBf16(bits: Uint16Array): Float32Array {
  return new Float32Array(Uint32Array.from(bits, (b) => b << 16).buffer);
}

interface Generated {
  /** The checkpoint with every tensor as `dtype`. */
  half: FileSet;
  /** The same values (bf16-rounded) as float32. */
  wide: FileSet;
}

/** An arch fixture rewritten as a bf16 (or f16) checkpoint, optionally with one value changed. */
async function generate(arch: string, dtype: 'BF16' | 'F16', edit?: { tensor: string; value: number }): Promise<Generated> {
  const dir = `${FIXTURES}arch/${arch}/base/`;
  const store = await openSafetensorsFolder(await pathFileSet(dir));
  const half: Array<{ name: string; shape: readonly number[]; data: Uint16Array; dtype: 'BF16' | 'F16' }> = [];
  const wide: Array<{ name: string; shape: readonly number[]; data: Float32Array }> = [];
  for (const [name, t] of store.tensors) {
    const values = await store.readF32(name);
    if (edit?.tensor === name) values[3] = edit.value;
    const bits = toBf16(values);
    const rounded = fromBf16(bits);
    // The f16 file holds the bf16-rounded values too, so both checkpoints describe the same weights.
    const f16 = Uint16Array.from(rounded, (v) => f32ToF16(v));
    half.push({ name, shape: t.shape, data: dtype === 'BF16' ? bits : f16, dtype });
    wide.push({ name, shape: t.shape, data: dtype === 'BF16' ? rounded : Float32Array.from(f16, f16ToF32) });
  }
  const config = JSON.parse(await readFile(`${dir}config.json`, 'utf8')) as Record<string, unknown>;
  const folder = (bytes: Uint8Array, torchDtype: string): FileSet =>
    new Map<string, ByteSource>([
      ['config.json', bytesSource(new TextEncoder().encode(JSON.stringify({ ...config, torch_dtype: torchDtype })), 'config.json')],
      ['model.safetensors', bytesSource(bytes, 'model.safetensors')],
    ]);
  return { half: folder(writeSafetensors(half), dtype === 'BF16' ? 'bfloat16' : 'float16'), wide: folder(writeSafetensors(wide), 'float32') };
}

async function logits(model: Transformer): Promise<Float32Array> {
  const { logits: t } = model.forward(IDS);
  const out = (await model.backend.read(t!)) as Float32Array;
  model.backend.dispose(t!);
  return out;
}

/** Counts the bytes each row read asks for and refuses whole-tensor reads of matrices. */
function watched(store: WeightStore, log: { maxRead: number; halfReads: number }): WeightStore {
  const rowBytes = (name: string) => {
    const t = store.tensors.get(name)!;
    return t.byteLength / t.shape[0]!;
  };
  return {
    label: store.label,
    tensors: store.tensors,
    readF32(name, signal) {
      if (store.tensors.get(name)!.shape.length >= 2) throw new Error(`whole read of matrix ${name}`);
      return store.readF32(name, signal);
    },
    readRows(name, a, b, signal) {
      log.maxRead = Math.max(log.maxRead, (b - a) * rowBytes(name));
      return store.readRows!(name, a, b, signal);
    },
    readRowsHalf(name, a, b, signal) {
      log.maxRead = Math.max(log.maxRead, (b - a) * rowBytes(name));
      log.halfReads++;
      return store.readRowsHalf!(name, a, b, signal);
    },
  };
}

const configOf = async (files: FileSet) => JSON.parse(new TextDecoder().decode(await files.get('config.json')!.read(0, files.get('config.json')!.size))) as unknown;

describe.each([
  ['gemma2', 'BF16'],
  ['llama', 'BF16'],
  ['qwen2', 'F16'],
] as const)('%s as %s, streamed in chunks', (arch, dtype) => {
  it('CPU: f16 storage from the raw bits, chunk by chunk, gives the float32 logits', async () => {
    const { half, wide } = await generate(arch, dtype);
    const want = await logits(await loadModel(wide, cpu));
    const log = { maxRead: 0, halfReads: 0 };
    const store = watched(await openSafetensorsFolder(half), log);
    const events: Array<[number, number]> = [];
    const model = await loadModelFromStore(store, await configOf(half), cpu, { dtype: 'f16', chunkBytes: CHUNK, onProgress: (done, total) => events.push([done, total]) });
    expect(model.weight('embed.W_E').dtype).toBe('f16');
    // Only vectors were read whole; matrices came in chunks of at most CHUNK bytes, as 16-bit patterns.
    expect(log.maxRead).toBeLessThanOrEqual(CHUNK);
    expect(log.halfReads).toBeGreaterThan(store.tensors.size);
    const total = [...store.tensors.values()].reduce((n, t) => n + t.byteLength, 0);
    expect(events.length).toBeGreaterThan(store.tensors.size);
    expect(events.every(([done, all], i) => all === total && (i === 0 || done > events[i - 1]![0]))).toBe(true);
    expect(events.at(-1)![0]).toBe(total);
    // bf16 values in f16's normal range are exact in f16; the few below it lose bits as subnormals.
    const d = diff(await logits(model), want, 1e-5, 1e-5);
    expect(d.worst, `max |err| ${d.maxAbs}`).toBeLessThanOrEqual(1);
  });

  it('WebGPU: an embedding over the binding limit is kept in row blocks and gives the CPU float32 logits', async () => {
    const { half, wide } = await generate(arch, dtype);
    const want = await logits(await loadModel(wide, cpu));
    // 4 KiB: the 256 × 64 embedding (32 KiB as f16) splits into 8 blocks, the MLP matrices into 5.
    setFlags({ maxBindingBytes: 4096 });
    const model = await loadModel(half, gpu, { dtype: 'f16', chunkBytes: CHUNK });
    expect(model.weight('embed.W_E').dtype).toBe('f16');
    expect(() => gpu.transpose(model.weight('embed.W_E'))).toThrow(/kept as 8 row blocks/);
    const d = diff(await logits(model), want, 5e-5, 5e-5);
    expect(d.worst, `max |err| ${d.maxAbs}`).toBeLessThanOrEqual(1);
    // f32 storage, blocked and chunked too, from the same half-precision file.
    const f32 = await loadModel(half, gpu, { dtype: 'f32', chunkBytes: CHUNK });
    expect(() => gpu.transpose(f32.weight('embed.W_E'))).toThrow(/kept as 16 row blocks/);
    const d32 = diff(await logits(f32), want, 5e-5, 5e-5);
    expect(d32.worst, `max |err| ${d32.maxAbs}`).toBeLessThanOrEqual(1);
    model.dispose();
    f32.dispose();
  });
});

describe('loading limits', () => {
  it('keeps a bf16 tensor with values beyond f16 in float32, says so, and still gives the float32 logits', async () => {
    const { half, wide } = await generate('llama', 'BF16', { tensor: 'model.layers.1.mlp.up_proj.weight', value: 70000 });
    const want = await logits(await loadModel(wide, cpu));
    const warnings: string[] = [];
    const events: Array<[number, number]> = [];
    const model = await loadModel(half, cpu, { dtype: 'f16', chunkBytes: CHUNK, onWarning: (m) => warnings.push(m), onProgress: (done, total) => events.push([done, total]) });
    expect(warnings).toEqual(['model.safetensors: tensor "model.layers.1.mlp.up_proj.weight" has values beyond float16\'s range (±65504), so it is kept as float32']);
    expect(model.weight('blocks.1.mlp.W_in').dtype).toBe('f32');
    expect(model.weight('blocks.1.mlp.W_gate').dtype).toBe('f16');
    expect(events.every(([done], i) => i === 0 || done > events[i - 1]![0])).toBe(true);
    expect(events.at(-1)![0]).toBe(events.at(-1)![1]);
    const d = diff(await logits(model), want, 1e-5, 1e-5);
    expect(d.worst, `max |err| ${d.maxAbs}`).toBeLessThanOrEqual(1);
  });

  it('refuses a model over the memory budget before reading any weight', async () => {
    const { half } = await generate('gemma2', 'BF16');
    const err = await loadModel(half, cpu, { dtype: 'f16', memoryBudgetBytes: 100_000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MemoryBudgetError);
    const e = err as MemoryBudgetError;
    // gemma2 fixture: 256 × 64 embedding (tied) and 3 layers of attention and MLP matrices, as f16, plus f32 vectors.
    expect(e.neededBytes).toBeGreaterThan(256 * 64 * 2);
    expect(e.message).toMatch(/^model\.safetensors \(gemma2, f16\): needs 0\.\d\d GB for its weights, budget 0\.00 GB$/);
    await expect(loadModel(half, cpu, { dtype: 'f16', memoryBudgetBytes: e.neededBytes })).resolves.toBeDefined();
  });

  it('GGUF read one row per chunk (rotary Q/K reordered by heads) gives the logits of whole-tensor reads; llama2.c loads through the whole-read fallback', async () => {
    const gguf = await openGguf(await pathSource(`${FIXTURES}gguf/stories260K.gguf`));
    const llama2c = await openLlama2c(await pathSource(`${FIXTURES}llama2c/stories260K.bin`));
    for (const { store, config } of [gguf, llama2c]) {
      const want = await logits(await loadModelFromStore(store, config, cpu, { chunkBytes: 2 ** 30 }));
      const got = await logits(await loadModelFromStore(store, config, cpu, { chunkBytes: 300 }));
      expect(Array.from(got), store.label).toEqual(Array.from(want));
    }
  });

  it('merges a LoRA adapter chunk by chunk (rows of B per chunk) and matches the merged reference', async () => {
    const adapter = await readLoraAdapter(await pathFileSet(`${FIXTURES}lora/adapter`));
    const opts: LoadOptions = { adapter, chunkBytes: 512 };
    const model = await loadModel(await pathFileSet(`${FIXTURES}lora/base`), cpu, opts);
    const diffs = await compareWithGolden(model, await readGolden(`${FIXTURES}lora/golden.safetensors`), 'merged.', 1e-4, 1e-4);
    expect(diffs.size).toBeGreaterThan(0);
    expect(failures(diffs)).toEqual([]);
  });
});
