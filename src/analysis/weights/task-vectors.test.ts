import { describe, expect, it } from 'vitest';
import { pathFileSet } from '../../io/node-source.ts';
import { openSafetensorsFolder, writeSafetensors } from '../../io/safetensors.ts';
import { bytesSource, FormatError } from '../../io/source.ts';
import type { WeightStore } from '../../io/store.ts';
import { close, gaussianMatrix } from '../linalg/testing.ts';
import { defaultLayerOf, taskArithmetic, taskVectorCosines } from './task-vectors.ts';

type Tensors = Array<{ name: string; shape: number[]; data: Float32Array }>;

async function storeOf(tensors: Tensors, label: string): Promise<WeightStore> {
  return openSafetensorsFolder(new Map([['model.safetensors', bytesSource(writeSafetensors(tensors), label)]]));
}

const SHAPES: Array<[string, number[]]> = [
  ['model.embed_tokens.weight', [10, 4]],
  ['model.layers.0.mlp.up_proj.weight', [6, 4]],
  ['model.layers.0.input_layernorm.weight', [4]],
  ['model.layers.1.mlp.up_proj.weight', [6, 4]],
];

function randomModel(seed: number, scale: number): Tensors {
  return SHAPES.map(([name, shape], i) => {
    const [m, n] = [shape[0]!, shape[1] ?? 1];
    return { name, shape, data: Float32Array.from(gaussianMatrix(m, n, seed * 10 + i), (v) => v * scale) };
  });
}

function plus(base: Tensors, delta: Tensors, lambda = 1): Tensors {
  return base.map((t, i) => ({ ...t, data: Float32Array.from(t.data, (v, k) => v + lambda * delta[i]!.data[k]!) }));
}

/** Dot products of the float32 differences, in float64, over the tensors `pick` accepts. */
function expectedCosine(base: Tensors, a: Tensors, b: Tensors, pick: (name: string) => boolean): number {
  let ab = 0;
  let aa = 0;
  let bb = 0;
  base.forEach((t, i) => {
    if (!pick(t.name)) return;
    for (let k = 0; k < t.data.length; k++) {
      const x = Math.fround(a[i]!.data[k]! - t.data[k]!);
      const y = Math.fround(b[i]!.data[k]! - t.data[k]!);
      ab += x * y;
      aa += x * x;
      bb += y * y;
    }
  });
  return ab / Math.sqrt(aa * bb);
}

