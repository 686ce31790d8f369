// The corpus methods never hold logits for the corpus: every tensor with the vocabulary as its last
// dimension is watched while they run on the demo pair (vocabulary 4096) over 16 samples × 32 tokens.
// KL, PCA and the diff-SAE's lens go through the fused lens pass (no [rows × vocab] tensor at all,
// beyond the forward's own last-position logits, one row per sample of a batch); diff mining computes
// logit differences in blocks of at most LOGIT_BLOCK_VALUES values.
import { beforeAll, describe, expect, it } from 'vitest';
import { createCpuBackend } from '../../gpu/cpu-backend.ts';
import { numel, type Backend, type Tensor } from '../../model/backend.ts';
import type { ModelPair } from '../activations/run.ts';
import { demoPair } from '../activations/testing.ts';
import { createRng } from '../crosscoder/rng.ts';
import { collectDifferences } from '../diff-sae/diff-sae.ts';
import { activationDiffPca } from '../pca/pca.ts';
import { corpusKl } from './kl.ts';
import { LOGIT_BLOCK_VALUES, rowsPerBlock } from './logits.ts';
import { diffMining } from './mine.ts';

const V = 4096;
const SAMPLES = 16;
const TOKENS = 32;

/** Shapes of every tensor the backend's ops return (also inside the objects and arrays they return). */
function watchedBackend(be: Backend): { backend: Backend; shapes: number[][] } {
  const shapes: number[][] = [];
  const visit = (x: unknown, depth: number): void => {
    if (depth > 3 || x === null || typeof x !== 'object') return;
    if (Array.isArray((x as Tensor).shape) && typeof (x as Tensor).dtype === 'string') {
      shapes.push([...(x as Tensor).shape]);
      return;
    }
    for (const v of Array.isArray(x) ? x : Object.values(x)) visit(v, depth + 1);
  };
  const backend = new Proxy(be, {
    get(target, prop) {
      const v = Reflect.get(target, prop, target) as unknown;
      if (typeof v !== 'function') return v;
      return (...args: unknown[]) => {
        const r = (v as (...a: unknown[]) => unknown).apply(target, args);
        visit(r, 0);
        return r;
      };
    },
  });
  return { backend, shapes };
}

/** The most rows of any [..., V] tensor returned since `shapes` was last emptied. */
const vocabRows = (shapes: number[][]) => shapes.filter((s) => s.at(-1) === V).reduce((m, s) => Math.max(m, numel(s) / V), 0);

let pair: ModelPair;
let shapes: number[][];
const rng = createRng(3);
const samples = Array.from({ length: SAMPLES }, () => Array.from({ length: TOKENS }, () => rng.int(V)));

beforeAll(async () => {
  const watched = watchedBackend(createCpuBackend());
  pair = await demoPair('ocean', watched.backend);
  expect(pair.base.config.vocab).toBe(V);
  shapes = watched.shapes;
});

describe('no [tokens × vocabulary] buffers for a corpus', () => {
  it('corpus KL, PCA and the diff-SAE δ: at most one row per sample (the forward\'s last position), never per token', async () => {
    for (const run of [
      () => corpusKl(pair, samples, { top: 5 }),
      () => activationDiffPca(pair, samples, { layer: 5, components: 3 }),
      () => collectDifferences(pair, samples, { layer: 3 }),
    ]) {
      shapes.length = 0;
      await run();
      expect(shapes.length).toBeGreaterThan(0);
      expect(vocabRows(shapes)).toBeLessThanOrEqual(SAMPLES);
    }
  });

  it('diff mining: logit differences in blocks of at most LOGIT_BLOCK_VALUES values', async () => {
    shapes.length = 0;
    const r = await diffMining(pair, samples, { k: 5, topics: 0 });
    expect(r.positions).toBe(SAMPLES * TOKENS);
    const block = rowsPerBlock(V);
    expect(block * V).toBeLessThanOrEqual(LOGIT_BLOCK_VALUES);
    // The blocks are full: the bound is what is used, and it is below the rows of one batch.
    expect(vocabRows(shapes)).toBe(block);
    expect(block).toBeLessThan(SAMPLES * TOKENS);
  });
});
