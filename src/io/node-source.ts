// Byte sources over local paths, for the command line and tests. Node only: the browser bundle never imports this file.
import { open, readdir, stat } from 'node:fs/promises';
import { basename, join, relative } from 'node:path';
import { checkRange, type ByteSource, type FileSet } from './source.ts';

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

/** Every file under a folder, by path relative to it. A file path gives a one-file set. */
export async function pathFileSet(path: string): Promise<FileSet> {
  const files = new Map<string, ByteSource>();
  const st = await stat(path);
  if (st.isFile()) {
    files.set(basename(path), await pathSource(path));
    return files;
  }
  const walk = async (dir: string): Promise<void> => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const full = join(dir, entry.name);
      if (entry.isDirectory()) await walk(full);
      else if (entry.isFile()) {
        const rel = relative(path, full).split('\\').join('/');
        files.set(rel, await pathSource(full, rel));
      }
    }
  };
  await walk(path);
  return files;
}
