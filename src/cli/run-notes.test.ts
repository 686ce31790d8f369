// What every CLI result carries beside its own fields: the memory plan of the pair it loaded, and the
// non-finite weights that --allow-nonfinite let through (refused without it).
import { cp, mkdtemp, open, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, ROOT } from './cli-testing.ts';

const DEMO = join(ROOT, 'test/fixtures/demo');
const LLAMA = join(ROOT, 'test/fixtures/arch/llama');

describe('memory plan in every pair result', () => {
  it('lens --json carries the plan, its weight bytes equal to the pair as stored (float32)', async () => {
    const r = await cli(['lens', join(DEMO, 'base'), join(DEMO, 'ocean/model'), '--prompt', 'Once upon a time', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const m = (JSON.parse(r.stdout) as { memory: { mode: string; reason: string; pair_bytes: number; model_bytes: number; budget_bytes: number | null } }).memory;
    const stored = (await stat(join(DEMO, 'base/model.safetensors'))).size + (await stat(join(DEMO, 'ocean/model/model.safetensors'))).size;
    // The stored files add a JSON header (a few kB) to the float32 weights.
    expect(Math.abs(m.pair_bytes - stored)).toBeLessThanOrEqual(0.01 * stored);
    expect(Math.abs(m.model_bytes - m.pair_bytes / 2)).toBeLessThanOrEqual(0);
    // A 25 MB pair is resident on any machine that runs the tests.
    expect(m.mode).toBe('resident');
    expect(m.budget_bytes).toBeGreaterThan(m.pair_bytes);
    expect(m.reason).toMatch(/^both models resident/);
  });

  it('the text output starts with the memory line', async () => {
    const r = await cli(['lens', join(DEMO, 'base'), join(DEMO, 'ocean/model'), '--prompt', 'Once upon a time']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.split('\n')[0]).toMatch(/^memory: both models resident: 0\.02 GiB of weights/);
  });
});

describe('--allow-nonfinite', () => {
  let dir = '';
  const TENSOR = 'model.layers.0.mlp.up_proj.weight';
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'neurodiff-nan-'));
    await cp(join(LLAMA, 'base'), join(dir, 'base'), { recursive: true });
    // One NaN as the first value of a tensor every forward pass reads.
    const f = await open(join(dir, 'base/model.safetensors'), 'r+');
    try {
      const len = Buffer.alloc(8);
      await f.read(len, 0, 8, 0);
      const n = Number(len.readBigUInt64LE());
      const header = Buffer.alloc(n);
      await f.read(header, 0, n, 8);
      const entry = (JSON.parse(header.toString('utf8')) as Record<string, { dtype: string; data_offsets: [number, number] }>)[TENSOR]!;
      expect(entry.dtype).toBe('F32');
      const nan = Buffer.alloc(4);
      nan.writeFloatLE(NaN);
      await f.write(nan, 0, 4, 8 + n + entry.data_offsets[0]);
    } finally {
      await f.close();
    }
  });
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const args = () => ['lens', join(dir, 'base'), join(LLAMA, 'ft'), '--ids', '1,5,9,13', '--json'];

  it('without it, a pair holding a NaN is refused in one line naming the tensor', async () => {
    const r = await cli(args());
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    const lines = r.stderr.trim().split('\n');
    expect(lines.at(-1)).toMatch(new RegExp(`^neurodiff: .*tensor "${TENSOR.replaceAll('.', '\\.')}" holds 1 NaN values`));
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  it('with it, the result carries the flag line', async () => {
    const r = await cli([...args(), '--allow-nonfinite']);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { nonfinite?: string };
    expect(out.nonfinite).toMatch(/^1 tensor holds NaN or infinite values/);
    expect(out.nonfinite).toContain(`${TENSOR} (1 NaN)`);
  });

  it('the clean pair carries no flag', async () => {
    const r = await cli(['lens', join(LLAMA, 'base'), join(LLAMA, 'ft'), '--ids', '1,5,9,13', '--json', '--allow-nonfinite']);
    expect(r.code, r.stderr).toBe(0);
    expect((JSON.parse(r.stdout) as { nonfinite?: string }).nonfinite).toBeUndefined();
  });
});
