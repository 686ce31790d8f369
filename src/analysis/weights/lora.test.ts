import { describe, expect, it } from 'vitest';
import { createCpuBackend } from '../../gpu/cpu-backend.ts';
import { pathFileSet } from '../../io/node-source.ts';
import { openSafetensorsFolder, writeSafetensors } from '../../io/safetensors.ts';
import { bytesSource, FormatError } from '../../io/source.ts';
import type { WeightStore } from '../../io/store.ts';
import { singularValues } from '../linalg/dense.ts';
import { close, gaussianMatrix } from '../linalg/testing.ts';
import { diffWeights } from './diff.ts';
import { readLoraAdapter } from '../../model/lora.ts';
import { diffLora, type LoraUpdate } from './lora.ts';

const backend = createCpuBackend();

async function storeOf(tensors: Array<{ name: string; shape: number[]; data: Float32Array }>): Promise<WeightStore> {
  return openSafetensorsFolder(new Map([['model.safetensors', bytesSource(writeSafetensors(tensors), 'model.safetensors')]]));
}

/** s·B·A in float64, as stored in the base tensor (transposed when t.transposed). */
function merged(t: LoraUpdate): Float64Array {
  const out = new Float64Array(t.outFeatures * t.inFeatures);
  for (let i = 0; i < t.outFeatures; i++) {
    for (let j = 0; j < t.inFeatures; j++) {
      let v = 0;
      for (let k = 0; k < t.r; k++) v += t.B[i * t.r + k]! * t.A[k * t.inFeatures + j]!;
      out[t.transposed ? j * t.outFeatures + i : i * t.inFeatures + j] = t.scaling * v;
    }
  }
  return out;
}

function randomTarget(name: string, r: number, nIn: number, nOut: number, scaling: number, seed: number, transposed = false): LoraUpdate {
  return {
    target: name,
    A: Float32Array.from(gaussianMatrix(r, nIn, seed), (v) => v * 0.1),
    B: Float32Array.from(gaussianMatrix(nOut, r, seed + 1), (v) => v * 0.1),
    r,
    inFeatures: nIn,
    outFeatures: nOut,
    scaling,
    transposed,
  };
}

