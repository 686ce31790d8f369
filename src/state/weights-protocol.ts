// The weight diff in a Web Worker, over the proxy file sets of file-proxy.ts: the main thread
// serves reads and never computes.
import type { WeightsDiff } from '../analysis/weights/types.ts';
import type { Backend } from '../model/backend.ts';
import type { FileSet } from '../io/source.ts';
import { createFileProxy, errorMessage, fileManifest, READ_CHUNK, serveRead, type FileEntry, type Port, type ReadReply, type ReadRequest } from './file-proxy.ts';
import type { Role } from './models.ts';
import { computeWeightsDiff, type DiffProgress, type WeightsRequest } from '../jobs/weights.ts';

type ToWorker = { type: 'start'; topK: number; files: Record<Role, FileEntry[]> } | ReadReply;

type FromWorker =
  | ReadRequest
  | { type: 'progress'; progress: DiffProgress }
  | { type: 'done'; result: WeightsDiff; backend: string }
  | { type: 'error'; message: string };

export interface WeightsOutcome {
  result: WeightsDiff;
  /** The backend the spectra ran on, in words. */
  backend: string;
  /** When the result was computed, if it came from the session cache (ms since the epoch). */
  cachedAt?: number;
}

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
        case 'read':
          serveRead(m, sets, signal, post);
          return;
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
    post({ type: 'start', topK: req.topK, files: { base: fileManifest(req.base), ft: fileManifest(req.ft) } });
  });
}

/** Worker side: answers one 'start' with the diff, reading bytes through the port `chunk` bytes at a time. */
export function serveWeightsDiff(port: Port, makeBackend: () => Promise<{ backend: Backend; name: string }>, chunk = READ_CHUNK): void {
  const post = (m: FromWorker) => port.postMessage(m, []);
  const proxy = createFileProxy(post, chunk);

  port.addEventListener('message', (e: MessageEvent) => {
    const m = e.data as ToWorker;
    if (m.type !== 'start') {
      proxy.receive(m);
      return;
    }
    void (async () => {
      try {
        const { backend, name } = await makeBackend();
        const result = await computeWeightsDiff(
          { base: proxy.files('base', m.files.base), ft: proxy.files('ft', m.files.ft), topK: m.topK },
          { backend, onProgress: (progress) => post({ type: 'progress', progress }) },
        );
        post({ type: 'done', result, backend: name });
      } catch (err) {
        post({ type: 'error', message: errorMessage(err) });
      }
    })();
  });
}
