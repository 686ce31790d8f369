// The BatchTopK selection kernels against a full sort: exactly kTotal kept, ties to the lowest
// flat index, every hint, compaction across several blocks.
import { beforeAll, describe, expect, it } from 'vitest';
import { useDawn } from '../../gpu/dawn-node.ts';
import { getGpu, type GpuContext } from '../../gpu/device.ts';
import { CommandRecorder } from '../../gpu/recorder.ts';
import { randomArray } from '../testing.ts';
import {
  bitsFloat,
  COMPACT_BLOCK,
  compactBlocks,
  floatBits,
  readSelectResult,
  recordCount,
  recordCutAbove,
  recordEmit,
  recordTopKCut,
  stateWords,
  type SelectBuffers,
  type SelectShape,
} from './crosscoder.ts';

let ctx: GpuContext;
let rec: CommandRecorder;

beforeAll(async () => {
  expect(useDawn()).toBe(true);
  ctx = await getGpu();
  rec = new CommandRecorder(ctx);
});

function buffer(data: Float32Array | Uint32Array): GPUBuffer {
  const b = ctx.device.createBuffer({ size: Math.max(16, data.byteLength), usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
  ctx.device.queue.writeBuffer(b, 0, data);
  return b;
}

/** Scores as the kernels compute them: ReLU(pre)·w rounded to float32. */
function scoresOf(pre: Float32Array, w: Float32Array, D: number): Float32Array {
  return pre.map((v, i) => Math.fround((v > 0 ? v : 0) * w[i % D]!));
}

/** Flat indices of the kTotal largest positive scores by a full sort, ties to the lower index, in flat order. */
function keptBySort(scores: Float32Array, kTotal: number): number[] {
  const order = Array.from(scores.keys()).filter((i) => scores[i]! > 0);
  order.sort((a, b) => scores[b]! - scores[a]! || a - b);
  return order.slice(0, kTotal).sort((a, b) => a - b);
}

interface Selected {
  kept: number;
  minScore: number;
  fired: Uint8Array;
  flat: number[];
  values: number[];
  rowPtr: number[];
}

async function select(pre: Float32Array, w: Float32Array, n: number, D: number, how: { kTotal: number; hint: number } | { theta: number }): Promise<Selected> {
  const W = Math.ceil(n / 32);
  const shape: SelectShape = { n, D, W, bitsOffset: n + 1 };
  const wn = new Float32Array(3 * D);
  wn.set(w);
  const capacity = n * D;
  const b: SelectBuffers = {
    pre: buffer(pre),
    wn: buffer(wn),
    state: buffer(new Uint32Array(stateWords(D))),
    counts: buffer(new Uint32Array(2 * compactBlocks(n, D))),
    lists: buffer(new Uint32Array(n + 1 + D * W)),
    entries: buffer(new Uint32Array(4 * capacity)),
  };
  if ('theta' in how) recordCutAbove(rec, b, shape, how.theta);
  else recordTopKCut(rec, b, shape, how.kTotal, how.hint);
  recordCount(rec, b, shape);
  recordEmit(rec, b, shape);
  const r = await readSelectResult(rec, b.state, D);
  const raw = await rec.read(b.entries, Math.max(1, r.kept) * 16);
  const u = new Uint32Array(raw);
  const f = new Float32Array(raw);
  const flat: number[] = [];
  const values: number[] = [];
  for (let q = 0; q < r.kept; q++) {
    flat.push(u[4 * q]! * D + u[4 * q + 1]!);
    values.push(f[4 * q + 2]!);
  }
  const rowPtr = Array.from(new Uint32Array(await rec.read(b.lists, (n + 1) * 4)));
  for (const x of Object.values(b)) x.destroy();
  return { ...r, flat, values, rowPtr };
}

/** Checks everything a selection reports against the sorted reference. */
function expectMatches(got: Selected, pre: Float32Array, scores: Float32Array, want: number[], n: number, D: number): void {
  expect(got.kept).toBe(want.length);
  expect(got.flat).toEqual(want);
  expect(got.values).toEqual(want.map((i) => pre[i]!));
  const rowPtr = [0];
  for (let t = 0; t < n; t++) rowPtr.push(rowPtr[t]! + want.filter((i) => Math.floor(i / D) === t).length);
  expect(got.rowPtr).toEqual(rowPtr);
  const fired = new Uint8Array(D);
  for (const i of want) fired[i % D] = 1;
  expect(Array.from(got.fired)).toEqual(Array.from(fired));
  expect(got.minScore).toBe(want.length > 0 ? Math.min(...want.map((i) => scores[i]!)) : -1);
}

describe('crosscoder BatchTopK selection kernels', () => {
  // 61 × 97 = 5917 scores: three compaction blocks, the last one partial, rows crossing blocks.
  const n = 61;
  const D = 97;

  it('keeps the kTotal best scores as a sort does, for every kind of hint', async () => {
    expect(n * D).toBeGreaterThan(2 * COMPACT_BLOCK);
    const raw = randomArray(n * D, 11);
    const spread = randomArray(n * D, 12, -3, 3);
    // About half negative (ReLU zeros), the rest over several octaves.
    const pre = raw.map((v, i) => (v < 0 ? v : Math.exp(spread[i]!)));
    const w = randomArray(D, 13, 0.5, 2);
    const scores = scoresOf(pre, w, D);
    for (const kTotal of [1, 40, 700, 2500]) {
      const want = keptBySort(scores, kTotal);
      const cut = Math.min(...want.map((i) => scores[i]!));
      for (const hint of [-1, cut, cut * 1.3, cut * 0.7, cut * 50, cut / 50, 1e-30, 1e30]) {
        expectMatches(await select(pre, w, n, D, { kTotal, hint }), pre, scores, want, n, D);
      }
    }
  });

  it('splits a block of equal scores at the cut by flat index, so exactly kTotal are kept', async () => {
    // Scores from {0, 0.5, 1, 2}: the cut falls inside a large group of ties.
    const pre = Float32Array.from({ length: n * D }, (_, i) => [0, 0.5, 1, 2][(i * 7 + Math.floor(i / 5)) % 4]!);
    const w = new Float32Array(D).fill(1);
    const scores = scoresOf(pre, w, D);
    const twos = scores.filter((s) => s === 2).length;
    const ones = scores.filter((s) => s === 1).length;
    for (const kTotal of [twos + 1, twos + 777, twos + ones - 1]) {
      const want = keptBySort(scores, kTotal);
      expect(want.length).toBe(kTotal);
      for (const hint of [-1, 1, 0.9, 3]) expectMatches(await select(pre, w, n, D, { kTotal, hint }), pre, scores, want, n, D);
    }
    const flat = new Float32Array(n * D).fill(0.25);
    const all = await select(flat, w, n, D, { kTotal: 1234, hint: -1 });
    expect(all.flat).toEqual(Array.from({ length: 1234 }, (_, i) => i));
  });

  it('keeps every positive score when kTotal exceeds them, nothing when kTotal is 0', async () => {
    const pre = randomArray(n * D, 21);
    const w = randomArray(D, 22, 0.5, 2);
    const scores = scoresOf(pre, w, D);
    const positive = keptBySort(scores, n * D);
    expectMatches(await select(pre, w, n, D, { kTotal: positive.length + 5, hint: -1 }), pre, scores, positive, n, D);
    expectMatches(await select(pre, w, n, D, { kTotal: 0, hint: 0.3 }), pre, scores, [], n, D);
  });

  it('keeps scores strictly above a threshold compared in float32', async () => {
    const pre = randomArray(n * D, 31);
    const w = randomArray(D, 32, 0.5, 2);
    const scores = scoresOf(pre, w, D);
    const existing = scores.find((s) => s > 0.5)!;
    // A threshold just above an existing score in float64 that rounds to it in float32.
    const rounded = existing + (bitsFloat(floatBits(existing) + 1) - existing) / 4;
    for (const theta of [0.7, existing, rounded, -1]) {
      const t32 = Math.fround(theta);
      const want = Array.from(scores.keys()).filter((i) => scores[i]! > Math.max(t32, 0));
      expectMatches(await select(pre, w, n, D, { theta }), pre, scores, want, n, D);
    }
  });
});
