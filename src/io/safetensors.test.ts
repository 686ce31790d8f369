import { describe, expect, it } from 'vitest';
import { openSafetensorsFolder, readSafetensorsHeader, writeSafetensors } from './safetensors.ts';
import { pathFileSet } from './node-source.ts';
import { bytesSource } from './source.ts';

describe('safetensors', () => {
  it('round-trips written tensors', async () => {
    const data = new Float32Array([1, -2.5, 3, 4, 5, 6]);
    const bytes = writeSafetensors([{ name: 'w', shape: [2, 3], data }], { note: 'x' });
    const f = await readSafetensorsHeader(bytesSource(bytes, 't.safetensors'));
    expect(f.metadata.note).toBe('x');
    const store = await openSafetensorsFolder(new Map([['model.safetensors', bytesSource(bytes, 'model.safetensors')]]));
    expect([...(await store.readF32('w'))]).toEqual([...data]);
  });

  it('reads a real checkpoint', async () => {
    const store = await openSafetensorsFolder(await pathFileSet('test/fixtures/arch/llama/base'));
    const emb = store.tensors.get('model.embed_tokens.weight');
    expect(emb?.shape).toEqual([256, 64]);
    const w = await store.readF32('model.embed_tokens.weight');
    expect(w.length).toBe(256 * 64);
    expect(Number.isFinite(w[0])).toBe(true);
  });

  it('rejects a truncated file with a message naming it', async () => {
    const bytes = writeSafetensors([{ name: 'w', shape: [4], data: new Float32Array(4) }]);
    await expect(readSafetensorsHeader(bytesSource(bytes.subarray(0, bytes.length - 3), 'cut.safetensors'))).rejects.toThrow(/cut\.safetensors.*truncated/);
    await expect(readSafetensorsHeader(bytesSource(bytes.subarray(0, 5), 'tiny.safetensors'))).rejects.toThrow(/tiny\.safetensors/);
  });

  it('rejects a header that lies about sizes', async () => {
    const bytes = writeSafetensors([{ name: 'w', shape: [4], data: new Float32Array(4) }]);
    const text = new TextDecoder().decode(bytes.subarray(8, 8 + Number(new DataView(bytes.buffer).getBigUint64(0, true))));
    const lied = text.replace('[4]', '[5]');
    const patched = new Uint8Array(bytes);
    patched.set(new TextEncoder().encode(lied), 8);
    await expect(readSafetensorsHeader(bytesSource(patched, 'lie.safetensors'))).rejects.toThrow(/lies about sizes/);
  });

  it('rejects garbage', async () => {
    const junk = new TextEncoder().encode('this is not a model file at all, just text');
    await expect(readSafetensorsHeader(bytesSource(junk, 'notes.txt'))).rejects.toThrow(/notes\.txt/);
  });
});
