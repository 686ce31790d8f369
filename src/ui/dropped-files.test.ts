import { describe, expect, it } from 'vitest';
import { filesFromDataTransfer, filesFromInput, toFileSet, type DroppedFile } from './dropped-files.ts';

const blob = (n: number) => new Blob([new Uint8Array(n)]);
const file = (name: string, n: number, relativePath = '') => {
  const f = new File([new Uint8Array(n)], name);
  Object.defineProperty(f, 'webkitRelativePath', { value: relativePath });
  return f;
};

describe('toFileSet', () => {
  it('keys a single dropped folder by paths inside it, sorted, with the path as the source name', async () => {
    const set = toFileSet([
      { path: 'Llama-3.2-1B/model-00002-of-00002.safetensors', file: blob(5) },
      { path: 'Llama-3.2-1B/config.json', file: blob(2) },
      { path: 'Llama-3.2-1B/model-00001-of-00002.safetensors', file: blob(7) },
      { path: 'Llama-3.2-1B/original/params.json', file: blob(1) },
    ]);
    expect([...set.keys()]).toEqual(['config.json', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors', 'original/params.json']);
    const shard = set.get('model-00001-of-00002.safetensors');
    expect(shard?.name).toBe('model-00001-of-00002.safetensors');
    expect(shard?.size).toBe(7);
    expect((await shard!.read(2, 3)).length).toBe(3);
  });

  it('keeps paths as dropped when the drop holds several roots', () => {
    const set = toFileSet([
      { path: 'model.gguf', file: blob(3) },
      { path: 'tok/tokenizer.json', file: blob(1) },
    ]);
    expect([...set.keys()]).toEqual(['model.gguf', 'tok/tokenizer.json']);
  });

  it('keeps the name of a single dropped file', () => {
    expect([...toFileSet([{ path: 'stories260K.bin', file: blob(1) }]).keys()]).toEqual(['stories260K.bin']);
  });

  it('skips hidden files and folders such as .git and .cache', () => {
    const set = toFileSet([
      { path: 'm/.git/objects/ab/cdef', file: blob(100) },
      { path: 'm/.cache/huggingface/download/x.lock', file: blob(1) },
      { path: 'm/.DS_Store', file: blob(1) },
      { path: 'm/config.json', file: blob(2) },
    ]);
    expect([...set.keys()]).toEqual(['config.json']);
  });

  it('gives an empty set for an empty drop', () => {
    expect(toFileSet([]).size).toBe(0);
  });
});

describe('filesFromInput', () => {
  it('uses webkitRelativePath from a folder input and the name from a files input', () => {
    const paths = filesFromInput([file('config.json', 1, 'base/config.json'), file('a.bin', 1)]).map((d) => d.path);
    expect(paths).toEqual(['base/config.json', 'a.bin']);
  });
});

// Minimal stand-ins for the File and Directory Entries API as Chromium hands it to a drop handler.
function fileEntry(name: string, size: number) {
  return { name, isFile: true, isDirectory: false, file: (ok: (f: File) => void) => ok(new File([new Uint8Array(size)], name)) };
}
function dirEntry(name: string, children: unknown[], batch = 2) {
  return {
    name,
    isFile: false,
    isDirectory: true,
    createReader() {
      let at = 0;
      return {
        readEntries(ok: (entries: unknown[]) => void) {
          const next = children.slice(at, at + batch);
          at += next.length;
          setTimeout(() => ok(next));
        },
      };
    },
  };
}
function dataTransfer(items: { entry: unknown; file: File | null }[], files: File[] = []): DataTransfer {
  return {
    items: items.map((i) => ({ kind: 'file', webkitGetAsEntry: () => i.entry, getAsFile: () => i.file })),
    files,
  } as unknown as DataTransfer;
}

describe('filesFromDataTransfer', () => {
  it('walks a dropped folder, reading every batch of entries', async () => {
    const shards = Array.from({ length: 5 }, (_, i) => fileEntry(`model-0000${i + 1}-of-00005.safetensors`, i + 1));
    const folder = dirEntry('Qwen2.5-0.5B', [fileEntry('config.json', 10), ...shards, dirEntry('sub', [fileEntry('x.txt', 1)])]);
    const dropped: DroppedFile[] = await filesFromDataTransfer(dataTransfer([{ entry: folder, file: null }]));
    expect(dropped.map((d) => [d.path, d.file.size])).toEqual([
      ['Qwen2.5-0.5B/config.json', 10],
      ...shards.map((s, i) => [`Qwen2.5-0.5B/${s.name}`, i + 1]),
      ['Qwen2.5-0.5B/sub/x.txt', 1],
    ]);
    expect([...toFileSet(dropped).keys()]).toContain('sub/x.txt');
  });

  it('takes the file itself when an item has no entry, and dt.files when there are no items', async () => {
    const lone = new File([new Uint8Array(4)], 'model.gguf');
    expect((await filesFromDataTransfer(dataTransfer([{ entry: null, file: lone }]))).map((d) => d.path)).toEqual(['model.gguf']);
    expect((await filesFromDataTransfer(dataTransfer([], [lone]))).map((d) => d.path)).toEqual(['model.gguf']);
  });

  it('reads the items before the first await, as the browser empties them after the event', async () => {
    const folder = dirEntry('m', [fileEntry('config.json', 1)]);
    const items = [{ kind: 'file', webkitGetAsEntry: () => folder, getAsFile: () => null }];
    const dt = { items, files: [] } as unknown as DataTransfer;
    const pending = filesFromDataTransfer(dt);
    items.length = 0;
    expect((await pending).map((d) => d.path)).toEqual(['m/config.json']);
  });

  it('rejects with the reader error when a folder cannot be read', async () => {
    const broken = { name: 'm', isFile: false, isDirectory: true, createReader: () => ({ readEntries: (_ok: unknown, fail: (e: Error) => void) => fail(new Error('NotReadableError')) }) };
    await expect(filesFromDataTransfer(dataTransfer([{ entry: broken, file: null }]))).rejects.toThrow('NotReadableError');
  });
});
