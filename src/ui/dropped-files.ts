// Dropped or chosen files and folders, turned into a FileSet keyed by path relative to the dropped folder.
import { blobSource, type FileSet } from '../io/source.ts';

export interface DroppedFile {
  /** Path with "/" separators, as dropped: "model/config.json" for a dropped folder "model". */
  path: string;
  file: Blob;
}

// Dotfiles and dot-folders are skipped: a folder cloned with git carries .git/ (often as large as
// the weights), and huggingface-cli downloads carry .cache/.
const isHidden = (path: string) => path.split('/').some((part) => part.startsWith('.'));

/** A single dropped folder is the root (its name is dropped from the keys); otherwise paths are kept as dropped. */
export function toFileSet(dropped: readonly DroppedFile[]): FileSet {
  const visible = dropped.filter((d) => !isHidden(d.path));
  const first = visible[0]?.path.split('/')[0];
  const oneFolder = first !== undefined && visible.every((d) => d.path.startsWith(first + '/'));
  const keyed = visible.map((d) => ({ key: oneFolder ? d.path.slice(first.length + 1) : d.path, file: d.file }));
  keyed.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  return new Map(keyed.map(({ key, file }) => [key, blobSource(file, key)]));
}

/** Files from an <input type="file">, with or without webkitdirectory. */
export function filesFromInput(list: FileList | readonly File[]): DroppedFile[] {
  return Array.from(list, (file) => ({ path: file.webkitRelativePath || file.name, file }));
}

/**
 * Files from a drop, walking dropped folders. Must be called inside the drop handler: the browser
 * empties the DataTransfer once the event returns, so the entries are taken before the first await.
 */
export function filesFromDataTransfer(dt: DataTransfer): Promise<DroppedFile[]> {
  const roots = Array.from(dt.items)
    .filter((item) => item.kind === 'file')
    .map((item) => ({ entry: item.webkitGetAsEntry(), file: item.getAsFile() }));
  const fallback = roots.length === 0 ? Array.from(dt.files) : [];
  return (async () => {
    const out: DroppedFile[] = filesFromInput(fallback);
    for (const { entry, file } of roots) {
      if (entry) await walkEntry(entry, entry.name, out);
      else if (file) out.push({ path: file.name, file });
    }
    return out;
  })();
}

async function walkEntry(entry: FileSystemEntry, path: string, out: DroppedFile[]): Promise<void> {
  if (isFileEntry(entry)) {
    out.push({ path, file: await new Promise<File>((resolve, reject) => entry.file(resolve, reject)) });
  } else if (isDirectoryEntry(entry)) {
    for (const child of await readAllEntries(entry.createReader())) await walkEntry(child, `${path}/${child.name}`, out);
  }
}

/** readEntries returns at most ~100 entries per call; it signals the end with an empty batch. */
async function readAllEntries(reader: FileSystemDirectoryReader): Promise<FileSystemEntry[]> {
  const all: FileSystemEntry[] = [];
  for (;;) {
    const batch = await new Promise<FileSystemEntry[]>((resolve, reject) => reader.readEntries(resolve, reject));
    if (batch.length === 0) return all;
    all.push(...batch);
  }
}

const isFileEntry = (e: FileSystemEntry): e is FileSystemFileEntry => e.isFile;
const isDirectoryEntry = (e: FileSystemEntry): e is FileSystemDirectoryEntry => e.isDirectory;
