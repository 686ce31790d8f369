// logitLens (the streamed log-sum-exp, top-k and KL) on the CPU and WebGPU backends against a dense
// float64 reference over the full logits, including unembeddings kept as row blocks and f16 ones.
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createCpuBackend } from '../../gpu/cpu-backend.ts';
import { useDawn } from '../../gpu/dawn-node.ts';
import { f32ToF16 } from '../../io/dtype.ts';
import type { Backend, Tensor } from '../../model/backend.ts';
import { resetFlags, setFlags, type KernelFlags } from '../flags.ts';
import { expectClose, randomArray, roundF16 } from '../testing.ts';
import { createWebGpuBackend } from '../webgpu-backend.ts';

let gpu: Backend;
const cpu = createCpuBackend();

beforeAll(async () => {
  expect(useDawn()).toBe(true);
  gpu = await createWebGpuBackend();
});
afterEach(() => resetFlags());

interface HeadData {
  h: Float32Array;
  w: Float32Array;
  dtype: 'f32' | 'f16';
  cap: number;
}

const [R, D, V] = [5, 19, 301];

function head(seed: number, dtype: 'f32' | 'f16' = 'f32', cap = 0): HeadData {
  return { h: randomArray(R * D, seed, -1.5, 1.5), w: randomArray(V * D, seed + 100), dtype, cap };
}

/** Full logits in float64 (f16 weights as rounded), their per-row LSE and log-probabilities. */
function dense(x: HeadData): { logp: Float64Array; lse: Float64Array } {
  const w = x.dtype === 'f16' ? roundF16(x.w) : x.w;
  const logp = new Float64Array(R * V);
  const lse = new Float64Array(R);
  for (let r = 0; r < R; r++) {
    let m = -Infinity;
    for (let v = 0; v < V; v++) {
      let z = 0;
      for (let j = 0; j < D; j++) z += x.h[r * D + j]! * w[v * D + j]!;
      if (x.cap > 0) z = x.cap * Math.tanh(z / x.cap);
      logp[r * V + v] = z;
      m = Math.max(m, z);
    }
    let s = 0;
    for (let v = 0; v < V; v++) s += Math.exp(logp[r * V + v]! - m);
    lse[r] = m + Math.log(s);
    for (let v = 0; v < V; v++) logp[r * V + v]! -= lse[r]!;
  }
  return { logp, lse };
}

/** The unembedding written in chunks of rows (as the loader does), so WebGPU keeps it as row blocks above flags.maxBindingBytes. */
function unembedding(be: Backend, x: HeadData): Tensor {
  const t = be.createEmpty([V, D], x.dtype);
  for (let r = 0; r < V; r += 40) {
    const part = x.w.subarray(r * D, Math.min(V, r + 40) * D);
    be.writeRows(t, r, x.dtype === 'f16' ? Uint16Array.from(part, (v) => f32ToF16(v)) : part);
  }
  return t;
}

const TOL = { abs: 2e-5, rel: 2e-5 };

async function check(be: Backend, heads: HeadData[], k: number, what: string, blocked = false): Promise<void> {
  const tensors = heads.map((x) => ({ normed: be.fromArray(x.h, [1, R, D]), unembed: unembedding(be, x), softcap: x.cap }));
  // Ops other than embedding, x·Wᵀ and the lens refuse row blocks: this shows the unembeddings are blocks.
  if (blocked) for (const t of tensors) expect(() => be.scale(t.unembed, 1)).toThrow(/row blocks/);
  const out = be.logitLens(tensors, k);
  const refs = heads.map(dense);
  for (const [i, ref] of refs.entries()) {
    const got = out.heads[i]!;
    expect(got.lse.shape).toEqual([1, R]);
    expect(got.ids.shape).toEqual([1, R, k]);
    expectClose(await be.read(got.lse), ref.lse, TOL, `${what}: head ${i} lse`);
    const logProbs = await be.read(got.logProbs);
    const ids = await be.read(got.ids);
    for (let r = 0; r < R; r++) {
      const row = ref.logp.subarray(r * V, (r + 1) * V);
      const sorted = [...row].sort((a, b) => b - a).slice(0, k);
      const picked = ids.subarray(r * k, (r + 1) * k);
      expect(new Set(picked).size, `${what}: distinct ids`).toBe(k);
      expectClose(logProbs.subarray(r * k, (r + 1) * k), sorted, TOL, `${what}: head ${i} row ${r} top values`);
      expectClose(logProbs.subarray(r * k, (r + 1) * k), Array.from(picked, (id) => row[id]!), TOL, `${what}: head ${i} row ${r} values of the ids`);
    }
  }
  if (heads.length === 2) {
    const [p, q] = refs as [(typeof refs)[0], (typeof refs)[0]];
    const kl = Array.from({ length: R }, (_, r) => {
      let s = 0;
      for (let v = r * V; v < (r + 1) * V; v++) s += Math.exp(p.logp[v]!) * (p.logp[v]! - q.logp[v]!);
      return s;
    });
    expect(kl.every((x) => x > 1e-3)).toBe(true);
    expect(out.kl!.shape).toEqual([1, R]);
    expectClose(await be.read(out.kl!), kl, { abs: 2e-5, rel: 1e-4 }, `${what}: KL`);
  } else {
    expect(out.kl).toBeUndefined();
  }
}

