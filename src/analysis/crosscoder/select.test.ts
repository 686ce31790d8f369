import { describe, expect, it } from 'vitest';
import { createRng } from './rng.ts';
import { cutAbove, emitSparse, findTopKCut, topKCutBySort } from './select.ts';

function keptBySort(scores: Float32Array, kTotal: number): number[] {
  const order = Array.from(scores.keys()).filter((i) => scores[i]! > 0);
  order.sort((a, b) => scores[b]! - scores[a]! || a - b);
  return order.slice(0, kTotal).sort((a, b) => a - b);
}

function keptFlat(scores: Float32Array, rows: number, cols: number, kTotal: number, hint: number): number[] {
  const cut = findTopKCut(scores, kTotal, hint, new Uint32Array(scores.length));
  const { code } = emitSparse(cut, scores, scores, rows, cols);
  const out: number[] = [];
  for (let r = 0; r < rows; r++) for (let q = code.rowPtr[r]!; q < code.rowPtr[r + 1]!; q++) out.push(r * cols + code.index[q]!);
  return out;
}

describe('BatchTopK selection', () => {
  it('keeps the same entries as a full sort on random data, with and without a hint', () => {
    const rng = createRng(7);
    const rows = 64;
    const cols = 96;
    for (let trial = 0; trial < 6; trial++) {
      const scores = new Float32Array(rows * cols);
      // ReLU-like: about half zero, the rest spread over several octaves.
      for (let i = 0; i < scores.length; i++) scores[i] = rng.next() < 0.5 ? 0 : Math.exp(3 * rng.normal());
      const kTotal = [1, 17, 500, 1800, 3000, 6000][trial]!;
      const expected = keptBySort(scores, kTotal);
      const ref = topKCutBySort(scores, kTotal);
      const trueCut = ref.key === 0 ? 0 : new Float32Array(new Uint32Array([ref.key]).buffer)[0]!;
      for (const hint of [-1, trueCut, trueCut * 1.3, trueCut * 0.7, trueCut * 50, trueCut / 50, 1e-30, 1e30]) {
        const got = keptFlat(scores, rows, cols, kTotal, hint);
        expect(got.length).toBe(Math.min(kTotal, scores.filter((s) => s > 0).length));
        expect(got).toEqual(expected);
        const cut = findTopKCut(scores, kTotal, hint, new Uint32Array(scores.length));
        expect(cut).toEqual(ref);
      }
    }
  });

  it('keeps exactly k·B entries when many scores tie at the threshold, lowest flat index first', () => {
    const rows = 10;
    const cols = 20;
    const scores = new Float32Array(rows * cols);
    // Values from {0, 0.5, 1, 2}: the cut lands inside a large block of equal scores.
    for (let i = 0; i < scores.length; i++) scores[i] = [0, 0.5, 1, 2][(i * 7) % 4]!;
    const twos = scores.filter((s) => s === 2).length;
    const ones = scores.filter((s) => s === 1).length;
    for (const kTotal of [twos + 1, twos + 13, twos + ones - 1, twos + ones + 5]) {
      for (const hint of [-1, 1, 0.9, 3]) {
        const got = keptFlat(scores, rows, cols, kTotal, hint);
        expect(got.length).toBe(kTotal);
        expect(got).toEqual(keptBySort(scores, kTotal));
      }
    }
    // All equal: the first k·B flat indices win.
    const flat = new Float32Array(rows * cols).fill(0.25);
    expect(keptFlat(flat, rows, cols, 37, -1)).toEqual(Array.from({ length: 37 }, (_, i) => i));
    expect(keptFlat(flat, rows, cols, 37, 0.25)).toEqual(Array.from({ length: 37 }, (_, i) => i));
  });

  it('keeps every positive score when fewer than k·B are positive, and none when k·B is 0', () => {
    const scores = new Float32Array([0, 3, 0, 1, 0, 0, 2, 0]);
    expect(keptFlat(scores, 2, 4, 5, -1)).toEqual([1, 3, 6]);
    expect(keptFlat(scores, 2, 4, 0, -1)).toEqual([]);
  });

  it('reports the smallest kept score and marks fired latents', () => {
    const scores = new Float32Array([0.5, 4, 0, 1, 3, 0.25]);
    const cut = findTopKCut(scores, 3, -1, new Uint32Array(6));
    const fired = new Uint8Array(3);
    const { code, minScore } = emitSparse(cut, scores, [10, 20, 30, 40, 50, 60], 2, 3, fired);
    expect(minScore).toBe(1);
    expect(Array.from(code.value)).toEqual([20, 40, 50]);
    expect(Array.from(code.rowPtr)).toEqual([0, 1, 3]);
    expect(Array.from(fired)).toEqual([1, 1, 0]);
  });

  it('threshold mode keeps scores strictly above θ', () => {
    const scores = new Float32Array([0.1, 0.2, 0.3, 0, 0.2]);
    const above = (theta: number) => {
      const { code } = emitSparse(cutAbove(scores, theta), scores, scores, 1, 5);
      return Array.from(code.index);
    };
    expect(above(0.2)).toEqual([2]);
    expect(above(0.19)).toEqual([1, 2, 4]);
    expect(above(0.3)).toEqual([]);
    expect(above(-1)).toEqual([0, 1, 2, 4]);
    expect(above(0)).toEqual([0, 1, 2, 4]);
  });
});
