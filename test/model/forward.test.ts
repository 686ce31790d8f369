// Hooks, the KV cache, partial runs and loading behaviour of the forward pass (CPU backend).
import { describe, expect, it } from 'vitest';
import { createCpuBackend } from '../../src/gpu/cpu-backend.ts';
import { pathFileSet } from '../../src/io/node-source.ts';
import { openSafetensorsFolder } from '../../src/io/safetensors.ts';
import { bytesSource, FormatError, type ByteSource } from '../../src/io/source.ts';
import type { WeightStore } from '../../src/io/store.ts';
import type { Tensor } from '../../src/model/backend.ts';
import { loadModel, loadModelFromStore } from '../../src/model/load.ts';
import { hookName } from '../../src/model/transformer.ts';
import { diff, FIXTURES, loadFixture } from './golden-helpers.ts';

const be = createCpuBackend();
const read = async (t: Tensor) => (await be.read(t)) as Float32Array;
const IDS = [[5, 17, 200, 3, 99, 42, 8, 8, 130, 77, 1, 250], [0, 255, 12, 12, 12, 64, 31, 2, 9, 180, 44, 6]];

describe('KV cache', () => {
  it.each(['gemma2', 'gpt2', 'qwen3', 'phi3'])('%s: incremental logits equal the full forward at every position', async (arch) => {
    const model = await loadFixture(`arch/${arch}/base`, be);
    const full = await read(model.forward(IDS).logits!);
    const V = model.config.vocab;
    const T = IDS[0]!.length;
    const kv = model.newKvCache();
    const steps: Array<[number, number]> = [[0, 5], [5, 6], [6, 7], [7, 10], [10, 11], [11, 12]];
    for (const [start, end] of steps) {
      const step = await read(model.forward(IDS.map((r) => r.slice(start, end)), { kvCache: kv }).logits!);
      const want = new Float32Array((end - start) * V * 2);
      for (let b = 0; b < 2; b++) want.set(full.subarray((b * T + start) * V, (b * T + end) * V), b * (end - start) * V);
      expect(diff(step, want, 1e-5, 1e-5).worst).toBeLessThanOrEqual(1);
    }
    expect(kv.length).toBe(T);
    model.disposeKvCache(kv);
  });
});

describe('hooks', () => {
  it('declares every hook point with its shape', async () => {
    const model = await loadFixture('arch/llama/base', be);
    expect(model.hookPoints).toHaveLength(4 * 3 + 2);
    expect(model.hookPoints[0]).toEqual({ name: 'blocks.0.hook_resid_pre', shape: ['batch', 'pos', 'd_model'], layer: 0 });
    expect(model.hookPoints.at(-1)).toEqual({ name: 'logits', shape: ['batch', 'pos', 'd_vocab'] });
  });

  it('a hook that only reads leaves the logits unchanged; replacing attn_out with zeros flows downstream', async () => {
    const model = await loadFixture('arch/llama/base', be);
    const plain = await read(model.forward(IDS).logits!);
    const seen: string[] = [];
    const observed = model.runWithHooks(IDS, Object.fromEntries(model.hookPoints.map((p) => [p.name, (_: Tensor, ctx: { name: string }) => void seen.push(ctx.name)])));
    expect(Array.from(await read(observed!))).toEqual(Array.from(plain));
    expect(seen).toEqual(model.hookPoints.map((p) => p.name));

    const { cache } = model.forward(IDS, {
      hooks: { [hookName('attn_out', 1)]: (t, ctx) => ctx.backend.scale(t, 0) },
      capture: [hookName('resid_pre', 1), hookName('mlp_out', 1), hookName('resid_post', 1), hookName('attn_out', 1)],
    });
    const pre = await read(cache.get(hookName('resid_pre', 1))!);
    const mlp = await read(cache.get(hookName('mlp_out', 1))!);
    const post = await read(cache.get(hookName('resid_post', 1))!);
    expect((await read(cache.get(hookName('attn_out', 1))!)).every((v) => v === 0)).toBe(true);
    expect(diff(post, pre.map((v, i) => v + mlp[i]!), 1e-6, 1e-6).worst).toBeLessThanOrEqual(1);
  });

  it('steering at resid_post.1 equals steering at resid_pre.2 (the same stream)', async () => {
    const model = await loadFixture('arch/gemma3/base', be);
    const v = be.fromArray(Float32Array.from({ length: 64 }, (_, i) => Math.sin(i)), [64]);
    const add = (t: Tensor) => be.add(t, v);
    const a = await read(model.runWithHooks(IDS, { [hookName('resid_post', 1)]: add })!);
    const b = await read(model.runWithHooks(IDS, { [hookName('resid_pre', 2)]: add })!);
    const plain = await read(model.forward(IDS).logits!);
    expect(Array.from(a)).toEqual(Array.from(b));
    expect(diff(a, plain, 1e-3, 0).worst).toBeGreaterThan(1);
  });

  it('patching the last residual of base with the fine-tune gives the fine-tune logits', async () => {
    const base = await loadFixture('arch/llama/base', be);
    const ft = await loadFixture('arch/llama/ft', be);
    const last = hookName('resid_post', 2);
    const { logits: ftLogits, cache } = ft.runWithCache(IDS, [last]);
    const patched = base.runWithHooks(IDS, { [last]: () => be.scale(cache.get(last)!, 1) });
    const want = await read(ftLogits!);
    expect(diff(await read(patched!), want, 1e-6, 1e-6).worst).toBeLessThanOrEqual(1);
    expect(diff(await read(base.forward(IDS).logits!), want, 1e-3, 0).worst).toBeGreaterThan(1);
  });

  it('stops after a layer, computes only the last position, and rejects unknown or misshapen hooks', async () => {
    const model = await loadFixture('arch/qwen2/base', be);
    const name = hookName('resid_post', 0);
    const full = model.runWithCache(IDS, [name]);
    const partial = model.runWithCache(IDS, [name], { stopAfterLayer: 0 });
    expect(partial.logits).toBeUndefined();
    expect(Array.from(await read(partial.cache.get(name)!))).toEqual(Array.from(await read(full.cache.get(name)!)));
    const all = await read(full.logits!);
    const last = model.forward(IDS, { lastPositionOnly: true }).logits!;
    expect(last.shape).toEqual([2, 1, 256]);
    const lastValues = await read(last);
    for (let b = 0; b < 2; b++) expect(Array.from(lastValues.subarray(b * 256, b * 256 + 256))).toEqual(Array.from(all.subarray((b * 12 + 11) * 256, (b * 12 + 12) * 256)));
    expect(() => model.runWithCache(IDS, ['blocks.9.hook_resid_pre'])).toThrow(/no hook point named "blocks\.9\.hook_resid_pre"/);
    expect(() => model.runWithHooks(IDS, { [name]: (t) => be.sliceSeq(t, 0, 2) })).toThrow(/returned \[2, 2, 64\] for an activation of \[2, 12, 64\]/);
  });

  it('generation takes hooks and stop tokens', async () => {
    const model = await loadFixture('arch/llama/base', be);
    const prompt = [105, 116, 158, 23, 27, 211];
    const free = await model.generate(prompt, 8);
    const stopped = await model.generate(prompt, 8, { stop: [free[2]!] });
    expect(stopped).toEqual(free.slice(0, free.indexOf(free[2]!) + 1));
    const positions: number[] = [];
    await model.generate(prompt, 3, { hooks: { logits: (t, ctx) => void positions.push(ctx.startPos, t.shape[1]!) } });
    expect(positions).toEqual([0, 1, 6, 1, 7, 1]);
  });
});

