// Helpers shared by the io tests (Node only).
import { expect } from 'vitest';
import { pathSource } from './node-source.ts';
import { readSafetensorsHeader } from './safetensors.ts';
import type { WeightStore } from './store.ts';

/** Every tensor of `want` is in `got` with its shape, and |got − want| ≤ atol + rtol·|want| everywhere. */
export async function expectSameTensors(got: WeightStore, want: WeightStore, atol: number, rtol: number): Promise<void> {
  for (const [name, t] of want.tensors) {
    const g = got.tensors.get(name);
    expect(g, name).toBeDefined();
    expect(g!.shape, name).toEqual(t.shape);
    const a = await got.readF32(name);
    const b = await want.readF32(name);
    let bad = 0;
    for (let i = 0; i < b.length; i++) if (!(Math.abs(a[i]! - b[i]!) <= atol + rtol * Math.abs(b[i]!))) bad++;
    expect(bad, name).toBe(0);
  }
}

/** The int32 `input_ids` [B, T] stored in a golden captures file. */
export async function goldenInputIds(path: string): Promise<number[][]> {
  const f = await readSafetensorsHeader(await pathSource(path));
  const e = f.entries.get('input_ids');
  if (!e || e.dtype !== 'I32') throw new Error(`${path} has no int32 input_ids`);
  const bytes = await e.source.read(e.offset, e.byteLength);
  const ids = new Int32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
  const [rows, cols] = e.shape as [number, number];
  return Array.from({ length: rows }, (_, r) => [...ids.subarray(r * cols, (r + 1) * cols)]);
}
