import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { EDGE_BYTES, fingerprintFiles, fingerprintModel, SAMPLE_BYTES, SAMPLES, sampleRanges, sha256Hex } from './fingerprint.ts';
import { pathFileSet } from './node-source.ts';
import { bytesSource, type ByteSource, type FileSet } from './source.ts';

const FIXTURES = new URL('../../test/fixtures/', import.meta.url).pathname;
const nodeSha = (data: Uint8Array | string) => createHash('sha256').update(data).digest('hex');

function pseudoRandomBytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** The fingerprint computed independently with node:crypto from whole files in memory. */
function referenceFingerprint(files: Record<string, Uint8Array>) {
  const names = Object.keys(files).sort();
  const perFile = names.map((name) => {
    const bytes = files[name]!;
    const hashes = sampleRanges(bytes.length).map(([o, l]) => nodeSha(bytes.subarray(o, o + l)));
    return { name, size: bytes.length, hashes };
  });
  return {
    fingerprint: nodeSha(perFile.map((f) => `${f.name}:${f.size}:${f.hashes.join(',')}`).join('\n')),
    files: perFile.map((f) => ({ name: f.name, size: f.size, digest: nodeSha(f.hashes.join(',')) })),
  };
}

function countingSet(files: Record<string, Uint8Array>): { set: FileSet; read: () => number } {
  let read = 0;
  const set = new Map<string, ByteSource>(
    Object.entries(files).map(([name, bytes]) => {
      const inner = bytesSource(bytes, name);
      return [name, { name, size: inner.size, read: async (o: number, l: number) => ((read += l), inner.read(o, l)) }];
    }),
  );
  return { set, read: () => read };
}

describe('sha256Hex', () => {
  it('agrees with node:crypto on strings and bytes', async () => {
    expect(await sha256Hex('abc')).toBe(nodeSha('abc'));
    expect(await sha256Hex('')).toBe(nodeSha(''));
    const bytes = pseudoRandomBytes(100_001, 7);
    expect(await sha256Hex(bytes)).toBe(nodeSha(bytes));
  });
});

describe('sampleRanges', () => {
  it('reads a small file whole', () => {
    expect(sampleRanges(0)).toEqual([[0, 0]]);
    expect(sampleRanges(2 * EDGE_BYTES)).toEqual([[0, 2 * EDGE_BYTES]]);
  });

  it('reads both edges and evenly spread blocks of a large file, all inside it', () => {
    const size = 3 * 2 ** 30 + 12345;
    const ranges = sampleRanges(size);
    expect(ranges).toHaveLength(2 + SAMPLES);
    expect(ranges[0]).toEqual([0, EDGE_BYTES]);
    expect(ranges[1]).toEqual([size - EDGE_BYTES, EDGE_BYTES]);
    const starts = ranges.slice(2).map(([o, l]) => {
      expect(l).toBe(SAMPLE_BYTES);
      expect(o + l).toBeLessThanOrEqual(size);
      return o;
    });
    const gaps = starts.slice(1).map((s, i) => s - starts[i]!);
    const step = (size - SAMPLE_BYTES) / (SAMPLES + 1);
    for (const g of gaps) expect(Math.abs(g - step)).toBeLessThanOrEqual(1);
  });
});

describe('fingerprintModel', () => {
  const big = pseudoRandomBytes(3 * 2 ** 20 + 17, 1);
  const config = new TextEncoder().encode('{"model_type":"llama"}');

  it('matches an independent computation and reads only the sampled bytes', async () => {
    const files = { 'model.safetensors': big, 'config.json': config };
    const { set, read } = countingSet(files);
    const fp = await fingerprintModel(set);
    expect(fp).toEqual(referenceFingerprint(files));
    expect(fp.files.map((f) => f.name)).toEqual(['config.json', 'model.safetensors']);
    expect(read()).toBe(config.length + 2 * EDGE_BYTES + SAMPLES * SAMPLE_BYTES);
    expect(await fingerprintFiles(set)).toBe(fp.fingerprint);
  });

  it('does not depend on the order of the file set', async () => {
    const a = await fingerprintModel(countingSet({ 'config.json': config, 'model.safetensors': big }).set);
    const b = await fingerprintModel(countingSet({ 'model.safetensors': big, 'config.json': config }).set);
    expect(b).toEqual(a);
  });

  it('changes with a byte in a sampled block, a name or a size; a file digest ignores the name', async () => {
    const base = await fingerprintModel(countingSet({ 'model.safetensors': big }).set);
    const [, , firstSample] = sampleRanges(big.length);
    const edited = big.slice();
    edited[firstSample![0] + 10]! ^= 1;
    const changed = await fingerprintModel(countingSet({ 'model.safetensors': edited }).set);
    expect(changed.fingerprint).not.toBe(base.fingerprint);
    expect(changed.files[0]!.digest).not.toBe(base.files[0]!.digest);

    const renamed = await fingerprintModel(countingSet({ 'weights.safetensors': big }).set);
    expect(renamed.fingerprint).not.toBe(base.fingerprint);
    expect(renamed.files[0]!.digest).toBe(base.files[0]!.digest);

    const longer = await fingerprintModel(countingSet({ 'model.safetensors': new Uint8Array([...big.subarray(0, 1000), 0]) }).set);
    const shorter = await fingerprintModel(countingSet({ 'model.safetensors': big.subarray(0, 1000) }).set);
    expect(longer.fingerprint).not.toBe(shorter.fingerprint);
  });

  it('tells the demo base from its fine-tune, and is stable across reads of the same folder', async () => {
    const base = await fingerprintModel(await pathFileSet(`${FIXTURES}demo/base`));
    const again = await fingerprintModel(await pathFileSet(`${FIXTURES}demo/base`));
    const ft = await fingerprintModel(await pathFileSet(`${FIXTURES}demo/ocean/model`));
    expect(again).toEqual(base);
    expect(ft.fingerprint).not.toBe(base.fingerprint);
    const weights = (fp: typeof base) => fp.files.find((f) => f.name === 'model.safetensors')!;
    expect(weights(ft).digest).not.toBe(weights(base).digest);
    const tokenizer = (fp: typeof base) => fp.files.find((f) => f.name === 'tokenizer.json')!;
    expect(tokenizer(ft).digest).toBe(tokenizer(base).digest);
    const onDisk = readFileSync(`${FIXTURES}demo/base/model.safetensors`);
    expect(weights(base)).toEqual(referenceFingerprint({ 'model.safetensors': onDisk }).files[0]);
  });
});
