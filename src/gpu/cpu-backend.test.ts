import { describe, expect, it } from 'vitest';
import type { AttentionParams, Tensor } from '../model/backend.ts';
import { createCpuBackend } from './cpu-backend.ts';

const be = createCpuBackend();

function rand(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 32 - 0.5;
  }
  return out;
}

async function values(t: Tensor): Promise<Float32Array> {
  return (await be.read(t)) as Float32Array;
}

function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, abs = 1e-5, rel = 1e-5): void {
  expect(actual.length).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    const err = Math.abs(actual[i]! - expected[i]!);
    if (err > abs + rel * Math.abs(expected[i]!)) {
      throw new Error(`element ${i}: ${actual[i]} vs ${expected[i]} (|err| ${err})`);
    }
  }
}

describe('cpu backend: matmul', () => {
  for (const [M, K, N] of [[1, 7, 9], [5, 7, 9], [8, 16, 12], [13, 33, 17], [4, 64, 130]] as const) {
    it(`a [${M}, ${K}] · b, both layouts, matches a naive product`, async () => {
      const a = rand(M * K, 1);
      const b = rand(K * N, 2); // [K, N]
      const bt = new Float32Array(N * K);
      for (let k = 0; k < K; k++) for (let n = 0; n < N; n++) bt[n * K + k] = b[k * N + n]!;
      const want = new Float64Array(M * N);
      for (let i = 0; i < M; i++) for (let j = 0; j < N; j++) for (let k = 0; k < K; k++) want[i * N + j]! += a[i * K + k]! * b[k * N + j]!;
      const ta = be.fromArray(a, [M, K]);
      const plain = be.matmul(ta, be.fromArray(b, [K, N]));
      const trans = be.matmul(ta, be.fromArray(bt, [N, K]), { transposeB: true });
      expect(plain.shape).toEqual([M, N]);
      expectClose(await values(plain), want, 1e-6, 1e-5);
      expectClose(await values(trans), want, 1e-6, 1e-5);
    });
  }

  it('flattens leading dimensions and adds the bias in linear', async () => {
    const x = rand(2 * 3 * 4, 3);
    const w = rand(5 * 4, 4);
    const bias = rand(5, 5);
    const y = be.linear(be.fromArray(x, [2, 3, 4]), be.fromArray(w, [5, 4]), be.fromArray(bias, [5]));
    expect(y.shape).toEqual([2, 3, 5]);
    const want: number[] = [];
    for (let r = 0; r < 6; r++) for (let o = 0; o < 5; o++) {
      let s = bias[o]!;
      for (let i = 0; i < 4; i++) s += x[r * 4 + i]! * w[o * 4 + i]!;
      want.push(s);
    }
    expectClose(await values(y), want);
  });

  it('rejects mismatched inner dimensions', () => {
    expect(() => be.matmul(be.fromArray(rand(6, 1), [2, 3]), be.fromArray(rand(8, 1), [4, 2]))).toThrow(/inner dimensions/);
  });
});

