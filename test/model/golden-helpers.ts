// Reading the reference captures of test/fixtures (golden.safetensors) and comparing activations.
import { pathFileSet, pathSource } from '../../src/io/node-source.ts';
import { readEntryF32, readSafetensorsHeader } from '../../src/io/safetensors.ts';
import type { Backend, Tensor } from '../../src/model/backend.ts';
import { loadModel, type LoadOptions } from '../../src/model/load.ts';
import type { Transformer } from '../../src/model/transformer.ts';

export const FIXTURES = new URL('../fixtures/', import.meta.url).pathname;

export interface Golden {
  keys: readonly string[];
  f32(key: string): Promise<Float32Array>;
  ids(prefix: string): Promise<{ ids: Int32Array; batch: number; seq: number }>;
}

export async function readGolden(path: string): Promise<Golden> {
  const file = await readSafetensorsHeader(await pathSource(path));
  const entry = (key: string) => {
    const e = file.entries.get(key);
    if (!e) throw new Error(`${path}: no key ${key}`);
    return e;
  };
  return {
    keys: [...file.entries.keys()],
    f32: (key) => readEntryF32(entry(key)),
    async ids(prefix) {
      const e = entry(`${prefix}input_ids`);
      const bytes = await e.source.read(e.offset, e.byteLength);
      const ids = new Int32Array(bytes.slice().buffer);
      return { ids, batch: e.shape[0]!, seq: e.shape[1]! };
    },
  };
}

/** Golden key ("resid_pre.2") → hook point name ("blocks.2.hook_resid_pre"). */
export function hookOf(key: string): string {
  if (key === 'final_norm') return 'ln_final.hook_normalized';
  if (key === 'logits') return 'logits';
  const [kind, layer] = key.split('.');
  return `blocks.${layer}.hook_${kind}`;
}

export interface Diff {
  maxAbs: number;
  /** Largest |a − e| / (abs + rel·|e|): at most 1 when within tolerance. */
  worst: number;
  at: number;
}

export function diff(actual: ArrayLike<number>, expected: ArrayLike<number>, abs: number, rel: number): Diff {
  if (actual.length !== expected.length) throw new Error(`length ${actual.length} vs ${expected.length}`);
  let maxAbs = 0;
  let worst = 0;
  let at = -1;
  for (let i = 0; i < expected.length; i++) {
    const e = Math.abs(actual[i]! - expected[i]!);
    const ratio = e / (abs + rel * Math.abs(expected[i]!));
    if (!(ratio <= worst)) {
      worst = Number.isNaN(ratio) ? Infinity : ratio;
      at = i;
    }
    if (e > maxAbs) maxAbs = e;
  }
  return { maxAbs, worst, at };
}

/**
 * Runs the model on the golden input ids and compares every captured hook with `prefix`-keys (or only the keys named).
 * Returns the per-key differences; the caller asserts them.
 */
export async function compareWithGolden(model: Transformer, golden: Golden, prefix: string, abs: number, rel: number, only?: readonly string[]): Promise<Map<string, Diff>> {
  const input = await golden.ids(golden.keys.includes(`${prefix}input_ids`) ? prefix : golden.keys.find((k) => k.endsWith('input_ids'))!.replace('input_ids', ''));
  const keys = golden.keys
    .filter((k) => k.startsWith(prefix) && !k.endsWith('input_ids'))
    .map((k) => k.slice(prefix.length))
    .filter((k) => (only ? only.includes(k) : true));
  const { logits, cache } = model.runWithCache(input, keys.map(hookOf));
  const out = new Map<string, Diff>();
  for (const key of keys) {
    const t = cache.get(hookOf(key))!;
    out.set(key, diff((await model.backend.read(t)) as Float32Array, await golden.f32(prefix + key), abs, rel));
  }
  for (const t of cache.values()) model.backend.dispose(t);
  if (logits) model.backend.dispose(logits);
  return out;
}

export async function loadFixture(dir: string, backend: Backend, opts: LoadOptions = {}): Promise<Transformer> {
  return loadModel(await pathFileSet(FIXTURES + dir), backend, opts);
}

export function failures(diffs: Map<string, Diff>): string[] {
  return [...diffs].filter(([, d]) => !(d.worst <= 1)).map(([k, d]) => `${k}: max |err| ${d.maxAbs.toExponential(2)} (${d.worst.toFixed(2)}× tolerance at ${d.at})`);
}

export type { Tensor };
