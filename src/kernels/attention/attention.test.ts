import { beforeAll, describe, expect, it } from 'vitest';
import type { AttentionParams, Backend } from '../../model/backend.ts';
import { useDawn } from '../../gpu/dawn-node.ts';
import { expectClose, randomArray } from '../testing.ts';
import { createWebGpuBackend } from '../webgpu-backend.ts';

let backend: Backend;

beforeAll(async () => {
  expect(useDawn()).toBe(true);
  backend = await createWebGpuBackend();
});

function attentionRef(q: Float32Array, k: Float32Array, v: Float32Array, b: number, t: number, s: number, p: AttentionParams): number[] {
  const { nHeads, nKvHeads, headDim: hd } = p;
  const out = new Array<number>(b * t * nHeads * hd).fill(0);
  for (let bi = 0; bi < b; bi++) {
    for (let ti = 0; ti < t; ti++) {
      for (let h = 0; h < nHeads; h++) {
        const kvh = Math.floor(h / (nHeads / nKvHeads));
        const qpos = p.queryOffset + ti;
        const scores: [number, number][] = [];
        for (let si = 0; si < s; si++) {
          if (si > qpos || (p.window && qpos - si >= p.window)) continue;
          let dot = 0;
          for (let d = 0; d < hd; d++) dot += q[((bi * t + ti) * nHeads + h) * hd + d]! * k[((bi * s + si) * nKvHeads + kvh) * hd + d]!;
          let score = dot * p.scale;
          if (p.softcap) score = p.softcap * Math.tanh(score / p.softcap);
          scores.push([si, score]);
        }
        const m = Math.max(...scores.map(([, sc]) => sc));
        const z = scores.reduce((acc, [, sc]) => acc + Math.exp(sc - m), 0);
        for (const [si, sc] of scores) {
          for (let d = 0; d < hd; d++) out[((bi * t + ti) * nHeads + h) * hd + d]! += (Math.exp(sc - m) / z) * v[((bi * s + si) * nKvHeads + kvh) * hd + d]!;
        }
      }
    }
  }
  return out;
}

const CASES: [string, { b: number; t: number; s: number }, AttentionParams][] = [
  ['causal prefill, GQA 4:2', { b: 2, t: 6, s: 6 }, { nHeads: 4, nKvHeads: 2, headDim: 8, scale: 1 / Math.sqrt(8), queryOffset: 0 }],
  ['decode over 70 cached keys (several key chunks)', { b: 1, t: 2, s: 70 }, { nHeads: 2, nKvHeads: 1, headDim: 16, scale: 0.25, queryOffset: 68 }],
  ['sliding window 4 with soft-capping', { b: 1, t: 9, s: 9 }, { nHeads: 2, nKvHeads: 2, headDim: 8, scale: 0.5, queryOffset: 0, window: 4, softcap: 5 }],
  ['head dimension 80 (threads own several dimensions)', { b: 1, t: 3, s: 5 }, { nHeads: 1, nKvHeads: 1, headDim: 80, scale: 0.1, queryOffset: 2 }],
];

describe('attention vs float64', () => {
  for (const [label, { b, t, s }, p] of CASES) {
    it(label, async () => {
      const q = randomArray(b * t * p.nHeads * p.headDim, 71, -2, 2);
      const k = randomArray(b * s * p.nKvHeads * p.headDim, 72, -2, 2);
      const v = randomArray(b * s * p.nKvHeads * p.headDim, 73);
      const out = backend.attention(
        backend.fromArray(q, [b, t, p.nHeads * p.headDim]),
        backend.fromArray(k, [b, s, p.nKvHeads * p.headDim]),
        backend.fromArray(v, [b, s, p.nKvHeads * p.headDim]),
        p,
      );
      expect(out.shape).toEqual([b, t, p.nHeads * p.headDim]);
      expectClose(await backend.read(out), attentionRef(q, k, v, b, t, s, p), { abs: 2e-6, rel: 1e-5 }, label);
    });
  }

  it('refuses heads that do not divide into KV groups', () => {
    const q = backend.fromArray(new Float32Array(24), [1, 1, 24]);
    const kv = backend.fromArray(new Float32Array(16), [1, 1, 16]);
    expect(() => backend.attention(q, kv, kv, { nHeads: 3, nKvHeads: 2, headDim: 8, scale: 1, queryOffset: 0 })).toThrow(/do not fit 3 heads, 2 KV heads/);
  });
});
