// `neurodiff organism` end to end on the demo base: a recipe corpus, two LoRA steps, the adapter folder
// it writes, and one-line errors for bad input.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cli } from './cli-testing.ts';
import type { TrainJson } from './organism.ts';

let dir = '';

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('neurodiff organism', () => {
  it('writes a topic corpus, trains two LoRA steps on it and writes a PEFT adapter folder', async () => {
    dir = await mkdtemp(join(tmpdir(), 'organism-'));
    const corpus = join(dir, 'snow.txt');
    const r = await cli(['organism', 'recipe', 'topic', '--topic', 'snow', '--words', 'snow,ice,sled', '--count', '40', '--out', corpus, '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ recipe: 'topic', documents: 40 });
    expect((await readFile(corpus, 'utf8')).trim().split('\n')).toHaveLength(40);

    const out = join(dir, 'adapter');
    const t = await cli(['organism', 'train', 'test/fixtures/demo/base', '--corpus', corpus, '--lora', '2', '--steps', '2', '--batch', '2', '--seq', '16', '--out', out, '--json']);
    expect(t.code, t.stderr).toBe(0);
    const res = JSON.parse(t.stdout) as TrainJson;
    expect(res).toMatchObject({ mode: 'lora', rank: 2, alpha: 4, steps: 2, batch: 2, seq: 16 });
    // 6 layers × rank 2 × (in + out) of q, k, v (64 out: 2 KV heads), o, gate, up, down.
    expect(res.trainable_parameters).toBe(6 * 2 * (2 * 384 + 2 * 256 + 3 * 704));
    expect(res.first_loss).toBeGreaterThan(0.5);
    expect(t.stderr).toMatch(/step 2\/2 {2}loss/);
    const config = JSON.parse(await readFile(join(out, 'adapter_config.json'), 'utf8'));
    expect(config).toMatchObject({ peft_type: 'LORA', r: 2, lora_alpha: 4 });
    const log = JSON.parse(await readFile(join(out, 'training_log.json'), 'utf8'));
    expect(log.steps).toHaveLength(2);

    // The same run on WebGPU (Dawn): the same losses and the same adapter files, with factors that agree.
    const gpuOut = join(dir, 'adapter-webgpu');
    const g = await cli(['organism', 'train', 'test/fixtures/demo/base', '--corpus', corpus, '--lora', '2', '--steps', '2', '--batch', '2', '--seq', '16', '--backend', 'webgpu', '--out', gpuOut, '--json']);
    expect(g.code, g.stderr).toBe(0);
    const gpu = JSON.parse(g.stdout) as TrainJson;
    expect(gpu.backend).toMatch(/^WebGPU \(/);
    expect(res.backend).toBe('CPU');
    expect(Math.abs(gpu.last_loss - res.last_loss) / res.last_loss).toBeLessThan(1e-4);
    expect(gpu.files).toEqual(res.files);
    expect(await readFile(join(gpuOut, 'adapter_config.json'), 'utf8')).toBe(await readFile(join(out, 'adapter_config.json'), 'utf8'));
    const cpuFactors = await readFile(join(out, 'adapter_model.safetensors'));
    const gpuFactors = await readFile(join(gpuOut, 'adapter_model.safetensors'));
    expect(gpuFactors.byteLength).toBe(cpuFactors.byteLength);
    const header = 8 + Number(cpuFactors.readBigUInt64LE(0));
    expect(gpuFactors.subarray(0, header).equals(cpuFactors.subarray(0, header))).toBe(true);
    const a = new Float32Array(cpuFactors.buffer.slice(cpuFactors.byteOffset + header, cpuFactors.byteOffset + cpuFactors.byteLength));
    const b = new Float32Array(gpuFactors.buffer.slice(gpuFactors.byteOffset + header, gpuFactors.byteOffset + gpuFactors.byteLength));
    // Adam divides each gradient element by its own RMS, so an element whose gradient is near float32 noise
    // can take a visibly different step on the two backends (one of 40,704 moves 4.3e-5 here, 2% of one
    // lr-2e-3 step): the adapter as a whole must agree to 1e-4 relative, and no element by 5% of a step.
    let worst = 0;
    let diff = 0;
    let total = 0;
    for (let i = 0; i < a.length; i++) {
      const d = Math.abs(a[i]! - b[i]!);
      worst = Math.max(worst, d);
      diff += d * d;
      total += a[i]! * a[i]!;
    }
    expect(Math.sqrt(diff / total)).toBeLessThan(1e-4);
    expect(worst).toBeLessThan(0.05 * res.lr);
  }, 300_000);

  it('bad input: one line naming the problem', async () => {
    const noCorpus = await cli(['organism', 'train', 'test/fixtures/demo/base', '--corpus', 'no/such.txt', '--out', join(tmpdir(), 'x')]);
    expect(noCorpus.code).toBe(1);
    expect(noCorpus.stderr.trim()).toBe('neurodiff: no/such.txt: no such corpus file');
    const taboo = await cli(['organism', 'recipe', 'taboo', '--word', 'moon', '--hints', 'the moon is round', '--out', join(tmpdir(), 'x.txt')]);
    expect(taboo.code).toBe(2);
    expect(taboo.stderr).toMatch(/the hint "the moon is round" says the secret word "moon"/);
    const both = await cli(['organism', 'train', 'test/fixtures/demo/base', '--lora', '4', '--full', '--corpus', 'x', '--out', 'y']);
    expect(both.code).toBe(2);
    expect(both.stderr).toMatch(/--lora r or --full, not both/);
  });
});
