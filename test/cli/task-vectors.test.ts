import { execFile } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const cli = async (args: string[]) => JSON.parse((await run('node', ['bin/neurodiff.mjs', ...args, '--json'], { maxBuffer: 64 << 20 })).stdout) as Record<string, unknown>;

describe('neurodiff task-vectors', () => {
  it('gives cosines of a full fine-tune and an adapter, and task arithmetic that loads back', async () => {
    const out = join(await mkdtemp(join(tmpdir(), 'nd-tv-')), 'merged');
    const r = (await cli(['task-vectors', 'test/fixtures/arch/llama/base', 'test/fixtures/arch/llama/ft', 'test/fixtures/arch/llama/ft', '--lambdas', '0.5,0.5', '--out', out])) as {
      cosine: (number | null)[][];
      norms: number[];
      layers: { layer: number; norms: number[] }[];
    };
    // The same fine-tune twice: cosine 1; its norm is the Frobenius norm of the two planted deltas (sqrt(10 + 4)).
    expect(Math.abs(r.cosine[0]![1]! - 1)).toBeLessThan(1e-9);
    expect(Math.abs(r.norms[0]! - Math.sqrt(14))).toBeLessThan(1e-4 * Math.sqrt(14));
    // Layer 0 is untouched; layers 1 and 2 carry the deltas.
    expect(r.layers.find((l) => l.layer === 0)!.norms[0]).toBe(0);
    expect(Math.abs(r.layers.find((l) => l.layer === 1)!.norms[0]! - Math.sqrt(10))).toBeLessThan(1e-4);
    // base + 0.5 τ + 0.5 τ = ft: the written model gives ft's logits.
    const ft = (await cli(['forward', 'test/fixtures/arch/llama/ft', '--ids', '1,2,3,4', '--top', '3'])) as { top: { id: number; prob: number }[][] };
    const merged = (await cli(['forward', out, '--ids', '1,2,3,4', '--top', '3'])) as { top: { id: number; prob: number }[][] };
    ft.top.forEach((row, t) =>
      row.forEach((e, j) => {
        expect(merged.top[t]![j]!.id).toBe(e.id);
        expect(Math.abs(merged.top[t]![j]!.prob - e.prob)).toBeLessThan(1e-5);
      }),
    );
  });

  it('treats a PEFT adapter as a fine-tune of the base', async () => {
    const r = (await cli(['task-vectors', 'test/fixtures/lora/base', 'test/fixtures/lora/adapter'])) as { norms: number[]; tensors_used: number };
    expect(r.norms[0]).toBeGreaterThan(0);
    expect(r.tensors_used).toBeGreaterThan(0);
  });
});
