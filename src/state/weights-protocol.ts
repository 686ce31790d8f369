// The weight diff in a Web Worker. The worker opens both models over proxy file sets whose reads
// are served by the main thread from the same files or URLs the user gave, in chunks, so the
// main thread never holds a whole tensor and never computes.
import type { WeightsDiff } from '../analysis/weights/types.ts';
import type { MatrixBackend } from '../analysis/linalg/randomized.ts';
import type { ByteSource, FileSet } from '../io/source.ts';
import type { Role } from './models.ts';
import { computeWeightsDiff, type DiffProgress, type WeightsRequest } from './weights-compute.ts';

/** Bytes per proxied read message: a copy of this size on the main thread takes milliseconds. */
export const READ_CHUNK = 16 * 2 ** 20;

interface FileEntry {
  path: string;
  /** The source's own name, used in error messages. */
  name: string;
  size: number;
}

type ToWorker =
  | { type: 'start'; topK: number; files: Record<Role, FileEntry[]> }
  | { type: 'bytes'; id: number; bytes: ArrayBuffer }
  | { type: 'read-error'; id: number; message: string };

type FromWorker =
  | { type: 'read'; id: number; role: Role; path: string; offset: number; length: number }
  | { type: 'progress'; progress: DiffProgress }
  | { type: 'done'; result: WeightsDiff; backend: string }
  | { type: 'error'; message: string };

/** A Worker, a worker's global scope, or a MessagePort. */
export interface Port {
  postMessage(message: unknown, transfer: Transferable[]): void;
  addEventListener(type: 'message', cb: (e: MessageEvent) => void): void;
  removeEventListener(type: 'message', cb: (e: MessageEvent) => void): void;
}

export interface WeightsOutcome {
  result: WeightsDiff;
  /** The backend the spectra ran on, in words. */
  backend: string;
  /** When the result was computed, if it came from the session cache (ms since the epoch). */
  cachedAt?: number;
}

const message = (e: unknown) => (e instanceof Error ? e.message : String(e));

/** Main side: sends the request, serves the worker's reads, resolves with its result. */
export function runOverPort(port: Port, req: WeightsRequest, onProgress: (p: DiffProgress) => void, signal: AbortSignal): Promise<WeightsOutcome> {
  const sets: Record<Role, FileSet> = { base: req.base, ft: req.ft };
  return new Promise<WeightsOutcome>((resolve, reject) => {
    const post = (m: ToWorker, transfer: Transferable[] = []) => port.postMessage(m, transfer);
    const finish = () => {
      port.removeEventListener('message', onMessage);
      signal.removeEventListener('abort', onAbort);
    };
    const onAbort = () => {
      finish();
      reject(signal.reason);
    };
    const onMessage = (e: MessageEvent) => {
      const m = e.data as FromWorker;
      switch (m.type) {
        case 'read': {
          const src = sets[m.role].get(m.path);
          if (!src) {
            post({ type: 'read-error', id: m.id, message: `${m.path}: no such file` });
            return;
          }
          src.read(m.offset, m.length, signal).then(
            (bytes) => {
              const copy = bytes.slice();
              post({ type: 'bytes', id: m.id, bytes: copy.buffer }, [copy.buffer]);
            },
            (err: unknown) => post({ type: 'read-error', id: m.id, message: message(err) }),
          );
          return;
        }
        case 'progress':
          onProgress(m.progress);
          return;
        case 'done':
          finish();
          resolve({ result: m.result, backend: m.backend });
          return;
        case 'error':
          finish();
          reject(new Error(m.message));
          return;
      }
    };
    if (signal.aborted) {
      reject(signal.reason);
      return;
    }
    signal.addEventListener('abort', onAbort);
    port.addEventListener('message', onMessage);
    const manifest = (set: FileSet) => [...set].map(([path, src]) => ({ path, name: src.name, size: src.size }));
    post({ type: 'start', topK: req.topK, files: { base: manifest(req.base), ft: manifest(req.ft) } });
  });
}

/** Worker side: answers one 'start' with the diff, reading bytes through the port `chunk` bytes at a time. */
export function serveWeightsDiff(port: Port, makeBackend: () => Promise<{ backend: MatrixBackend; name: string }>, chunk = READ_CHUNK): void {
  let nextId = 0;
  const pending = new Map<number, { resolve: (b: Uint8Array) => void; reject: (e: Error) => void }>();
  const post = (m: FromWorker) => port.postMessage(m, []);

  const request = (role: Role, path: string, offset: number, length: number) =>
    new Promise<Uint8Array>((resolve, reject) => {
      const id = nextId++;
      pending.set(id, { resolve, reject });
      post({ type: 'read', id, role, path, offset, length });
    });

  const proxy = (role: Role, entries: FileEntry[]): FileSet =>
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
    );

  port.addEventListener('message', (e: MessageEvent) => {
    const m = e.data as ToWorker;
    if (m.type === 'bytes' || m.type === 'read-error') {
      const p = pending.get(m.id);
      pending.delete(m.id);
      if (m.type === 'bytes') p?.resolve(new Uint8Array(m.bytes));
      else p?.reject(new Error(m.message));
      return;
    }
    void (async () => {
      try {
        const { backend, name } = await makeBackend();
        const result = await computeWeightsDiff(
          { base: proxy('base', m.files.base), ft: proxy('ft', m.files.ft), topK: m.topK },
          { backend, onProgress: (progress) => post({ type: 'progress', progress }) },
        );
        post({ type: 'done', result, backend: name });
      } catch (err) {
        post({ type: 'error', message: message(err) });
      }
    })();
  });
}
