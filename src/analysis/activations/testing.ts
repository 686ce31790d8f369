// Test support: fixture model pairs from test/fixtures and reference captures (golden.safetensors).
import { pathFileSet, pathSource } from '../../io/node-source.ts';
import { readEntryF32, readSafetensorsHeader } from '../../io/safetensors.ts';
import { readHfTokenizer, type Tokenizer } from '../../io/tokenizer.ts';
import type { Backend, Tensor } from '../../model/backend.ts';
import { loadModel } from '../../model/load.ts';
import { readLoraAdapter } from '../../model/lora.ts';
import { hookName, type KvCache, type Transformer } from '../../model/transformer.ts';
import type { PatchscopeResult } from './adl.ts';
import { readF32, type ModelPair } from './run.ts';

export const FIXTURES = new URL('../../../test/fixtures/', import.meta.url).pathname;

export const ARCHS = ['gpt2', 'llama', 'mistral', 'qwen2', 'qwen3', 'phi3', 'gemma2', 'gemma3'] as const;

/** arch/<name>/base and ft: equal except two block weights (embeddings, final norm and unembedding shared). */
export async function archPair(arch: string, be: Backend): Promise<ModelPair> {
  return {
    base: await loadModel(await pathFileSet(`${FIXTURES}arch/${arch}/base`), be),
    ft: await loadModel(await pathFileSet(`${FIXTURES}arch/${arch}/ft`), be),
  };
}

/** The demo base with its ocean full fine-tune, or with the space LoRA adapter merged. */
export async function demoPair(organism: 'ocean' | 'space', be: Backend): Promise<ModelPair & { tokenizer: Tokenizer }> {
  const baseFiles = await pathFileSet(`${FIXTURES}demo/base`);
  const base = await loadModel(baseFiles, be);
  const ft =
    organism === 'ocean'
      ? await loadModel(await pathFileSet(`${FIXTURES}demo/ocean/model`), be)
      : await loadModel(baseFiles, be, { adapter: await readLoraAdapter(await pathFileSet(`${FIXTURES}demo/space/adapter`)) });
  return { base, ft, tokenizer: (await readHfTokenizer(baseFiles))! };
}

export async function readCaptures(path: string): Promise<{ f32(key: string): Promise<Float32Array>; ids(prefix: string): Promise<number[][]>; shape(key: string): readonly number[] }> {
  const file = await readSafetensorsHeader(await pathSource(path));
  const entry = (key: string) => {
    const e = file.entries.get(key);
    if (!e) throw new Error(`${path}: no key ${key}`);
    return e;
  };
  return {
    f32: (key) => readEntryF32(entry(key)),
    shape: (key) => entry(key).shape,
    async ids(prefix) {
      const e = entry(`${prefix}input_ids`);
      const flat = new Int32Array((await e.source.read(e.offset, e.byteLength)).slice().buffer);
      const [B, T] = e.shape as [number, number];
      return Array.from({ length: B }, (_, b) => [...flat.subarray(b * T, (b + 1) * T)]);
    },
  };
}

/** |a − e| ≤ abs + rel·|e| for every element; returns the worst ratio (≤ 1 passes). */
export function worstRatio(actual: ArrayLike<number>, expected: ArrayLike<number>, abs: number, rel: number): number {
  if (actual.length !== expected.length) throw new Error(`length ${actual.length} vs ${expected.length}`);
  let worst = 0;
  for (let i = 0; i < expected.length; i++) {
    const r = Math.abs(actual[i]! - expected[i]!) / (abs + rel * Math.abs(expected[i]!));
    if (!(r <= worst)) worst = Number.isNaN(r) ? Infinity : r;
  }
  return worst;
}

/** Softmax of each row of a [rows, V] array, in float64. */
export function softmaxRows(logits: Float32Array, V: number): Float64Array {
  const out = new Float64Array(logits.length);
  for (let r = 0; r < logits.length / V; r++) {
    let m = -Infinity;
    for (let v = 0; v < V; v++) m = Math.max(m, logits[r * V + v]!);
    let s = 0;
    for (let v = 0; v < V; v++) s += Math.exp(logits[r * V + v]! - m);
    for (let v = 0; v < V; v++) out[r * V + v] = Math.exp(logits[r * V + v]! - m) / s;
  }
  return out;
}

/**
 * Patchscope's next-token distributions the unbatched way: for each prompt and scale, one single-token
 * step over its own copy of the prompt prefix's KV cache. [prompt][scale] → probabilities [V] (float64).
 */
export async function patchscopePerScale(model: Transformer, latent: Float32Array, layer: number, prompts: readonly (readonly number[])[], scales: readonly number[]): Promise<Float64Array[][]> {
  const be = model.backend;
  const d = model.config.dModel;
  const out: Float64Array[][] = [];
  for (const prompt of prompts) {
    const prefix = model.newKvCache();
    if (prompt.length > 1) be.dispose(model.forward([prompt.slice(0, -1)], { kvCache: prefix, lastPositionOnly: true }).logits!);
    const row: Float64Array[] = [];
    for (const s of scales) {
      const copy = (t: Tensor | undefined) => (t ? be.scale(t, 1) : undefined);
      const step: KvCache = { length: prefix.length, k: prefix.k.map(copy), v: prefix.v.map(copy) };
      const patch = () => be.fromArray(Float32Array.from(latent, (x) => x * s), [1, 1, d]);
      const { logits } = model.forward([[prompt[prompt.length - 1]!]], { kvCache: step, lastPositionOnly: true, hooks: { [hookName('resid_post', layer)]: patch } });
      model.disposeKvCache(step);
      row.push(softmaxRows(await readF32(be, logits!), model.config.vocab));
    }
    model.disposeKvCache(prefix);
    out.push(row);
  }
  return out;
}

/**
 * A Patchscope run with intersectionTopK = V against per-scale distributions: every reported probability
 * is the mean over the prompts, and the j-th reported token has the j-th largest mean (near-ties may swap).
 */
export function patchscopeMismatches(r: PatchscopeResult, reference: Float64Array[][], abs: number, rel: number): string[] {
  const bad: string[] = [];
  const near = (a: number, b: number) => Math.abs(a - b) <= abs + rel * Math.abs(b);
  r.scales.forEach((s, si) => {
    const V = reference[0]![si]!.length;
    const mean = Float64Array.from({ length: V }, (_, v) => reference.reduce((a, p) => a + p[si]![v]!, 0) / reference.length);
    const order = Float64Array.from(mean).sort().reverse();
    s.top.forEach((t, j) => {
      if (!near(t.prob, mean[t.id]!)) bad.push(`scale ${s.scale}: token ${t.id} has ${t.prob}, expected ${mean[t.id]}`);
      if (!near(t.prob, order[j]!)) bad.push(`scale ${s.scale}: place ${j} holds ${t.prob}, expected ${order[j]}`);
    });
  });
  return bad;
}