describe('task vectors', () => {
  const base = randomModel(1, 0.5);
  const tau1 = randomModel(2, 0.01);
  const tau2 = randomModel(3, 0.01);
  const ft1 = plus(base, tau1);
  const ft2 = plus(base, tau2);
  const ft3 = plus(ft1, tau2, 0.5);

  it('cosines whole-model and per layer against direct float64 sums', async () => {
    const res = await taskVectorCosines(await storeOf(base, 'base'), [await storeOf(ft1, 'one'), await storeOf(ft2, 'two'), await storeOf(ft3, 'three')]);
    expect(res.models).toEqual(['one', 'two', 'three']);
    expect(res.tensors_used).toBe(4);
    expect(res.skipped).toEqual([]);
    const models = [ft1, ft2, ft3];
    const blocks: Array<[typeof res.cosine, (n: string) => boolean]> = [
      [res.cosine, () => true],
      [res.layers[0]!.cosine, (n) => defaultLayerOf(n) === 0],
      [res.layers[1]!.cosine, (n) => defaultLayerOf(n) === 1],
      [res.other.cosine, (n) => defaultLayerOf(n) === null],
    ];
    expect(res.layers.map((l) => l.layer)).toEqual([0, 1]);
    for (const [matrix, pick] of blocks) {
      for (let i = 0; i < 3; i++) {
        expect(close(matrix[i]![i]!, 1, 1e-12)).toBe(true);
        for (let j = 0; j < 3; j++) expect(close(matrix[i]![j]!, expectedCosine(base, models[i]!, models[j]!, pick), 1e-9, 1e-12)).toBe(true);
      }
    }
    // τ3 ≈ τ1 + τ2/2 with τ1 ⟂ τ2 nearly: cos(τ1, τ3) ≈ 1/sqrt(1.25).
    expect(close(res.cosine[0]![2]!, 1 / Math.sqrt(1.25), 0.1)).toBe(true);
  });

  it('a fine-tune identical to the base gives null cosines, and unusable tensors are listed', async () => {
    const odd = [...base.slice(0, 3), { name: 'model.layers.1.mlp.up_proj.weight', shape: [4, 6], data: new Float32Array(24) }];
    const res = await taskVectorCosines(await storeOf(base, 'base'), [await storeOf(base, 'same'), await storeOf(odd, 'odd')]);
    expect(res.skipped).toEqual([{ name: 'model.layers.1.mlp.up_proj.weight', reason: 'shape [4, 6] in odd, [6, 4] in base' }]);
    expect(res.norms[0]).toBe(0);
    expect(res.cosine[0]![0]).toBeNull();
    expect(res.cosine[0]![1]).toBeNull();
  });

  it('stops with an AbortError when cancelled mid-run', async () => {
    const controller = new AbortController();
    const run = taskVectorCosines(await storeOf(base, 'base'), [await storeOf(ft1, 'one')], {
      signal: controller.signal,
      onProgress: (done) => {
        if (done === 1) controller.abort();
      },
    });
    await expect(run).rejects.toMatchObject({ name: 'AbortError' });
  });

  it('task arithmetic writes θ_base + Σλ_i·τ_i tensor by tensor', async () => {
    const bytes = await taskArithmetic(await storeOf(base, 'base'), [await storeOf(ft1, 'one'), await storeOf(ft2, 'two')], [0.5, -2]);
    const out = await openSafetensorsFolder(new Map([['model.safetensors', bytesSource(bytes, 'model.safetensors')]]));
    expect([...out.tensors.keys()]).toEqual(base.map((t) => t.name));
    for (const [i, t] of base.entries()) {
      const got = await out.readF32(t.name);
      for (let k = 0; k < got.length; k++) {
        const want = t.data[k]! + 0.5 * (ft1[i]!.data[k]! - t.data[k]!) - 2 * (ft2[i]!.data[k]! - t.data[k]!);
        expect(close(got[k]!, want, 2 ** -23, 1e-12)).toBe(true);
      }
    }
  });

  it('task arithmetic with λ = 1 on the llama fixture reproduces the fine-tune bit for bit', async () => {
    const dir = 'test/fixtures/arch/llama';
    const b = await openSafetensorsFolder(await pathFileSet(`${dir}/base`));
    const f = await openSafetensorsFolder(await pathFileSet(`${dir}/ft`));
    const bytes = await taskArithmetic(b, [f], [1]);
    const out = await openSafetensorsFolder(new Map([['model.safetensors', bytesSource(bytes, 'model.safetensors')]]));
    for (const name of f.tensors.keys()) expect(await out.readF32(name)).toEqual(await f.readF32(name));
    const cos = await taskVectorCosines(b, [f, f]);
    expect(cos.layers.map((l) => l.norms[0]! > 0)).toEqual([false, true, true]);
    expect(close(cos.cosine[0]![1]!, 1, 1e-12)).toBe(true);
  });

  it('task arithmetic refuses a fine-tune without a base tensor, naming it', async () => {
    const run = taskArithmetic(await storeOf(base, 'base'), [await storeOf(base.slice(1), 'short.safetensors')], [1]);
    await expect(run).rejects.toThrow(FormatError);
    await expect(taskArithmetic(await storeOf(base, 'base'), [await storeOf(base.slice(1), 'short.safetensors')], [1])).rejects.toThrow(
      /short\.safetensors.*"model\.embed_tokens\.weight": missing in short\.safetensors/,
    );
    await expect(taskArithmetic(await storeOf(base, 'base'), [await storeOf(ft1, 'one')], [1, 2])).rejects.toThrow(/1 fine-tunes but 2 coefficients/);
  });
});
