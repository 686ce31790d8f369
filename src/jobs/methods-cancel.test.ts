// Every Methods job stops at its next check once cancelled: the signal is aborted at the first
// progress report, and no further report comes (each reports per batch, sample, token or step).
import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Progress } from '../analysis/activations/run.ts';
import { createCpuBackend } from '../gpu/cpu-backend.ts';
import { pathFileSet } from '../io/node-source.ts';
import { openActivationPair, runActivationTask, type ActivationRequest, type LoadedPair } from './activations.ts';

const DEMO = 'test/fixtures/demo';
const PROMPT = 'Once upon a time, a little girl went to the';
// 40 samples: three corpus batches of at most 16, so a check follows the first report.
const CORPUS = { corpus: { key: 'generic_stories.txt (test)', name: 'generic_stories.txt', text: readFileSync(`${DEMO}/generic_stories.txt`, 'utf8') }, samples: 40, tokensPerSample: 16 };

const REQUESTS: ActivationRequest[] = [
  { task: 'mine', k: 10, top: 20, topics: 3, ...CORPUS },
  { task: 'kl', top: 10, ...CORPUS },
  { task: 'pca', layer: 3, hook: 'resid_post', components: 3, ...CORPUS },
  { task: 'diff-sae', layer: 3, dict: 32, k: 4, steps: 1000, batch: 32, lr: 4e-3, seed: 0, ...CORPUS },
  { task: 'amplify', prompt: PROMPT, alphas: [0, 2], mode: 'logits', maxNew: 16, samples: 2, seed: 0, temperature: 1 },
  { task: 'amplify', prompt: PROMPT, alphas: [2], mode: 'weights', maxNew: 16, samples: 2, seed: 0, temperature: 1 },
  { task: 'attention', prompt: PROMPT, overCorpus: true, ...CORPUS },
];

let loaded: LoadedPair;

beforeAll(async () => {
  loaded = await openActivationPair({ base: await pathFileSet(`${DEMO}/base`), ft: await pathFileSet(`${DEMO}/ocean/model`) }, createCpuBackend(), 'cpu (test)');
});

describe('the Methods jobs are cancelled mid-run', () => {
  for (const request of REQUESTS) {
    it(`${request.task}${request.task === 'amplify' ? ` (${request.mode})` : ''}`, async () => {
      const stop = new AbortController();
      const seen: Progress[] = [];
      const run = runActivationTask(loaded, request, {
        signal: stop.signal,
        onProgress: (p) => {
          seen.push(p);
          if (seen.length === 1) stop.abort(new DOMException('the analysis was cancelled', 'AbortError'));
        },
      });
      await expect(run).rejects.toThrow('the analysis was cancelled');
      expect(seen).toHaveLength(1);
      expect(seen[0]!.done).toBeLessThan(seen[0]!.total);
    });
  }
});
