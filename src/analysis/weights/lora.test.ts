import { describe, expect, it } from 'vitest';
import { createCpuBackend } from '../../gpu/cpu-backend.ts';
import { pathFileSet } from '../../io/node-source.ts';
import { openSafetensorsFolder, writeSafetensors } from '../../io/safetensors.ts';
import { bytesSource, FormatError } from '../../io/source.ts';
import type { WeightStore } from '../../io/store.ts';
import { singularValues } from '../linalg/dense.ts';
import { close, gaussianMatrix } from '../linalg/testing.ts';
import { diffWeights } from './diff.ts';
import { diffLora, readPeftAdapter, type LoraTarget } from './lora.ts';

const backend = createCpuBackend();

async function storeOf(tensors: Array<{ name: string; shape: number[]; data: Float32Array }>): Promise<WeightStore> {
  return openSafetensorsFolder(new Map([['model.safetensors', bytesSource(writeSafetensors(tensors), 'model.safetensors')]]));
}

/** s·B·A in float64, as stored in the base tensor (transposed when t.transposed). */
function merged(t: LoraTarget): Float64Array {
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

function randomTarget(name: string, r: number, nIn: number, nOut: number, scaling: number, seed: number, transposed = false): LoraTarget {
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
    const adapter = await readPeftAdapter(await pathFileSet('test/fixtures/lora/adapter'));
    expect(adapter.targets.length).toBe(3 * 7); // 3 layers × 7 projections
    expect(adapter.ignored).toEqual([]);
    for (const t of adapter.targets) {
      expect(t.r).toBe(4);
      expect(t.scaling).toBe(2);
      expect(t.target).toMatch(/^model\.layers\.\d\.(self_attn|mlp)\.\w+_proj\.weight$/);
    }
    const base = await openSafetensorsFolder(await pathFileSet('test/fixtures/lora/base'));
    const analytic = await diffLora(base, adapter.targets, { backend, label: adapter.label });
    expect(analytic.tensors.length).toBe(adapter.targets.length);

    const mergedTensors: Array<{ name: string; shape: number[]; data: Float32Array }> = [];
    for (const name of base.tensors.keys()) {
      const w = await base.readF32(name);
      const t = adapter.targets.find((x) => x.target === name);
      if (t) {
        const d = merged(t);
        for (let j = 0; j < w.length; j++) w[j]! += d[j]!;
      }
      mergedTensors.push({ name, shape: [...base.tensors.get(name)!.shape], data: w });
    }
    const generic = await diffWeights(base, await storeOf(mergedTensors), { backend });

    for (const got of analytic.tensors) {
      const t = adapter.targets.find((x) => x.target === got.name)!;
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
    expect(changed).toEqual(adapter.targets.map((x) => x.target).sort());
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

  it('rejects PEFT folders it cannot read exactly', async () => {
    const adapterBytes = writeSafetensors([
      { name: 'base_model.model.x.lora_A.weight', shape: [2, 3], data: new Float32Array(6) },
      { name: 'base_model.model.y.lora_A.weight', shape: [2, 3], data: new Float32Array(6) },
      { name: 'base_model.model.y.lora_B.weight', shape: [4, 2], data: new Float32Array(8) },
    ]);
    const folder = (config: object) =>
      new Map([
        ['adapter_config.json', bytesSource(new TextEncoder().encode(JSON.stringify(config)), 'adapter_config.json')],
        ['adapter_model.safetensors', bytesSource(adapterBytes, 'adapter_model.safetensors')],
      ]);
    await expect(readPeftAdapter(folder({ peft_type: 'LORA', r: 2, lora_alpha: 4, use_dora: true }))).rejects.toThrow(/adapter_config\.json.*DoRA/);
    await expect(readPeftAdapter(folder({ peft_type: 'LORA', r: 2 }))).rejects.toThrow(/adapter_config\.json.*lora_alpha/);
    await expect(readPeftAdapter(folder({ peft_type: 'LORA', r: 2, lora_alpha: 4 }))).rejects.toThrow(/adapter_model\.safetensors.*"x" has lora_A but no lora_B/);
    await expect(readPeftAdapter(new Map())).rejects.toThrow(/no adapter_config\.json/);
  });

  it('applies rsLoRA and alpha_pattern scaling as PEFT does', async () => {
    const adapterBytes = writeSafetensors([
      { name: 'base_model.model.layers.0.q_proj.lora_A.weight', shape: [4, 3], data: new Float32Array(12) },
      { name: 'base_model.model.layers.0.q_proj.lora_B.weight', shape: [5, 4], data: new Float32Array(20) },
      { name: 'base_model.model.layers.0.v_proj.lora_A.weight', shape: [4, 3], data: new Float32Array(12) },
      { name: 'base_model.model.layers.0.v_proj.lora_B.weight', shape: [5, 4], data: new Float32Array(20) },
      { name: 'base_model.model.layers.0.v_proj.bias', shape: [5], data: new Float32Array(5) },
    ]);
    const files = new Map([
      ['adapter_config.json', bytesSource(new TextEncoder().encode(JSON.stringify({ peft_type: 'LORA', r: 4, lora_alpha: 8, use_rslora: true, alpha_pattern: { v_proj: 2 } })), 'adapter_config.json')],
      ['adapter_model.safetensors', bytesSource(adapterBytes, 'adapter_model.safetensors')],
    ]);
    const a = await readPeftAdapter(files);
    const scale = Object.fromEntries(a.targets.map((t) => [t.target, t.scaling]));
    expect(scale).toEqual({ 'layers.0.q_proj.weight': 8 / 2, 'layers.0.v_proj.weight': 2 / 2 });
    expect(a.ignored).toEqual(['base_model.model.layers.0.v_proj.bias']);
  });
});
