// The float32 CPU engine's WebAssembly kernels (sparse decoder, the kept pairs' gradient) against the
// float64 engine's JavaScript (the reference that gradient.test.ts checks by finite differences).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resetWasmGemm, wasmGemmOptions, wasmGemmRelaxed } from '../../gpu/cpu-wasm/gemm.ts';
import { createCpuEngine } from './cpu-engine.ts';
import type { LossOptions } from './engine.ts';
import { zeroParams, type CrosscoderParams, type FloatArray } from './model.ts';
import { createRng } from './rng.ts';

const d = 12;
const D = 40;
const n = 9;

function setup(seed: number) {
  const rng = createRng(seed);
  const p = zeroParams(d, D, (m) => new Float32Array(m));
  for (const key of ['encW', 'encB', 'decW', 'decB'] as const) for (let i = 0; i < p[key].length; i++) p[key][i] = rng.normal() * (key === 'encB' ? 0.3 : 0.6);
  const xb = Float32Array.from({ length: n * d }, () => rng.normal());
  const xf = Float32Array.from({ length: n * d }, () => rng.normal());
  return { p, xb, xf };
}

async function step(precision: 'f32' | 'f64', p: CrosscoderParams<Float32Array>, xb: Float32Array, xf: Float32Array, opts: LossOptions) {
  const e = createCpuEngine({ d, D, precision });
  e.setParams(p);
  e.setBatch(xb, xf, n);
  e.encode();
  const sel = await e.selectTopK(3 * n, -1);
  e.decode();
  const parts = await e.backward(opts);
  const [hb, hf] = await e.readReconstruction();
  return { kept: sel.kept, parts, hb, hf, g: await e.readGrads() };
}

function expectClose(got: FloatArray, want: FloatArray, abs: number, rel: number): void {
  expect(got.length).toBe(want.length);
  let worst = 0;
  for (let i = 0; i < got.length; i++) {
    const excess = Math.abs(got[i]! - want[i]!) - (abs + rel * Math.abs(want[i]!));
    worst = Math.max(worst, Number.isNaN(excess) ? Infinity : excess);
  }
  expect(worst).toBeLessThanOrEqual(0);
}

for (const relaxed of [false, true]) describe(`crosscoder CPU engine kernels (${relaxed ? 'relaxed-SIMD FMA' : 'plain SIMD'})`, () => {
  beforeAll(() => {
    wasmGemmOptions.relaxed = relaxed;
    resetWasmGemm();
  });
  afterAll(() => {
    wasmGemmOptions.relaxed = true;
    resetWasmGemm();
  });

  for (const objective of ['l2', 'l1'] as const) {
    it(`decoder and gradient in float32 match the float64 engine (${objective} loss)`, async () => {
      const { p, xb, xf } = setup(objective === 'l2' ? 3 : 4);
      const opts: LossOptions = { objective, l1Lambda: objective === 'l1' ? 0.7 : 0, auxAlpha: 0, auxK: 0, dead: null };
      const f32 = await step('f32', p, xb, xf, opts);
      expect(wasmGemmRelaxed()).toBe(relaxed);
      const f64 = await step('f64', p, xb, xf, opts);
      expect(f32.kept).toBe(3 * n);
      expect(f32.kept).toBe(f64.kept);
      expectClose(f32.hb, f64.hb, 1e-5, 1e-5);
      expectClose(f32.hf, f64.hf, 1e-5, 1e-5);
      expect(Math.abs(f32.parts.loss - f64.parts.loss)).toBeLessThanOrEqual(1e-6 + 1e-5 * Math.abs(f64.parts.loss));
      for (const key of ['encW', 'encB', 'decW', 'decB'] as const) expectClose(f32.g[key], f64.g[key], 1e-6, 1e-4);
      // The gradient is not trivially zero where the kernels write it.
      expect(f32.g.decW.some((x) => Math.abs(x) > 1e-3)).toBe(true);
      expect(f32.g.encW.some((x) => Math.abs(x) > 1e-3)).toBe(true);
    });
  }
});
