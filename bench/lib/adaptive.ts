// Timing for operations from milliseconds to minutes (model forwards, decompositions, training
// steps): the same policy as bench/py/common.py's measure(), so both sides of a ratio are timed alike.
import { median, type Timing } from './timing.ts';

export interface AdaptiveOptions {
  /** Time to spend on samples once minSamples are taken. */
  budgetMs: number;
  minSamples: number;
  maxSamples: number;
  /** A sample repeats the operation until it lasts about this long. */
  minSampleMs: number;
  /** An operation whose warm-up takes this long is timed once more and no further. */
  slowMs: number;
}

export const ADAPTIVE_DEFAULTS: AdaptiveOptions = { budgetMs: 1500, minSamples: 3, maxSamples: 15, minSampleMs: 50, slowMs: 2000 };

/** Warm-up, then samples; `run` must finish the operation (results on the host) before resolving. */
export async function measureAdaptive<T>(run: () => Promise<T>, options: Partial<AdaptiveOptions> = {}): Promise<{ timing: Timing; first: T }> {
  const o = { ...ADAPTIVE_DEFAULTS, ...options };
  let t = performance.now();
  const first = await run();
  const warmupMs = performance.now() - t;
  const samplesMs: number[] = [];
  let iters = 1;
  if (warmupMs >= o.slowMs) {
    t = performance.now();
    await run();
    samplesMs.push(performance.now() - t);
  } else {
    iters = Math.max(1, Math.ceil(o.minSampleMs / Math.max(warmupMs, 1e-3)));
    const start = performance.now();
    while (samplesMs.length < o.minSamples || (samplesMs.length < o.maxSamples && performance.now() - start < o.budgetMs)) {
      t = performance.now();
      for (let i = 0; i < iters; i++) await run();
      samplesMs.push((performance.now() - t) / iters);
    }
  }
  return { timing: { medianMs: median(samplesMs), samplesMs, itersPerSample: iters, warmupMs }, first };
}
