import { execFile } from 'node:child_process';
import { mkdtemp, readFile, writeFile, copyFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const cli = (args: string[]) => run('node', ['bin/neurodiff.mjs', ...args], { maxBuffer: 64 << 20 });

interface Row { name: string; shape: number[]; frobenius: number; spectral: number | null; effective_rank: number | null; top_singular_values: number[]; method: string }

describe('neurodiff weights', () => {
  it('finds exactly the changed tensors of a fixture pair, with their spectra', async () => {
    const truth = JSON.parse(await readFile('test/fixtures/arch/qwen2/ground_truth.json', 'utf8')) as {
      changed_tensors: Record<string, { singular_values: number[]; frobenius: number }>;
    };
    const { stdout } = await cli(['weights', 'test/fixtures/arch/qwen2/base', 'test/fixtures/arch/qwen2/ft', '--top-k', '4', '--json']);
    const out = JSON.parse(stdout) as { tensors: Row[]; missing: unknown[]; mismatched: unknown[] };
    expect(out.missing).toEqual([]);
    expect(out.mismatched).toEqual([]);
    const changed = out.tensors.filter((t) => t.frobenius !== 0).map((t) => t.name).sort();
    expect(changed).toEqual(Object.keys(truth.changed_tensors).sort());
    for (const [name, want] of Object.entries(truth.changed_tensors)) {
      const row = out.tensors.find((t) => t.name === name)!;
      expect(Math.abs(row.frobenius - want.frobenius)).toBeLessThanOrEqual(1e-4 * want.frobenius);
      want.singular_values.forEach((s, i) => expect(Math.abs(row.top_singular_values[i]! - s)).toBeLessThanOrEqual(1e-4 * s));
      expect(row.method.length).toBeGreaterThan(0);
    }
  });

  it('analyses a PEFT adapter given as <ft> from its factors', async () => {
    const { stdout } = await cli(['weights', 'test/fixtures/lora/base', 'test/fixtures/lora/adapter', '--json']);
    const out = JSON.parse(stdout) as { tensors: Row[] };
    expect(out.tensors.length).toBeGreaterThan(0);
    for (const t of out.tensors) {
      expect(t.frobenius).toBeGreaterThan(0);
      // A rank-4 adapter: at most 4 non-zero singular values.
      expect(t.top_singular_values.filter((s) => s > 1e-6 * t.top_singular_values[0]!).length).toBeLessThanOrEqual(4);
    }
  });

  it('fails with one line naming a truncated file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'nd-trunc-'));
    await copyFile('test/fixtures/arch/llama/base/config.json', join(dir, 'config.json'));
    const bytes = await readFile('test/fixtures/arch/llama/base/model.safetensors');
    await writeFile(join(dir, 'model.safetensors'), bytes.subarray(0, bytes.length - 1000));
    const err = await cli(['weights', 'test/fixtures/arch/llama/base', dir, '--json']).then(
      () => null,
      (e: { code: number; stderr: string }) => e,
    );
    expect(err?.code).toBe(1);
    expect(err?.stderr).toMatch(/model\.safetensors.*truncated/);
    expect(err?.stderr.trim().split('\n')).toHaveLength(1);
  });
});
