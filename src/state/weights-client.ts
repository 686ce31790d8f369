// The app's weights runner: one Web Worker per run, terminated when the run ends or is cancelled.
import type { WeightsRunner } from './weights.ts';
import { runOverPort } from './weights-protocol.ts';

export const workerWeightsRunner: WeightsRunner = async (req, onProgress, signal) => {
  const worker = new Worker(new URL('./weights-worker.ts', import.meta.url), { type: 'module', name: 'weights-diff' });
  try {
    return await Promise.race([
      runOverPort(worker, req, onProgress, signal),
      new Promise<never>((_, reject) => worker.addEventListener('error', (e) => reject(new Error(`the weights worker failed: ${e.message || 'it could not start'}`)))),
    ]);
  } finally {
    worker.terminate();
  }
};
