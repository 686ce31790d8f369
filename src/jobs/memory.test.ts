// The memory plan: resident bytes in the stored precision, the budget from the machine (or given), and
// the GPU's binding limit on a row.
import { describe, expect, it } from 'vitest';
import { bf16FromF32 } from '../io/chunks.ts';
import { pathFileSet } from '../io/node-source.ts';
import { openSafetensorsFolder, writeSafetensors } from '../io/safetensors.ts';
import { bytesSource, type FileSet } from '../io/source.ts';
import { MemoryError, pairWeightBytes, planMemory } from './memory.ts';
import { openPair } from './pair.ts';

const DEMO = new URL('../../test/fixtures/demo/', import.meta.url).pathname;

/** A folder holding `files`'s model with every tensor stored as BF16. */
async function asBf16(files: FileSet): Promise<FileSet> {
  const store = await openSafetensorsFolder(files);
  const tensors = [];
  for (const t of store.tensors.values()) tensors.push({ name: t.name, shape: t.shape, data: bf16FromF32(await store.readF32(t.name)), dtype: 'BF16' as const });
  return new Map([...files].filter(([name]) => !name.endsWith('.safetensors')).concat([['model.safetensors', bytesSource(writeSafetensors(tensors), 'model.safetensors')]]));
}

const stored = (files: FileSet) => [...files].filter(([n]) => n.endsWith('.safetensors')).reduce((s, [, f]) => s + f.size, 0);

describe('planMemory', () => {
  it('counts each model at about its stored size: float32 as 4 bytes, bfloat16 as 2 on the CPU (f16 on WebGPU: 2 as well)', async () => {
    const f32 = { base: await pathFileSet(`${DEMO}base`), ft: await pathFileSet(`${DEMO}ocean/model`) };
    const bf16 = { base: await asBf16(f32.base), ft: await asBf16(f32.ft) };
    for (const files of [f32, bf16]) {
      const pair = await openPair(files);
      const size = stored(files.base) + stored(files.ft);
      for (const backend of ['cpu', 'webgpu'] as const) {
        const { pair: bytes } = pairWeightBytes(pair, backend);
        // Vectors are widened to float32, headers are not counted: within 1%.
        expect(Math.abs(bytes - size)).toBeLessThan(0.01 * size);
      }
    }
    expect(stored(bf16.base)).toBeLessThan(0.51 * stored(f32.base));
  });

  it('chooses resident, one model at a time, or refuses, from the host share or a given budget', async () => {
    const pair = await openPair({ base: await pathFileSet(`${DEMO}base`), ft: await pathFileSet(`${DEMO}ocean/model`) });
    const { pair: both, largest } = pairWeightBytes(pair, 'cpu');
    expect(planMemory(pair, { backend: 'cpu' }).mode).toBe('resident');
    const host = planMemory(pair, { backend: 'cpu', hostBytes: 16 * 2 ** 30 });
    expect([host.mode, host.budgetBytes]).toEqual(['resident', 0.6 * 16 * 2 ** 30]);
    expect(host.reason).toMatch(/^both models resident: 0\.02 GiB of weights within the budget of 9\.60 GiB \(60% of 16\.00 GiB of memory\)$/);
    const given = planMemory(pair, { backend: 'cpu', hostBytes: 16 * 2 ** 30, budgetBytes: (both + largest) / 2 });
    expect([given.mode, given.pairBytes, given.modelBytes]).toEqual(['sequential', both, largest]);
    expect(given.reason).toMatch(/^one model at a time: .* \(the budget given\); one model needs 0\.01 GiB$/);
    expect(() => planMemory(pair, { backend: 'cpu', budgetBytes: largest / 2 })).toThrow(MemoryError);
    // A GPU's own memory, where known, bounds the pair too.
    expect(planMemory(pair, { backend: 'webgpu', hostBytes: 16 * 2 ** 30, deviceBytes: both }).mode).toBe('sequential');
  });

  it('names the GPU limits, and refuses a row longer than one storage binding (larger tensors are row-blocked)', async () => {
    const pair = await openPair({ base: await pathFileSet(`${DEMO}base`), ft: await pathFileSet(`${DEMO}ocean/model`) });
    const ok = planMemory(pair, { backend: 'webgpu', gpu: { maxBufferSize: 2 ** 28, maxStorageBufferBindingSize: 2 ** 27 } });
    expect(ok.reason).toMatch(/GPU buffers up to 0\.25 GiB, bindings up to 0\.13 GiB \(larger tensors are kept as row blocks\)$/);
    // The demo's widest rows are down_proj's: d_ff = 512 floats, 2048 bytes.
    expect(() => planMemory(pair, { backend: 'webgpu', gpu: { maxBufferSize: 2 ** 28, maxStorageBufferBindingSize: 1024 } })).toThrow(/a row of "model.layers.0.mlp.down_proj.weight" takes 2048 bytes, more than one GPU storage binding \(1024 bytes\)/);
  });
});
