// The app's activations runner: one Web Worker per loaded pair, kept while that pair is loaded so
// every activation view reuses the models it loaded.
import type { ActivationsRunner } from './activations.ts';
import { ActivationSession } from './activations-protocol.ts';

export function workerActivationsRunner(): ActivationsRunner {
  let session: ActivationSession | null = null;
  let worker: Worker | null = null;
  const end = (reason: string) => {
    session?.close(reason);
    worker?.terminate();
    session = null;
    worker = null;
  };
  return {
    run(files, request, onProgress, signal) {
      if (!session || session.files.base !== files.base || session.files.ft !== files.ft) {
        end('the models changed');
        const w = new Worker(new URL('./activations-worker.ts', import.meta.url), { type: 'module', name: 'activations' });
        const s = new ActivationSession(w, files, () => {
          if (session === s) end('the analysis was cancelled');
        });
        w.addEventListener('error', (e) => {
          if (session === s) end(`the activations worker failed: ${e.message || 'it could not start'}`);
        });
        worker = w;
        session = s;
      }
      return session.run(request, onProgress, signal);
    },
    release() {
      end('the models were closed');
    },
  };
}