describe('cpu backend: elementwise and norms', () => {
  it('broadcasts a vector over the last dimension', async () => {
    const a = be.fromArray(new Float32Array([1, 2, 3, 4, 5, 6]), [2, 3]);
    const v = be.fromArray(new Float32Array([10, 20, 30]), [3]);
    expectClose(await values(be.add(a, v)), [11, 22, 33, 14, 25, 36]);
    expectClose(await values(be.sub(a, v)), [-9, -18, -27, -6, -15, -24]);
    expectClose(await values(be.mul(a, a)), [1, 4, 9, 16, 25, 36]);
    expectClose(await values(be.scale(a, -0.5)), [-0.5, -1, -1.5, -2, -2.5, -3]);
    expect(() => be.add(a, be.fromArray(new Float32Array(2), [2]))).toThrow(/broadcast/);
  });

  it('computes activations at known values', async () => {
    const x = be.fromArray(new Float32Array([-1, 0, 1, 2]), [4]);
    // Φ(1) = 0.8413447460685429, Φ(2) = 0.9772498680518208, Φ(-1) = 1 - Φ(1).
    expectClose(await values(be.activation(x, 'gelu')), [-0.15865525393145707, 0, 0.8413447460685429, 1.9544997361036416], 1e-7, 1e-6);
    const tanhGelu = (v: number) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));
    expectClose(await values(be.activation(x, 'gelu_tanh')), [-1, 0, 1, 2].map(tanhGelu), 1e-7, 1e-6);
    expectClose(await values(be.activation(x, 'silu')), [-1, 0, 1, 2].map((v) => v / (1 + Math.exp(-v))), 1e-7, 1e-6);
    expectClose(await values(be.activation(x, 'relu')), [0, 0, 1, 2]);
    const up = be.fromArray(new Float32Array([2, 2, 2, 2]), [4]);
    expectClose(await values(be.gated(x, up, 'relu')), [0, 0, 2, 4]);
    expectClose(await values(be.softcap(x, 2)), [-1, 0, 1, 2].map((v) => 2 * Math.tanh(v / 2)), 1e-7, 1e-6);
  });

  it('gelu follows erf over a wide range', async () => {
    const xs = Array.from({ length: 81 }, (_, i) => -8 + i * 0.2);
    const got = await values(be.activation(be.fromArray(new Float32Array(xs), [xs.length]), 'gelu'));
    // Independent check: gelu(x) − gelu(−x) = x, and gelu(x)/x increases from 0 to 1.
    for (let i = 0; i < xs.length; i++) {
      const j = xs.length - 1 - i;
      expect(Math.abs(got[i]! - got[j]! - Math.fround(xs[i]!))).toBeLessThan(1e-5 * (1 + Math.abs(xs[i]!)));
    }
    for (let i = 41; i < xs.length - 1; i++) expect(got[i + 1]! / xs[i + 1]!).toBeGreaterThanOrEqual(got[i]! / xs[i]! - 1e-7);
  });

  it('normalises with rmsNorm (w and 1 + w) and layerNorm', async () => {
    const x = rand(2 * 8, 7);
    const w = rand(8, 8);
    const b = rand(8, 9);
    const rms = await values(be.rmsNorm(be.fromArray(x, [2, 8]), be.fromArray(w, [8]), 1e-5));
    const rms1 = await values(be.rmsNorm(be.fromArray(x, [2, 8]), be.fromArray(w, [8]), 1e-5, true));
    const ln = await values(be.layerNorm(be.fromArray(x, [2, 8]), be.fromArray(w, [8]), be.fromArray(b, [8]), 1e-5));
    for (let r = 0; r < 2; r++) {
      const row = Array.from(x.subarray(r * 8, r * 8 + 8));
      const ms = row.reduce((s, v) => s + v * v, 0) / 8;
      const mean = row.reduce((s, v) => s + v, 0) / 8;
      const variance = row.reduce((s, v) => s + (v - mean) ** 2, 0) / 8;
      for (let j = 0; j < 8; j++) {
        expect(Math.abs(rms[r * 8 + j]! - (row[j]! / Math.sqrt(ms + 1e-5)) * w[j]!)).toBeLessThan(1e-6);
        expect(Math.abs(rms1[r * 8 + j]! - (row[j]! / Math.sqrt(ms + 1e-5)) * (1 + w[j]!))).toBeLessThan(1e-6);
        expect(Math.abs(ln[r * 8 + j]! - (((row[j]! - mean) / Math.sqrt(variance + 1e-5)) * w[j]! + b[j]!))).toBeLessThan(1e-5);
      }
    }
    const hx = rand(2 * 3 * 8, 10);
    const hw = rand(4, 11);
    const head = await values(be.headRmsNorm(be.fromArray(hx, [2, 3, 8]), be.fromArray(hw, [4]), 4, 1e-6));
    const perRow = await values(be.rmsNorm(be.fromArray(hx, [12, 4]), be.fromArray(hw, [4]), 1e-6));
    expectClose(head, perRow, 0, 0);
  });

  it('softmax rows sum to one and logSoftmax is its log', async () => {
    const x = be.fromArray(new Float32Array([1, 2, 3, 1000, 1000, -1000]), [2, 3]);
    const sm = await values(be.softmax(x));
    const e = [Math.exp(-2), Math.exp(-1), 1];
    const z = e[0]! + e[1]! + e[2]!;
    expectClose(sm, [e[0]! / z, e[1]! / z, 1 / z, 0.5, 0.5, 0], 1e-7, 1e-6);
    const ls = await values(be.logSoftmax(x));
    expectClose(ls.subarray(0, 5), [Math.log(e[0]! / z), Math.log(e[1]! / z), Math.log(1 / z), -Math.LN2, -Math.LN2], 1e-6, 1e-6);
  });
});

