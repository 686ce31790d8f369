// A cheap identity for a model's files that never reads whole checkpoints, for permalinks and
// result caches: each file's name, size, and SHA-256 of its first and last 64 KiB (headers,
// configs, the last tensors) and 16 blocks of 4 KiB spread over it. A fine-tune changes nearly
// every weight, so the sampled bytes tell checkpoints apart; a multi-GB file costs about 1.2 MB
// of reads. crypto.subtle exists in browsers, workers and Node.
import type { ByteSource, FileSet } from './source.ts';

export const EDGE_BYTES = 64 * 1024;
export const SAMPLE_BYTES = 4096;
export const SAMPLES = 16;

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

export async function sha256Hex(data: Uint8Array | string): Promise<string> {
  const bytes = typeof data === 'string' ? new TextEncoder().encode(data) : data;
  return hex(new Uint8Array(await crypto.subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>)));
}

/** The [offset, length] ranges read from a file of `size` bytes: all of it when it is small. */
export function sampleRanges(size: number): [number, number][] {
  if (size <= 2 * EDGE_BYTES) return [[0, size]];
  const ranges: [number, number][] = [
    [0, EDGE_BYTES],
    [size - EDGE_BYTES, EDGE_BYTES],
  ];
  for (let i = 1; i <= SAMPLES; i++) ranges.push([Math.floor(((size - SAMPLE_BYTES) * i) / (SAMPLES + 1)), SAMPLE_BYTES]);
  return ranges;
}

export interface FileFingerprint {
  /** The path in the file set ("config.json", "model-00001-of-00002.safetensors"). */
  name: string;
  size: number;
  /** SHA-256 (hex) of the sampled bytes only: equal content under another name has the same digest. */
  digest: string;
}

export interface ModelFingerprint {
  /** SHA-256 (hex) over every file's name, size and sampled bytes. */
  fingerprint: string;
  /** By name, sorted. */
  files: FileFingerprint[];
}

async function sampleHashes(src: ByteSource, signal?: AbortSignal): Promise<string[]> {
  return Promise.all(sampleRanges(src.size).map(async ([offset, length]) => sha256Hex(await src.read(offset, length, signal))));
}

export async function fingerprintModel(files: FileSet, signal?: AbortSignal): Promise<ModelFingerprint> {
  const names = [...files.keys()].sort();
  // One file at a time (its ranges together): hundreds of shards must not open hundreds of reads at once.
  const hashes: string[][] = [];
  for (const name of names) hashes.push(await sampleHashes(files.get(name)!, signal));
  const lines = names.map((name, i) => `${name}:${files.get(name)!.size}:${hashes[i]!.join(',')}`);
  const fileDigests = await Promise.all(hashes.map((h) => sha256Hex(h.join(','))));
  return {
    fingerprint: await sha256Hex(lines.join('\n')),
    files: names.map((name, i) => ({ name, size: files.get(name)!.size, digest: fileDigests[i]! })),
  };
}

export async function fingerprintFiles(files: FileSet, signal?: AbortSignal): Promise<string> {
  return (await fingerprintModel(files, signal)).fingerprint;
}
