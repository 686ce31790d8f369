import { beforeAll, describe, expect, it } from 'vitest';
import type { Backend, RopeParams } from '../../model/backend.ts';
import { useDawn } from '../../gpu/dawn-node.ts';
import { expectClose, randomArray } from '../testing.ts';
import { createWebGpuBackend } from '../webgpu-backend.ts';

let backend: Backend;

beforeAll(async () => {
  expect(useDawn()).toBe(true);
  backend = await createWebGpuBackend();
});

/** Inverse frequencies in float64, straight from the Hugging Face formulas. */
function invFreq64(p: RopeParams): number[] {
  const inv = Array.from({ length: p.rotaryDim / 2 }, (_, j) => 1 / p.theta ** ((2 * j) / p.rotaryDim));
  const s = p.scaling;
  if (s?.type === 'linear') return inv.map((f) => f / s.factor);
  if (s?.type === 'llama3') {
    return inv.map((f) => {
      const wavelen = (2 * Math.PI) / f;
      if (wavelen < s.originalMaxPositions / s.highFreqFactor) return f;
      if (wavelen > s.originalMaxPositions / s.lowFreqFactor) return f / s.factor;
      const smooth = (s.originalMaxPositions / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
      return (1 - smooth) * (f / s.factor) + smooth * f;
    });
  }
  return inv;
}

function ropeRef(x: Float32Array, [b, t]: [number, number], heads: number, hd: number, start: number, p: RopeParams): number[] {
  const inv = invFreq64(p);
  const half = p.rotaryDim / 2;
  const out = Array.from(x);
  for (let bi = 0; bi < b; bi++) {
    for (let ti = 0; ti < t; ti++) {
      for (let h = 0; h < heads; h++) {
        const base = ((bi * t + ti) * heads + h) * hd;
        for (let j = 0; j < half; j++) {
          const angle = (start + ti) * inv[j]!;
          const [x1, x2] = [x[base + j]!, x[base + j + half]!];
          out[base + j] = x1 * Math.cos(angle) - x2 * Math.sin(angle);
          out[base + j + half] = x2 * Math.cos(angle) + x1 * Math.sin(angle);
        }
      }
    }
  }
  return out;
}

const CASES: [string, RopeParams, number][] = [
  ['full rotary', { theta: 10000, rotaryDim: 16 }, 0],
  ['partial rotary (8 of 16)', { theta: 10000, rotaryDim: 8 }, 5],
  ['llama3 scaling', { theta: 500000, rotaryDim: 16, scaling: { type: 'llama3', factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 64 } }, 40],
  ['linear scaling', { theta: 10000, rotaryDim: 16, scaling: { type: 'linear', factor: 4 } }, 17],
];

describe('rope vs float64', () => {
  for (const [label, params, start] of CASES) {
    it(label, async () => {
      const [b, t, heads, hd] = [2, 5, 3, 16];
      const x = randomArray(b * t * heads * hd, start + 61);
      const y = backend.rope(backend.fromArray(x, [b, t, heads * hd]), heads, hd, start, params);
      expect(y.shape).toEqual([b, t, heads * hd]);
      expectClose(await backend.read(y), ropeRef(x, [b, t], heads, hd, start, params), { abs: 2e-5, rel: 1e-5 }, label);
    });
  }

  it('refuses an odd rotaryDim', () => {
    expect(() => backend.rope(backend.fromArray(new Float32Array(16), [1, 1, 16]), 1, 16, 0, { theta: 1e4, rotaryDim: 7 })).toThrow(/rotaryDim 7 must be even/);
  });
});
