import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { createCpuBackend } from '../../gpu/cpu-backend.ts';
import { useDawn } from '../../gpu/dawn-node.ts';
import { createWebGpuBackend } from '../../kernels/webgpu-backend.ts';
import { pathFileSet } from '../../io/node-source.ts';
import { openSafetensorsFolder, writeSafetensors } from '../../io/safetensors.ts';
import { bytesSource } from '../../io/source.ts';
import type { WeightStore } from '../../io/store.ts';
import { close, matrixWithSpectrum } from '../linalg/testing.ts';
import { diffWeights } from './diff.ts';

const backend = createCpuBackend();

interface GroundTruth {
  changed_tensors: Record<string, { rank: number; singular_values: number[]; shape: number[]; frobenius: number }>;
}

export async function storeOf(tensors: Array<{ name: string; shape: number[]; data: Float32Array | Int32Array }>, label = 'model.safetensors'): Promise<WeightStore> {
  return openSafetensorsFolder(new Map([['model.safetensors', bytesSource(writeSafetensors(tensors), label)]]));
}

describe('diffWeights on the arch fixtures', () => {
  const archs = readdirSync('test/fixtures/arch');
  it('covers every architecture folder', () => {
    expect(archs.length).toBeGreaterThanOrEqual(8);
  });

  it.each(archs)('%s: exactly the two ground-truth tensors changed, with their spectra', async (arch) => {
    const dir = `test/fixtures/arch/${arch}`;
    const truth = JSON.parse(readFileSync(`${dir}/ground_truth.json`, 'utf8')) as GroundTruth;
    const base = await openSafetensorsFolder(await pathFileSet(`${dir}/base`));
    const ft = await openSafetensorsFolder(await pathFileSet(`${dir}/ft`));
    const res = await diffWeights(base, ft, { backend });
    expect(res.missing).toEqual([]);
    expect(res.mismatched).toEqual([]);
    expect(res.tensors.length).toBe(base.tensors.size);
    const changed = res.tensors.filter((t) => t.frobenius !== 0).map((t) => t.name);
    expect(changed.sort()).toEqual(Object.keys(truth.changed_tensors).sort());
    for (const t of res.tensors) {
      const want = truth.changed_tensors[t.name];
      if (!want) {
        expect(t.max_abs_delta).toBe(0);
        expect(t.sparsity?.[0]?.fraction).toBe(1);
        continue;
      }
      expect(t.shape).toEqual(want.shape);
      expect(t.numerical_rank).toBe(want.rank);
      expect(close(t.frobenius, want.frobenius, 1e-4)).toBe(true);
      want.singular_values.forEach((s, i) => expect(close(t.top_singular_values[i]!, s, 1e-4)).toBe(true));
      expect(close(t.spectral!, want.singular_values[0]!, 1e-4)).toBe(true);
      const sum = want.singular_values.reduce((a, b) => a + b, 0);
      expect(close(t.nuclear!, sum, 1e-4)).toBe(true);
      const entropy = -want.singular_values.reduce((h, s) => h + (s / sum) * Math.log(s / sum), 0);
      expect(close(t.effective_rank!, Math.exp(entropy), 1e-4)).toBe(true);
      expect(t.method).toMatch(/^randomized block Krylov\(b=12,d=4,l=60,/);
    }
  });
});

describe('diffWeights on the WebGPU backend (Dawn)', () => {
  it('llama fixture: the same tensors and spectra as on the CPU backend', async () => {
    expect(useDawn()).toBe(true);
    const gpu = await createWebGpuBackend();
    const dir = 'test/fixtures/arch/llama';
    const base = await openSafetensorsFolder(await pathFileSet(`${dir}/base`));
    const ft = await openSafetensorsFolder(await pathFileSet(`${dir}/ft`));
    const onGpu = await diffWeights(base, ft, { backend: gpu });
    const onCpu = await diffWeights(base, ft, { backend });
    expect(onGpu.tensors.map((t) => t.name)).toEqual(onCpu.tensors.map((t) => t.name));
    for (const [i, g] of onGpu.tensors.entries()) {
      const c = onCpu.tensors[i]!;
      expect(g.frobenius).toBe(c.frobenius);
      expect(g.numerical_rank).toBe(c.numerical_rank);
      for (let k = 0; k < c.top_singular_values.length; k++) {
        expect(close(g.top_singular_values[k]!, c.top_singular_values[k]!, 1e-5, 1e-5 * (c.spectral ?? 0))).toBe(true);
      }
      if (c.effective_rank !== null) expect(close(g.effective_rank!, c.effective_rank, 1e-4)).toBe(true);
    }
  });
});

describe('diffWeights statistics and bookkeeping', () => {
  it('elementwise statistics by their definitions', async () => {
    const n = 1000;
    const w0 = new Float32Array(n);
    for (let i = 0; i < n; i++) w0[i] = Math.sin(i + 1) * 2;
    const w1 = w0.slice();
    // 700 unchanged, 100 moved by 5e-7, 100 by 1e-4·max|W| / 2, 100 by 0.5.
    const max = w0.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    for (let i = 700; i < 800; i++) w1[i] = w0[i]! + 5e-7;
    for (let i = 800; i < 900; i++) w1[i] = w0[i]! + 0.5e-4 * max;
    for (let i = 900; i < 1000; i++) w1[i] = w0[i]! + 0.5;
    let dd = 0;
    let bb = 0;
    let ff = 0;
    let bf = 0;
    let zero = 0;
    let micro = 0;
    let rel = 0;
    for (let i = 0; i < n; i++) {
      const d = Math.fround(w1[i]! - w0[i]!);
      dd += d * d;
      bb += w0[i]! ** 2;
      ff += w1[i]! ** 2;
      bf += w0[i]! * w1[i]!;
      if (d === 0) zero++;
      if (Math.abs(d) <= 1e-6) micro++;
      if (Math.abs(d) <= 1e-4 * max) rel++;
    }
    expect(zero).toBeGreaterThanOrEqual(700);
    expect(micro).toBeGreaterThan(zero);
    expect(rel).toBeGreaterThan(micro);
    const res = await diffWeights(await storeOf([{ name: 'v', shape: [n], data: w0 }]), await storeOf([{ name: 'v', shape: [n], data: w1 }]), { backend });
    const t = res.tensors[0]!;
    expect(close(t.frobenius, Math.sqrt(dd), 1e-12)).toBe(true);
    expect(close(t.relative!, Math.sqrt(dd / bb), 1e-12)).toBe(true);
    expect(close(t.cosine!, bf / Math.sqrt(bb * ff), 1e-12)).toBe(true);
    expect(t.sparsity!.map((s) => s.fraction)).toEqual([zero / n, micro / n, rel / n]);
    expect(t.sparsity!.map((s) => s.epsilon)).toEqual([0, 1e-6, 1e-4 * max]);
    expect(t.method).toBe('vector');
    expect(t.spectral).toBeNull();
    expect(t.top_singular_values).toEqual([]);
  });

  it('a matrix with a slowly decaying spectrum goes through the Gram; a wide one reports no full spectrum when asked', async () => {
    const [m, n] = [48, 72];
    const sigma = Array.from({ length: m }, (_, i) => 1 / (1 + i / 8));
    const w0 = new Float32Array(m * n).fill(0.25);
    const w1 = Float32Array.from(matrixWithSpectrum(m, n, sigma, 3), (d) => d + 0.25);
    const stores = [await storeOf([{ name: 'w', shape: [m, n], data: w0 }]), await storeOf([{ name: 'w', shape: [m, n], data: w1 }])] as const;
    const full = (await diffWeights(stores[0], stores[1], { backend, topK: 8 })).tensors[0]!;
    expect(full.method).toMatch(/spectrum gram\(float64 host\)\/jacobi, floor [\d.e-]+·σ1; top-8 from gram$/);
    expect(full.top_singular_values.length).toBe(8);
    // From the Gram, not the sketch: only the float32 rounding of W_ft (‖E‖₂ ≈ 3e-7) separates them from σ.
    for (let i = 0; i < 8; i++) expect(close(full.top_singular_values[i]!, sigma[i]!, 1e-5)).toBe(true);
    const wantNuclear = sigma.reduce((a, b) => a + b, 0);
    expect(close(full.nuclear!, wantNuclear, 1e-4)).toBe(true);
    expect(full.numerical_rank).toBe(m);
    const partial = (await diffWeights(stores[0], stores[1], { backend, topK: 8, fullSpectrumMaxSide: 32 })).tensors[0]!;
    expect(partial.nuclear).toBeNull();
    expect(partial.effective_rank).toBeNull();
    expect(partial.method).toMatch(/no full spectrum/);
    expect(close(partial.spectral!, sigma[0]!, 1e-4)).toBe(true);
    const frob2 = sigma.reduce((a, b) => a + b * b, 0);
    expect(close(partial.top_energy_fraction!, sigma[0]! ** 2 / frob2, 1e-4)).toBe(true);
  });

  it('reports missing, mismatched and integer tensors instead of skipping them', async () => {
    const f = (k: number) => new Float32Array(k).fill(1);
    const base = await storeOf([
      { name: 'a', shape: [4, 3], data: f(12) },
      { name: 'b', shape: [5], data: f(5) },
      { name: 'c', shape: [2, 2], data: f(4) },
      { name: 'ids', shape: [3], data: new Int32Array(3) },
    ]);
    const ft = await storeOf([
      { name: 'a', shape: [4, 3], data: f(12) },
      { name: 'b', shape: [6], data: f(6) },
      { name: 'd', shape: [3], data: f(3) },
      { name: 'ids', shape: [3], data: new Int32Array(3) },
    ]);
    const res = await diffWeights(base, ft, { backend });
    expect(res.tensors.map((t) => t.name)).toEqual(['a']);
    expect(res.tensors[0]!.method).toBe('zero');
    expect(res.tensors[0]!.effective_rank).toBe(0);
    expect(res.missing).toEqual([
      { name: 'c', shape: [2, 2], only_in: 'base' },
      { name: 'd', shape: [3], only_in: 'ft' },
    ]);
    expect(res.mismatched).toEqual([{ name: 'b', base_shape: [5], ft_shape: [6] }]);
    expect(res.unsupported.map((u) => u.name)).toEqual(['ids']);
  });

  it('stops between tensors with an AbortError when cancelled', async () => {
    const dir = 'test/fixtures/arch/llama';
    const base = await openSafetensorsFolder(await pathFileSet(`${dir}/base`));
    const ft = await openSafetensorsFolder(await pathFileSet(`${dir}/ft`));
    const controller = new AbortController();
    const seen: Array<[number, number]> = [];
    const run = diffWeights(base, ft, {
      backend,
      signal: controller.signal,
      onProgress: (done, total) => {
        seen.push([done, total]);
        if (done === 2) controller.abort();
      },
    });
    await expect(run).rejects.toMatchObject({ name: 'AbortError' });
    expect(seen).toEqual([
      [1, base.tensors.size],
      [2, base.tensors.size],
    ]);
  });
});
