// Model files for a Web Worker: the worker sees proxy file sets whose reads the main thread serves
// from the files or URLs the user gave, one chunk per message, so the main thread never holds a
// whole tensor. Shared by every analysis worker (weights, activations, crosscoders).
import type { ByteSource, FileSet } from '../io/source.ts';
import type { Role } from './models.ts';

/** Bytes per proxied read message: a copy of this size on the main thread takes milliseconds. */
export const READ_CHUNK = 16 * 2 ** 20;

/** A Worker, a worker's global scope, or a MessagePort. */
export interface Port {
  postMessage(message: unknown, transfer: Transferable[]): void;
  addEventListener(type: 'message', cb: (e: MessageEvent) => void): void;
  removeEventListener(type: 'message', cb: (e: MessageEvent) => void): void;
}

export interface FileEntry {
  path: string;
  /** The source's own name, used in error messages. */
  name: string;
  size: number;
}

/** Worker → main: read bytes of one file. */
export interface ReadRequest {
  type: 'read';
  id: number;
  role: Role;
  path: string;
  offset: number;
  length: number;
}

/** Main → worker: the bytes, or why they could not be read. */
export type ReadReply = { type: 'bytes'; id: number; bytes: ArrayBuffer } | { type: 'read-error'; id: number; message: string };

export const errorMessage = (e: unknown) => (e instanceof Error ? e.message : String(e));

/** What the worker needs to know of a file set: paths, names, sizes. */
export function fileManifest(set: FileSet): FileEntry[] {
  return [...set].map(([path, src]) => ({ path, name: src.name, size: src.size }));
}

/** Main side: answers one read request from the given file sets. */
export function serveRead(m: ReadRequest, sets: Readonly<Record<Role, FileSet>>, signal: AbortSignal, post: (reply: ReadReply, transfer: Transferable[]) => void): void {
  const src = sets[m.role].get(m.path);
  if (!src) {
    post({ type: 'read-error', id: m.id, message: `${m.path}: no such file` }, []);
    return;
  }
  src.read(m.offset, m.length, signal).then(
    (bytes) => {
      const copy = bytes.slice();
      post({ type: 'bytes', id: m.id, bytes: copy.buffer }, [copy.buffer]);
    },
    (err: unknown) => post({ type: 'read-error', id: m.id, message: errorMessage(err) }, []),
  );
}

/** Worker side: file sets whose reads go out as requests, and the handler for the replies. */
export function createFileProxy(post: (m: ReadRequest) => void, chunk = READ_CHUNK): { files(role: Role, entries: readonly FileEntry[]): FileSet; receive(reply: ReadReply): void } {
  let nextId = 0;
  const pending = new Map<number, { resolve: (b: Uint8Array) => void; reject: (e: Error) => void }>();
  const request = (role: Role, path: string, offset: number, length: number) =>
    new Promise<Uint8Array>((resolve, reject) => {
      const id = nextId++;
      pending.set(id, { resolve, reject });
      post({ type: 'read', id, role, path, offset, length });
    });
  return {
    files: (role, entries) =>
      new Map(
        entries.map(({ path, name, size }) => {
          const src: ByteSource = {
            name,
            size,
            async read(offset, length) {
              if (length <= chunk) return request(role, path, offset, length);
              const out = new Uint8Array(length);
              for (let pos = 0; pos < length; pos += chunk) out.set(await request(role, path, offset + pos, Math.min(chunk, length - pos)), pos);
              return out;
            },
          };
          return [path, src];
        }),
      ),
    receive(reply) {
      const p = pending.get(reply.id);
      pending.delete(reply.id);
      if (reply.type === 'bytes') p?.resolve(new Uint8Array(reply.bytes));
      else p?.reject(new Error(reply.message));
    },
  };
}
