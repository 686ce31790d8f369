// Byte sources over local paths, for the command line and tests. Node only: the browser bundle never imports this file.
import { open, readdir, realpath, stat } from 'node:fs/promises';
import { basename, dirname, join, relative, resolve, sep } from 'node:path';
import { checkRange, FormatError, type ByteSource, type FileSet } from './source.ts';

export async function pathSource(path: string, name = basename(path)): Promise<ByteSource> {
  const { size } = await stat(path);
  const src: ByteSource = {
    name,
    size,
    async read(offset, length) {
      checkRange(src, offset, length);
      const fh = await open(path, 'r');
      try {
        const buf = new Uint8Array(length);
        let done = 0;
        while (done < length) {
          const { bytesRead } = await fh.read(buf, done, length - done, offset + done);
          if (bytesRead === 0) break;
          done += bytesRead;
        }
        return buf;
      } finally {
        await fh.close();
      }
    },
  };
  return src;
}

/**
 * The folder symbolic links may point into: for a Hugging Face hub cache snapshot
 * (`models--org--name/snapshots/<revision>/`, whose files link to `../../blobs/`), the cache entry
 * two levels above `snapshots/`; for any other folder, the folder itself.
 */
export async function symlinkRoot(folder: string): Promise<string> {
  const abs = resolve(folder);
  const parent = dirname(abs);
  const root = basename(parent) === 'snapshots' ? dirname(parent) : abs;
  return realpath(root);
}

const inside = (root: string, path: string) => path === root || path.startsWith(root.endsWith(sep) ? root : root + sep);

/**
 * Every file under a folder, by path relative to it. A file path gives a one-file set. Symbolic
 * links are followed where their target stays inside symlinkRoot (a hub cache snapshot's blobs);
 * one pointing elsewhere is refused, naming it and its target.
 */
export async function pathFileSet(path: string): Promise<FileSet> {
  const files = new Map<string, ByteSource>();
  const st = await stat(path);
  if (st.isFile()) {
    files.set(basename(path), await pathSource(path));
    return files;
  }
  const root = await symlinkRoot(path);
  const seen = new Set<string>();
  const walk = async (dir: string): Promise<void> => {
    const real = await realpath(dir);
    if (seen.has(real)) return;
    seen.add(real);
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const full = join(dir, entry.name);
      const rel = relative(path, full).split('\\').join('/');
      let kind: 'file' | 'dir' | 'other' = entry.isDirectory() ? 'dir' : entry.isFile() ? 'file' : 'other';
      if (entry.isSymbolicLink()) {
        let target: string;
        try {
          target = await realpath(full);
        } catch {
          throw new FormatError(rel, 'is a symbolic link whose target does not exist');
        }
        if (!inside(root, target)) throw new FormatError(rel, `is a symbolic link to ${target}, outside ${root}: not followed`);
        const t = await stat(target);
        kind = t.isDirectory() ? 'dir' : t.isFile() ? 'file' : 'other';
      }
      if (kind === 'dir') await walk(full);
      else if (kind === 'file') files.set(rel, await pathSource(full, rel));
    }
  };
  await walk(path);
  return files;
}