describe('logitLens against dense logits', () => {
  it('CPU backend: one head, two heads with soft-capping, f16, k from 1 to 32', async () => {
    await check(cpu, [head(1)], 7, 'cpu one head');
    await check(cpu, [head(2), head(3, 'f32', 2.5)], 32, 'cpu two heads');
    await check(cpu, [head(4, 'f16'), head(5)], 1, 'cpu f16');
  });

  it('WebGPU: default tiles, single and two heads, soft-capping', async () => {
    await check(gpu, [head(1)], 7, 'gpu one head');
    await check(gpu, [head(2), head(3, 'f32', 2.5)], 32, 'gpu two heads');
  });

  it('WebGPU: tile variants, one slice per row tile and many slices', async () => {
    const variants: Partial<KernelFlags>[] = [
      { lensTileM: 1, lensWorkgroupM: 4, lensTileN: 1, lensWorkgroupN: 8, lensTileK: 4, lensTargetWorkgroups: 1 },
      { lensTileM: 4, lensWorkgroupM: 2, lensTileN: 2, lensWorkgroupN: 4, lensTileK: 8, lensTargetWorkgroups: 1000 },
    ];
    for (const v of variants) {
      resetFlags();
      setFlags(v);
      await check(gpu, [head(6), head(7, 'f32', 3)], 5, `gpu ${JSON.stringify(v)}`);
    }
  });

  it('WebGPU: f16 unembeddings, row blocks, and heads whose blocks differ (f32 vs f16 rows)', async () => {
    await check(gpu, [head(8, 'f16'), head(9, 'f16', 2)], 4, 'gpu f16');
    setFlags({ maxBindingBytes: 4000 });
    await check(gpu, [head(10), head(11)], 6, 'gpu f32 blocks', true);
    await check(gpu, [head(12, 'f16'), head(13)], 3, 'gpu f16 blocks and f32 blocks', true);
  });

  it('ties go to the lower token id, across slices and blocks, on both backends', async () => {
    const x = head(14);
    // Every h has h_0 ≥ 1 and rows 3, 7, 150, 290 are 10·e_0: four exact ties above every other logit.
    for (let r = 0; r < R; r++) x.h[r * D] = 1 + r / 10;
    const planted = new Float32Array(D);
    planted[0] = 10;
    for (const id of [290, 150, 7, 3]) x.w.set(planted, id * D);
    setFlags({ maxBindingBytes: 4000, lensTargetWorkgroups: 1000 });
    for (const be of [cpu, gpu]) {
      const out = be.logitLens([{ normed: be.fromArray(x.h, [R, D]), unembed: unembedding(be, x) }], 4);
      const ids = await be.read(out.heads[0]!.ids);
      for (let r = 0; r < R; r++) expect(Array.from(ids.subarray(r * 4, r * 4 + 4)), be.name).toEqual([3, 7, 150, 290]);
    }
  });

  it('refuses mismatched heads and k outside 1..32', () => {
    const a = { normed: cpu.fromArray(new Float32Array(2 * D), [2, D]), unembed: cpu.fromArray(new Float32Array(40 * D), [40, D]) };
    expect(() => cpu.logitLens([a], 33)).toThrow(/k = 33 must be an integer in 1\.\.32/);
    expect(() => cpu.logitLens([a], 0)).toThrow(/k = 0/);
    expect(() => cpu.logitLens([a, { ...a, unembed: cpu.fromArray(new Float32Array(41 * D), [41, D]) }], 3)).toThrow(/unembeddings \[40, 19\] and \[41, 19\] differ/);
    expect(() => cpu.logitLens([a, { ...a, normed: cpu.fromArray(new Float32Array(3 * D), [3, D]) }], 3)).toThrow(/do not fit 2 rows/);
    expect(() => gpu.logitLens([], 3)).toThrow(/one or two heads/);
  });
});
