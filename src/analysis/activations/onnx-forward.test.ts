// ONNX exports of test/fixtures/arch/llama and arch/gpt2 (test/fixtures/onnx/make_onnx.py): our forward pass over
// the weights recovered from the graph, and onnxruntime running the graph itself, against each other
// and against the Hugging Face reference captures (golden.safetensors).
import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { createCpuBackend } from '../../gpu/cpu-backend.ts';
import { pathFileSet, pathSource } from '../../io/node-source.ts';
import { openModel } from '../../io/open-model.ts';
import { readEntryF32, readSafetensorsHeader } from '../../io/safetensors.ts';
import { loadModelFromStore } from '../../model/load.ts';
import { createOnnxRunner, residualStreamValues } from '../../model/onnx-runner.ts';
import { hookName } from '../../model/transformer.ts';

const FIXTURES = new URL('../../../test/fixtures/', import.meta.url).pathname;
const LAYERS = 3;

async function golden(arch: string): Promise<{ ids: number[][]; f32(key: string): Promise<Float32Array> }> {
  const file = await readSafetensorsHeader(await pathSource(`${FIXTURES}arch/${arch}/golden.safetensors`));
  const e = file.entries.get('base.input_ids')!;
  const flat = new Int32Array((await e.source.read(e.offset, e.byteLength)).slice().buffer);
  const [B, T] = e.shape as [number, number];
  return {
    ids: Array.from({ length: B }, (_, b) => [...flat.subarray(b * T, (b + 1) * T)]),
    f32: (key) => readEntryF32(file.entries.get(key)!),
  };
}

/** max |a − e| / (abs + rel·|e|): ≤ 1 passes. */
function worst(actual: ArrayLike<number>, expected: ArrayLike<number>, abs: number, rel: number): number {
  expect(actual.length).toBe(expected.length);
  let w = 0;
  for (let i = 0; i < expected.length; i++) {
    const r = Math.abs(actual[i]! - expected[i]!) / (abs + rel * Math.abs(expected[i]!));
    w = Number.isNaN(r) ? Infinity : Math.max(w, r);
  }
  return w;
}

async function ours(dir: string, ids: number[][]): Promise<Record<string, Float32Array>> {
  const be = createCpuBackend();
  const opened = await openModel(await pathFileSet(dir));
  const model = await loadModelFromStore(opened.store, opened.config, be);
  const hooks = Array.from({ length: LAYERS }, (_, i) => hookName('resid_post', i));
  const { logits, cache } = model.runWithCache(ids, hooks);
  const out: Record<string, Float32Array> = { logits: (await be.read(logits!)) as Float32Array };
  for (const h of hooks) out[h] = (await be.read(cache.get(h)!)) as Float32Array;
  return out;
}

async function onnxruntime(dir: string, file: string, ids: number[][]): Promise<Record<string, Float32Array>> {
  const bytes = new Uint8Array(await readFile(`${dir}/${file}`));
  const files = await pathFileSet(dir);
  const externalData = await Promise.all([...files.keys()].filter((n) => n.endsWith('.data')).map(async (path) => ({ path, data: new Uint8Array(await readFile(`${dir}/${path}`)) })));
  const probe = await createOnnxRunner(bytes, { numThreads: 1, name: file, externalData });
  const resid = residualStreamValues(probe.graph).filter((r) => r.hook.endsWith('resid_post'));
  await probe.release();
  expect(resid.map((r) => r.hook)).toEqual(Array.from({ length: LAYERS }, (_, i) => hookName('resid_post', i)));
  const runner = await createOnnxRunner(bytes, { numThreads: 1, name: file, externalData, extraOutputs: resid.map((r) => r.value) });
  const [B, T] = [ids.length, ids[0]!.length];
  const result = await runner.run({ input_ids: { dims: [B, T], data: BigInt64Array.from(ids.flat(), BigInt) } });
  await runner.release();
  const out: Record<string, Float32Array> = { logits: result.logits!.data as Float32Array };
  for (const r of resid) out[r.hook] = result[r.value]!.data as Float32Array;
  return out;
}

describe('ONNX exports: our forward over recovered weights, onnxruntime on the graph, and the reference', () => {
  for (const [variant, arch] of [
    ['llama/base', 'llama'],
    ['llama/legacy', 'llama'],
    ['gpt2', 'gpt2'],
  ] as const) {
    it(`${variant}: logits and residual stream agree within 1e-4`, async () => {
      const g = await golden(arch);
      const dir = `${FIXTURES}onnx/${variant}`;
      const [a, b] = [await ours(dir, g.ids), await onnxruntime(dir, 'model.onnx', g.ids)];
      for (const key of ['logits', ...Array.from({ length: LAYERS }, (_, i) => hookName('resid_post', i))]) {
        const ref = await g.f32(key === 'logits' ? 'base.logits' : `base.resid_post.${key.split('.')[1]}`);
        expect(worst(a[key]!, ref, 1e-4, 1e-4), `ours vs reference, ${key}`).toBeLessThanOrEqual(1);
        expect(worst(b[key]!, ref, 1e-4, 1e-4), `onnxruntime vs reference, ${key}`).toBeLessThanOrEqual(1);
        expect(worst(a[key]!, b[key]!, 1e-4, 1e-4), `ours vs onnxruntime, ${key}`).toBeLessThanOrEqual(1);
      }
    }, 60_000);
  }
});
