// The app's crosscoder runner: one Web Worker per loaded pair, kept while that pair is loaded so a
// trained crosscoder, its activations and the models stay available to the latent pages.
import type { CrosscoderRunner } from './crosscoder.ts';
import { CrosscoderSession } from './crosscoder-protocol.ts';

export function workerCrosscoderRunner(): CrosscoderRunner {
  let session: CrosscoderSession | null = null;
  let worker: Worker | null = null;
  const end = (reason: string) => {
    session?.close(reason);
    worker?.terminate();
    session = null;
    worker = null;
  };
  return {
    run(files, op, handlers) {
      if (!session || session.files.base !== files.base || session.files.ft !== files.ft) {
        end('the models changed');
        const w = new Worker(new URL('./crosscoder-worker.ts', import.meta.url), { type: 'module', name: 'crosscoders' });
        const s = new CrosscoderSession(w, files, () => {
          if (session === s) end('the crosscoder run was cancelled');
        });
        w.addEventListener('error', (e) => {
          if (session === s) end(`the crosscoder worker failed: ${e.message || 'it could not start'}`);
        });
        worker = w;
        session = s;
      }
      return session.run(op, handlers);
    },
    command(command) {
      session?.command(command);
    },
    release() {
      end('the models were closed');
    },
  };
}
