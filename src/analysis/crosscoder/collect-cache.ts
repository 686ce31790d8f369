// Paired activations as one safetensors file, so a collection is made once and reused: the command
// line keeps it in a cache folder, the browser can keep the same bytes in IndexedDB or OPFS.
//
//   base, ft        [rows, d]  F32  raw activations of each model
//   tokens, sample, position   [rows]  I32
//   norm_mean [2, d], norm_scale [2], target_rms []  F32   the normalisation (model.ts)
//   __metadata__: format "neurodiff-activations", version, key, layer, hook, samples, d, rows, and
//                 the collection's info
//
// The key is a hash of everything the rows depend on: both models' file fingerprints, the corpus
// bytes, the layer, hook and collection settings.
import { readEntryF32, readSafetensorsHeader, writeSafetensors, type SafetensorsEntry } from '../../io/safetensors.ts';
import { FormatError, type ByteSource } from '../../io/source.ts';
import { sha256Hex } from '../../io/fingerprint.ts';
import type { PairedActivations } from './collect.ts';

export { fingerprintFiles, sha256Hex } from '../../io/fingerprint.ts';

const FORMAT = 'neurodiff-activations';
const VERSION = '1';

export interface ActivationKeyParts {
  readonly base: string;
  readonly ft: string;
  readonly corpus: string;
  readonly layer: number;
  readonly hook: string;
  readonly settings: Readonly<Record<string, number | string | boolean | null>>;
}

export async function activationCacheKey(parts: ActivationKeyParts): Promise<string> {
  const settings = Object.fromEntries(Object.entries(parts.settings).sort(([a], [b]) => (a < b ? -1 : 1)));
  const text = JSON.stringify({ format: FORMAT, version: VERSION, ...parts, settings });
  return (await sha256Hex(text)).slice(0, 32);
}

export function encodeActivations(acts: PairedActivations, key: string): Uint8Array {
  const { d, rows, normalization: n } = acts;
  const mean = new Float32Array(2 * d);
  mean.set(n.mean[0], 0);
  mean.set(n.mean[1], d);
  return writeSafetensors(
    [
      { name: 'base', shape: [rows, d], data: acts.base },
      { name: 'ft', shape: [rows, d], data: acts.ft },
      { name: 'tokens', shape: [rows], data: acts.tokens },
      { name: 'sample', shape: [rows], data: acts.sample },
      { name: 'position', shape: [rows], data: acts.position },
      { name: 'norm_mean', shape: [2, d], data: mean },
      { name: 'norm_scale', shape: [2], data: new Float32Array(n.scale) },
      { name: 'target_rms', shape: [], data: new Float32Array([n.targetRms]) },
    ],
    { ...acts.info, format: FORMAT, version: VERSION, key, layer: String(acts.layer), hook: acts.hook, samples: String(acts.samples), d: String(d), rows: String(rows) },
  );
}

/** Reads a file written by encodeActivations; with `expectKey`, a file made for other inputs is refused. */
export async function decodeActivations(source: ByteSource, expectKey?: string, signal?: AbortSignal): Promise<PairedActivations> {
  const file = await readSafetensorsHeader(source);
  const name = source.name;
  const meta = file.metadata;
  if (meta.format !== FORMAT) throw new FormatError(name, `not a NeuroDiff activation file (__metadata__.format is ${meta.format === undefined ? 'missing' : `"${meta.format}"`}, expected "${FORMAT}")`);
  if (meta.version !== VERSION) throw new FormatError(name, `activation file version ${meta.version ?? 'missing'}, this reader knows version ${VERSION}`);
  if (expectKey !== undefined && meta.key !== expectKey) throw new FormatError(name, `was collected for other models, corpus or settings (key ${meta.key ?? 'missing'}, expected ${expectKey})`);
  const d = Number(meta.d);
  const rows = Number(meta.rows);
  const layer = Number(meta.layer);
  const samples = Number(meta.samples);
  for (const [k, v] of [['d', d], ['rows', rows], ['layer', layer], ['samples', samples]] as const) {
    if (!Number.isInteger(v) || v < 0) throw new FormatError(name, `__metadata__.${k} must be a non-negative integer, found "${meta[k] ?? ''}"`);
  }
  if (typeof meta.hook !== 'string' || meta.hook === '') throw new FormatError(name, '__metadata__.hook is missing');
  const entry = (key: string, dtype: 'F32' | 'I32', shape: number[]): SafetensorsEntry => {
    const e = file.entries.get(key);
    if (!e) throw new FormatError(name, `no tensor "${key}"`);
    if (e.dtype !== dtype || e.shape.length !== shape.length || e.shape.some((s, i) => s !== shape[i])) {
      throw new FormatError(name, `tensor "${key}" is ${e.dtype}[${e.shape.join(', ')}], expected ${dtype}[${shape.join(', ')}]`);
    }
    return e;
  };
  const f32 = (key: string, shape: number[]) => readEntryF32(entry(key, 'F32', shape), signal);
  const i32 = async (key: string, shape: number[]) => {
    const e = entry(key, 'I32', shape);
    const bytes = await e.source.read(e.offset, e.byteLength, signal);
    return new Int32Array(bytes.slice().buffer);
  };
  const mean = await f32('norm_mean', [2, d]);
  const scale = await f32('norm_scale', [2]);
  const targetRms = (await f32('target_rms', []))[0]!;
  if (!(scale[0]! > 0 && scale[1]! > 0 && targetRms > 0)) throw new FormatError(name, `the normalisation must have positive scales, found [${scale.join(', ')}] and target RMS ${targetRms}`);
  const sample = await i32('sample', [rows]);
  const position = await i32('position', [rows]);
  const tokens = await i32('tokens', [rows]);
  for (let r = 1; r < rows; r++) {
    if (sample[r]! < sample[r - 1]! || (sample[r] === sample[r - 1] && position[r]! <= position[r - 1]!)) {
      throw new FormatError(name, `rows must run sample by sample and position by position; row ${r} does not`);
    }
  }
  const info: Record<string, string> = {};
  for (const [k, v] of Object.entries(meta)) if (!['format', 'version', 'key', 'layer', 'hook', 'samples', 'd', 'rows'].includes(k)) info[k] = v;
  return {
    d,
    rows,
    base: await f32('base', [rows, d]),
    ft: await f32('ft', [rows, d]),
    tokens,
    sample,
    position,
    normalization: { mean: [mean.slice(0, d), mean.slice(d)], scale: [scale[0]!, scale[1]!], targetRms },
    layer,
    hook: meta.hook,
    samples,
    info,
  };
}