describe('cpu backend: sequence ops', () => {
  it('embeds ids and rejects ids outside the vocabulary', async () => {
    const table = be.fromArray(new Float32Array([0, 1, 10, 11, 20, 21]), [3, 2]);
    const e = be.embedding(table, new Int32Array([2, 0, 1, 2]), [2, 2]);
    expect(e.shape).toEqual([2, 2, 2]);
    expectClose(await values(e), [20, 21, 0, 1, 10, 11, 20, 21]);
    expect(() => be.embedding(table, new Int32Array([3]), [1, 1])).toThrow(/outside the vocabulary/);
  });

  it('rotates pairs (i, i + rotaryDim/2) by position · θ^(−2i/rotaryDim), leaving the rest', async () => {
    const nHeads = 2, hd = 6, T = 3;
    const x = rand(T * nHeads * hd, 12);
    const params = { theta: 100, rotaryDim: 4 };
    const y = await values(be.rope(be.fromArray(x, [1, T, nHeads * hd]), nHeads, hd, 5, params));
    for (let t = 0; t < T; t++) for (let h = 0; h < nHeads; h++) {
      const o = (t * nHeads + h) * hd;
      for (let i = 0; i < 2; i++) {
        const ang = (5 + t) * Math.pow(100, -(2 * i) / 4);
        const x1 = x[o + i]!, x2 = x[o + i + 2]!;
        expect(Math.abs(y[o + i]! - (x1 * Math.cos(ang) - x2 * Math.sin(ang)))).toBeLessThan(1e-5);
        expect(Math.abs(y[o + i + 2]! - (x2 * Math.cos(ang) + x1 * Math.sin(ang)))).toBeLessThan(1e-5);
      }
      expect(y[o + 4]).toBe(x[o + 4]);
      expect(y[o + 5]).toBe(x[o + 5]);
    }
  });

  it('applies llama3 scaling: high frequencies kept, low ones divided by the factor', async () => {
    const hd = 64;
    const base = { theta: 500000, rotaryDim: hd };
    const scaled = { ...base, scaling: { type: 'llama3' as const, factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192 } };
    const x = new Float32Array(hd);
    x[0] = 1; // pair 0: highest frequency, wavelength 2π < 8192/4
    x[31] = 1; // pair 31: wavelength far above 8192
    const pos = 1000;
    const a = await values(be.rope(be.fromArray(x, [1, 1, hd]), 1, hd, pos, base));
    const b = await values(be.rope(be.fromArray(x, [1, 1, hd]), 1, hd, pos, scaled));
    expect(Math.abs(b[0]! - a[0]!)).toBeLessThan(1e-6);
    const f31 = Math.pow(500000, -62 / 64);
    expect(Math.abs(b[31]! - Math.cos((pos * f31) / 8))).toBeLessThan(1e-5);
    expect(Math.abs(a[31]! - Math.cos(pos * f31))).toBeLessThan(1e-5);
  });

  it('slices, concatenates, reshapes and transposes', async () => {
    const x = be.fromArray(Float32Array.from({ length: 2 * 4 * 3 }, (_, i) => i), [2, 4, 3]);
    const head = be.sliceSeq(x, 0, 1);
    const tail = be.sliceSeq(x, 1, 4);
    expect(tail.shape).toEqual([2, 3, 3]);
    expectClose(await values(be.concatSeq(head, tail)), await values(x), 0, 0);
    expect(be.reshape(x, [8, 3]).shape).toEqual([8, 3]);
    expect(() => be.reshape(x, [5, 5])).toThrow(/reshape/);
    const m = be.fromArray(Float32Array.from({ length: 35 * 40 }, (_, i) => i), [35, 40]);
    const mt = await values(be.transpose(m));
    for (let i = 0; i < 35; i++) for (let j = 0; j < 40; j++) expect(mt[j * 35 + i]).toBe(i * 40 + j);
  });

  it('sums, sums squares and picks the top k with ties to the lower index', async () => {
    const x = be.fromArray(new Float32Array([1, 3, 3, -1, 2, 0.5, 0.5, 0.5]), [2, 4]);
    expectClose(await values(be.sum(x)), [6, 3.5]);
    expectClose(await values(be.sumSquares(x)), [20, 4.75]);
    const { values: v, indices } = be.topk(x, 3);
    expectClose(await values(v), [3, 3, 1, 2, 0.5, 0.5]);
    expect(Array.from(await be.read(indices))).toEqual([1, 2, 0, 0, 1, 2]);
    const big = rand(500, 13);
    const k = 100;
    const order = Array.from(big.keys()).sort((a, b) => big[b]! - big[a]! || a - b);
    const top = be.topk(be.fromArray(big, [500]), k);
    expect(Array.from(await be.read(top.indices))).toEqual(order.slice(0, k));
    const top5 = be.topk(be.fromArray(big, [500]), 5);
    expect(Array.from(await be.read(top5.indices))).toEqual(order.slice(0, 5));
  });
});

