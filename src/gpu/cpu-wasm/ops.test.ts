import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { resetWasmGemm, startWasmGemmThreads, wasmGemmOptions, wasmGemmRelaxed } from './gemm.ts';
import { wasmActivate, wasmAttention, type AttentionShape } from './ops.ts';

const defaults = { ...wasmGemmOptions };
afterEach(() => Object.assign(wasmGemmOptions, defaults));

function values(n: number, seed: number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = scale * (s / 2 ** 31 - 1);
  }
  return out;
}

/** Causal attention in float64, one query at a time (the definition). */
function attentionF64(q: Float32Array, k: Float32Array, v: Float32Array, s: AttentionShape): Float64Array {
  const { batch, T, S, nHeads, nKvHeads, headDim: hd, scale, queryOffset, window } = s;
  const Dq = nHeads * hd;
  const Dk = nKvHeads * hd;
  const out = new Float64Array(batch * T * Dq);
  for (let b = 0; b < batch; b++) {
    for (let h = 0; h < nHeads; h++) {
      const g = Math.floor(h / (nHeads / nKvHeads));
      for (let t = 0; t < T; t++) {
        const pos = queryOffset + t;
        const first = window > 0 ? Math.max(0, pos - window + 1) : 0;
        const logits: number[] = [];
        for (let j = first; j <= pos; j++) {
          let d = 0;
          for (let i = 0; i < hd; i++) d += q[(b * T + t) * Dq + h * hd + i]! * k[(b * S + j) * Dk + g * hd + i]!;
          logits.push(scale * d);
        }
        const max = Math.max(...logits);
        const e = logits.map((x) => Math.exp(x - max));
        const sum = e.reduce((a, c) => a + c, 0);
        for (let i = 0; i < hd; i++) {
          let acc = 0;
          for (let j = first; j <= pos; j++) acc += (e[j - first]! / sum) * v[(b * S + j) * Dk + g * hd + i]!;
          out[(b * T + t) * Dq + h * hd + i] = acc;
        }
      }
    }
  }
  return out;
}

function expectClose(got: Float32Array, want: Float64Array | number[], abs: number, rel: number): void {
  expect(got.length).toBe(want.length);
  let worst = 0;
  for (let i = 0; i < got.length; i++) {
    const excess = Math.abs(got[i]! - want[i]!) - (abs + rel * Math.abs(want[i]!));
    worst = Math.max(worst, Number.isNaN(excess) ? Infinity : excess);
  }
  expect(worst).toBeLessThanOrEqual(0);
}

const CASES: AttentionShape[] = [
  // stories260K's heads (8 wide, grouped 2:1), a length that is not a multiple of the 16-row block.
  { batch: 1, T: 37, S: 37, nHeads: 8, nKvHeads: 4, headDim: 8, scale: 1 / Math.sqrt(8), queryOffset: 0, window: 0 },
  // Two sequences, queries after a cached prefix (keys not a multiple of 8).
  { batch: 2, T: 5, S: 13, nHeads: 3, nKvHeads: 3, headDim: 16, scale: 0.25, queryOffset: 8, window: 0 },
  // GPT-2-size heads with a sliding window, one KV head for two query heads.
  { batch: 1, T: 70, S: 70, nHeads: 2, nKvHeads: 1, headDim: 64, scale: 0.125, queryOffset: 0, window: 20 },
  // One new token against a cache.
  { batch: 1, T: 1, S: 41, nHeads: 2, nKvHeads: 2, headDim: 24, scale: 0.2, queryOffset: 40, window: 0 },
];

function run(s: AttentionShape): { out: Float32Array; q: Float32Array; k: Float32Array; v: Float32Array; ran: boolean } {
  const q = values(s.batch * s.T * s.nHeads * s.headDim, 1 + s.T, 4);
  const k = values(s.batch * s.S * s.nKvHeads * s.headDim, 2 + s.S, 2);
  const v = values(s.batch * s.S * s.nKvHeads * s.headDim, 3 + s.S);
  const out = new Float32Array(q.length).fill(Number.NaN);
  return { out, q, k, v, ran: wasmAttention(q, k, v, out, s) };
}

