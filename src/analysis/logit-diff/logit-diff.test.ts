// Diff mining and corpus KL against brute-force logits on the host, and the identities of a model
// against itself (zero differences, zero KL).
import { beforeAll, describe, expect, it } from 'vitest';
import { createCpuBackend } from '../../gpu/cpu-backend.ts';
import type { ModelPair } from '../activations/run.ts';
import { archPair } from '../activations/testing.ts';
import { createRng } from '../crosscoder/rng.ts';
import { corpusKl, logHistogram } from './kl.ts';
import { logitDiffTopK } from './logits.ts';
import { diffMining } from './mine.ts';
import { nmf } from './nmf.ts';

let pair: ModelPair;
let self: ModelPair;
const rng = createRng(7);
const SAMPLES = Array.from({ length: 5 }, (_, i) => Array.from({ length: i < 3 ? 8 : 6 }, () => rng.int(256)));

beforeAll(async () => {
  const be = createCpuBackend();
  pair = await archPair('llama', be);
  const again = await archPair('llama', be);
  self = { base: pair.base, ft: again.base };
});

/** Full logits [T, V] of one sample on the host. */
async function hostLogits(m: ModelPair['base'], ids: readonly number[]): Promise<Float32Array> {
  const z = m.forward([ids]).logits!;
  const out = (await m.backend.read(z)) as Float32Array;
  m.backend.dispose(z);
  return out;
}

function lse(z: Float32Array, o: number, V: number): number {
  let m = -Infinity;
  for (let v = 0; v < V; v++) m = Math.max(m, z[o + v]!);
  let s = 0;
  for (let v = 0; v < V; v++) s += Math.exp(z[o + v]! - m);
  return m + Math.log(s);
}

describe('diff mining', () => {
  it('top-K of logit_ft − logit_base matches the host, also a few rows per block', async () => {
    const ids = SAMPLES[0]!;
    const V = pair.base.config.vocab;
    const zb = await hostLogits(pair.base, ids);
    const zf = await hostLogits(pair.ft, ids);
    const name = 'ln_final.hook_normalized';
    const rb = pair.base.runWithCache([ids], [name]);
    const rf = pair.ft.runWithCache([ids], [name]);
    for (const blockValues of [1 << 20, 3 * V]) {
      const top = await logitDiffTopK(pair, rb.cache.get(name)!, rf.cache.get(name)!, 5, blockValues);
      expect(top.rows).toBe(ids.length);
      for (let t = 0; t < ids.length; t++) {
        const diff = Array.from({ length: V }, (_, v) => zf[t * V + v]! - zb[t * V + v]!);
        const want = [...diff].sort((a, b) => b - a).slice(0, 5);
        for (let j = 0; j < 5; j++) {
          expect(Math.abs(top.diffs[t * 5 + j]! - want[j]!)).toBeLessThanOrEqual(1e-4 + 1e-4 * Math.abs(want[j]!));
          expect(Math.abs(diff[top.ids[t * 5 + j]!]! - top.diffs[t * 5 + j]!)).toBeLessThanOrEqual(1e-4 + 1e-4 * Math.abs(want[j]!));
        }
      }
    }
    for (const t of [...rb.cache.values(), ...rf.cache.values(), rb.logits!, rf.logits!]) pair.base.backend.dispose(t);
  });

  it('counts every position K times; topics come from the positive differences', async () => {
    const r = await diffMining(pair, SAMPLES, { k: 4, top: 1000, topics: 2, topicTokens: 30, batchSize: 2 });
    const positions = SAMPLES.reduce((n, s) => n + s.length, 0);
    expect(r.positions).toBe(positions);
    expect(r.tokens.reduce((n, t) => n + t.count, 0)).toBe(positions * 4);
    for (let i = 1; i < r.tokens.length; i++) expect(r.tokens[i]!.count).toBeLessThanOrEqual(r.tokens[i - 1]!.count);
    for (const t of r.tokens) expect(t.maxDiff).toBeGreaterThanOrEqual(t.meanDiff - 1e-6);
    expect(r.topics).toHaveLength(2);
    for (const topic of r.topics) {
      expect(topic.tokens.length).toBeGreaterThan(0);
      for (const c of topic.contexts) expect(c.position).toBeLessThan(SAMPLES[c.sample]!.length);
    }
    expect(r.topicError).toBeGreaterThanOrEqual(0);
    expect(r.topicError).toBeLessThan(1);
  });

  it('a model against itself: every difference is zero and there are no topics', async () => {
    const r = await diffMining(self, SAMPLES, { k: 4, topics: 2 });
    for (const t of r.tokens) {
      expect(t.meanDiff).toBe(0);
      expect(t.maxDiff).toBe(0);
    }
    for (const topic of r.topics) expect(topic.tokens).toHaveLength(0);
  });
});