describe('diffLora', () => {
  it('random factors: spectrum, norms and cosine equal those of the merged ΔW', async () => {
    const targets = [randomTarget('w', 4, 40, 30, 2, 1), randomTarget('wt', 3, 24, 16, 0.5, 2, true)];
    const w = Float32Array.from(gaussianMatrix(30, 40, 3), (v) => v * 0.2);
    const wt = Float32Array.from(gaussianMatrix(24, 16, 4), (v) => v * 0.2);
    const base = await storeOf([
      { name: 'w', shape: [30, 40], data: w },
      { name: 'wt', shape: [24, 16], data: wt },
    ]);
    const res = await diffLora(base, targets, { backend });
    expect(res.missing).toEqual([]);
    expect(res.mismatched).toEqual([]);
    for (const [i, t] of targets.entries()) {
      const got = res.tensors[i]!;
      const d = merged(t);
      const [rows, cols] = got.shape as [number, number];
      const want = singularValues(d, rows, cols);
      expect(got.top_singular_values.length).toBe(t.r);
      for (let k = 0; k < t.r; k++) expect(close(got.top_singular_values[k]!, want[k]!, 1e-10)).toBe(true);
      expect(got.numerical_rank).toBe(t.r);
      const w0 = i === 0 ? w : wt;
      let dd = 0;
      let bb = 0;
      let ff = 0;
      let bf = 0;
      for (let j = 0; j < d.length; j++) {
        const f = w0[j]! + d[j]!;
        dd += d[j]! ** 2;
        bb += w0[j]! ** 2;
        ff += f * f;
        bf += w0[j]! * f;
      }
      expect(close(got.frobenius, Math.sqrt(dd), 1e-10)).toBe(true);
      expect(close(got.relative!, Math.sqrt(dd / bb), 1e-10)).toBe(true);
      expect(close(got.ft_frobenius, Math.sqrt(ff), 1e-6)).toBe(true);
      expect(close(got.cosine!, bf / Math.sqrt(bb * ff), 1e-6)).toBe(true);
      expect(got.sparsity).toBeNull();
      expect(got.method).toBe(`lora-factors(r=${t.r})`);
    }
  });

  it('the PEFT fixture: analytic spectra equal the merged ΔW, and the generic diff of merged weights agrees', async () => {
    const adapter = await readLoraAdapter(await pathFileSet('test/fixtures/lora/adapter'));
    expect(adapter.targets.size).toBe(3 * 7); // 3 layers × 7 projections
    const targets: LoraUpdate[] = [];
    for (const t of adapter.targets.values()) {
      const { A, B } = await adapter.readFactors(t);
      targets.push({ target: t.weight, A, B, r: t.r, inFeatures: t.shapeA[1], outFeatures: t.shapeB[0], scaling: t.scaling, transposed: t.transposed });
    }
    expect(targets.every((t) => t.r === 4 && t.scaling === 2 && !t.transposed)).toBe(true);
    const base = await openSafetensorsFolder(await pathFileSet('test/fixtures/lora/base'));
    const analytic = await diffLora(base, adapter, { backend });
    expect(analytic.tensors.length).toBe(targets.length);
    const fromList = await diffLora(base, targets, { backend });
    expect(fromList).toEqual(analytic);

    const mergedTensors: Array<{ name: string; shape: number[]; data: Float32Array }> = [];
    for (const name of base.tensors.keys()) {
      const w = await base.readF32(name);
      const t = targets.find((x) => x.target === name);
      if (t) {
        const d = merged(t);
        for (let j = 0; j < w.length; j++) w[j]! += d[j]!;
      }
      mergedTensors.push({ name, shape: [...base.tensors.get(name)!.shape], data: w });
    }
    const generic = await diffWeights(base, await storeOf(mergedTensors), { backend });

    for (const got of analytic.tensors) {
      const t = targets.find((x) => x.target === got.name)!;
      const want = singularValues(merged(t), t.outFeatures, t.inFeatures);
      for (let k = 0; k < 4; k++) expect(close(got.top_singular_values[k]!, want[k]!, 1e-10)).toBe(true);
      const viaWeights = generic.tensors.find((x) => x.name === got.name)!;
      expect(viaWeights.numerical_rank).toBe(4);
      for (let k = 0; k < 4; k++) expect(close(viaWeights.top_singular_values[k]!, got.top_singular_values[k]!, 1e-4)).toBe(true);
      expect(close(viaWeights.frobenius, got.frobenius, 1e-4)).toBe(true);
      expect(close(viaWeights.cosine!, got.cosine!, 1e-6)).toBe(true);
      expect(close(viaWeights.effective_rank!, got.effective_rank!, 1e-4)).toBe(true);
    }
    const changed = generic.tensors.filter((x) => x.frobenius > 0).map((x) => x.name).sort();
    expect(changed).toEqual(targets.map((x) => x.target).sort());
  });

  it('reports targets the base lacks or shapes it disagrees with', async () => {
    const base = await storeOf([{ name: 'w', shape: [30, 40], data: new Float32Array(1200) }]);
    const res = await diffLora(base, [randomTarget('w', 2, 30, 40, 1, 5), randomTarget('nope', 2, 3, 4, 1, 6)], { backend });
    expect(res.tensors).toEqual([]);
    expect(res.mismatched).toEqual([{ name: 'w', base_shape: [30, 40], ft_shape: [40, 30] }]);
    expect(res.missing).toEqual([{ name: 'nope', shape: [4, 3], only_in: 'ft' }]);
  });

  it('rejects factors of the wrong size, naming the adapter', async () => {
    const base = await storeOf([{ name: 'w', shape: [4, 3], data: new Float32Array(12) }]);
    const bad = { ...randomTarget('w', 2, 3, 4, 1, 7), A: new Float32Array(5) };
    const run = diffLora(base, [bad], { backend, label: 'my_adapter.safetensors' });
    await expect(run).rejects.toThrow(FormatError);
    await expect(diffLora(base, [bad], { backend, label: 'my_adapter.safetensors' })).rejects.toThrow(/my_adapter\.safetensors.*LoRA A for "w" has 5 values/);
  });

  it('stops between targets with an AbortError when cancelled', async () => {
    const adapter = await readLoraAdapter(await pathFileSet('test/fixtures/lora/adapter'));
    const base = await openSafetensorsFolder(await pathFileSet('test/fixtures/lora/base'));
    const controller = new AbortController();
    let calls = 0;
    const run = diffLora(base, adapter, {
      backend,
      signal: controller.signal,
      onProgress: () => {
        calls++;
        controller.abort();
      },
    });
    await expect(run).rejects.toMatchObject({ name: 'AbortError' });
    expect(calls).toBe(1);
  });
});
