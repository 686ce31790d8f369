import { describe, expect, it } from 'vitest';
import { createCpuBackend } from '../../src/gpu/cpu-backend.ts';
import { pathFileSet } from '../../src/io/node-source.ts';
import { readLoraAdapter } from '../../src/model/lora.ts';
import { folderSource, PairedRunner, type ModelSource } from '../../src/model/paired.ts';
import { diff, FIXTURES, readGolden } from './golden-helpers.ts';

const be = createCpuBackend();

/** Wraps a source to count how many models are loaded at once. */
function counted(src: ModelSource, live: { now: number; max: number }): ModelSource {
  return {
    ...src,
    async load(signal) {
      const m = await src.load(signal);
      live.now++;
      live.max = Math.max(live.max, live.now);
      const dispose = m.dispose.bind(m);
      m.dispose = () => {
        live.now--;
        dispose();
      };
      return m;
    },
  };
}

describe('PairedRunner', () => {
  it.each(['resident', 'sequential'] as const)('%s: both models see the same batches and match golden base.* and ft.*', async (mode) => {
    const golden = await readGolden(`${FIXTURES}stories260K/space/golden.safetensors`);
    const { ids, batch, seq } = await golden.ids('base.');
    const baseFiles = await pathFileSet(`${FIXTURES}stories260K/base`);
    const adapter = await readLoraAdapter(await pathFileSet(`${FIXTURES}stories260K/space/adapter`));
    const live = { now: 0, max: 0 };
    const base = counted(await folderSource(baseFiles, be, 'base'), live);
    const ft = counted(await folderSource(baseFiles, be, 'space', { adapter }), live);
    const weights = base.weightBytes;
    const runner = new PairedRunner(base, ft, be, { memoryBudgetBytes: mode === 'resident' ? 2 * weights : 1.5 * weights });
    expect(runner.mode).toBe(mode);

    // The two golden sequences as two batches of one.
    const batches = [0, 1].map((b) => ({ ids: ids.slice(b * seq, (b + 1) * seq), batch: 1, seq }));
    const hooks = ['blocks.1.hook_resid_post', 'blocks.3.hook_mlp_out'];
    const seen: number[] = [];
    await runner.run(batches, hooks, async ({ index, base: b, ft: f }) => {
      seen.push(index);
      for (const [name, key] of [[hooks[0]!, 'resid_post.1'], [hooks[1]!, 'mlp_out.3']] as const) {
        for (const [which, caps] of [['base', b], ['ft', f]] as const) {
          const all = await golden.f32(`${which}.${key}`);
          const d = all.length / batch;
          const got = (await be.read(caps.get(name)!)) as Float32Array;
          expect(diff(got, all.subarray(index * d, (index + 1) * d), 1e-4, 1e-4).worst).toBeLessThanOrEqual(1);
        }
      }
    });
    expect(seen).toEqual([0, 1]);
    expect(live.max).toBe(mode === 'resident' ? 2 : 1);
    runner.dispose();
    expect(live.now).toBe(0);
    expect(batch).toBe(2);
  });

  it('hands out both models together only when they fit', async () => {
    const files = await pathFileSet(`${FIXTURES}arch/llama/base`);
    const src = await folderSource(files, be, 'llama');
    const tight = new PairedRunner(src, src, be, { memoryBudgetBytes: src.weightBytes });
    await expect(tight.models()).rejects.toThrow(/do not fit the memory budget together/);
    const roomy = new PairedRunner(src, src, be);
    const { base, ft } = await roomy.models();
    expect(base.config.architecture).toBe('llama');
    expect(ft).not.toBe(base);
    roomy.dispose();
  });
});
