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
import { FormatError, type ByteSource, type FileSet } from '../../io/source.ts';
import type { PairedActivations } from './collect.ts';

const FORMAT = 'neurodiff-activations';
const VERSION = '1';

async function sha256(data: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest('SHA-256', data as Uint8Array<ArrayBuffer>));
}

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

export async function sha256Hex(data: Uint8Array | string): Promise<string> {
  return hex(await sha256(typeof data === 'string' ? new TextEncoder().encode(data) : data));
}

/**
 * A cheap identity for a model folder that does not read whole checkpoints: every file's name and
 * size, its first and last 64 KiB (headers, configs, the last tensors) and 16 blocks of 4 KiB spread
 * over it. A fine-tune changes nearly every weight, so the sampled bytes tell checkpoints apart.
 */
export async function fingerprintFiles(files: FileSet, signal?: AbortSignal): Promise<string> {
  const parts: string[] = [];
  for (const name of [...files.keys()].sort()) {
    const src = files.get(name)!;
    const ranges: Array<[number, number]> = [];
    const edge = 64 * 1024;
    if (src.size <= 2 * edge) ranges.push([0, src.size]);
    else {
      ranges.push([0, edge], [src.size - edge, edge]);
      const block = 4096;
      for (let i = 1; i <= 16; i++) ranges.push([Math.floor(((src.size - block) * i) / 17), block]);
    }
    const chunks: string[] = [];
    for (const [offset, length] of ranges) chunks.push(await sha256Hex(await src.read(offset, length, signal)));
    parts.push(`${name}:${src.size}:${chunks.join(',')}`);
  }
  return sha256Hex(parts.join('\n'));
}

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