for (const relaxed of [false, true]) describe(`WebAssembly attention and activations (${relaxed ? 'relaxed-SIMD FMA' : 'plain SIMD'} kernels)`, () => {
  beforeAll(() => {
    defaults.relaxed = relaxed;
    wasmGemmOptions.relaxed = relaxed;
    resetWasmGemm();
  });
  afterAll(() => {
    defaults.relaxed = true;
    wasmGemmOptions.relaxed = true;
    resetWasmGemm();
  });

  it('attention matches float64 on grouped heads, windows, cached prefixes and ragged blocks', () => {
    expect(wasmGemmRelaxed()).toBe(relaxed);
    for (const s of CASES) {
      const { out, q, k, v, ran } = run(s);
      expect(ran).toBe(true);
      expectClose(out, attentionF64(q, k, v, s), 1e-6, 1e-5);
    }
  });

  it('attention split over worker threads gives the single-thread bits', async () => {
    Object.assign(wasmGemmOptions, { threads: 3, flopsPerThread: 1 });
    expect(await startWasmGemmThreads()).toBe(3);
    const s = { ...CASES[0]!, T: 100, S: 100 };
    const threaded = run(s);
    expectClose(threaded.out, attentionF64(threaded.q, threaded.k, threaded.v, s), 1e-6, 1e-5);
    wasmGemmOptions.threads = 1;
    expect(run(s).out).toEqual(threaded.out);
  });

  it('attention declines head sizes that are not a multiple of 8 and a non-positive scale, leaving out alone', () => {
    for (const s of [{ ...CASES[0]!, headDim: 6 }, { ...CASES[0]!, scale: 0 }]) {
      const r = run(s);
      expect(r.ran).toBe(false);
      expect(r.out.every(Number.isNaN)).toBe(true);
    }
  });

  it('silu, gelu_tanh and their gated forms match float64 over small, large and ragged inputs', async () => {
    const x = values(1003, 5, 12);
    x.set([0, -0, 1e-30, -1e-30, 100, -100, 87.5, -87.5, 89, -89], 0);
    const up = values(1003, 6, 3);
    const f64: Record<string, (t: number) => number> = {
      silu: (t) => t / (1 + Math.exp(-t)),
      gelu_tanh: (t) => 0.5 * t * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (t + 0.044715 * t ** 3))),
    };
    Object.assign(wasmGemmOptions, { threads: 2 });
    await startWasmGemmThreads();
    for (const [act, f] of Object.entries(f64)) {
      for (const gate of [undefined, up]) {
        const out = new Float32Array(x.length).fill(Number.NaN);
        expect(wasmActivate(x, gate, out, act)).toBe(true);
        expectClose(out, Array.from(x, (t, i) => f(t) * (gate ? gate[i]! : 1)), 1e-12, 4e-6);
      }
    }
    // Enough values for the worker threads: the same bits as on one thread.
    const big = values(70_001, 7, 8);
    const threaded = new Float32Array(big.length);
    expect(wasmActivate(big, undefined, threaded, 'gelu_tanh')).toBe(true);
    wasmGemmOptions.threads = 1;
    const single = new Float32Array(big.length);
    expect(wasmActivate(big, undefined, single, 'gelu_tanh')).toBe(true);
    expect(threaded).toEqual(single);
  });

  it('activate declines activations it does not have (exact gelu, relu)', () => {
    const out = new Float32Array(4).fill(Number.NaN);
    for (const act of ['gelu', 'relu']) expect(wasmActivate(new Float32Array(4), undefined, out, act)).toBe(false);
    expect(out.every(Number.isNaN)).toBe(true);
  });
});