describe('cpu backend: attention', () => {
  function naive(q: Float32Array, k: Float32Array, v: Float32Array, B: number, T: number, S: number, p: AttentionParams): Float64Array {
    const { nHeads, nKvHeads, headDim: hd } = p;
    const out = new Float64Array(B * T * nHeads * hd);
    for (let b = 0; b < B; b++) for (let h = 0; h < nHeads; h++) {
      const kh = Math.floor(h / (nHeads / nKvHeads));
      for (let t = 0; t < T; t++) {
        const pos = p.queryOffset + t;
        const w: number[] = [];
        for (let s = 0; s < S; s++) {
          let sc = 0;
          for (let d = 0; d < hd; d++) sc += q[((b * T + t) * nHeads + h) * hd + d]! * k[((b * S + s) * nKvHeads + kh) * hd + d]!;
          sc *= p.scale;
          if (p.softcap) sc = p.softcap * Math.tanh(sc / p.softcap);
          const visible = s <= pos && (!p.window || pos - s < p.window);
          w.push(visible ? Math.exp(sc) : 0);
        }
        const z = w.reduce((a, c) => a + c, 0);
        for (let d = 0; d < hd; d++) {
          let acc = 0;
          for (let s = 0; s < S; s++) acc += (w[s]! / z) * v[((b * S + s) * nKvHeads + kh) * hd + d]!;
          out[((b * T + t) * nHeads + h) * hd + d] = acc;
        }
      }
    }
    return out;
  }

  const cases: Array<[string, number, number, AttentionParams]> = [
    ['causal, full heads', 5, 5, { nHeads: 2, nKvHeads: 2, headDim: 4, scale: 0.5, queryOffset: 0 }],
    ['grouped query', 6, 6, { nHeads: 4, nKvHeads: 2, headDim: 4, scale: 0.5, queryOffset: 0 }],
    ['sliding window and soft-cap', 9, 9, { nHeads: 4, nKvHeads: 1, headDim: 4, scale: 0.7, queryOffset: 0, window: 3, softcap: 1.5 }],
    ['queries after a cache', 2, 7, { nHeads: 2, nKvHeads: 1, headDim: 8, scale: 0.35, queryOffset: 5, window: 4 }],
    // Longer than one block of query rows (64): the blocks' key ranges and masks.
    ['several row blocks, grouped', 150, 150, { nHeads: 4, nKvHeads: 2, headDim: 8, scale: 0.35, queryOffset: 0 }],
    ['several row blocks after a cache, window', 130, 140, { nHeads: 2, nKvHeads: 1, headDim: 12, scale: 0.3, queryOffset: 10, window: 70 }],
  ];
  for (const [name, T, S, p] of cases) {
    it(name, async () => {
      const B = 2;
      const q = rand(B * T * p.nHeads * p.headDim, 20);
      const k = rand(B * S * p.nKvHeads * p.headDim, 21).map((x) => 4 * x);
      const v = rand(B * S * p.nKvHeads * p.headDim, 22);
      const got = be.attention(
        be.fromArray(q, [B, T, p.nHeads * p.headDim]),
        be.fromArray(k, [B, S, p.nKvHeads * p.headDim]),
        be.fromArray(v, [B, S, p.nKvHeads * p.headDim]),
        p,
      );
      expectClose(await values(got), naive(q, k, v, B, T, S, p), 1e-6, 1e-5);
    });
  }
});

describe('cpu backend: storage', () => {
  it('rounds f16 tensors, keeps i32, and refuses use after dispose', async () => {
    const h = be.fromArray(new Float32Array([1 / 3, 65504, 1e-8]), [3], 'f16');
    expect(h.dtype).toBe('f16');
    expect(Array.from(await values(h))).toEqual([0.333251953125, 65504, 0]);
    const i = be.fromArray(new Int32Array([7, -2]), [2]);
    expect(i.dtype).toBe('i32');
    expect(Array.from(await be.read(i))).toEqual([7, -2]);
    const t = be.fromArray(new Float32Array([1]), [1]);
    be.dispose(t);
    be.dispose(t);
    expect(() => be.scale(t, 2)).toThrow(/after dispose/);
  });
});
