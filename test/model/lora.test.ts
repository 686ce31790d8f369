import { describe, expect, it } from 'vitest';
import { createCpuBackend } from '../../src/gpu/cpu-backend.ts';
import { pathFileSet } from '../../src/io/node-source.ts';
import { safetensorsStore, readSafetensorsHeader, writeSafetensors } from '../../src/io/safetensors.ts';
import { bytesSource, FormatError } from '../../src/io/source.ts';
import { loraAdapterFromStore, loraDelta, mergeLora, readLoraAdapter, type LoraAdapter } from '../../src/model/lora.ts';
import { compareWithGolden, failures, FIXTURES, loadFixture, readGolden } from './golden-helpers.ts';

const be = createCpuBackend();

async function adapterFrom(tensors: Array<{ name: string; shape: number[]; data: Float32Array }>, config: Record<string, unknown>): Promise<LoraAdapter> {
  const file = await readSafetensorsHeader(bytesSource(writeSafetensors(tensors), 'adapter_model.safetensors'));
  return loraAdapterFromStore(safetensorsStore([file], 'adapter_model.safetensors'), { peft_type: 'LORA', r: 2, lora_alpha: 4, ...config });
}

describe('PEFT LoRA', () => {
  it('merged at load, the tiny llama matches merged.* (and base.* without the adapter)', async () => {
    const golden = await readGolden(`${FIXTURES}lora/golden.safetensors`);
    const base = await loadFixture('lora/base', be);
    expect(failures(await compareWithGolden(base, golden, 'base.', 1e-4, 1e-4))).toEqual([]);
    const adapter = await readLoraAdapter(await pathFileSet(`${FIXTURES}lora/adapter`));
    const merged = await loadFixture('lora/base', be, { adapter });
    const diffs = await compareWithGolden(merged, golden, 'merged.', 1e-4, 1e-4);
    expect(diffs.size).toBe(14);
    expect(failures(diffs)).toEqual([]);
  });

  it('reads r, alpha and every target, and ΔW = (alpha / r)·B·A', async () => {
    const adapter = await readLoraAdapter(await pathFileSet(`${FIXTURES}lora/adapter`));
    expect(adapter.config.r).toBe(4);
    expect(adapter.config.alpha).toBe(8);
    expect(adapter.targets.size).toBe(7 * 3);
    const t = adapter.targets.get('model.layers.1.self_attn.q_proj.weight')!;
    expect(t.module).toBe('model.layers.1.self_attn.q_proj');
    expect(t.shapeA).toEqual([4, 64]);
    expect(t.shapeB).toEqual([64, 4]);
    expect(t.scaling).toBe(2);
    const f = await adapter.readFactors(t);
    const delta = loraDelta(t, f);
    for (const [o, i] of [[0, 0], [17, 33], [63, 63]] as const) {
      let want = 0;
      for (let k = 0; k < 4; k++) want += f.B[o * 4 + k]! * f.A[k * 64 + i]!;
      want *= 2;
      expect(Math.abs(delta[o * 64 + i]! - want)).toBeLessThan(1e-6 + 1e-6 * Math.abs(want));
    }
  });

  it('scales by alpha / sqrt(r) with rsLoRA and honours alpha_pattern', async () => {
    const A = new Float32Array([1, 0, 0, 0, 1, 0]); // [2, 3]
    const B = new Float32Array([1, 0, 0, 1]); // [2, 2]
    const tensors = [
      { name: 'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight', shape: [2, 3], data: A },
      { name: 'base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight', shape: [2, 2], data: B },
      { name: 'base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight', shape: [2, 3], data: A },
      { name: 'base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight', shape: [2, 2], data: B },
    ];
    const ad = await adapterFrom(tensors, { use_rslora: true, alpha_pattern: { v_proj: 8 } });
    expect(Math.abs(ad.targets.get('model.layers.0.self_attn.q_proj.weight')!.scaling - 4 / Math.SQRT2)).toBeLessThan(1e-12);
    expect(Math.abs(ad.targets.get('model.layers.0.self_attn.v_proj.weight')!.scaling - 8 / Math.SQRT2)).toBeLessThan(1e-12);
    const t = ad.targets.get('model.layers.0.self_attn.q_proj.weight')!;
    const merged = mergeLora(new Float32Array(6).fill(1), [2, 3], t, { A, B });
    const s = 4 / Math.SQRT2;
    const want = [1 + s, 1, 1, 1, 1 + s, 1];
    want.forEach((w, i) => expect(Math.abs(merged[i]! - w)).toBeLessThan(1e-6));
  });

  it('adds ΔW transposed to weights stored [in, out] (fan_in_fan_out, GPT-2 Conv1D)', async () => {
    const A = Float32Array.from({ length: 2 * 3 }, (_, i) => i + 1); // [r 2, in 3]
    const B = Float32Array.from({ length: 4 * 2 }, (_, i) => (i % 3) - 1); // [out 4, r 2]
    const factors = [
      { name: 'base_model.model.transformer.h.0.attn.c_proj.lora_A.weight', shape: [2, 3], data: A },
      { name: 'base_model.model.transformer.h.0.attn.c_proj.lora_B.weight', shape: [4, 2], data: B },
    ];
    const plain = (await adapterFrom(factors, {})).targets.get('transformer.h.0.attn.c_proj.weight')!;
    const conv = (await adapterFrom(factors, { fan_in_fan_out: true })).targets.get('transformer.h.0.attn.c_proj.weight')!;
    expect(conv.transposed).toBe(true);
    const outIn = mergeLora(new Float32Array(12), [4, 3], plain, { A, B });
    const inOut = mergeLora(new Float32Array(12), [3, 4], conv, { A, B });
    for (let o = 0; o < 4; o++) for (let i = 0; i < 3; i++) {
      let want = 0;
      for (let k = 0; k < 2; k++) want += B[o * 2 + k]! * A[k * 3 + i]!;
      expect(outIn[o * 3 + i]).toBe(2 * want);
      expect(inOut[i * 4 + o]).toBe(2 * want);
    }
    expect(() => mergeLora(new Float32Array(12), [4, 3], conv, { A, B })).toThrow(/do not fit "transformer\.h\.0\.attn\.c_proj\.weight" \[4, 3\]/);
  });

  it('an adapter whose shapes do not fit its base fails with a clear error', async () => {
    // q_proj of lora/base is [64, 64]; these factors claim in = 32.
    const ad = await adapterFrom(
      [
        { name: 'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight', shape: [2, 32], data: new Float32Array(64) },
        { name: 'base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight', shape: [64, 2], data: new Float32Array(128) },
      ],
      {},
    );
    const err = await loadFixture('lora/base', be, { adapter: ad }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FormatError);
    expect((err as Error).message).toMatch(/adapter_model\.safetensors: LoRA factors for "model\.layers\.0\.self_attn\.q_proj\.weight" \(A \[2, 32\], B \[64, 2\]\) do not fit the base weight \[64, 64\]/);
  });

  it('an adapter for a module the base lacks, or with a wrong rank, is refused', async () => {
    const ad = await adapterFrom(
      [
        { name: 'base_model.model.model.layers.7.mlp.up_proj.lora_A.weight', shape: [2, 64], data: new Float32Array(128) },
        { name: 'base_model.model.model.layers.7.mlp.up_proj.lora_B.weight', shape: [160, 2], data: new Float32Array(320) },
      ],
      {},
    );
    await expect(loadFixture('lora/base', be, { adapter: ad })).rejects.toThrow(/adapts "model\.layers\.7\.mlp\.up_proj\.weight", which the base model .* does not have/);
    await expect(
      adapterFrom(
        [
          { name: 'base_model.model.model.layers.0.mlp.up_proj.lora_A.weight', shape: [3, 64], data: new Float32Array(192) },
          { name: 'base_model.model.model.layers.0.mlp.up_proj.lora_B.weight', shape: [160, 3], data: new Float32Array(480) },
        ],
        {},
      ),
    ).rejects.toThrow(/has rank 3 but adapter_config.json says r = 2/);
    await expect(adapterFrom([], { use_dora: true })).rejects.toThrow(/DoRA/);
  });
});