describe('NMF', () => {
  it('recovers an exact non-negative rank-2 factorisation', () => {
    const rows = 40;
    const cols = 12;
    const r = createRng(3);
    const w = Float64Array.from({ length: rows * 2 }, () => (r.next() < 0.5 ? 0 : r.next()));
    const h = Float64Array.from({ length: 2 * cols }, () => (r.next() < 0.5 ? 0 : 1 + r.next()));
    const row: number[] = [];
    const col: number[] = [];
    const value: number[] = [];
    for (let i = 0; i < rows; i++) {
      for (let j = 0; j < cols; j++) {
        const x = w[i * 2]! * h[j]! + w[i * 2 + 1]! * h[cols + j]!;
        if (x > 0) {
          row.push(i);
          col.push(j);
          value.push(x);
        }
      }
    }
    const f = nmf({ rows, cols, row: Int32Array.from(row), col: Int32Array.from(col), value: Float64Array.from(value) }, 2, { iterations: 2000 });
    expect(f.relativeError).toBeLessThan(0.02);
    for (const x of [...f.w, ...f.h]) expect(x).toBeGreaterThanOrEqual(0);
  });
});

describe('corpus KL', () => {
  it('matches KL(P_ft ‖ P_base) from full logits on the host, per token and per position', async () => {
    const V = pair.base.config.vocab;
    const r = await corpusKl(pair, SAMPLES, { top: 3, k: 2, batchSize: 2 });
    const all: { kl: number; t: number }[] = [];
    for (const ids of SAMPLES) {
      const zb = await hostLogits(pair.base, ids);
      const zf = await hostLogits(pair.ft, ids);
      for (let t = 0; t < ids.length; t++) {
        const lb = lse(zb, t * V, V);
        const lf = lse(zf, t * V, V);
        let kl = 0;
        for (let v = 0; v < V; v++) {
          const a = zf[t * V + v]! - lf;
          kl += Math.exp(a) * (a - (zb[t * V + v]! - lb));
        }
        all.push({ kl, t });
      }
    }
    const mean = all.reduce((s, x) => s + x.kl, 0) / all.length;
    expect(r.tokens).toBe(all.length);
    expect(Math.abs(r.meanKl - mean)).toBeLessThanOrEqual(1e-6 + 1e-4 * mean);
    const at0 = all.filter((x) => x.t === 0).reduce((s, x) => s + x.kl, 0) / SAMPLES.length;
    expect(Math.abs(r.perPosition[0]! - at0)).toBeLessThanOrEqual(1e-6 + 1e-4 * at0);
    expect(Number.isNaN(r.perPosition[7]!)).toBe(false);
    expect(r.perPositionCount[7]).toBe(3);
    const max = Math.max(...all.map((x) => x.kl));
    expect(Math.abs(r.topContexts[0]!.kl - max)).toBeLessThanOrEqual(1e-6 + 1e-4 * max);
    expect(r.topContexts[0]!.ftTop).toHaveLength(2);
    expect(r.histogram.counts.reduce((a, b) => a + b, 0)).toBe(all.length);
  });

  it('a model against itself has zero KL everywhere', async () => {
    const r = await corpusKl(self, SAMPLES);
    expect(r.maxKl).toBeLessThanOrEqual(1e-7);
    expect(r.meanKl).toBeLessThanOrEqual(1e-7);
  });

  it('log histogram puts every value in a bin', () => {
    const h = logHistogram([0, 1e-3, 1e-2, 0.1, 1], 4);
    expect(h.counts).toEqual([2, 1, 1, 1]);
    expect(h.edges).toHaveLength(5);
  });
});
