// Test support: fixture model pairs from test/fixtures and reference captures (golden.safetensors).
import { pathFileSet, pathSource } from '../../io/node-source.ts';
import { readEntryF32, readSafetensorsHeader } from '../../io/safetensors.ts';
import { readHfTokenizer, type Tokenizer } from '../../io/tokenizer.ts';
import type { Backend } from '../../model/backend.ts';
import { loadModel } from '../../model/load.ts';
import { readLoraAdapter } from '../../model/lora.ts';
import type { ModelPair } from './run.ts';

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
