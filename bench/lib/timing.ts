// Wall-clock measurement shared by every benchmark, in Node and in the browser page.

export interface MeasureOptions {
  /** Time to spend on timed samples after the warm-up, once minSamples are taken. */
  budgetMs: number;
  minSamples: number;
  maxSamples: number;
  /** A sample repeats the operation until it lasts about this long, so fast operations are not timer noise. */
  minSampleMs: number;
  /** Above this per-operation time, two samples are enough: slow software paths would otherwise take minutes. */
  slowMs: number;
}

export const DEFAULT_MEASURE: MeasureOptions = {
  budgetMs: 1500,
  minSamples: 3,
  maxSamples: 15,
  minSampleMs: 50,
  slowMs: 2000,
};

export interface Timing {
  /** Median time of one operation over the samples. */
  medianMs: number;
  /** Time of one operation in each sample (a sample's total divided by its repetitions). */
  samplesMs: number[];
  itersPerSample: number;
  /** The first call: compilation, allocation and JIT warm-up included. */
  warmupMs: number;
}

export function median(values: readonly number[]): number {
  if (values.length === 0) throw new Error('median of no values');
  const sorted = [...values].sort((x, y) => x - y);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/**
 * Times `run(iters)`, which must perform the operation `iters` times and only resolve once the last
 * result is on the host (for a GPU: after a readback), so the clock covers the whole work.
 */
export async function measure<T>(
  run: (iters: number) => Promise<T>,
  options: Partial<MeasureOptions> = {},
): Promise<{ timing: Timing; first: T }> {
  const o = { ...DEFAULT_MEASURE, ...options };
  let t = performance.now();
  const first = await run(1);
  const warmupMs = performance.now() - t;

  t = performance.now();
  await run(1);
  const estimateMs = performance.now() - t;

  const iters = Math.max(1, Math.ceil(o.minSampleMs / Math.max(estimateMs, 1e-3)));
  const minSamples = estimateMs > o.slowMs ? Math.min(2, o.minSamples) : o.minSamples;
  const samplesMs = iters === 1 ? [estimateMs] : [];
  const start = performance.now();
  while (samplesMs.length < minSamples || (samplesMs.length < o.maxSamples && performance.now() - start < o.budgetMs)) {
    t = performance.now();
    await run(iters);
    samplesMs.push((performance.now() - t) / iters);
  }
  return { timing: { medianMs: median(samplesMs), samplesMs, itersPerSample: iters, warmupMs }, first };
}
