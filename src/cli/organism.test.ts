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
  }, 120_000);

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