describe('loading', () => {
  it('reports progress per checkpoint tensor up to the total, and can be cancelled', async () => {
    const files = await pathFileSet(`${FIXTURES}arch/phi3/base`);
    const store = await openSafetensorsFolder(files);
    const total = [...store.tensors.values()].reduce((n, t) => n + t.byteLength, 0);
    const events: Array<[number, number, string]> = [];
    const model = await loadModel(files, be, { onProgress: (done, all, name) => events.push([done, all, name]) });
    expect(events).toHaveLength(store.tensors.size);
    expect(events.every(([, all]) => all === total)).toBe(true);
    expect(events.at(-1)![0]).toBe(total);
    expect(events.every(([done], i) => i === 0 || done > events[i - 1]![0])).toBe(true);
    expect(model.checkpointName('blocks.0.attn.W_V')).toBe('model.layers.0.self_attn.qkv_proj.weight[128:192]');

    const ctrl = new AbortController();
    const cancelled = loadModel(files, be, { signal: ctrl.signal, onProgress: () => ctrl.abort() });
    await expect(cancelled).rejects.toThrow(/abort/i);
  });

  it('stores matrices as f16 when asked, close to f32', async () => {
    const f32 = await loadFixture('arch/llama/base', be);
    const f16 = await loadFixture('arch/llama/base', be, { dtype: 'f16' });
    expect(f16.weight('blocks.0.attn.W_Q').dtype).toBe('f16');
    expect(f16.weight('blocks.0.ln1.w').dtype).toBe('f32');
    const d = diff(await read(f16.forward(IDS).logits!), await read(f32.forward(IDS).logits!), 0.05, 0.01);
    expect(d.worst).toBeLessThanOrEqual(1);
    expect(d.maxAbs).toBeGreaterThan(0);
  });

  it('names the missing tensor, a misshapen tensor and an unknown architecture', async () => {
    const files = await pathFileSet(`${FIXTURES}arch/llama/base`);
    const store = await openSafetensorsFolder(files);
    const config = JSON.parse(new TextDecoder().decode(await files.get('config.json')!.read(0, files.get('config.json')!.size))) as Record<string, unknown>;
    const tensors = new Map(store.tensors);
    tensors.delete('model.layers.2.mlp.up_proj.weight');
    const lacking: WeightStore = { ...store, tensors };
    await expect(loadModelFromStore(lacking, config, be)).rejects.toThrow(/model\.safetensors: no tensor "model\.layers\.2\.mlp\.up_proj\.weight", which a llama model needs for blocks\.2\.mlp\.W_in/);
    await expect(loadModelFromStore(store, { ...config, intermediate_size: 128 }, be)).rejects.toThrow(
      /tensor "model\.layers\.0\.mlp\.gate_proj\.weight" has shape \[160, 64\], but config\.json implies \[128, 64\] for blocks\.0\.mlp\.W_gate/,
    );
    const bert = new Map<string, ByteSource>(files);
    bert.set('config.json', bytesSource(new TextEncoder().encode(JSON.stringify({ model_type: 'bert' })), 'config.json'));
    const err = await loadModel(bert, be).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FormatError);
    expect((err as Error).message).toMatch(/config\.json: model_type "bert" is not a supported architecture/);
  });
});
