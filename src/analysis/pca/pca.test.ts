// PCA of activation differences: components against the covariance of δ computed on the host,
// orthonormality, variances summing to the total, and a model against itself.
import { beforeAll, describe, expect, it } from 'vitest';
import { createCpuBackend } from '../../gpu/cpu-backend.ts';
import { hookName } from '../../model/transformer.ts';
import type { ModelPair } from '../activations/run.ts';
import { archPair } from '../activations/testing.ts';
import { createRng } from '../crosscoder/rng.ts';
import { jacobiEigen, leadingEigen } from '../linalg/eigen.ts';
import { activationDiffPca } from './pca.ts';

let pair: ModelPair;
let self: ModelPair;
const rng = createRng(11);
const SAMPLES = Array.from({ length: 6 }, () => Array.from({ length: 10 }, () => rng.int(256)));
const LAYER = 2;

beforeAll(async () => {
  const be = createCpuBackend();
  pair = await archPair('gpt2', be);
  self = { base: pair.base, ft: (await archPair('gpt2', be)).base };
});

/** Covariance of δ at the layer over every token, from captures read to the host. */
async function hostCovariance(): Promise<{ cov: Float64Array; d: number }> {
  const d = pair.base.config.dModel;
  const name = hookName('resid_post', LAYER);
  const rows: Float64Array[] = [];
  for (const ids of SAMPLES) {
    const cap = async (m: ModelPair['base']) => {
      const { cache, logits } = m.runWithCache([ids], [name]);
      const x = (await m.backend.read(cache.get(name)!)) as Float32Array;
      m.backend.dispose(cache.get(name)!);
      if (logits) m.backend.dispose(logits);
      return x;
    };
    const xb = await cap(pair.base);
    const xf = await cap(pair.ft);
    for (let t = 0; t < ids.length; t++) rows.push(Float64Array.from({ length: d }, (_, i) => xf[t * d + i]! - xb[t * d + i]!));
  }
  const n = rows.length;
  const mean = new Float64Array(d);
  for (const r of rows) for (let i = 0; i < d; i++) mean[i]! += r[i]! / n;
  const cov = new Float64Array(d * d);
  for (const r of rows) for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) cov[i * d + j]! += ((r[i]! - mean[i]!) * (r[j]! - mean[j]!)) / n;
  return { cov, d };
}

describe('PCA of activation differences', () => {
  it('components are orthonormal eigenvectors of the covariance of δ; all variances sum to the total', async () => {
    const d = pair.base.config.dModel;
    const r = await activationDiffPca(pair, SAMPLES, { layer: LAYER, components: d, k: 5, contexts: 3, batchSize: 4 });
    const { cov } = await hostCovariance();
    let trace = 0;
    for (let i = 0; i < d; i++) trace += cov[i * d + i]!;
    expect(r.tokens).toBe(60);
    expect(Math.abs(r.totalVariance - trace)).toBeLessThanOrEqual(1e-4 * trace);
    const sum = r.components.reduce((s, c) => s + c.variance, 0);
    expect(Math.abs(sum - r.totalVariance)).toBeLessThanOrEqual(1e-6 * r.totalVariance);
    expect(Math.abs(r.components.reduce((s, c) => s + c.varianceRatio, 0) - 1)).toBeLessThanOrEqual(1e-6);
    for (let a = 0; a < d; a++) {
      for (let b = a; b < d; b += 7) {
        let dot = 0;
        for (let i = 0; i < d; i++) dot += r.components[a]!.direction[i]! * r.components[b]!.direction[i]!;
        expect(Math.abs(dot - (a === b ? 1 : 0))).toBeLessThanOrEqual(1e-5);
      }
    }
    // The leading component: C v = λ v against the host covariance.
    const top = r.components[0]!;
    expect(top.variance).toBeGreaterThan(0);
    for (let i = 0; i < d; i++) {
      let cv = 0;
      for (let j = 0; j < d; j++) cv += cov[i * d + j]! * top.direction[j]!;
      expect(Math.abs(cv - top.variance * top.direction[i]!)).toBeLessThanOrEqual(1e-3 * top.variance);
    }
    for (let i = 1; i < d; i++) expect(r.components[i]!.variance).toBeLessThanOrEqual(r.components[i - 1]!.variance + 1e-9);
    expect(top.positiveTokens).toHaveLength(5);
    expect(top.topContexts).toHaveLength(3);
    expect(top.topContexts[0]!.projection).toBeGreaterThanOrEqual(top.topContexts[2]!.projection);
    expect(top.bottomContexts[0]!.projection).toBeLessThanOrEqual(0);
  });

  it('a model against itself: zero variance, zero ratios', async () => {
    const r = await activationDiffPca(self, SAMPLES, { layer: LAYER, components: 3 });
    expect(r.totalVariance).toBe(0);
    expect(r.meanNorm).toBe(0);
    for (const c of r.components) {
      expect(c.variance).toBe(0);
      expect(c.varianceRatio).toBe(0);
    }
  });

  it('subspace iteration finds the leading eigenpairs Jacobi finds', () => {
    const n = 90;
    const r = createRng(5);
    const a = Float64Array.from({ length: n * n }, () => r.normal());
    const g = new Float64Array(n * n);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) for (let k = 0; k < n; k++) g[i * n + j]! += a[i * n + k]! * a[j * n + k]! * (k < 4 ? 10 : 1);
    const full = jacobiEigen(g, n);
    const lead = leadingEigen(g, n, 4, { jacobiMaxN: 0, iterations: 200 });
    for (let i = 0; i < 4; i++) {
      expect(Math.abs(lead.values[i]! - full.values[i]!)).toBeLessThanOrEqual(1e-8 * full.values[0]!);
      let dot = 0;
      for (let j = 0; j < n; j++) dot += lead.vectors[i * n + j]! * full.vectors[i * n + j]!;
      expect(Math.abs(Math.abs(dot) - 1)).toBeLessThanOrEqual(1e-6);
    }
  });
});
